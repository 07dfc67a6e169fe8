"""Calls in progress: what the live server writes while a call happens, and what the
dashboard's Live page reads of it every second.

The live server (`qa.live`) is the only writer. Its methods here take no user, keep each
write to one short transaction, and never raise into the server: a call it does not know
is logged and ignored, and a database that refuses a write costs a supervisor one update,
not the server its stream. Supervisors read through declared actions, scoped like the
alert log: a lead sees their own team's calls (none without a team), a manager every
team's; agents, inspectors and admins are refused.

Lines are upserted by (call, index) as their text grows and carry the time they last
changed, so the page asks only for lines changed since its previous read; the list reads
one table, with each call's counts and latest words kept on its row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    JSON,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column

from qa.errors import QAError
from qa.live.models import LiveCallInfo, LiveEvent, LiveLine, LiveStatus
from qa.schema import Direction, Role
from qa.workflow.actions import Tx, action
from qa.workflow.models import Base, utcnow
from qa.workflow.unit import NotFoundError, UnitOfWork
from qa.workflow.views import UserRole

log = logging.getLogger(__name__)

# who watches calls live: leads their own team's, managers every team's (as the alert log)
LIVE_READERS = frozenset({UserRole.LEAD, UserRole.MANAGER})
LOST_REASON = "the live server stopped sending"
LATEST_CHARS = 300  # the tail of the newest line kept on the call's row for the list
LIST_LIMIT = 500
NOT_PERMITTED = "live call not found or not permitted"


class LiveCallRecord(Base):
    __tablename__ = "live_calls"
    __table_args__ = (
        # the list: calls still live, or ended recently, of one team or all
        Index("ix_live_calls_status_ended", "status", "ended_at"),
        Index("ix_live_calls_team_status", "team", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(200), default="")
    protocol: Mapped[str] = mapped_column(String(32), default="")
    agent_id: Mapped[str | None] = mapped_column(String(100))
    team: Mapped[str | None] = mapped_column(String(100))
    queue: Mapped[str | None] = mapped_column(String(100))
    language: Mapped[str | None] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16), default=Direction.INBOUND.value)
    started_at: Mapped[datetime]
    tracks: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=LiveStatus.LIVE.value)
    elapsed: Mapped[float] = mapped_column(Float, default=0.0)  # audio seconds so far
    last_update: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    alerts: Mapped[int] = mapped_column(Integer, default=0)
    missed: Mapped[int] = mapped_column(Integer, default=0)  # scorecard items missed so far
    met: Mapped[int] = mapped_column(Integer, default=0)
    latest_alert: Mapped[str] = mapped_column(String(200), default="")  # its name
    lines: Mapped[int] = mapped_column(Integer, default=0)
    latest_index: Mapped[int] = mapped_column(Integer, default=-1)
    latest_role: Mapped[str | None] = mapped_column(String(16))
    latest_text: Mapped[str] = mapped_column(Text, default="")
    line_update: Mapped[datetime | None]  # when a line last changed


class LiveLineRecord(Base):
    __tablename__ = "live_lines"
    __table_args__ = (
        UniqueConstraint("call_id", "line_index"),
        Index("ix_live_lines_call_updated", "call_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128))
    index: Mapped[int] = mapped_column("line_index", Integer)
    track: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    start: Mapped[float] = mapped_column(Float)
    end: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text, default="")
    final: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class LiveEventRecord(Base):
    __tablename__ = "live_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LiveCallView(BaseModel):
    """One call in the Live list: what the platform said of it and how it is going."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    source: str
    protocol: str
    agent_id: str | None
    team: str | None
    queue: str | None
    language: str | None
    direction: Direction
    started_at: datetime
    tracks: dict[str, Role]
    status: LiveStatus
    elapsed: float
    last_update: datetime
    ended_at: datetime | None
    reason: str
    alerts: int
    missed: int
    met: int
    latest_alert: str
    lines: int
    latest_role: Role | None
    latest_text: str


class LiveCallDetail(BaseModel):
    """An opened call: its lines in order (all of them, or only those changed since the
    time the page passed), its events in order, and `line_update` to pass next time."""

    model_config = ConfigDict(extra="forbid")

    call: LiveCallView
    lines: list[LiveLine]
    events: list[LiveEvent]
    line_update: datetime | None
    complete: bool  # `lines` is the whole transcript, not only the changed lines


def live_call_view(r: LiveCallRecord) -> LiveCallView:
    return LiveCallView(
        call_id=r.call_id,
        source=r.source,
        protocol=r.protocol,
        agent_id=r.agent_id,
        team=r.team,
        queue=r.queue,
        language=r.language,
        direction=Direction(r.direction),
        started_at=r.started_at,
        tracks={k: Role(v) for k, v in (r.tracks or {}).items()},
        status=LiveStatus(r.status),
        elapsed=r.elapsed,
        last_update=r.last_update,
        ended_at=r.ended_at,
        reason=r.reason,
        alerts=r.alerts,
        missed=r.missed,
        met=r.met,
        latest_alert=r.latest_alert,
        lines=r.lines,
        latest_role=Role(r.latest_role) if r.latest_role else None,
        latest_text=r.latest_text,
    )


