"""The alert log: which alert went to whom, and the labels the spike rule counts.

An alert is keyed by its rule and what it is about (a call, or a label's week for a spike),
so it is sent once even when the call is processed again or the pipeline restarts: the
sender claims the key in the database before sending and records how it went after.
Recipients are stored masked; the rule file is where the URLs live.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Date, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, mapped_column

from qa.workflow.actions import Tx, action
from qa.workflow.models import Base, utcnow
from qa.workflow.unit import UnitOfWork
from qa.workflow.views import UserRole

# who reads the alert log: leads their own team's alerts, managers every team's
ALERT_READERS = frozenset({UserRole.LEAD, UserRole.MANAGER})
# a claim older than this whose sender never reported back (a crash) may be taken again
STALE_CLAIM = timedelta(minutes=15)


class AlertStatus(StrEnum):
    SENDING = "sending"  # claimed by a sender, not yet reported
    SENT = "sent"  # every recipient took it (perhaps after retries)
    FAILED = "failed"  # some recipient refused it after every attempt; tried again later
    LOGGED = "logged"  # the rule has no recipients for the call's team: the log only


class AlertRecord(Base):
    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("rule_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(64), index=True)
    rule_name: Mapped[str] = mapped_column(String(200), default="")
    rule_type: Mapped[str] = mapped_column(String(32), default="")
    key: Mapped[str] = mapped_column(String(300))  # the call id, or label@week for spikes
    call_id: Mapped[str] = mapped_column(String(128), index=True)
    team: Mapped[str | None] = mapped_column(String(100), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    recipients: Mapped[list[str]] = mapped_column(default=list)  # masked
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class AlertLabel(Base):
    """A call's label (driver, queue ...) and week, as the spike rule counts them."""

    __tablename__ = "alert_labels"

    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), index=True)
    week: Mapped[date] = mapped_column(Date, index=True)


class AlertClaim(BaseModel):
    """What a sender is about to send: the key that makes it once-only, and what the log
    shows of it."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    rule_name: str = ""
    rule_type: str = ""
    key: str
    call_id: str
    team: str | None = None
    agent_id: str | None = None
    reason: str = ""
    recipients: list[str] = Field(default_factory=list)  # masked


class AlertView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    rule_id: str
    rule_name: str
    rule_type: str
    call_id: str
    team: str | None
    agent_id: str | None
    reason: str
    recipients: list[str]
    status: AlertStatus
    attempts: int
    retried: bool  # it took more than one attempt
    error: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None


def alert_view(a: AlertRecord) -> AlertView:
    return AlertView(
        id=a.id,
        rule_id=a.rule_id,
        rule_name=a.rule_name,
        rule_type=a.rule_type,
        call_id=a.call_id,
        team=a.team,
        agent_id=a.agent_id,
        reason=a.reason,
        recipients=list(a.recipients or []),
        status=AlertStatus(a.status),
        attempts=a.attempts,
        retried=a.attempts > 1,
        error=a.error,
        created_at=a.created_at,
        updated_at=a.updated_at,
        sent_at=a.sent_at,
    )


class Alerts(UnitOfWork):
    """Claiming, recording and reading alerts; counting labels for spike rules."""

    def claim_alert(self, claim: AlertClaim) -> int | None:
        """The alert's id when this sender should send it now: new, failed before, or
        claimed by a sender that never reported back. None when it went out already (or is
        in a live sender's hands)."""
        now = self.now()
        with self._tx(write=True) as s:
            row = s.scalar(
                select(AlertRecord).where(
                    AlertRecord.rule_id == claim.rule_id, AlertRecord.key == claim.key
                )
            )
            if row is None:
                row = AlertRecord(
                    **claim.model_dump(),
                    status=AlertStatus.SENDING.value,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                return row.id
            if row.status in (AlertStatus.SENT, AlertStatus.LOGGED):
                return None
            if row.status == AlertStatus.SENDING and now - row.updated_at < STALE_CLAIM:
                return None
            row.status, row.updated_at = AlertStatus.SENDING.value, now
            row.recipients, row.reason = claim.recipients, claim.reason
            return row.id

    def finish_alert(
        self, alert_id: int, status: AlertStatus, *, attempts: int = 0, error: str | None = None
    ) -> None:
        """Record how a claimed alert went; `attempts` adds to those of earlier tries."""
        now = self.now()
        with self._tx(write=True) as s:
            row = s.get(AlertRecord, alert_id)
            if row is None:
                return
            row.status, row.updated_at = AlertStatus(status).value, now
            row.attempts += attempts
            row.error = error[:4000] if error else None
            if status is AlertStatus.SENT:
                row.sent_at = now

    def record_label(self, call_id: str, field: str, label: str, week: date) -> None:
        """Note a call's label for the spike rule (a re-processed call is counted once)."""
        with self._tx(write=True) as s:
            row = s.get(AlertLabel, (call_id, field))
            if row is None:
                s.add(AlertLabel(call_id=call_id, field=field, label=label[:200], week=week))
            else:
                row.label, row.week = label[:200], week

    def label_counts(self, field: str, label: str | None, weeks: list[date]) -> dict[date, int]:
        """Calls of `label` (None: of any label) per week (Monday) of `weeks`; weeks
        without calls count 0."""
        query = select(AlertLabel.week, func.count()).where(
            AlertLabel.field == field, AlertLabel.week.in_(weeks)
        )
        if label is not None:
            query = query.where(AlertLabel.label == label[:200])
        with self._tx() as s:
            rows = s.execute(query.group_by(AlertLabel.week)).all()
        counts = dict.fromkeys(weeks, 0)
        counts.update({w: int(n) for w, n in rows})
        return counts

    @action(ALERT_READERS, "read the alert log")
    def alert_log(
        self, tx: Tx, status: AlertStatus | str | None = None, *, limit: int = 500
    ) -> list[AlertView]:
        """Alerts newest first: a lead's own team's (none without a team), a manager's all."""
        query = select(AlertRecord).order_by(AlertRecord.id.desc()).limit(limit)
        if tx.user.role == UserRole.LEAD.value:
            if tx.user.team is None:
                return []
            query = query.where(AlertRecord.team == tx.user.team)
        if status is not None:
            query = query.where(AlertRecord.status == AlertStatus(status).value)
        return [alert_view(a) for a in tx.s.scalars(query)]
