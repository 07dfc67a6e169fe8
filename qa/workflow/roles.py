"""Speaker roles: a reviewer swaps agent and customer of a call and it is scored again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qa.errors import StaleEditError
from qa.schema import CallResult
from qa.store import Keys, ObjectNotFoundError, Store
from qa.summary import CallSummary
from qa.workflow import auth
from qa.workflow.access import CallAccess
from qa.workflow.actions import Act, staged_action
from qa.workflow.inputs import ReasonInput
from qa.workflow.models import RoleOverride
from qa.workflow.unit import NotFoundError
from qa.workflow.views import CallView

if TYPE_CHECKING:
    from qa.pipeline import Models


class Roles(CallAccess):
    """Role swaps and the rescoring they trigger."""

    @staged_action(auth.REVIEWERS, "swap speaker roles", write=True)
    def swap_roles(
        self, act: Act, call_id: str, store: Store, models: Models, reason: str = ""
    ) -> CallView:
        """Exchange agent and customer of a call and score it again (toggles).

        The shown result's transcript gets its roles swapped and is scored with the same
        scorecard (`qa.scoring.rescore`, no ASR); the new result is stored as a revision
        beside the old one (`qa.results.next_revision`), which is kept, and the call's
        automatic score in this database becomes the new one, with an audit entry.
        Reviews and final decisions are kept, as on any re-sync.
        """
        from qa.results import next_revision, publish_result
        from qa.scoring.rescore import swap_and_rescore

        ReasonInput(reason=reason)
        with act.tx() as tx:
            call = self._call(tx.s, tx.user, call_id)
            based_on = call.pipeline_version
            key = Keys.result(call_id, based_on, call.scorecard_id, call.scorecard_version)
        try:
            old = store.get_json(key, CallResult)
        except ObjectNotFoundError:
            raise NotFoundError(
                f"call {call_id!r}: the pipeline's result is not in the store, "
                "so there is no transcript to score again"
            ) from None
        # the slow part (models) runs outside any transaction
        new = swap_and_rescore(old, models, next_revision(store, call_id, based_on))
        with act.tx(write=True) as tx:
            s, user = tx.s, tx.user
            call = self._call(s, user, call_id)
            if call.pipeline_version != based_on:
                raise StaleEditError(
                    f"call {call_id!r} was re-scored meanwhile (now "
                    f"{call.pipeline_version}); reload and check the roles"
                )
            new_key = publish_result(store, new)
            old_total = call.auto_total
            self._sync(s, CallSummary.from_result(new))
            row = s.get(RoleOverride, call_id)
            swapped = not (row and row.swapped)
            if row is None:
                s.add(RoleOverride(call_id=call_id, swapped=True, by=user.username, at=self.now()))
            else:
                row.swapped, row.by, row.at = swapped, user.username, self.now()
            self._audit(
                s,
                user.username,
                "call",
                call_id,
                "swap_roles",
                "role_override",
                not swapped,
                swapped,
            )
            self._audit(s, user.username, "call", call_id, "swap_roles", "result", key, new_key)
            self._audit(
                s,
                user.username,
                "call",
                call_id,
                "swap_roles",
                "auto_total",
                old_total,
                new.score.total,
            )
            if reason:
                self._audit(s, user.username, "call", call_id, "swap_roles", "reason", None, reason)
            s.flush()
            return self._call_views(s, [call], user)[0]

    def role_override(self, call_id: str) -> bool:
        """Whether a reviewer swapped agent and customer for this call, relative to the
        pipeline's own decision."""
        with self._tx() as s:
            row = s.get(RoleOverride, call_id)
            return bool(row and row.swapped)
