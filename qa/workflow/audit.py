"""Reading the audit log, and the outcomes that count for managers' trends."""

from __future__ import annotations

from sqlalchemy import select

from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess, week_of
from qa.workflow.actions import Tx, action
from qa.workflow.models import AuditEntry
from qa.workflow.views import AuditView, CallFilter, FinalOutcomeRow


class Audit(CallAccess):
    """The audit trail and final outcomes per call."""

    @action(auth.AUDITORS, "read the audit log")
    def audit_trail(
        self,
        tx: Tx,
        entity: str | None = None,
        entity_id: str | int | None = None,
        *,
        limit: int = 1000,
    ) -> list[AuditView]:
        """Audit entries, newest first, for leads, managers and admins."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if entity is not None:
            query = query.where(AuditEntry.entity == entity)
        if entity_id is not None:
            query = query.where(AuditEntry.entity_id == str(entity_id))
        return [
            AuditView(
                id=a.id,
                at=a.at,
                actor=a.actor,
                entity=a.entity,
                entity_id=a.entity_id,
                action=a.action,
                field=a.field,
                old_value=a.old_value,
                new_value=a.new_value,
            )
            for a in tx.s.scalars(query)
        ]

    @action(auth.TRENDS, "see final outcomes")
    def final_outcomes(self, tx: Tx, filters: CallFilter | None = None) -> list[FinalOutcomeRow]:
        """One row per call with the outcomes that count, for managers' trend charts."""
        rows = []
        for c in self._query_calls(tx.s, tx.user, filters):
            finalised = c.final_total is not None or any(i.final_outcome for i in c.items)
            rows.append(
                FinalOutcomeRow(
                    call_id=c.call_id,
                    team=c.team,
                    agent_id=c.agent_id,
                    queue=c.queue,
                    scorecard_id=c.scorecard_id,
                    started_at=c.started_at,
                    week=week_of(c.started_at),
                    total=c.auto_total if c.final_total is None else c.final_total,
                    passed=c.auto_passed if c.final_passed is None else c.final_passed,
                    auto_total=c.auto_total,
                    auto_passed=c.auto_passed,
                    auto_fail=c.auto_fail if c.final_auto_fail is None else c.final_auto_fail,
                    finalised=finalised,
                    items={
                        i.item_id: ItemOutcome(i.final_outcome or i.auto_outcome) for i in c.items
                    },
                )
            )
        return rows
