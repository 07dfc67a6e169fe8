"""Accounts and sign-in sessions.

Admins (and the command line, actor None) manage accounts: add, disable and enable,
reset a password, change role, team and agent id, unlock after failed logins. Every change
is audited with its old and new values, except a password, which is audited as reset and
never as a value. At least one active admin always remains, and an admin cannot disable or
demote themselves, so a site cannot lock itself out of its own account management.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from qa.errors import AccessDenied, QAError
from qa.workflow import auth, throttle
from qa.workflow.access import CallAccess
from qa.workflow.actions import Act, Tx, action, staged_action
from qa.workflow.inputs import LIMITS, Checked, NewUserInput, UsernameInput, limited
from qa.workflow.models import AuthSession, User
from qa.workflow.unit import SYSTEM, NotFoundError
from qa.workflow.views import UserRole, UserView, View


class AccountInput(Checked):
    """What an admin types when changing an account's role, team or agent id."""

    what: ClassVar[str] = "user"
    username: str = limited("username")
    team: str | None = limited("team", None)
    agent_id: str | None = limited("agent_id", None)


class PasswordInput(Checked):
    """A new password an admin sets for an account."""

    what: ClassVar[str] = "user"
    username: str = limited("username")
    password: str = limited("password")


class AccountView(View):
    """An account as its admins manage it: the user plus sign-in standing and age."""

    id: int
    username: str
    display_name: str
    role: UserRole
    team: str | None = None
    agent_id: str | None = None
    active: bool = True
    created_at: datetime | None = None
    failed_logins: int = 0  # consecutive failures that still count (see throttle)
    locked: bool = False


def _check_password(username: str, password: str) -> None:
    if len(password) < auth.MIN_PASSWORD:
        raise QAError(
            f"password for {username!r} is too short (at least {auth.MIN_PASSWORD} characters)"
        )


def _check_agent_id(username: str, role: UserRole, agent_id: str | None) -> None:
    if role is UserRole.AGENT and not agent_id:
        raise QAError(f"agent {username!r} needs an agent id (the id calls carry)")


def _end_sessions(s: Session, user: User) -> None:
    """Sign the account out everywhere: its session tokens stop working at once."""
    s.execute(delete(AuthSession).where(AuthSession.user_id == user.id))


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
        _check_password(username, password)
        _check_agent_id(username, role, agent_id)
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

    @action(auth.USER_ADMINS, "list accounts", system=True)
    def list_accounts(self, tx: Tx) -> list[AccountView]:
        """Every account with its failed logins and whether they lock it, for admins."""
        s, now, policy = tx.s, self.now(), self.login_policy
        failures = {
            row.name: throttle._count(row, now, policy)
            for row in s.scalars(
                select(throttle.LoginFailure).where(throttle.LoginFailure.kind == throttle.ACCOUNT)
            )
        }
        accounts = []
        for u in s.scalars(select(User).order_by(User.username)):
            failed = failures.get(u.username, 0)
            accounts.append(
                AccountView(
                    **user_view(u).model_dump(),
                    created_at=u.created_at,
                    failed_logins=failed,
                    locked=failed >= policy.max_failures,
                )
            )
        return accounts

    @action(auth.USER_ADMINS, "disable users", write=True, system=True)
    def disable_user(self, tx: Tx, username: str) -> UserView:
        """Disable an account and end its sessions; history keeps its name.

        Refused for the acting admin's own account and for the last active admin.
        """
        s = tx.s
        user = self._user_named(s, username)
        if user.active:
            self._keep_an_admin(tx, user, "disable")
        self._changes(s, tx.by, "user", username, user, {"active": False}, "disable")
        _end_sessions(s, user)
        return user_view(user)

    @action(auth.USER_ADMINS, "enable users", write=True, system=True)
    def enable_user(self, tx: Tx, username: str) -> UserView:
        """Let a disabled account sign in again (with its old password)."""
        user = self._user_named(tx.s, username)
        self._changes(tx.s, tx.by, "user", username, user, {"active": True}, "enable")
        return user_view(user)

    @staged_action(auth.USER_ADMINS, "reset passwords", write=True, system=True)
    def reset_password(self, act: Act, username: str, password: str) -> UserView:
        """Set a new password an admin chose, and end the account's sessions, so whoever
        held the old one is signed out. Audited as a reset, never with a value.

        The password is checked and hashed (slow) before the write lock is taken.
        """
        PasswordInput(username=username, password=password)
        _check_password(username, password)
        password_hash = auth.hash_password(self._hasher, password)
        with act.tx(write=True) as tx:
            user = self._user_named(tx.s, username)
            user.password_hash = password_hash
            _end_sessions(tx.s, user)
            self._audit(tx.s, tx.by, "user", username, "password_reset")
            return user_view(user)

    @action(auth.USER_ADMINS, "change roles", write=True, system=True)
    def change_role(
        self,
        tx: Tx,
        username: str,
        role: UserRole | str,
        *,
        team: str | None = None,
        agent_id: str | None = None,
    ) -> UserView:
        """Set an account's role, team and agent id together (None clears team or agent id),
        audited per field that changed.

        An agent needs an agent id; an admin cannot demote themselves or the last active
        admin. The role is re-read on every action, so the change holds at once.
        """
        AccountInput(username=username, team=team, agent_id=agent_id)
        role = UserRole(role)
        team, agent_id = team or None, agent_id or None
        _check_agent_id(username, role, agent_id)
        user = self._user_named(tx.s, username)
        if user.role == UserRole.ADMIN.value and role is not UserRole.ADMIN and user.active:
            self._keep_an_admin(tx, user, "demote")
        self._changes(
            tx.s,
            tx.by,
            "user",
            username,
            user,
            {"role": role.value, "team": team, "agent_id": agent_id},
        )
        return user_view(user)

    @staticmethod
    def _user_named(s: Session, username: str) -> User:
        UsernameInput(username=username)
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFoundError(f"user {username!r} not found")
        return user

    @staticmethod
    def _keep_an_admin(tx: Tx, user: User, verb: str) -> None:
        """Refuse to take `user` out of the active admins when that would leave none, or
        when the acting admin would lock themselves out."""
        if tx.actor is not None and tx.actor.id == user.id:
            raise QAError(f"you cannot {verb} your own account; ask another admin")
        if user.role != UserRole.ADMIN.value:
            return
        others = tx.s.scalar(
            select(func.count(User.id)).where(
                User.role == UserRole.ADMIN.value, User.active.is_(True), User.id != user.id
            )
        )
        if not others:
            raise QAError(
                f"cannot {verb} {user.username!r}: it is the last active admin; "
                "add or enable another admin first"
            )

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
