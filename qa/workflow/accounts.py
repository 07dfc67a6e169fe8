"""Accounts and sign-in sessions."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from qa.errors import AccessDenied, QAError
from qa.workflow import auth, throttle
from qa.workflow.access import CallAccess
from qa.workflow.actions import Act, Tx, action, staged_action
from qa.workflow.inputs import LIMITS, NewUserInput, UsernameInput
from qa.workflow.models import AuthSession, User
from qa.workflow.unit import SYSTEM, NotFoundError
from qa.workflow.views import UserRole, UserView


def user_view(user: User) -> UserView:
    return UserView(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=UserRole(user.role),
        team=user.team,
        agent_id=user.agent_id,
        active=user.active,
    )


class Accounts(CallAccess):
    """Users, passwords and session tokens."""

    @staged_action(auth.USER_ADMINS, "add users", write=True, system=True)
    def add_user(
        self,
        act: Act,
        username: str,
        password: str,
        role: UserRole | str,
        *,
        display_name: str | None = None,
        team: str | None = None,
        agent_id: str | None = None,
    ) -> UserView:
        """Create an account: an admin, or the command line (actor None) which owns the DB.

        The input is checked and the password hashed (slow) before the write lock is taken.
        """
        NewUserInput(
            username=username,
            password=password,
            display_name=display_name,
            team=team,
            agent_id=agent_id,
        )
        role = UserRole(role)
        if not auth.USERNAME_RE.match(username):
            raise QAError(
                f"invalid username {username!r}: use 1-64 letters, digits, '.', '_', '@' or '-'"
            )
        if len(password) < auth.MIN_PASSWORD:
            raise QAError(
                f"password for {username!r} is too short (at least {auth.MIN_PASSWORD} characters)"
            )
        if role is UserRole.AGENT and not agent_id:
            raise QAError(f"agent {username!r} needs an agent id (the id calls carry)")
        password_hash = auth.hash_password(self._hasher, password)
        with act.tx(write=True) as tx:
            s, by = tx.s, tx.by
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise QAError(f"user {username!r} already exists")
            user = User(
                username=username,
                display_name=display_name or username,
                password_hash=password_hash,
                role=role.value,
                team=team,
                agent_id=agent_id,
                active=True,
                created_at=self.now(),
            )
            s.add(user)
            s.flush()
            self._audit(s, by, "user", username, "create", "role", None, role.value)
            if team:
                self._audit(s, by, "user", username, "create", "team", None, team)
            if agent_id:
                self._audit(s, by, "user", username, "create", "agent_id", None, agent_id)
            return user_view(user)

    @action(auth.USER_READERS, "list users", system=True)
    def list_users(
        self, tx: Tx, *, include_inactive: bool = True, role: UserRole | str | None = None
    ) -> list[UserView]:
        """Accounts, for admins and for leads choosing reviewers (actor None: command line)."""
        query = select(User).order_by(User.username)
        if not include_inactive:
            query = query.where(User.active.is_(True))
        if role is not None:
            query = query.where(User.role == UserRole(role).value)
        return [user_view(u) for u in tx.s.scalars(query)]

    @action(auth.USER_ADMINS, "disable users", write=True, system=True)
    def disable_user(self, tx: Tx, username: str) -> UserView:
        """Disable an account and end its sessions; history keeps its name."""
        s = tx.s
        user = self._user_named(s, username)
        self._changes(s, tx.by, "user", username, user, {"active": False}, "disable")
        for session in s.scalars(select(AuthSession).where(AuthSession.user_id == user.id)):
            s.delete(session)
        return user_view(user)

    @staticmethod
    def _user_named(s: Session, username: str) -> User:
        UsernameInput(username=username)
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"user {username!r} not found")
        return user

    @action(auth.USER_ADMINS, "unlock users", write=True, system=True)
    def unlock_user(self, tx: Tx, username: str) -> UserView:
        """Clear an account's failed logins, so a locked account can sign in again."""
        user = self._user_named(tx.s, username)
        failures = throttle.unlock(tx.s, username)
        self._audit(tx.s, tx.by, "user", username, "unlock", "failed_logins", failures, 0)
        return user_view(user)

    def authenticate(
        self, username: str, password: str, address: str | None = None
    ) -> tuple[UserView, str]:
        """Check a password and open a session; the token is shown once and stored hashed.

        `address` is the client's (IP) address where the caller knows it: failures are
        throttled per account and per address (`qa.workflow.throttle`), and a locked
        account or address is refused before its password is checked. The slow password
        check runs outside any writing transaction, so a wave of logins does not hold other
        writers behind it; a failed attempt is audited on its own.
        """
        for field, value in (("username", username), ("password", password)):
            if len(value) > LIMITS[field]:
                raise AccessDenied(
                    f"{field} is {len(value):,} characters long; "
                    f"at most {LIMITS[field]:,} are allowed"
                )
        address = (address or "").strip()[: LIMITS["address"]] or None
        policy = self.login_policy
        with self._tx(write=True) as s:
            failures = throttle.admit(s, policy, self.now(), username, address)
            user = s.scalar(select(User).where(User.username == username))
            found = (user.id, user.password_hash) if user is not None else None
        refusal = "unknown user or wrong password"
        if failures >= policy.max_failures:
            refusal += f"; {policy.locked_message()}"
        if found is None:
            if self._dummy_hash is None:
                self._dummy_hash = auth.dummy_hash(self._hasher)
            auth.verify_password(self._hasher, self._dummy_hash, password)
            raise AccessDenied(refusal)
        user_id, password_hash = found
        if not auth.verify_password(self._hasher, password_hash, password):
            with self._tx(write=True) as s:
                self._audit(s, username, "user", username, "login_failed")
                if failures == policy.max_failures:
                    self._audit(
                        s, username, "user", username, "locked", "failed_logins", None, failures
                    )
            raise AccessDenied(refusal)
        rehashed = (
            auth.hash_password(self._hasher, password)
            if self._hasher.check_needs_rehash(password_hash)
            else None
        )
        with self._tx(write=True) as s:
            user = s.get(User, user_id)
            if user is None or not user.active:
                raise AccessDenied(f"user {username!r} is disabled")
            if rehashed and user.password_hash == password_hash:
                user.password_hash = rehashed
            throttle.forgive(s, username, address)
            token = auth.new_token()
            now = self.now()
            for stale in s.scalars(
                select(AuthSession).where(
                    AuthSession.user_id == user.id, AuthSession.expires_at <= now
                )
            ):
                s.delete(stale)
            s.add(
                AuthSession(
                    token_hash=auth.token_hash(token),
                    user_id=user.id,
                    created_at=now,
                    expires_at=now + self.session_ttl,
                )
            )
            self._audit(s, username, "user", username, "login")
            return user_view(user), token

    def user_for_token(self, token: str) -> UserView:
        """The signed-in user of a session token; expired or unknown tokens are refused."""
        with self._tx() as s:
            session = s.scalar(
                select(AuthSession).where(AuthSession.token_hash == auth.token_hash(token))
            )
            if session is None:
                raise AccessDenied("session unknown or ended; sign in again")
            if session.expires_at <= self.now():
                raise AccessDenied("session expired; sign in again")
            user = s.get(User, session.user_id)
            if user is None or not user.active:
                raise AccessDenied("account disabled")
            return user_view(user)

    def logout(self, token: str) -> None:
        """End a session; unknown tokens are ignored so logging out twice is harmless."""
        with self._tx(write=True) as s:
            session = s.scalar(
                select(AuthSession).where(AuthSession.token_hash == auth.token_hash(token))
            )
            if session is not None:
                user = s.get(User, session.user_id)
                s.delete(session)
                self._audit(
                    s,
                    user.username if user else SYSTEM,
                    "user",
                    user.username if user else session.user_id,
                    "logout",
                )
