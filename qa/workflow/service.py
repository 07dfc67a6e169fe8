"""The workflow service: every read and write the dashboard and the CLI make.

Each method takes the acting user first and decides here whether they may do it, so a
page that forgets to hide a button still cannot leak or change anything. The user is
re-read from the database on every call: a disabled account or a changed role takes
effect at once, whatever view object a page still holds.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import StaticPool

from qa.errors import AccessDenied, QAError, StaleEditError
from qa.schema import CallMeta, CallResult, CallScore, ItemOutcome
from qa.scoring.outcome import Outcome, OutcomeItem, Scoring, outcome
from qa.store import Keys, ObjectNotFoundError, Store
from qa.workflow import auth
from qa.workflow.models import (
    Assignment,
    AuditEntry,
    AuthSession,
    Base,
    Call,
    CallItem,
    Case,
    Coaching,
    Dispute,
    Review,
    ReviewItem,
    RoleOverride,
    User,
    add_missing_columns,
    utcnow,
)
from qa.workflow.stats import agreement_rate, majority, nominal_alpha, pass_rate
from qa.workflow.views import (
    AgreementStats,
    AuditView,
    CalibrationItem,
    CalibrationView,
    CallFilter,
    CallItemView,
    CallView,
    CaseKind,
    CaseView,
    CoachingEffect,
    CoachingStatus,
    CoachingView,
    DisputeStatus,
    DisputeView,
    FinalOutcomeRow,
    ItemAgreement,
    ItemEffect,
    ReviewerAgreement,
    ReviewItemInput,
    ReviewItemView,
    ReviewStatus,
    ReviewView,
    UserRole,
    UserView,
)

if TYPE_CHECKING:
    from qa.pipeline import Models

SYSTEM = "system"  # actor name in the audit log for the pipeline and the command line
# Postgres advisory lock every writing transaction takes first (see Workflow._tx)
WRITE_LOCK_KEY = 0x5141_574F_524B  # "QAWORK"
NOT_PERMITTED = "call not found or not permitted"


class NotFoundError(QAError):
    """A record named by id does not exist (for agents, hidden calls look the same)."""


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return json.dumps(value, default=str, sort_keys=True)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _role(user: User) -> UserRole:
    return UserRole(user.role)


def _default_points(outcome: ItemOutcome, possible: float) -> float:
    return possible if outcome is ItemOutcome.PASS else 0.0


def _checked_item(call_id: str, item: CallItem | None, entry: ReviewItemInput
                  ) -> tuple[ItemOutcome, float]:
    """A reviewer's or lead's outcome and points for one item, checked against the card."""
    if item is None:
        raise QAError(f"call {call_id!r} has no scorecard item {entry.item_id!r}")
    outcome = ItemOutcome(entry.outcome)
    points = (_default_points(outcome, item.points_possible)
              if entry.points is None else float(entry.points))
    if outcome is ItemOutcome.NA:
        points = 0.0
    if not 0.0 <= points <= item.points_possible:
        raise QAError(f"item {entry.item_id!r}: points {points} outside 0.."
                      f"{item.points_possible}")
    return outcome, points


def _scoring(call: Call) -> Scoring:
    """The card's arithmetic as stored with the call at sync time."""
    return Scoring(mode=call.scoring_mode or "deduction", pass_mark=call.pass_mark,
                   max_total=call.max_total,
                   auto_fail_zeroes_total=call.auto_fail_zeroes_total is not False)


def _outcome(call: Call, rows: Iterable[tuple[CallItem, ItemOutcome, float | None]]) -> Outcome:
    """Total, pass and auto-fail of the call for these (item, outcome, points)."""
    return outcome((OutcomeItem(item_id=i.item_id, name=i.name, outcome=o, points_awarded=p,
                                points_possible=i.points_possible, critical=i.critical)
                    for i, o, p in rows), _scoring(call))


def _flip(outcome: ItemOutcome) -> ItemOutcome:
    return ItemOutcome.PASS if outcome is not ItemOutcome.PASS else ItemOutcome.FAIL


def _week(start: datetime | None) -> date | None:
    if start is None:
        return None
    d = start.date()
    return d - timedelta(days=d.weekday())


