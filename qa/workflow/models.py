"""Tables of the workflow database (SQLAlchemy 2 typed ORM).

The same models run on embedded SQLite and on Postgres. Times are stored as naive UTC
(SQLite keeps no zone) and handed back zone-aware, so comparisons never mix the two.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
    inspect,
    text,
    true,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from qa.errors import QAError


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, naive UTC in the column."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _check_lengths(mapper: Mapper[Any], _connection: Any, target: Base) -> None:
    """Refuse text longer than its column on every engine, naming field and limit.

    SQLite keeps any length and Postgres fails the whole statement with a driver error;
    checking here gives both the same, readable refusal before anything is written.
    """
    for prop in mapper.column_attrs:
        length = getattr(prop.columns[0].type, "length", None)
        value = getattr(target, prop.key, None)
        if length is not None and isinstance(value, str) and len(value) > length:
            raise QAError(
                f"{mapper.local_table.name}.{prop.columns[0].name} is "
                f"{len(value)} characters long; at most {length} fit"
            )


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    team: Mapped[str | None] = mapped_column(String(100))
    agent_id: Mapped[str | None] = mapped_column(String(100), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuthSession(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Call(Base):
    __tablename__ = "calls"

    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[str | None] = mapped_column(String(100), index=True)
    team: Mapped[str | None] = mapped_column(String(100), index=True)
    queue: Mapped[str | None] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    language: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[datetime | None] = mapped_column(index=True)
    duration: Mapped[float | None] = mapped_column(Float)
    scorecard_id: Mapped[str] = mapped_column(String(100), default="")
    scorecard_version: Mapped[str] = mapped_column(String(50), default="")
    pipeline_version: Mapped[str] = mapped_column(String(50), default="")
    max_total: Mapped[float] = mapped_column(Float, default=100.0)
    pass_mark: Mapped[float] = mapped_column(Float, default=0.0)
    # how the card totals (qa.scoring.outcome.Scoring); databases from before these columns
    # get the bundled cards' settings until the call is synced again
    scoring_mode: Mapped[str] = mapped_column(
        String(16), default="deduction", server_default="deduction"
    )
    auto_fail_zeroes_total: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=true()
    )
    auto_total: Mapped[float] = mapped_column(Float)
    auto_passed: Mapped[bool] = mapped_column(Boolean)
    auto_fail: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_fail_reasons: Mapped[list[str]] = mapped_column(default=list)
    flags: Mapped[list[str]] = mapped_column(default=list)
    # ",auto_fail,below_pass," - the flag codes as text, so queues filter in SQL, not Python
    flag_codes: Mapped[str] = mapped_column(String(255), default=",")
    flag_reasons: Mapped[list[str]] = mapped_column(default=list)
    # the analytics of qa.summary.CallSummary, so pages need no store read to show them
    customer_sentiment_mean: Mapped[float | None] = mapped_column(Float)
    customer_sentiment_end: Mapped[float | None] = mapped_column(Float)
    agent_sentiment_mean: Mapped[float | None] = mapped_column(Float)
    role_confidence: Mapped[float | None] = mapped_column(Float)
    asr_confidence: Mapped[float | None] = mapped_column(Float)
    longest_silence: Mapped[float | None] = mapped_column(Float)
    hold_total: Mapped[float | None] = mapped_column(Float)
    overtalk_total: Mapped[float | None] = mapped_column(Float)
    processed_at: Mapped[datetime | None]
    final_total: Mapped[float | None] = mapped_column(Float)
    final_passed: Mapped[bool | None] = mapped_column(Boolean)
    final_auto_fail: Mapped[bool | None] = mapped_column(Boolean)  # over the final outcomes
    final_note: Mapped[str | None] = mapped_column(Text)
    # the lead typed the total instead of taking the card's: a later dispute decision
    # must not replace it without being told to
    final_by_hand: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    final_by: Mapped[str | None] = mapped_column(String(64))
    final_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[CallItem]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="CallItem.position"
    )
    assignments: Mapped[list[Assignment]] = relationship(
        back_populates="call", cascade="all, delete-orphan"
    )


class CallItem(Base):
    """Per-item outcomes kept at sync time, so trends and coaching effect need no store reads."""

    __tablename__ = "call_items"
    __table_args__ = (UniqueConstraint("call_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[str] = mapped_column(String(100), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str] = mapped_column(String(200), default="")
    section: Mapped[str] = mapped_column(String(200), default="")
    critical: Mapped[bool] = mapped_column(Boolean, default=False)
    points_possible: Mapped[float] = mapped_column(Float, default=0.0)
    auto_outcome: Mapped[str] = mapped_column(String(8))
    auto_points: Mapped[float] = mapped_column(Float, default=0.0)
    final_outcome: Mapped[str | None] = mapped_column(String(8))
    final_points: Mapped[float | None] = mapped_column(Float)
    final_comment: Mapped[str | None] = mapped_column(Text)  # the lead's feedback on the item

    call: Mapped[Call] = relationship(back_populates="items")


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("call_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    assigned_by: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)

    call: Mapped[Call] = relationship(back_populates="assignments")
    user: Mapped[User] = relationship()


class Review(Base):
    """One per reviewer per call; `version` is the optimistic-lock counter."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("call_id", "reviewer_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), index=True
    )
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    self_review: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    total: Mapped[float] = mapped_column(Float, default=0.0)
    passed: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]

    reviewer: Mapped[User] = relationship()
    items: Mapped[list[ReviewItem]] = relationship(
        back_populates="review", cascade="all, delete-orphan", order_by="ReviewItem.id"
    )

    __mapper_args__ = {"version_id_col": version}


