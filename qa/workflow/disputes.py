"""Final scores and disputes: the lead's decision, and the agent's say on it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from qa.errors import QAError
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess, checked_item, default_points, final_outcome
from qa.workflow.actions import EVERYONE, Act, Tx, action, role_of, staged_action
from qa.workflow.models import Call, Dispute
from qa.workflow.unit import NotFoundError
from qa.workflow.views import CallView, DisputeStatus, DisputeView, ReviewItemInput, UserRole


def dispute_view(d: Dispute, agent_id: str | None) -> DisputeView:
    return DisputeView(
        id=d.id,
        call_id=d.call_id,
        item_id=d.item_id,
        agent_id=agent_id,
        opened_by=d.opened_by,
        reason=d.reason,
        status=DisputeStatus(d.status),
        resolution=d.resolution,
        resolved_by=d.resolved_by,
        resolved_at=d.resolved_at,
        created_at=d.created_at,
        outcome_before=ItemOutcome(d.outcome_before) if d.outcome_before else None,
        outcome_after=ItemOutcome(d.outcome_after) if d.outcome_after else None,
    )


def _flip(outcome: ItemOutcome) -> ItemOutcome:
    return ItemOutcome.PASS if outcome is not ItemOutcome.PASS else ItemOutcome.FAIL


class Disputes(CallAccess):
    """Final scores, disputes and the agent's acknowledgement of a score."""

    @action(auth.LEADS, "set final scores", write=True)
    def set_final_score(
        self,
        tx: Tx,
        call_id: str,
        items: Sequence[ReviewItemInput] = (),
        total: float | None = None,
        passed: bool | None = None,
        note: str = "",
    ) -> CallView:
        """A lead's decision after calibration; it replaces the automatic score everywhere.

        Items not named keep their current outcome. `total` / `passed` default to the
        card's arithmetic (`qa.scoring.outcome`) over the final item outcomes.
        """
        s, lead = tx.s, tx.user
        call = self._call(s, lead, call_id)
        by_id = {i.item_id: i for i in call.items}
        for entry in items:
            item = by_id.get(entry.item_id)
            outcome, points = checked_item(call_id, item, entry)
            for name, value in (("final_outcome", outcome.value), ("final_points", points)):
                old = getattr(item, name)
                if old != value:
                    self._audit(
                        s,
                        lead.username,
                        "call",
                        call_id,
                        "final",
                        f"items.{entry.item_id}.{name}",
                        old,
                        value,
                    )
                    setattr(item, name, value)
        computed = final_outcome(call)
        if total is not None and not 0.0 <= total <= call.max_total:
            raise QAError(f"final total {total} outside 0..{call.max_total}")
        self._changes(
            s,
            lead.username,
            "call",
            call_id,
            call,
            {
                "final_total": computed.total if total is None else float(total),
                "final_passed": computed.passed if passed is None else passed,
                "final_auto_fail": computed.auto_fail,
                "final_note": note or call.final_note,
                "final_by": lead.username,
            },
            "final",
        )
        call.final_at = self.now()
        s.flush()
        return self._call_views(s, [call], lead)[0]

    @staged_action(auth.AGENTS, "dispute scores", write=True)
    def open_dispute(self, act: Act, call_id: str, item_id: str, reason: str) -> DisputeView:
        """The agent of the call contests one item's outcome, with a reason."""
        if not reason.strip():
            raise QAError("a dispute needs a reason")
        with act.tx(write=True) as tx:
            s, user = tx.s, tx.user
            call = self._call(s, user, call_id)
            item = next((i for i in call.items if i.item_id == item_id), None)
            if item is None:
                raise QAError(f"call {call_id!r} has no scorecard item {item_id!r}")
            if s.scalar(
                select(Dispute.id).where(
                    Dispute.call_id == call_id,
                    Dispute.item_id == item_id,
                    Dispute.status == DisputeStatus.OPEN.value,
                )
            ):
                raise QAError(f"item {item_id!r} of {call_id!r} already has an open dispute")
            dispute = Dispute(
                call_id=call_id,
                item_id=item_id,
                opened_by=user.username,
                reason=reason.strip(),
                status=DisputeStatus.OPEN.value,
                outcome_before=item.final_outcome or item.auto_outcome,
                created_at=self.now(),
            )
            s.add(dispute)
            s.flush()
            self._audit(
                s,
                user.username,
                "dispute",
                dispute.id,
                "open",
                "status",
                None,
                DisputeStatus.OPEN.value,
            )
            return dispute_view(dispute, call.agent_id)

    @action(EVERYONE, "read disputes")
    def list_disputes(
        self, tx: Tx, status: DisputeStatus | str | None = None, *, call_id: str | None = None
    ) -> list[DisputeView]:
        """Disputes, newest first; an agent sees those on their own calls only."""
        user = tx.user
        query = (
            select(Dispute, Call.agent_id)
            .join(Call, Call.call_id == Dispute.call_id)
            .order_by(Dispute.created_at.desc(), Dispute.id.desc())
        )
        if role_of(user) is UserRole.AGENT:
            query = query.where(Call.agent_id == user.agent_id)
        if status is not None:
            query = query.where(Dispute.status == DisputeStatus(status).value)
        if call_id is not None:
            query = query.where(Dispute.call_id == call_id)
        return [dispute_view(d, agent) for d, agent in tx.s.execute(query)]

    @staged_action(auth.LEADS, "resolve disputes", write=True)
    def resolve_dispute(
        self,
        act: Act,
        dispute_id: int,
        decision: DisputeStatus | str,
        resolution: str,
        outcome: ItemOutcome | str | None = None,
    ) -> DisputeView:
        """A lead decides: "upheld" keeps the score, "overturned" changes it.

        Overturning sets the item's final outcome (`outcome`, default: the opposite of
        pass/fail) and recomputes the call's final total and pass; all of it audit-logged.
        """
        decision = DisputeStatus(decision)
        if decision is DisputeStatus.OPEN:
            raise QAError("a decision is 'upheld' or 'overturned'")
        if not resolution.strip():
            raise QAError("a resolution needs an explanation")
        with act.tx(write=True) as tx:
            s, lead = tx.s, tx.user
            dispute = s.get(Dispute, dispute_id)
            if dispute is None:
                raise NotFoundError(f"dispute {dispute_id} not found")
            if dispute.status != DisputeStatus.OPEN.value:
                raise QAError(f"dispute {dispute_id} is already {dispute.status}")
            call = self._call(s, lead, dispute.call_id)
            now = self.now()
            self._changes(
                s,
                lead.username,
                "dispute",
                dispute_id,
                dispute,
                {
                    "status": decision.value,
                    "resolution": resolution.strip(),
                    "resolved_by": lead.username,
                },
                "resolve",
            )
            dispute.resolved_at = now
            item = next((i for i in call.items if i.item_id == dispute.item_id), None)
            current = ItemOutcome(item.final_outcome or item.auto_outcome) if item else None
            dispute.outcome_after = current.value if current else None
            if decision is DisputeStatus.OVERTURNED:
                if item is None or current is None:
                    raise QAError(
                        f"item {dispute.item_id!r} is no longer on call "
                        f"{dispute.call_id!r}; it cannot be overturned"
                    )
                new = ItemOutcome(outcome) if outcome is not None else _flip(current)
                if new is current:
                    raise QAError(f"overturning must change the outcome (it is {current.value})")
                for name, value in (
                    ("final_outcome", new.value),
                    ("final_points", default_points(new, item.points_possible)),
                ):
                    old = getattr(item, name)
                    self._audit(
                        s,
                        lead.username,
                        "call",
                        call.call_id,
                        "dispute_overturned",
                        f"items.{item.item_id}.{name}",
                        old,
                        value,
                    )
                    setattr(item, name, value)
                computed = final_outcome(call)
                self._changes(
                    s,
                    lead.username,
                    "call",
                    call.call_id,
                    call,
                    {
                        "final_total": computed.total,
                        "final_passed": computed.passed,
                        "final_auto_fail": computed.auto_fail,
                        "final_by": lead.username,
                    },
                    "dispute_overturned",
                )
                call.final_at = now
                dispute.outcome_after = new.value
            s.flush()
            return dispute_view(dispute, call.agent_id)

    @action(auth.AGENTS, "acknowledge scores", write=True)
    def acknowledge_score(self, tx: Tx, call_id: str) -> CallView:
        """The agent confirms they have seen the score of their own call."""
        s, user = tx.s, tx.user
        call = self._call(s, user, call_id)
        if call.acknowledged_at is None:
            now = self.now()
            self._audit(
                s, user.username, "call", call_id, "acknowledge", "acknowledged_at", None, now
            )
            call.acknowledged_at = now
        s.flush()
        return self._call_views(s, [call], user)[0]