class Workflow:
    """Reviews, calibration, disputes, coaching, users and audit over one database URL."""

    def __init__(
        self,
        database_url: str,
        *,
        session_ttl_minutes: int = 480,
        password_hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
        echo: bool = False,
    ) -> None:
        self.database_url = database_url
        self.session_ttl = timedelta(minutes=session_ttl_minutes)
        self._hasher = password_hasher or PasswordHasher()
        self._clock = clock or utcnow
        self.engine = self._make_engine(database_url, echo)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)  # a database an older release created
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._dummy_hash: str | None = None

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _make_engine(url: str, echo: bool) -> Engine:
        if url.startswith("sqlite"):
            memory = url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url
            kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30},
                                      "json_serializer": _json}
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                path = url.split("sqlite:///", 1)[-1]
                if path:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, echo=echo, **kwargs)

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                if not memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                write = conn.get_execution_options().get("qa_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        parsed = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            # a bare postgresql:// names psycopg2; the driver installed with qa is psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, echo=echo, pool_pre_ping=True, json_serializer=_json)

    @contextmanager
    def _tx(self, *, write: bool = False) -> Iterator[Session]:
        """One transaction; a writing one takes the database's write lock up front.

        A deferred SQLite transaction that reads and then writes fails at once if another
        connection wrote in between; BEGIN IMMEDIATE waits for the lock instead. Postgres
        (read committed) would let two writers check the same state and both act on it
        (resolve one dispute twice, create one user twice); a transaction-scoped advisory
        lock gives writers the same one-at-a-time order as SQLite, while readers never wait.
        """
        session = self._sessions()
        try:
            with session.begin():
                if write:
                    conn = session.connection(execution_options={"qa_write": True})
                    if conn.dialect.name == "postgresql":
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": WRITE_LOCK_KEY})
                yield session
        except StaleDataError as exc:
            raise StaleEditError("the record was changed by someone else; reload and retry") \
                from exc
        finally:
            session.close()

    def now(self) -> datetime:
        return self._clock()

    def _audit(self, s: Session, actor: str, entity: str, entity_id: object, action: str,
               field: str | None = None, old: Any = None, new: Any = None) -> None:
        s.add(AuditEntry(at=self.now(), actor=actor, entity=entity, entity_id=str(entity_id),
                         action=action, field=field, old_value=_dump(old), new_value=_dump(new)))

    def _changes(self, s: Session, actor: str, entity: str, entity_id: object, obj: Any,
                 values: dict[str, Any], action: str = "update") -> None:
        """Set attributes and write one audit entry per field that really changed."""
        for name, new in values.items():
            old = getattr(obj, name)
            if old != new:
                setattr(obj, name, new)
                self._audit(s, actor, entity, entity_id, action, name, old, new)

    def _user(self, s: Session, actor: UserView | None) -> User:
        """The acting user as the database knows them now."""
        if actor is None:
            raise AccessDenied("sign in first")
        user = s.get(User, actor.id)
        if user is None or user.username != actor.username or not user.active:
            raise AccessDenied(f"user {actor.username!r} is unknown or disabled")
        return user

    @staticmethod
    def _require(user: User, roles: frozenset[UserRole], what: str) -> None:
        if _role(user) not in roles:
            allowed = ", ".join(sorted(r.value for r in roles))
            raise AccessDenied(f"{user.username} ({user.role}) may not {what}; needs {allowed}")

    @staticmethod
    def _can_see_call(user: User, call: Call) -> bool:
        if _role(user) in auth.SEE_ALL_CALLS:
            return True
        return (_role(user) is UserRole.AGENT and user.agent_id is not None
                and call.agent_id == user.agent_id)

    def _call(self, s: Session, user: User, call_id: str) -> Call:
        call = s.get(Call, call_id)
        if call is None:
            if _role(user) in auth.SEE_ALL_CALLS:
                raise NotFoundError(f"call {call_id!r} not found")
            raise AccessDenied(f"{NOT_PERMITTED}: {call_id!r}")
        if not self._can_see_call(user, call):
            raise AccessDenied(f"{NOT_PERMITTED}: {call_id!r}")
        return call

    def _own_call(self, s: Session, user: User, call_id: str, what: str) -> Call:
        """A call that must be the acting agent's own."""
        if _role(user) is not UserRole.AGENT:
            raise AccessDenied(f"{user.username} ({user.role}) may not {what}; only the agent "
                               "of the call may")
        return self._call(s, user, call_id)

    # ------------------------------------------------------------------ users and sessions

    @staticmethod
    def _user_view(user: User) -> UserView:
        return UserView(id=user.id, username=user.username, display_name=user.display_name,
                        role=UserRole(user.role), team=user.team, agent_id=user.agent_id,
                        active=user.active)

    def add_user(self, actor: UserView | None, username: str, password: str,
                 role: UserRole | str, *, display_name: str | None = None,
                 team: str | None = None, agent_id: str | None = None) -> UserView:
        """Create an account: an admin, or the command line (actor None) which owns the DB."""
        role = UserRole(role)
        if not auth.USERNAME_RE.match(username):
            raise QAError(f"invalid username {username!r}: use 1-64 letters, digits, '.', '_', "
                          "'@' or '-'")
        if len(password) < auth.MIN_PASSWORD:
            raise QAError(f"password for {username!r} is too short (at least "
                          f"{auth.MIN_PASSWORD} characters)")
        if role is UserRole.AGENT and not agent_id:
            raise QAError(f"agent {username!r} needs an agent id (the id calls carry)")
        password_hash = auth.hash_password(self._hasher, password)
        with self._tx(write=True) as s:
            by = SYSTEM
            if actor is not None:
                admin = self._user(s, actor)
                self._require(admin, auth.USER_ADMINS, "add users")
                by = admin.username
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise QAError(f"user {username!r} already exists")
            user = User(username=username, display_name=display_name or username,
                        password_hash=password_hash, role=role.value, team=team,
                        agent_id=agent_id, active=True, created_at=self.now())
            s.add(user)
            s.flush()
            self._audit(s, by, "user", username, "create", "role", None, role.value)
            if team:
                self._audit(s, by, "user", username, "create", "team", None, team)
            if agent_id:
                self._audit(s, by, "user", username, "create", "agent_id", None, agent_id)
            return self._user_view(user)

    def list_users(self, actor: UserView | None, *, include_inactive: bool = True,
                   role: UserRole | str | None = None) -> list[UserView]:
        """Accounts, for admins and for leads choosing reviewers (actor None: command line)."""
        with self._tx() as s:
            if actor is not None:
                self._require(self._user(s, actor), auth.USER_READERS, "list users")
            query = select(User).order_by(User.username)
            if not include_inactive:
                query = query.where(User.active.is_(True))
            if role is not None:
                query = query.where(User.role == UserRole(role).value)
            return [self._user_view(u) for u in s.scalars(query)]

    def disable_user(self, actor: UserView | None, username: str) -> UserView:
        """Disable an account and end its sessions; history keeps its name."""
        with self._tx(write=True) as s:
            by = SYSTEM
            if actor is not None:
                admin = self._user(s, actor)
                self._require(admin, auth.USER_ADMINS, "disable users")
                by = admin.username
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise NotFoundError(f"user {username!r} not found")
            self._changes(s, by, "user", username, user, {"active": False}, "disable")
            for session in s.scalars(select(AuthSession).where(AuthSession.user_id == user.id)):
                s.delete(session)
            return self._user_view(user)

    def authenticate(self, username: str, password: str) -> tuple[UserView, str]:
        """Check a password and open a session; the token is shown once and stored hashed.

        The slow password check runs outside any writing transaction, so a wave of logins
        does not hold other writers behind it; a failed attempt is audited on its own.
        """
        with self._tx() as s:
            user = s.scalar(select(User).where(User.username == username))
            found = (user.id, user.password_hash) if user is not None else None
        if found is None:
            if self._dummy_hash is None:
                self._dummy_hash = auth.dummy_hash(self._hasher)
            auth.verify_password(self._hasher, self._dummy_hash, password)
            raise AccessDenied("unknown user or wrong password")
        user_id, password_hash = found
        if not auth.verify_password(self._hasher, password_hash, password):
            with self._tx(write=True) as s:
                self._audit(s, username, "user", username, "login_failed")
            raise AccessDenied("unknown user or wrong password")
        rehashed = (auth.hash_password(self._hasher, password)
                    if self._hasher.check_needs_rehash(password_hash) else None)
        with self._tx(write=True) as s:
            user = s.get(User, user_id)
            if user is None or not user.active:
                raise AccessDenied(f"user {username!r} is disabled")
            if rehashed and user.password_hash == password_hash:
                user.password_hash = rehashed
            token = auth.new_token()
            now = self.now()
            for stale in s.scalars(select(AuthSession).where(AuthSession.user_id == user.id,
                                                             AuthSession.expires_at <= now)):
                s.delete(stale)
            s.add(AuthSession(token_hash=auth.token_hash(token), user_id=user.id,
                              created_at=now, expires_at=now + self.session_ttl))
            self._audit(s, username, "user", username, "login")
            return self._user_view(user), token

    def user_for_token(self, token: str) -> UserView:
        """The signed-in user of a session token; expired or unknown tokens are refused."""
        with self._tx() as s:
            session = s.scalar(select(AuthSession)
                               .where(AuthSession.token_hash == auth.token_hash(token)))
            if session is None:
                raise AccessDenied("session unknown or ended; sign in again")
            if session.expires_at <= self.now():
                raise AccessDenied("session expired; sign in again")
            user = s.get(User, session.user_id)
            if user is None or not user.active:
                raise AccessDenied("account disabled")
            return self._user_view(user)

    def logout(self, token: str) -> None:
        """End a session; unknown tokens are ignored so logging out twice is harmless."""
        with self._tx(write=True) as s:
            session = s.scalar(select(AuthSession)
                               .where(AuthSession.token_hash == auth.token_hash(token)))
            if session is not None:
                user = s.get(User, session.user_id)
                s.delete(session)
                self._audit(s, user.username if user else SYSTEM, "user",
                            user.username if user else session.user_id, "logout")

    # ------------------------------------------------------------------ calls

    def sync_call(self, meta: CallMeta, score: CallScore, *, pipeline_version: str = "",
                  scorecard_version: str | None = None) -> CallView:
        """Upsert a call from the pipeline's result; reviews and final decisions are kept."""
        with self._tx(write=True) as s:
            call = self._sync(s, meta, score, pipeline_version, scorecard_version)
            return self._call_views(s, [call], None)[0]

    def _sync(self, s: Session, meta: CallMeta, score: CallScore, pipeline_version: str,
              scorecard_version: str | None) -> Call:
        """Upsert inside the caller's transaction, so a re-score and its audit are one."""
        if meta.call_id != score.call_id:
            raise QAError(f"metadata is for call {meta.call_id!r} but the score is for "
                          f"{score.call_id!r}")
        now = self.now()
        call = s.get(Call, meta.call_id)
        values = {
            "agent_id": meta.agent_id, "team": meta.team, "queue": meta.queue,
            "direction": meta.direction.value, "language": meta.language,
            "started_at": meta.started_at, "duration": meta.duration,
            "scorecard_id": score.scorecard_id,
            "scorecard_version": scorecard_version or score.scorecard_version,
            "pipeline_version": pipeline_version, "max_total": score.max_total,
            "pass_mark": score.pass_mark, "scoring_mode": score.scoring,
            "auto_fail_zeroes_total": score.auto_fail_zeroes_total, "auto_total": score.total,
            "auto_passed": score.passed, "auto_fail": score.auto_fail,
            "auto_fail_reasons": list(score.auto_fail_reasons),
            "flags": [f.code.value for f in score.flags],
            "flag_codes": "," + "".join(f"{f.code.value}," for f in score.flags),
            "flag_reasons": [f.reason for f in score.flags],
        }
        if values["started_at"] is not None and values["started_at"].tzinfo is None:
            values["started_at"] = values["started_at"].replace(tzinfo=UTC)
        if call is None:
            call = Call(call_id=meta.call_id, synced_at=now, **values)
            s.add(call)
            self._audit(s, SYSTEM, "call", meta.call_id, "create", "auto_total", None,
                        score.total)
        else:
            tracked = {k: values.pop(k) for k in ("agent_id", "team", "scorecard_version",
                                                  "pipeline_version", "auto_total",
                                                  "auto_passed")}
            for name, value in values.items():
                setattr(call, name, value)
            self._changes(s, SYSTEM, "call", meta.call_id, call, tracked, "sync")
            call.synced_at = now
        existing = {item.item_id: item for item in call.items}
        seen = set()
        for position, result in enumerate(score.items):
            seen.add(result.item_id)
            item = existing.get(result.item_id)
            if item is None:
                item = CallItem(item_id=result.item_id)
                call.items.append(item)
            item.position = position
            item.name = result.name
            item.section = result.section
            item.critical = result.critical
            item.points_possible = result.points_possible
            item.auto_outcome = ItemOutcome(result.outcome).value
            item.auto_points = result.points_awarded
        for item_id, item in existing.items():
            if item_id not in seen:
                call.items.remove(item)
                self._audit(s, SYSTEM, "call", meta.call_id, "sync", f"items.{item_id}",
                            item.auto_outcome, None)
        s.flush()
        return call

    def sync_result(self, result: CallResult) -> CallView:
        """Upsert a call from a pipeline `CallResult` (what workers publish to the store)."""
        return self.sync_call(result.meta, result.score, pipeline_version=result.pipeline_version,
                              scorecard_version=result.scorecard_version)

    def _call_views(self, s: Session, calls: Sequence[Call], user: User | None) -> list[CallView]:
        ids = [c.call_id for c in calls]
        if not ids:
            return []
        submitted: dict[str, int] = defaultdict(int)
        swapped: set[str] = set()
        assigned: dict[str, list[str]] = defaultdict(list)
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start:chunk_start + 500]
            for call_id, n in s.execute(
                select(Review.call_id, func.count(Review.id))
                .where(Review.call_id.in_(chunk), Review.status == ReviewStatus.SUBMITTED.value,
                       Review.self_review.is_(False))
                .group_by(Review.call_id)
            ):
                submitted[call_id] = n
            swapped.update(s.scalars(select(RoleOverride.call_id).where(
                RoleOverride.call_id.in_(chunk), RoleOverride.swapped.is_(True))))
            for call_id, username in s.execute(
                select(Assignment.call_id, User.username).join(User, User.id == Assignment.user_id)
                .where(Assignment.call_id.in_(chunk)).order_by(User.username)
            ):
                assigned[call_id].append(username)
        return [self._call_view(c, assigned[c.call_id], submitted[c.call_id],
                                c.call_id in swapped) for c in calls]

    @staticmethod
    def _call_view(call: Call, assigned: list[str], submitted: int, swapped: bool) -> CallView:
        return CallView(
            call_id=call.call_id, agent_id=call.agent_id, team=call.team, queue=call.queue,
            direction=call.direction, language=call.language, started_at=call.started_at,
            duration=call.duration, scorecard_id=call.scorecard_id,
            scorecard_version=call.scorecard_version, pipeline_version=call.pipeline_version,
            max_total=call.max_total, pass_mark=call.pass_mark,
            scoring_mode=_scoring(call).mode,
            auto_fail_zeroes_total=_scoring(call).auto_fail_zeroes_total,
            auto_total=call.auto_total,
            auto_passed=call.auto_passed, auto_fail=call.auto_fail,
            auto_fail_reasons=list(call.auto_fail_reasons or []), flags=list(call.flags or []),
            flag_reasons=list(call.flag_reasons or []),
            items=[CallItemView(
                item_id=i.item_id, name=i.name, section=i.section, critical=i.critical,
                points_possible=i.points_possible, auto_outcome=ItemOutcome(i.auto_outcome),
                auto_points=i.auto_points,
                final_outcome=ItemOutcome(i.final_outcome) if i.final_outcome else None,
                final_points=i.final_points) for i in call.items],
            final_total=call.final_total, final_passed=call.final_passed,
            final_auto_fail=call.final_auto_fail, final_note=call.final_note,
            final_by=call.final_by, final_at=call.final_at,
            assigned_reviewers=assigned, submitted_reviews=submitted,
            acknowledged_at=call.acknowledged_at, role_swapped=swapped, synced_at=call.synced_at,
        )

    def _query_calls(self, s: Session, user: User, filters: CallFilter | None) -> list[Call]:
        f = filters or CallFilter()
        query = select(Call).options(selectinload(Call.items))
        if _role(user) not in auth.SEE_ALL_CALLS:
            if _role(user) is not UserRole.AGENT or not user.agent_id:
                raise AccessDenied(f"{user.username} ({user.role}) may not list calls")
            query = query.where(Call.agent_id == user.agent_id)
        if f.team is not None:
            query = query.where(Call.team == f.team)
        if f.agent_id is not None:
            query = query.where(Call.agent_id == f.agent_id)
        if f.queue is not None:
            query = query.where(Call.queue == f.queue)
        if f.scorecard_id is not None:
            query = query.where(Call.scorecard_id == f.scorecard_id)
        if f.date_from is not None:
            query = query.where(Call.started_at >= f.date_from)
        if f.date_to is not None:
            query = query.where(Call.started_at < f.date_to)
        total = func.coalesce(Call.final_total, Call.auto_total)
        if f.min_total is not None:
            query = query.where(total >= f.min_total)
        if f.max_total is not None:
            query = query.where(total <= f.max_total)
        if f.passed is not None:
            query = query.where(func.coalesce(Call.final_passed, Call.auto_passed).is_(f.passed))
        if f.reviewed is not None:
            has_review = select(Review.id).where(
                Review.call_id == Call.call_id, Review.status == ReviewStatus.SUBMITTED.value,
                Review.self_review.is_(False)).exists()
            query = query.where(has_review if f.reviewed else ~has_review)
        if f.finalised is not None:
            changed = Call.final_total.is_not(None) | select(CallItem.id).where(
                CallItem.call_id == Call.call_id, CallItem.final_outcome.is_not(None)).exists()
            query = query.where(changed if f.finalised else ~changed)
        if f.assigned_to_me:
            query = query.where(select(Assignment.id).where(
                Assignment.call_id == Call.call_id, Assignment.user_id == user.id).exists())
        if f.flag is not None:
            query = query.where(Call.flag_codes.contains(f",{f.flag},", autoescape=True))
        if f.flagged is not None:
            query = query.where((Call.flag_codes != ",") if f.flagged else
                                (Call.flag_codes == ","))
        query = query.order_by(Call.started_at.desc().nulls_last(), Call.call_id)
        if f.limit is not None:
            query = query.limit(f.limit)
        return list(s.scalars(query))

    def list_calls(self, actor: UserView, filters: CallFilter | None = None) -> list[CallView]:
        """Calls the actor may see (an agent: only their own), newest first."""
        with self._tx() as s:
            user = self._user(s, actor)
            return self._call_views(s, self._query_calls(s, user, filters), user)

    def get_call(self, actor: UserView, call_id: str) -> CallView:
        """One call; an agent asking for another agent's call is refused."""
        with self._tx() as s:
            user = self._user(s, actor)
            return self._call_views(s, [self._call(s, user, call_id)], user)[0]

    def assign(self, actor: UserView, call_id: str, reviewer: str) -> CallView:
        """A lead puts a call on an inspector's or lead's queue."""
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "assign reviews")
            call = self._call(s, lead, call_id)
            target = s.scalar(select(User).where(User.username == reviewer))
            if target is None or not target.active:
                raise NotFoundError(f"reviewer {reviewer!r} not found or disabled")
            if _role(target) not in auth.REVIEWERS:
                raise QAError(f"{reviewer!r} is a {target.role}; only inspectors and leads "
                              "review calls")
            exists = s.scalar(select(Assignment.id).where(Assignment.call_id == call_id,
                                                          Assignment.user_id == target.id))
            if exists is None:
                s.add(Assignment(call_id=call_id, user_id=target.id, assigned_by=lead.username,
                                 assigned_at=self.now()))
                self._audit(s, lead.username, "call", call_id, "assign", "reviewer", None,
                            reviewer)
            s.flush()
            return self._call_views(s, [call], lead)[0]

    def unassign(self, actor: UserView, call_id: str, reviewer: str) -> CallView:
        """A lead takes a call off a reviewer's queue."""
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "assign reviews")
            call = self._call(s, lead, call_id)
            row = s.scalar(select(Assignment).join(User, User.id == Assignment.user_id)
                           .where(Assignment.call_id == call_id, User.username == reviewer))
            if row is not None:
                s.delete(row)
                self._audit(s, lead.username, "call", call_id, "unassign", "reviewer", reviewer,
                            None)
            s.flush()
            return self._call_views(s, [call], lead)[0]

    def sample_for_review(self, actor: UserView, n: int, filters: CallFilter | None = None,
                          seed: int | None = None, *, assign_to: str | None = None
                          ) -> list[CallView]:
        """A random, reproducible sample (default: unreviewed calls), optionally assigned."""
        if n < 0:
            raise QAError(f"sample size must be >= 0, got {n}")
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "sample calls for review")
            pool = self._query_calls(s, lead, filters or CallFilter(reviewed=False))
            pool.sort(key=lambda c: c.call_id)
            chosen = random.Random(seed).sample(pool, min(n, len(pool)))
            ids = [c.call_id for c in chosen]
            self._audit(s, lead.username, "call", "*", "sample", "call_ids", None, ids)
        if assign_to is not None:
            for call_id in ids:
                self.assign(actor, call_id, assign_to)
        with self._tx(write=True) as s:
            calls = [s.get(Call, i) for i in ids]
            return self._call_views(s, [c for c in calls if c is not None], None)

    # ------------------------------------------------------------------ reviews

    @staticmethod
    def _review_view(review: Review) -> ReviewView:
        return ReviewView(
            id=review.id, call_id=review.call_id, reviewer=review.reviewer.username,
            reviewer_name=review.reviewer.display_name,
            reviewer_role=UserRole(review.reviewer.role), self_review=review.self_review,
            status=ReviewStatus(review.status), version=review.version, revision=review.revision,
            items=[ReviewItemView(item_id=i.item_id, outcome=ItemOutcome(i.outcome),
                                  points=i.points, comment=i.comment) for i in review.items],
            total=review.total, passed=review.passed, comment=review.comment,
            created_at=review.created_at, updated_at=review.updated_at,
            submitted_at=review.submitted_at)

    def save_review(self, actor: UserView, call_id: str, items: Sequence[ReviewItemInput], *,
                    submit: bool = False, expected_version: int | None = None,
                    comment: str = "") -> ReviewView:
        """Save (and optionally submit) the actor's review of a call.

        `items` is the whole review (items left out are removed). Pass the `version` of the
        review you loaded as `expected_version`, None for a first save: if someone saved in
        between, StaleEditError is raised and nothing is written. A submitted review is
        frozen until a lead reopens it (`reopen_review`), which starts a new revision.
        """
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            call = self._call(s, user, call_id)
            self_review = _role(user) is UserRole.AGENT
            if not self_review:
                self._require(user, auth.REVIEWERS, "review calls")
            call_items = {i.item_id: i for i in call.items}
            rows: dict[str, tuple[ItemOutcome, float, str]] = {}
            for entry in items:
                if entry.item_id in rows:
                    raise QAError(f"item {entry.item_id!r} appears twice in the review")
                outcome, points = _checked_item(call_id, call_items.get(entry.item_id), entry)
                rows[entry.item_id] = (outcome, points, entry.comment)
            if submit:
                missing = [i for i in call_items if i not in rows]
                if missing:
                    raise QAError(f"cannot submit: items without an outcome: {', '.join(missing)}")
            review = s.scalar(select(Review).options(selectinload(Review.items))
                              .where(Review.call_id == call_id, Review.reviewer_id == user.id))
            now = self.now()
            if review is None:
                if expected_version not in (None, 0):
                    raise StaleEditError(f"review of {call_id!r} by {user.username} no longer "
                                         "exists; reload")
                review = Review(call_id=call_id, reviewer_id=user.id, self_review=self_review,
                                status=ReviewStatus.DRAFT.value, revision=1, created_at=now,
                                updated_at=now, comment="", total=0.0, passed=False)
                review.reviewer = user
                s.add(review)
                s.flush()
                self._audit(s, user.username, "review", review.id, "create", "call_id", None,
                            call_id)
            else:
                if review.status == ReviewStatus.SUBMITTED.value:
                    raise AccessDenied(f"review of {call_id!r} by {user.username} is submitted; "
                                       "a lead must reopen it before it can change")
                if expected_version != review.version:
                    raise StaleEditError(
                        f"review of {call_id!r} by {user.username} changed since it was loaded "
                        f"(version {review.version}, yours {expected_version}); reload and retry")
            old = {i.item_id: i for i in review.items}
            for item_id, row in list(old.items()):
                if item_id not in rows:
                    review.items.remove(row)
                    self._audit(s, user.username, "review", review.id, "update",
                                f"items.{item_id}.outcome", row.outcome, None)
            for item_id, (outcome, points, note) in rows.items():
                row = old.get(item_id)
                if row is None:
                    row = ReviewItem(item_id=item_id, outcome=outcome.value, points=points,
                                     comment=note)
                    review.items.append(row)
                    self._audit(s, user.username, "review", review.id, "update",
                                f"items.{item_id}.outcome", None, outcome.value)
                    continue
                for name, value in (("outcome", outcome.value), ("points", points),
                                    ("comment", note)):
                    if getattr(row, name) != value:
                        self._audit(s, user.username, "review", review.id, "update",
                                    f"items.{item_id}.{name}", getattr(row, name), value)
                        setattr(row, name, value)
            # a draft may leave items out: they are left out of its total too
            result = _outcome(call, ((call_items[i], o, p) for i, (o, p, _) in rows.items()))
            values: dict[str, Any] = {"total": result.total, "passed": result.passed,
                                      "comment": comment}
            if submit:
                values["status"] = ReviewStatus.SUBMITTED.value
            self._changes(s, user.username, "review", review.id, review, values,
                          "submit" if submit else "update")
            if submit:
                review.submitted_at = now
            review.updated_at = now
            # every save bumps the version, also one that changed only items (same clock tick)
            flag_modified(review, "updated_at")
            try:
                s.flush()
            except IntegrityError as exc:
                raise StaleEditError(f"review of {call_id!r} by {user.username} was created "
                                     "meanwhile; reload") from exc
            s.refresh(review, ["items"])
            return self._review_view(review)

    def reopen_review(self, actor: UserView, review_id: int, reason: str = "") -> ReviewView:
        """A lead sends a submitted review back to draft as a new revision (audit-logged)."""
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "reopen reviews")
            review = s.get(Review, review_id)
            if review is None:
                raise NotFoundError(f"review {review_id} not found")
            if review.status != ReviewStatus.SUBMITTED.value:
                raise QAError(f"review {review_id} is not submitted")
            self._changes(s, lead.username, "review", review_id, review,
                          {"status": ReviewStatus.DRAFT.value, "revision": review.revision + 1},
                          "reopen")
            if reason:
                self._audit(s, lead.username, "review", review_id, "reopen", "reason", None,
                            reason)
            review.submitted_at = None
            review.updated_at = self.now()
            s.flush()
            return self._review_view(review)

    def _visible_reviews(self, s: Session, user: User, call: Call) -> list[Review]:
        reviews = list(s.scalars(select(Review).options(selectinload(Review.items),
                                                        selectinload(Review.reviewer))
                                 .where(Review.call_id == call.call_id).order_by(Review.id)))
        role = _role(user)
        if role in auth.SEE_ALL_REVIEWS:
            return reviews
        if role is UserRole.AGENT:
            return [r for r in reviews if r.reviewer_id == user.id
                    or (r.status == ReviewStatus.SUBMITTED.value and not r.self_review)]
        if role is UserRole.INSPECTOR:
            own = [r for r in reviews if r.reviewer_id == user.id]
            if own and own[0].status == ReviewStatus.SUBMITTED.value:
                return [r for r in reviews if r.reviewer_id == user.id
                        or r.status == ReviewStatus.SUBMITTED.value]
            return own  # blind: others' scores only after submitting one's own
        raise AccessDenied(f"{user.username} ({user.role}) may not read reviews")

    def reviews_for_call(self, actor: UserView, call_id: str) -> list[ReviewView]:
        """Reviews the actor may see now.

        Leads and managers: all. Inspectors: their own, and others' submitted reviews only
        once their own is submitted (blind calibration). Agents, on their own calls only:
        inspectors' submitted reviews and their own self-review.
        """
        with self._tx() as s:
            user = self._user(s, actor)
            call = self._call(s, user, call_id)
            return [self._review_view(r) for r in self._visible_reviews(s, user, call)]

    # ------------------------------------------------------------------ calibration

    def calibration(self, actor: UserView, call_id: str) -> CalibrationView:
        """Per item, every submitted review side by side with the automatic outcome.

        Agreement and spread are over inspectors and leads; the agent's self-review is shown
        (`self_reviewer`) but not counted. Inspectors see it only after submitting their own.
        """
        with self._tx() as s:
            user = self._user(s, actor)
            call = self._call(s, user, call_id)
            role = _role(user)
            if role is UserRole.INSPECTOR:
                own = s.scalar(select(Review.status).where(Review.call_id == call_id,
                                                           Review.reviewer_id == user.id))
                if own != ReviewStatus.SUBMITTED.value:
                    raise AccessDenied(f"{user.username}: submit your own review of {call_id!r} "
                                       "before seeing the others'")
            elif role not in auth.SEE_ALL_REVIEWS:
                raise AccessDenied(f"{user.username} ({user.role}) may not see calibration")
            reviews = [r for r in self._visible_reviews(s, user, call)
                       if r.status == ReviewStatus.SUBMITTED.value]
            counted = [r for r in reviews if not r.self_review]
            self_rev = next((r for r in reviews if r.self_review), None)
            by_reviewer = {r.reviewer.username: {i.item_id: i for i in r.items} for r in reviews}
            items = []
            for ci in call.items:
                outcomes = {name: ItemOutcome(rows[ci.item_id].outcome)
                            for name, rows in by_reviewer.items() if ci.item_id in rows}
                points = {name: rows[ci.item_id].points for name, rows in by_reviewer.items()
                          if ci.item_id in rows}
                names = [r.reviewer.username for r in counted if r.reviewer.username in outcomes]
                top, share = majority(outcomes[n] for n in names)
                counted_points = [points[n] for n in names]
                auto = ItemOutcome(ci.auto_outcome)
                items.append(CalibrationItem(
                    item_id=ci.item_id, name=ci.name, critical=ci.critical,
                    points_possible=ci.points_possible, auto_outcome=auto,
                    final_outcome=ItemOutcome(ci.final_outcome) if ci.final_outcome else None,
                    outcomes=outcomes, points=points, majority=top, agreement=share,
                    all_agree=share == 1.0 if share is not None else False,
                    auto_agreement=agreement_rate((outcomes[n], auto) for n in names),
                    points_spread=(max(counted_points) - min(counted_points))
                    if counted_points else 0.0))
            totals = {r.reviewer.username: r.total for r in reviews}
            counted_totals = [r.total for r in counted]
            shares = [i.agreement for i in items if i.agreement is not None]
            return CalibrationView(
                call_id=call_id, reviewers=[r.reviewer.username for r in counted],
                self_reviewer=self_rev.reviewer.username if self_rev else None,
                totals=totals, auto_total=call.auto_total, final_total=call.final_total,
                score_spread=(max(counted_totals) - min(counted_totals)) if counted_totals
                else 0.0,
                items=items, agreement=sum(shares) / len(shares) if shares else None)

    def agreement_stats(self, actor: UserView, filters: CallFilter | None = None
                        ) -> AgreementStats:
        """Krippendorff's alpha per item, overall and per reviewer over submitted reviews.

        Self-reviews are left out: they measure the agent's view, not grader alignment.
        """
        with self._tx() as s:
            user = self._user(s, actor)
            self._require(user, auth.STATS, "see agreement statistics")
            calls = {c.call_id: c for c in self._query_calls(s, user, filters)}
            reviews = [r for r in s.scalars(
                select(Review).options(selectinload(Review.items), selectinload(Review.reviewer))
                .where(Review.status == ReviewStatus.SUBMITTED.value,
                       Review.self_review.is_(False)))
                if r.call_id in calls]
            auto: dict[tuple[str, str], ItemOutcome] = {}
            final: dict[tuple[str, str], ItemOutcome] = {}
            names: dict[str, str] = {}
            for c in calls.values():
                for ci in c.items:
                    auto[(c.call_id, ci.item_id)] = ItemOutcome(ci.auto_outcome)
                    final[(c.call_id, ci.item_id)] = ItemOutcome(ci.final_outcome
                                                                 or ci.auto_outcome)
                    names.setdefault(ci.item_id, ci.name)
            ratings: dict[str, dict[tuple[str, str], ItemOutcome]] = defaultdict(dict)
            for r in reviews:
                for i in r.items:
                    ratings[r.reviewer.username][(r.call_id, i.item_id)] = ItemOutcome(i.outcome)
            item_ids = sorted({unit[1] for rated in ratings.values() for unit in rated})
            per_item = []
            for item_id in item_ids:
                sub = {name: {u[0]: o for u, o in rated.items() if u[1] == item_id}
                       for name, rated in ratings.items()}
                pairs = [(o, auto[(c, item_id)]) for rated in sub.values()
                         for c, o in rated.items() if (c, item_id) in auto]
                per_item.append(ItemAgreement(
                    item_id=item_id, name=names.get(item_id, item_id),
                    alpha=nominal_alpha(sub), auto_human_agreement=agreement_rate(pairs),
                    ratings=sum(len(v) for v in sub.values())))
            per_reviewer = []
            for name, rated in sorted(ratings.items()):
                others: dict[tuple[str, str], ItemOutcome] = {}
                for unit in rated:
                    votes = [o[unit] for n, o in ratings.items() if n != name and unit in o]
                    top, _ = majority(votes)
                    if top is not None:
                        others[unit] = top
                vs_final = {u: final[u] for u in rated if u in final}
                per_reviewer.append(ReviewerAgreement(
                    reviewer=name, reviews=sum(1 for r in reviews if r.reviewer.username == name),
                    alpha_vs_others=nominal_alpha({name: rated, "others": others}),
                    agreement_vs_others=agreement_rate((rated[u], o) for u, o in others.items()),
                    alpha_vs_final=nominal_alpha({name: rated, "final": vs_final}),
                    agreement_vs_final=agreement_rate((rated[u], o) for u, o in vs_final.items()),
                    agreement_vs_auto=agreement_rate((o, auto[u]) for u, o in rated.items()
                                                     if u in auto)))
            all_pairs = [(o, auto[u]) for rated in ratings.values() for u, o in rated.items()
                         if u in auto]
            return AgreementStats(
                calls=len({r.call_id for r in reviews}), reviews=len(reviews),
                alpha=nominal_alpha(ratings), auto_human_agreement=agreement_rate(all_pairs),
                items=per_item, reviewers=per_reviewer)

    @staticmethod
    def _final_outcome(call: Call) -> Outcome:
        """The card's arithmetic over the outcomes that count (final where set)."""
        return _outcome(call, ((i, ItemOutcome(i.final_outcome or i.auto_outcome),
                                i.auto_points if i.final_points is None else i.final_points)
                               for i in call.items))

    def set_final_score(self, actor: UserView, call_id: str,
                        items: Sequence[ReviewItemInput] = (), total: float | None = None,
                        passed: bool | None = None, note: str = "") -> CallView:
        """A lead's decision after calibration; it replaces the automatic score everywhere.

        Items not named keep their current outcome. `total` / `passed` default to the
        card's arithmetic (`qa.scoring.outcome`) over the final item outcomes.
        """
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "set final scores")
            call = self._call(s, lead, call_id)
            by_id = {i.item_id: i for i in call.items}
            for entry in items:
                item = by_id.get(entry.item_id)
                outcome, points = _checked_item(call_id, item, entry)
                for name, value in (("final_outcome", outcome.value), ("final_points", points)):
                    old = getattr(item, name)
                    if old != value:
                        self._audit(s, lead.username, "call", call_id, "final",
                                    f"items.{item.item_id}.{name}", old, value)
                        setattr(item, name, value)
            computed = self._final_outcome(call)
            if total is not None and not 0.0 <= total <= call.max_total:
                raise QAError(f"final total {total} outside 0..{call.max_total}")
            self._changes(s, lead.username, "call", call_id, call, {
                "final_total": computed.total if total is None else float(total),
                "final_passed": computed.passed if passed is None else passed,
                "final_auto_fail": computed.auto_fail,
                "final_note": note or call.final_note, "final_by": lead.username}, "final")
            call.final_at = self.now()
            s.flush()
            return self._call_views(s, [call], lead)[0]

    # ------------------------------------------------------------------ disputes

    @staticmethod
    def _dispute_view(d: Dispute, agent_id: str | None) -> DisputeView:
        return DisputeView(
            id=d.id, call_id=d.call_id, item_id=d.item_id, agent_id=agent_id,
            opened_by=d.opened_by, reason=d.reason, status=DisputeStatus(d.status),
            resolution=d.resolution, resolved_by=d.resolved_by, resolved_at=d.resolved_at,
            created_at=d.created_at,
            outcome_before=ItemOutcome(d.outcome_before) if d.outcome_before else None,
            outcome_after=ItemOutcome(d.outcome_after) if d.outcome_after else None)

    def open_dispute(self, actor: UserView, call_id: str, item_id: str, reason: str
                     ) -> DisputeView:
        """The agent of the call contests one item's outcome, with a reason."""
        if not reason.strip():
            raise QAError("a dispute needs a reason")
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            call = self._own_call(s, user, call_id, "dispute scores")
            item = next((i for i in call.items if i.item_id == item_id), None)
            if item is None:
                raise QAError(f"call {call_id!r} has no scorecard item {item_id!r}")
            if s.scalar(select(Dispute.id).where(Dispute.call_id == call_id,
                                                 Dispute.item_id == item_id,
                                                 Dispute.status == DisputeStatus.OPEN.value)):
                raise QAError(f"item {item_id!r} of {call_id!r} already has an open dispute")
            dispute = Dispute(call_id=call_id, item_id=item_id, opened_by=user.username,
                              reason=reason.strip(), status=DisputeStatus.OPEN.value,
                              outcome_before=item.final_outcome or item.auto_outcome,
                              created_at=self.now())
            s.add(dispute)
            s.flush()
            self._audit(s, user.username, "dispute", dispute.id, "open", "status", None,
                        DisputeStatus.OPEN.value)
            return self._dispute_view(dispute, call.agent_id)

    def list_disputes(self, actor: UserView, status: DisputeStatus | str | None = None,
                      *, call_id: str | None = None) -> list[DisputeView]:
        """Disputes, newest first; an agent sees those on their own calls only."""
        with self._tx() as s:
            user = self._user(s, actor)
            query = (select(Dispute, Call.agent_id).join(Call, Call.call_id == Dispute.call_id)
                     .order_by(Dispute.created_at.desc(), Dispute.id.desc()))
            role = _role(user)
            if role is UserRole.AGENT:
                query = query.where(Call.agent_id == user.agent_id)
            elif role not in auth.SEE_ALL_CALLS:
                raise AccessDenied(f"{user.username} ({user.role}) may not read disputes")
            if status is not None:
                query = query.where(Dispute.status == DisputeStatus(status).value)
            if call_id is not None:
                query = query.where(Dispute.call_id == call_id)
            return [self._dispute_view(d, agent) for d, agent in s.execute(query)]

    def resolve_dispute(self, actor: UserView, dispute_id: int,
                        decision: DisputeStatus | str, resolution: str,
                        outcome: ItemOutcome | str | None = None) -> DisputeView:
        """A lead decides: "upheld" keeps the score, "overturned" changes it.

        Overturning sets the item's final outcome (`outcome`, default: the opposite of
        pass/fail) and recomputes the call's final total and pass; all of it audit-logged.
        """
        decision = DisputeStatus(decision)
        if decision is DisputeStatus.OPEN:
            raise QAError("a decision is 'upheld' or 'overturned'")
        if not resolution.strip():
            raise QAError("a resolution needs an explanation")
        with self._tx(write=True) as s:
            lead = self._user(s, actor)
            self._require(lead, auth.LEADS, "resolve disputes")
            dispute = s.get(Dispute, dispute_id)
            if dispute is None:
                raise NotFoundError(f"dispute {dispute_id} not found")
            if dispute.status != DisputeStatus.OPEN.value:
                raise QAError(f"dispute {dispute_id} is already {dispute.status}")
            call = self._call(s, lead, dispute.call_id)
            now = self.now()
            self._changes(s, lead.username, "dispute", dispute_id, dispute, {
                "status": decision.value, "resolution": resolution.strip(),
                "resolved_by": lead.username}, "resolve")
            dispute.resolved_at = now
            item = next((i for i in call.items if i.item_id == dispute.item_id), None)
            current = ItemOutcome(item.final_outcome or item.auto_outcome) if item else None
            dispute.outcome_after = current.value if current else None
            if decision is DisputeStatus.OVERTURNED:
                if item is None or current is None:
                    raise QAError(f"item {dispute.item_id!r} is no longer on call "
                                  f"{dispute.call_id!r}; it cannot be overturned")
                new = ItemOutcome(outcome) if outcome is not None else _flip(current)
                if new is current:
                    raise QAError(f"overturning must change the outcome (it is {current.value})")
                for name, value in (("final_outcome", new.value),
                                    ("final_points", _default_points(new, item.points_possible))):
                    old = getattr(item, name)
                    self._audit(s, lead.username, "call", call.call_id, "dispute_overturned",
                                f"items.{item.item_id}.{name}", old, value)
                    setattr(item, name, value)
                computed = self._final_outcome(call)
                self._changes(s, lead.username, "call", call.call_id, call, {
                    "final_total": computed.total, "final_passed": computed.passed,
                    "final_auto_fail": computed.auto_fail, "final_by": lead.username},
                    "dispute_overturned")
                call.final_at = now
                dispute.outcome_after = new.value
            s.flush()
            return self._dispute_view(dispute, call.agent_id)

    def acknowledge_score(self, actor: UserView, call_id: str) -> CallView:
        """The agent confirms they have seen the score of their own call."""
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            call = self._own_call(s, user, call_id, "acknowledge scores")
            if call.acknowledged_at is None:
                now = self.now()
                self._audit(s, user.username, "call", call_id, "acknowledge", "acknowledged_at",
                            None, now)
                call.acknowledged_at = now
            s.flush()
            return self._call_views(s, [call], user)[0]

    # ------------------------------------------------------------------ coaching

    @staticmethod
    def _coaching_view(c: Coaching) -> CoachingView:
        return CoachingView(
            id=c.id, agent_id=c.agent_id, created_by=c.created_by, created_at=c.created_at,
            session_at=c.session_at, call_ids=list(c.call_ids or []),
            item_ids=list(c.item_ids or []), notes=c.notes, due=c.due,
            acknowledged_at=c.acknowledged_at, follow_up_notes=c.follow_up_notes,
            follow_up_date=c.follow_up_date, status=CoachingStatus(c.status))

    def _coaching(self, s: Session, user: User, coaching_id: int) -> Coaching:
        c = s.get(Coaching, coaching_id)
        role = _role(user)
        if role is UserRole.AGENT:
            if c is None or c.agent_id != user.agent_id:
                raise AccessDenied(f"coaching {coaching_id} not found or not permitted")
        elif role not in auth.SEE_ALL_CALLS:
            raise AccessDenied(f"{user.username} ({user.role}) may not read coaching")
        elif c is None:
            raise NotFoundError(f"coaching {coaching_id} not found")
        return c

    def create_coaching(self, actor: UserView, agent_id: str, call_ids: Iterable[str] = (),
                        item_ids: Iterable[str] = (), notes: str = "",
                        due: date | None = None, *, session_at: datetime | None = None
                        ) -> CoachingView:
        """An inspector or lead records a coaching session on some of an agent's calls/items."""
        call_ids, item_ids = list(dict.fromkeys(call_ids)), list(dict.fromkeys(item_ids))
        with self._tx(write=True) as s:
            coach = self._user(s, actor)
            self._require(coach, auth.COACHES, "create coaching")
            for call_id in call_ids:
                call = self._call(s, coach, call_id)
                if call.agent_id != agent_id:
                    raise QAError(f"call {call_id!r} is agent {call.agent_id!r}'s, not "
                                  f"{agent_id!r}'s")
            now = self.now()
            c = Coaching(agent_id=agent_id, created_by=coach.username, created_at=now,
                         session_at=session_at or now, call_ids=call_ids, item_ids=item_ids,
                         notes=notes, due=due, status=CoachingStatus.OPEN.value)
            s.add(c)
            s.flush()
            self._audit(s, coach.username, "coaching", c.id, "create", "agent_id", None,
                        agent_id)
            return self._coaching_view(c)

    def acknowledge_coaching(self, actor: UserView, coaching_id: int) -> CoachingView:
        """The coached agent confirms the session; only their own coaching."""
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            if _role(user) is not UserRole.AGENT:
                raise AccessDenied("only the coached agent acknowledges coaching")
            c = self._coaching(s, user, coaching_id)
            if c.acknowledged_at is None:
                now = self.now()
                self._audit(s, user.username, "coaching", c.id, "acknowledge",
                            "acknowledged_at", None, now)
                c.acknowledged_at = now
                if c.status == CoachingStatus.OPEN.value:
                    self._changes(s, user.username, "coaching", c.id, c,
                                  {"status": CoachingStatus.ACKNOWLEDGED.value}, "acknowledge")
            return self._coaching_view(c)

    def add_follow_up(self, actor: UserView, coaching_id: int, notes: str,
                      follow_up_date: date | None = None, *, complete: bool = False
                      ) -> CoachingView:
        """The coach records the follow-up and may close the coaching."""
        with self._tx(write=True) as s:
            coach = self._user(s, actor)
            self._require(coach, auth.COACHES, "follow up coaching")
            c = self._coaching(s, coach, coaching_id)
            values: dict[str, Any] = {"follow_up_notes": notes,
                                      "follow_up_date": follow_up_date or self.now().date()}
            if complete:
                values["status"] = CoachingStatus.COMPLETED.value
            self._changes(s, coach.username, "coaching", c.id, c, values, "follow_up")
            return self._coaching_view(c)

    def list_coaching(self, actor: UserView, *, agent_id: str | None = None,
                      status: CoachingStatus | str | None = None) -> list[CoachingView]:
        """Coaching sessions, newest first; an agent sees only their own."""
        with self._tx() as s:
            user = self._user(s, actor)
            query = select(Coaching).order_by(Coaching.session_at.desc(), Coaching.id.desc())
            role = _role(user)
            if role is UserRole.AGENT:
                query = query.where(Coaching.agent_id == user.agent_id)
            elif role not in auth.SEE_ALL_CALLS:
                raise AccessDenied(f"{user.username} ({user.role}) may not read coaching")
            if agent_id is not None:
                query = query.where(Coaching.agent_id == agent_id)
            if status is not None:
                query = query.where(Coaching.status == CoachingStatus(status).value)
            return [self._coaching_view(c) for c in s.scalars(query)]

    def coaching_effect(self, actor: UserView, coaching_id: int) -> CoachingEffect:
        """Pass rate of the coached items on the agent's calls before vs after the session.

        Uses the final outcome where a lead or a dispute set one, else the automatic one;
        calls are placed by start time (sync time when unknown). No items named: all items.
        """
        with self._tx() as s:
            user = self._user(s, actor)
            c = self._coaching(s, user, coaching_id)
            items = set(c.item_ids or [])
            rows = s.execute(
                select(CallItem.item_id, CallItem.final_outcome, CallItem.auto_outcome,
                       Call.call_id, Call.started_at, Call.synced_at)
                .join(Call, Call.call_id == CallItem.call_id)
                .where(Call.agent_id == c.agent_id))
            outcomes: dict[str, dict[str, list[str]]] = {"before": defaultdict(list),
                                                         "after": defaultdict(list)}
            calls: dict[str, set[str]] = {"before": set(), "after": set()}
            for item_id, final, auto_outcome, call_id, started, synced in rows:
                if items and item_id not in items:
                    continue
                when = started or synced
                side = "before" if when < c.session_at else "after"
                outcome = final or auto_outcome
                outcomes[side][item_id].append(outcome)
                if outcome != ItemOutcome.NA.value:
                    calls[side].add(call_id)
            before, _ = pass_rate(o for v in outcomes["before"].values() for o in v)
            after, _ = pass_rate(o for v in outcomes["after"].values() for o in v)
            per_item = []
            for item_id in sorted(items or (set(outcomes["before"]) | set(outcomes["after"]))):
                b, bn = pass_rate(outcomes["before"].get(item_id, []))
                a, an = pass_rate(outcomes["after"].get(item_id, []))
                per_item.append(ItemEffect(item_id=item_id, before_rate=b, after_rate=a,
                                           before_n=bn, after_n=an))
            return CoachingEffect(
                coaching_id=c.id, agent_id=c.agent_id, session_at=c.session_at,
                before_calls=len(calls["before"]), after_calls=len(calls["after"]),
                before_rate=before, after_rate=after,
                change=(after - before) if before is not None and after is not None else None,
                items=per_item)

    # ------------------------------------------------------------------ case library

    @staticmethod
    def _case_view(c: Case) -> CaseView:
        return CaseView(id=c.id, call_id=c.call_id, kind=CaseKind(c.kind), title=c.title,
                        notes=c.notes, tags=list(c.tags or []), created_by=c.created_by,
                        created_at=c.created_at)

    def add_case(self, actor: UserView, call_id: str, kind: CaseKind | str, title: str,
                 notes: str = "", tags: Iterable[str] = ()) -> CaseView:
        """Put a call in the training library as a good example or a common mistake."""
        kind = CaseKind(kind)
        if not title.strip():
            raise QAError("a case needs a title")
        clean_tags = list(dict.fromkeys(t.strip().casefold() for t in tags if t.strip()))
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            self._require(user, auth.CASE_EDITORS, "add cases")
            self._call(s, user, call_id)
            case = Case(call_id=call_id, kind=kind.value, title=title.strip(), notes=notes,
                        tags=clean_tags, created_by=user.username, created_at=self.now())
            s.add(case)
            s.flush()
            self._audit(s, user.username, "case", case.id, "create", "call_id", None, call_id)
            return self._case_view(case)

    def search_cases(self, actor: UserView, text: str | None = None,
                     kind: CaseKind | str | None = None, *, tag: str | None = None
                     ) -> list[CaseView]:
        """Cases whose title, notes, tags or call id contain every word of `text`."""
        with self._tx() as s:
            user = self._user(s, actor)
            self._require(user, auth.CASE_READERS, "read the case library")
            query = select(Case).order_by(Case.created_at.desc(), Case.id.desc())
            if kind is not None:
                query = query.where(Case.kind == CaseKind(kind).value)
            found = [self._case_view(c) for c in s.scalars(query)]
        # matched here, not in SQL: SQLite's lower() folds ASCII only, and tags are JSON
        words = (text or "").casefold().split()
        if words:
            found = [c for c in found
                     if all(w in " ".join([c.title, c.notes, c.call_id, *c.tags]).casefold()
                            for w in words)]
        if tag is not None:
            found = [c for c in found if tag.strip().casefold() in c.tags]
        return found

    # ------------------------------------------------------------------ roles

    def swap_roles(self, actor: UserView, call_id: str, store: Store, models: Models,
                   reason: str = "") -> CallView:
        """Exchange agent and customer of a call and score it again (toggles).

        The shown result's transcript gets its roles swapped and is scored with the same
        scorecard (`qa.scoring.rescore`, no ASR); the new result is stored as a revision
        beside the old one (`qa.results.next_revision`), which is kept, and the call's
        automatic score in this database becomes the new one, with an audit entry.
        Reviews and final decisions are kept, as on any re-sync.
        """
        from qa.results import next_revision, publish_result
        from qa.scoring.rescore import swap_and_rescore

        with self._tx() as s:
            user = self._user(s, actor)
            self._require(user, auth.REVIEWERS, "swap speaker roles")
            call = self._call(s, user, call_id)
            based_on = call.pipeline_version
            key = Keys.result(call_id, based_on, call.scorecard_id, call.scorecard_version)
        try:
            old = store.get_json(key, CallResult)
        except ObjectNotFoundError:
            raise NotFoundError(f"call {call_id!r}: the pipeline's result is not in the store, "
                                "so there is no transcript to score again") from None
        # the slow part (models) runs outside any transaction
        new = swap_and_rescore(old, models, next_revision(store, call_id, based_on))
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            self._require(user, auth.REVIEWERS, "swap speaker roles")
            call = self._call(s, user, call_id)
            if call.pipeline_version != based_on:
                raise StaleEditError(f"call {call_id!r} was re-scored meanwhile (now "
                                     f"{call.pipeline_version}); reload and check the roles")
            new_key = publish_result(store, new)
            old_total = call.auto_total
            self._sync(s, new.meta, new.score, new.pipeline_version, new.scorecard_version)
            row = s.get(RoleOverride, call_id)
            swapped = not (row and row.swapped)
            if row is None:
                s.add(RoleOverride(call_id=call_id, swapped=True, by=user.username,
                                   at=self.now()))
            else:
                row.swapped, row.by, row.at = swapped, user.username, self.now()
            self._audit(s, user.username, "call", call_id, "swap_roles", "role_override",
                        not swapped, swapped)
            self._audit(s, user.username, "call", call_id, "swap_roles", "result", key,
                        new_key)
            self._audit(s, user.username, "call", call_id, "swap_roles", "auto_total",
                        old_total, new.score.total)
            if reason:
                self._audit(s, user.username, "call", call_id, "swap_roles", "reason", None,
                            reason)
            s.flush()
            return self._call_views(s, [call], user)[0]

    def role_override(self, call_id: str) -> bool:
        """Whether a reviewer swapped agent and customer for this call, relative to the
        pipeline's own decision."""
        with self._tx() as s:
            row = s.get(RoleOverride, call_id)
            return bool(row and row.swapped)

    # ------------------------------------------------------------------ original audio

    def original_audio(self, actor: UserView, call_id: str, store: Store) -> bytes:
        """The unredacted recording of a call, for the roles granted it; every read, and
        every refused attempt, is written to the audit log before anything is returned."""
        with self._tx(write=True) as s:
            user = self._user(s, actor)
            try:
                self._require(user, auth.ORIGINAL_AUDIO, "play original recordings")
                self._call(s, user, call_id)
            except AccessDenied:
                refused = True
            else:
                refused = False
            self._audit(s, user.username, "call", call_id,
                        "read_original_refused" if refused else "read_original")
        if refused:
            raise AccessDenied(f"{actor.username} may not play the original recording of "
                               f"{call_id!r}; needs "
                               f"{', '.join(sorted(r.value for r in auth.ORIGINAL_AUDIO))}")
        from qa.playback import original_key

        key = original_key(store, call_id)
        if key is None:
            raise NotFoundError(f"call {call_id!r}: the original recording is not kept "
                                "(only the redacted copy is)")
        return store.get_bytes(key)

    # ------------------------------------------------------------------ audit and trends

    def audit_trail(self, actor: UserView, entity: str | None = None,
                    entity_id: str | int | None = None, *, limit: int = 1000
                    ) -> list[AuditView]:
        """Audit entries, newest first, for leads, managers and admins."""
        with self._tx() as s:
            user = self._user(s, actor)
            self._require(user, auth.AUDITORS, "read the audit log")
            query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
            if entity is not None:
                query = query.where(AuditEntry.entity == entity)
            if entity_id is not None:
                query = query.where(AuditEntry.entity_id == str(entity_id))
            return [AuditView(id=a.id, at=a.at, actor=a.actor, entity=a.entity,
                              entity_id=a.entity_id, action=a.action, field=a.field,
                              old_value=a.old_value, new_value=a.new_value)
                    for a in s.scalars(query)]

    def final_outcomes(self, actor: UserView, filters: CallFilter | None = None
                       ) -> list[FinalOutcomeRow]:
        """One row per call with the outcomes that count, for managers' trend charts."""
        with self._tx() as s:
            user = self._user(s, actor)
            self._require(user, auth.TRENDS, "see final outcomes")
            rows = []
            for c in self._query_calls(s, user, filters):
                finalised = c.final_total is not None or any(i.final_outcome for i in c.items)
                rows.append(FinalOutcomeRow(
                    call_id=c.call_id, team=c.team, agent_id=c.agent_id, queue=c.queue,
                    scorecard_id=c.scorecard_id, started_at=c.started_at,
                    week=_week(c.started_at),
                    total=c.auto_total if c.final_total is None else c.final_total,
                    passed=c.auto_passed if c.final_passed is None else c.final_passed,
                    auto_total=c.auto_total, auto_passed=c.auto_passed,
                    auto_fail=c.auto_fail if c.final_auto_fail is None else c.final_auto_fail,
                    finalised=finalised,
                    items={i.item_id: ItemOutcome(i.final_outcome or i.auto_outcome)
                           for i in c.items}))
            return rows


def open_workflow(settings: Any) -> Workflow:
    """The workflow database named by the settings (SQLite under QA_HOME by default)."""
    return Workflow(settings.resolved_database_url,
                    session_ttl_minutes=settings.session_ttl_minutes)
