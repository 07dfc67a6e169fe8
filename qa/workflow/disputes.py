"""Final scores and disputes: the lead's decision, and the agent's say on it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from qa.errors import QAError
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess, checked_item, default_points, final_outcome
from qa.workflow.actions import EVERYONE, Act, Tx, action, role_of, staged_action
from qa.workflow.inputs import DisputeInput, FinalScoreInput, ResolutionInput, ReviewItemText
from qa.workflow.models import Call, CallItem, Dispute, Review
from qa.workflow.unit import NotFoundError
from qa.workflow.views import (
    CallView,
    DisputeStatus,
    DisputeView,
    ReviewItemInput,
    ReviewStatus,
    UserRole,
)


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
        """A lead's decision after calibration; it replaces the automatic score everywhere
        and is what the agent sees (the published review, with each item's comment).

        Items not named keep their current outcome. `total` / `passed` default to the
        card's arithmetic (`qa.scoring.outcome`) over the final item outcomes; given, they
        are the lead's by hand, and a later dispute decision keeps them unless told not to.
        """
        FinalScoreInput(
            call_id=call_id,
            note=note,
            items=[ReviewItemText(item_id=i.item_id, comment=i.comment) for i in items],
        )
        s, lead = tx.s, tx.user
        call = self._call(s, lead, call_id)
        by_id = {i.item_id: i for i in call.items}
        for entry in items:
            item = by_id.get(entry.item_id)
            outcome, points = checked_item(call_id, item, entry)
            for name, value in (
                ("final_outcome", outcome.value),
                ("final_points", points),
                ("final_comment", entry.comment.strip() or item.final_comment),
            ):
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
                "final_by_hand": total is not None or passed is not None,
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
        DisputeInput(call_id=call_id, item_id=item_id, reason=reason)
        if not reason.strip():
            raise QAError("a dispute needs a reason")
        with act.tx(write=True) as tx:
            s, user = tx.s, tx.user
            call = self._call(s, user, call_id)
            item = next((i for i in call.items if i.item_id == item_id), None)
            if item is None:
                raise QAError(f"call {call_id!r} has no scorecard item {item_id!r}")
            current = ItemOutcome(item.final_outcome or item.auto_outcome)
            if current is not ItemOutcome.FAIL:
                raise QAError(
                    f"item {item.name or item_id!r} of {call_id!r} is {current.value}: "
                    "only a failed item can be disputed"
                )
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
        elif role_of(user) is UserRole.INSPECTOR:  # a decision is the lead's: blind until own
            query = query.where(
                Dispute.call_id.in_(
                    select(Review.call_id).where(
                        Review.reviewer_id == user.id,
                        Review.status == ReviewStatus.SUBMITTED.value,
                    )
                )
            )
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
        points: float | None = None,
        keep_total: bool | None = None,
    ) -> DisputeView:
        """A lead decides on the item: "upheld" keeps its outcome, "overturned" re-scores it.

        Re-scoring sets the item's final outcome (`outcome`: pass by default, or na) and
        points (full marks on a pass by default), then the card's arithmetic totals the
        call again. Where the lead set the final total by hand, `keep_total` must say
        whether it stays or gives way to the card's total: it is never replaced silently.
        The agent sees the decision and `resolution`, the reason.
        """
        decision = DisputeStatus(decision)
        if decision is DisputeStatus.OPEN:
            raise QAError("a decision is 'upheld' or 'overturned'")
        ResolutionInput(resolution=resolution)
        if not resolution.strip():
            raise QAError("a decision needs a reason the agent can read")
        with act.tx(write=True) as tx:
            s, lead = tx.s, tx.user
            dispute = s.get(Dispute, dispute_id)
            if dispute is None:
                raise NotFoundError(f"dispute {dispute_id} not found")
            if dispute.status != DisputeStatus.OPEN.value:
                raise QAError(f"dispute {dispute_id} is already {dispute.status}")
            call = self._call(s, lead, dispute.call_id)
            item = next((i for i in call.items if i.item_id == dispute.item_id), None)
            current = ItemOutcome(item.final_outcome or item.auto_outcome) if item else None
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
            dispute.outcome_after = current.value if current else None
            if decision is DisputeStatus.OVERTURNED:
                if item is None or current is None:
                    raise QAError(
                        f"item {dispute.item_id!r} is no longer on call "
                        f"{dispute.call_id!r}; it cannot be re-scored"
                    )
                self._rescore_item(s, lead.username, call, item, outcome, points, keep_total)
                dispute.outcome_after = item.final_outcome
                call.final_at = now
            s.flush()
            return dispute_view(dispute, call.agent_id)

    def _rescore_item(
        self,
        s: Session,
        lead: str,
        call: Call,
        item: CallItem,
        outcome: ItemOutcome | str | None,
        points: float | None,
        keep_total: bool | None,
    ) -> None:
        new = ItemOutcome(outcome) if outcome is not None else ItemOutcome.PASS
        if new is ItemOutcome.FAIL and points is None:
            raise QAError("re-scoring a failed item needs a new outcome or partial points")
        new_points = default_points(new, item.points_possible) if points is None else points
        if new is ItemOutcome.NA:
            new_points = 0.0
        if not 0.0 <= new_points <= item.points_possible:
            raise QAError(f"points {new_points} outside 0..{item.points_possible}")
        if call.final_by_hand and keep_total is None:
            raise QAError(
                f"the final total {call.final_total:.1f} of {call.call_id!r} was set by hand; "
                "say whether to keep it or to take the card's total after this decision"
            )
        for name, value in (("final_outcome", new.value), ("final_points", new_points)):
            old = getattr(item, name)
            self._audit(
                s,
                lead,
                "call",
                call.call_id,
                "dispute_overturned",
                f"items.{item.item_id}.{name}",
                old,
                value,
            )
            setattr(item, name, value)
        computed = final_outcome(call)
        changes: dict[str, object] = {"final_auto_fail": computed.auto_fail, "final_by": lead}
        if not (call.final_by_hand and keep_total):
            changes.update(
                final_total=computed.total, final_passed=computed.passed, final_by_hand=False
            )
        self._changes(s, lead, "call", call.call_id, call, changes, "dispute_overturned")

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