def _cut(value: str | None, length: int) -> str | None:
    return None if value is None else value[:length]


def _aware(at: datetime) -> datetime:
    """A platform's time without a zone is taken as UTC, as the database keeps times."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _info_values(info: LiveCallInfo) -> dict[str, object]:
    """The platform's description of a call, cut to the columns (never refused for length)."""
    return {
        "source": info.source[:200],
        "protocol": info.protocol[:32],
        "agent_id": _cut(info.agent_id, 100),
        "team": _cut(info.team, 100),
        "queue": _cut(info.queue, 100),
        "language": _cut(info.language, 16),
        "direction": Direction(info.direction).value,
        "tracks": {k[:64]: Role(v).value for k, v in info.tracks.items()},
    }


class Live(UnitOfWork):
    """The live server's writes of calls in progress, and the supervisors' reads of them."""

    @contextmanager
    def _live_write(self, what: str, call_id: str) -> Iterator[Session]:
        """A system write that logs a database failure instead of raising it."""
        try:
            with self._tx(write=True) as s:
                yield s
        except (SQLAlchemyError, QAError):
            log.exception("live call %s: could not %s", call_id, what)

    @staticmethod
    def _live_row(s: Session, call_id: str) -> LiveCallRecord | None:
        return s.scalar(select(LiveCallRecord).where(LiveCallRecord.call_id == call_id))

    # ------------------------------------------------------------------ the server writes

    def live_start(self, info: LiveCallInfo) -> None:
        """A call's stream started; a call id seen before (a reconnect) resumes its row."""
        with self._live_write("record its start", info.call_id) as s:
            now = self.now()
            row = self._live_row(s, info.call_id)
            values = _info_values(info)
            if row is None:
                s.add(
                    LiveCallRecord(
                        call_id=info.call_id,
                        started_at=_aware(info.started_at),
                        status=LiveStatus.LIVE.value,
                        last_update=now,
                        **values,
                    )
                )
                return
            log.info("live call %s: stream started again, resuming it", info.call_id)
            for name, value in values.items():
                if value is not None:  # what the first start said stays unless said anew
                    setattr(row, name, value)
            row.started_at = min(row.started_at, _aware(info.started_at))
            row.status, row.ended_at, row.reason = LiveStatus.LIVE.value, None, ""
            row.last_update = now

    def live_update(
        self, call_id: str, *, elapsed: float, lines: list[LiveLine], events: list[LiveEvent]
    ) -> None:
        """Lines whose text grew (or that are new), events that happened, and how far the
        call has got; lines that did not change keep their update time."""
        with self._live_write("record an update", call_id) as s:
            row = self._live_row(s, call_id)
            if row is None:
                log.warning("live call %s: update for a call never started; ignored", call_id)
                return
            now = self.now()  # inside the write lock: line times follow the commit order
            if (ours := [x for x in lines if x.call_id == call_id]) != lines:
                log.warning("live call %s: lines of other calls in its update ignored", call_id)
            self._upsert_lines(s, row, ours, now)
            self._append_events(s, row, [e for e in events if e.call_id == call_id])
            row.elapsed = max(row.elapsed, float(elapsed))
            row.last_update = now

    def _upsert_lines(
        self, s: Session, row: LiveCallRecord, lines: list[LiveLine], now: datetime
    ) -> None:
        by_index = {x.index: x for x in lines}  # the last word on a line wins
        if not by_index:
            return
        stored = {
            r.index: r
            for r in s.scalars(
                select(LiveLineRecord).where(
                    LiveLineRecord.call_id == row.call_id,
                    LiveLineRecord.index.in_(list(by_index)),
                )
            )
        }
        changed = False
        for index, line in sorted(by_index.items()):
            values = {
                "track": line.track[:64],
                "role": Role(line.role).value,
                "start": float(line.start),
                "end": float(line.end),
                "text": line.text,
                "final": line.final,
            }
            old = stored.get(index)
            if old is None:
                s.add(LiveLineRecord(call_id=row.call_id, index=index, updated_at=now, **values))
                row.lines += 1
            elif any(getattr(old, k) != v for k, v in values.items()):
                for name, value in values.items():
                    setattr(old, name, value)
                old.updated_at = now
            else:
                continue
            changed = True
            if index >= row.latest_index:
                row.latest_index, row.latest_role = index, values["role"]
                row.latest_text = line.text[-LATEST_CHARS:]
        if changed:
            row.line_update = now

    @staticmethod
    def _append_events(s: Session, row: LiveCallRecord, events: list[LiveEvent]) -> None:
        """New events only: one sent again (a retried update, a reconnect) is kept once."""
        if not events:
            return
        seen = {
            (e.kind, e.rule_id, e.outcome, e.at)
            for e in s.scalars(
                select(LiveEventRecord).where(
                    LiveEventRecord.call_id == row.call_id,
                    LiveEventRecord.rule_id.in_({e.rule_id[:100] for e in events}),
                )
            )
        }
        for e in events:
            key = (e.kind, e.rule_id[:100], e.outcome, float(e.at))
            if key in seen:
                continue
            seen.add(key)
            s.add(
                LiveEventRecord(
                    call_id=row.call_id,
                    kind=e.kind,
                    rule_id=e.rule_id[:100],
                    name=e.name[:200],
                    outcome=e.outcome,
                    reason=e.reason,
                    at=float(e.at),
                    created_at=e.created_at,
                )
            )
            if e.kind == "alert":
                row.alerts += 1
                row.latest_alert = e.name[:200]
            elif e.outcome == "missed":
                row.missed += 1
            elif e.outcome == "met":
                row.met += 1

    def live_end(self, call_id: str, status: LiveStatus, reason: str = "") -> None:
        """The call ended (the recording is being stored), was stored, or failed."""
        with self._live_write(f"record it {LiveStatus(status).value}", call_id) as s:
            row = self._live_row(s, call_id)
            if row is None:
                log.warning("live call %s: end for a call never started; ignored", call_id)
                return
            now = self.now()
            row.status, row.reason, row.last_update = LiveStatus(status).value, reason, now
            if status is LiveStatus.LIVE:
                row.ended_at = None
            elif row.ended_at is None:  # stored (or failed) after ended: it ended then
                row.ended_at = now

    def live_lost(self, older_than: timedelta) -> int:
        """Calls still live without an update for `older_than` become failed (their server
        stopped); how many."""
        now = self.now()
        try:
            with self._tx(write=True) as s:
                done = s.execute(
                    update(LiveCallRecord)
                    .where(
                        LiveCallRecord.status == LiveStatus.LIVE.value,
                        LiveCallRecord.last_update < now - older_than,
                    )
                    .values(
                        status=LiveStatus.FAILED.value,
                        reason=LOST_REASON,
                        ended_at=now,
                        last_update=now,
                    )
                )
                return int(done.rowcount or 0)  # type: ignore[attr-defined]
        except (SQLAlchemyError, QAError):
            log.exception("could not mark lost live calls")
            return 0

    # ------------------------------------------------------------------ supervisors read

    @action(LIVE_READERS, "watch live calls")
    def live_calls(
        self, tx: Tx, *, ended_within: timedelta = timedelta(minutes=15)
    ) -> list[LiveCallView]:
        """Calls in progress and those that ended within `ended_within`, oldest first: a
        lead's own team's (none without a team), a manager's all."""
        query = (
            select(LiveCallRecord)
            .where(
                or_(
                    LiveCallRecord.status == LiveStatus.LIVE.value,
                    LiveCallRecord.ended_at >= self.now() - ended_within,
                )
            )
            .order_by(LiveCallRecord.started_at, LiveCallRecord.id)
            .limit(LIST_LIMIT)
        )
        if tx.user.role == UserRole.LEAD.value:
            if tx.user.team is None:
                return []
            query = query.where(LiveCallRecord.team == tx.user.team)
        return [live_call_view(r) for r in tx.s.scalars(query)]

    @action(LIVE_READERS, "watch live calls")
    def live_call(
        self, tx: Tx, call_id: str, *, since_line_update: datetime | None = None
    ) -> LiveCallDetail:
        """One call with its lines and events; with `since_line_update` (the detail's
        `line_update` of a previous read) only the lines changed since then."""
        row = self._live_row(tx.s, call_id)
        lead = tx.user.role == UserRole.LEAD.value
        if row is None or (lead and (tx.user.team is None or row.team != tx.user.team)):
            raise NotFoundError(NOT_PERMITTED)
        lines = select(LiveLineRecord).where(LiveLineRecord.call_id == row.call_id)
        if since_line_update is not None:
            # >=: a line written in the same instant as the last one read is not lost
            lines = lines.where(LiveLineRecord.updated_at >= since_line_update)
        events = (
            select(LiveEventRecord)
            .where(LiveEventRecord.call_id == row.call_id)
            .order_by(LiveEventRecord.at, LiveEventRecord.id)
        )
        return LiveCallDetail(
            call=live_call_view(row),
            lines=[
                LiveLine(
                    call_id=row.call_id,
                    index=x.index,
                    track=x.track,
                    role=Role(x.role),
                    start=x.start,
                    end=x.end,
                    text=x.text,
                    final=x.final,
                )
                for x in tx.s.scalars(lines.order_by(LiveLineRecord.index))
            ],
            events=[
                LiveEvent(
                    call_id=row.call_id,
                    kind=e.kind,  # type: ignore[arg-type]
                    rule_id=e.rule_id,
                    name=e.name,
                    outcome=e.outcome,  # type: ignore[arg-type]
                    reason=e.reason,
                    at=e.at,
                    created_at=e.created_at,
                )
                for e in tx.s.scalars(events)
            ],
            line_update=row.line_update,
            complete=since_line_update is None,
        )