class ReviewItem(Base):
    __tablename__ = "review_items"
    __table_args__ = (UniqueConstraint("review_id", "item_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("reviews.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(100))
    outcome: Mapped[str] = mapped_column(String(8))
    points: Mapped[float] = mapped_column(Float, default=0.0)
    comment: Mapped[str] = mapped_column(Text, default="")

    review: Mapped[Review] = relationship(back_populates="items")


class Dispute(Base):
    __tablename__ = "disputes"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[str] = mapped_column(String(100))
    opened_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    outcome_before: Mapped[str | None] = mapped_column(String(8))
    outcome_after: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coaching(Base):
    __tablename__ = "coaching"

    id: Mapped[int] = mapped_column(primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(100), index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    session_at: Mapped[datetime]
    call_ids: Mapped[list[str]] = mapped_column(default=list)
    item_ids: Mapped[list[str]] = mapped_column(default=list)
    notes: Mapped[str] = mapped_column(Text, default="")
    due: Mapped[date | None] = mapped_column(Date)
    acknowledged_at: Mapped[datetime | None]
    follow_up_notes: Mapped[str | None] = mapped_column(Text)
    follow_up_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="open")


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20), index=True)
    title: Mapped[str] = mapped_column(String(300))
    notes: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RoleOverride(Base):
    """A reviewer said the automatic agent/customer assignment of a call is the wrong way round."""

    __tablename__ = "role_overrides"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True
    )
    swapped: Mapped[bool] = mapped_column(Boolean, default=True)
    by: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only: the service only ever inserts here."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32), index=True)
    entity_id: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(32))
    field: Mapped[str | None] = mapped_column(String(100))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)


def add_missing_columns(engine: Engine) -> list[str]:
    """Add the columns a newer release declares to tables an older one created.

    `create_all` makes missing tables but never alters existing ones; the columns added
    since carry server defaults, so old rows get a value. Safe when several processes
    start at once: a column another one added meanwhile is skipped. Returns "table.column"
    for each column added.
    """
    added = []
    existing = inspect(engine)
    for table in Base.metadata.sorted_tables:
        if not existing.has_table(table.name):
            continue
        have = {c["name"] for c in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable and column.server_default is None:
                raise QAError(
                    f"cannot add {table.name}.{column.name} to an existing database: "
                    "it has no default"
                )
            ddl = f"{column.name} {column.type.compile(dialect=engine.dialect)}"
            if column.server_default is not None:
                arg = column.server_default.arg  # type: ignore[attr-defined]
                value = (
                    f"'{arg}'"
                    if isinstance(arg, str)
                    else str(
                        arg.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
                    )
                )
                ddl += f" DEFAULT {value}"
            if not column.nullable:
                ddl += " NOT NULL"
            guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {guard}{ddl}"))
            except DBAPIError:
                if column.name not in {c["name"] for c in inspect(engine).get_columns(table.name)}:
                    raise
                continue
            added.append(f"{table.name}.{column.name}")
    return added
