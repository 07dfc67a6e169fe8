"""The unit of work every workflow service shares: one engine, one transaction shape, one
clock and one audit writer, so the domains cannot drift apart in how they write."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import StaticPool

from qa.errors import QAError, StaleEditError
from qa.workflow.models import AuditEntry, Base, add_missing_columns, utcnow
from qa.workflow.throttle import LoginPolicy

SYSTEM = "system"  # actor name in the audit log for the pipeline and the command line
# Postgres advisory lock every writing transaction takes first (see UnitOfWork._tx)
WRITE_LOCK_KEY = 0x5141_574F_524B  # "QAWORK"


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


def make_engine(url: str, echo: bool = False) -> Engine:
    """SQLite (file or memory) or Postgres, with writers serialised the same way on both."""
    if url.startswith("sqlite"):
        memory = url in ("sqlite://", "sqlite:///:memory:") or ":memory:" in url
        kwargs: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": 30},
            "json_serializer": _json,
        }
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


class UnitOfWork:
    """The database, its transactions, the clock and the audit log over one database URL."""

    def __init__(
        self,
        database_url: str,
        *,
        session_ttl_minutes: int = 480,
        password_hasher: PasswordHasher | None = None,
        clock: Callable[[], datetime] | None = None,
        echo: bool = False,
        login_policy: LoginPolicy | None = None,
    ) -> None:
        self.database_url = database_url
        self.session_ttl = timedelta(minutes=session_ttl_minutes)
        self.login_policy = login_policy or LoginPolicy()
        self._hasher = password_hasher or PasswordHasher()
        self._clock = clock or utcnow
        self.engine = make_engine(database_url, echo)
        Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)  # a database an older release created
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._dummy_hash: str | None = None

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
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY}
                        )
                yield session
        except StaleDataError as exc:
            raise StaleEditError(
                "the record was changed by someone else; reload and retry"
            ) from exc
        finally:
            session.close()

    def now(self) -> datetime:
        return self._clock()

    def _audit(
        self,
        s: Session,
        actor: str,
        entity: str,
        entity_id: object,
        action: str,
        field: str | None = None,
        old: Any = None,
        new: Any = None,
    ) -> None:
        s.add(
            AuditEntry(
                at=self.now(),
                actor=actor,
                entity=entity,
                entity_id=str(entity_id),
                action=action,
                field=field,
                old_value=_dump(old),
                new_value=_dump(new),
            )
        )

    def _changes(
        self,
        s: Session,
        actor: str,
        entity: str,
        entity_id: object,
        obj: Any,
        values: dict[str, Any],
        action: str = "update",
    ) -> None:
        """Set attributes and write one audit entry per field that really changed."""
        for name, new in values.items():
            old = getattr(obj, name)
            if old != new:
                setattr(obj, name, new)
                self._audit(s, actor, entity, entity_id, action, name, old, new)
