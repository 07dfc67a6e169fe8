"""Calls: the pipeline's upsert, listing as a given user, and the review queues."""

from __future__ import annotations

import random

from sqlalchemy import select
from sqlalchemy.orm import Session

from qa.errors import QAError
from qa.schema import CallMeta, CallResult, CallScore
from qa.summary import CallSummary
from qa.workflow import auth
from qa.workflow.access import CallAccess
from qa.workflow.actions import EVERYONE, Act, Tx, action, role_of, staged_action
from qa.workflow.inputs import AssignInput
from qa.workflow.models import Assignment, Call, User
from qa.workflow.unit import NotFoundError
from qa.workflow.views import CallFilter, CallView


class Calls(CallAccess):
    """Syncing calls from the pipeline, finding them, and assigning them for review."""

    def sync_call(
        self,
        meta: CallMeta,
        score: CallScore,
        *,
        pipeline_version: str = "",
        scorecard_version: str | None = None,
    ) -> CallView:
        """Upsert a call from the pipeline's result; reviews and final decisions are kept."""
        try:
            summary = CallSummary.of(
                meta, score, pipeline_version=pipeline_version, scorecard_version=scorecard_version
            )
        except ValueError as exc:
            raise QAError(str(exc)) from exc
        return self.sync_summary(summary)

    def sync_result(self, result: CallResult) -> CallView:
        """Upsert a call from a pipeline `CallResult` (what workers publish to the store)."""
        return self.sync_summary(CallSummary.from_result(result))

    def sync_summary(self, summary: CallSummary) -> CallView:
        with self._tx(write=True) as s:
            call = self._sync(s, summary)
            return self._call_views(s, [call], None)[0]

    @action(EVERYONE, "list calls")
    def list_calls(self, tx: Tx, filters: CallFilter | None = None) -> list[CallView]:
        """Calls the actor may see (an agent: only their own), newest first."""
        return self._call_views(tx.s, self._query_calls(tx.s, tx.user, filters), tx.user)

    @action(EVERYONE, "list calls")
    def count_calls(self, tx: Tx, filters: CallFilter | None = None) -> int:
        """How many calls `list_calls` would give without its limit, counted in SQL."""
        return self._count_calls(tx.s, tx.user, filters)

    @action(EVERYONE, "read calls")
    def get_call(self, tx: Tx, call_id: str) -> CallView:
        """One call; an agent asking for another agent's call is refused."""
        return self._call_views(tx.s, [self._call(tx.s, tx.user, call_id)], tx.user)[0]

    @staticmethod
    def _reviewer(s: Session, reviewer: str) -> User:
        """The active inspector or lead of this username, else a refusal naming it."""
        AssignInput(call_id="", reviewer=reviewer)
        target = s.scalar(select(User).where(User.username == reviewer))
        if target is None or not target.active:
            raise NotFoundError(f"reviewer {reviewer!r} not found or disabled")
        if role_of(target) not in auth.REVIEWERS:
            raise QAError(
                f"{reviewer!r} is a {target.role}; only inspectors and leads review calls"
            )
        return target

    @action(auth.LEADS, "assign reviews", write=True)
    def assign(self, tx: Tx, call_id: str, reviewer: str) -> CallView:
        """A lead puts a call on an inspector's or lead's queue."""
        s, lead = tx.s, tx.user
        call = self._call(s, lead, call_id)
        target = self._reviewer(s, reviewer)
        exists = s.scalar(
            select(Assignment.id).where(
                Assignment.call_id == call_id, Assignment.user_id == target.id
            )
        )
        if exists is None:
            s.add(
                Assignment(
                    call_id=call_id,
                    user_id=target.id,
                    assigned_by=lead.username,
                    assigned_at=self.now(),
                )
            )
            self._audit(s, lead.username, "call", call_id, "assign", "reviewer", None, reviewer)
        s.flush()
        return self._call_views(s, [call], lead)[0]

    @action(auth.LEADS, "assign reviews", write=True)
    def unassign(self, tx: Tx, call_id: str, reviewer: str) -> CallView:
        """A lead takes a call off a reviewer's queue; an unknown reviewer is refused."""
        s, lead = tx.s, tx.user
        call = self._call(s, lead, call_id)
        AssignInput(call_id=call_id, reviewer=reviewer)
        if s.scalar(select(User.id).where(User.username == reviewer)) is None:
            raise NotFoundError(f"reviewer {reviewer!r} not found")
        row = s.scalar(
            select(Assignment)
            .join(User, User.id == Assignment.user_id)
            .where(Assignment.call_id == call_id, User.username == reviewer)
        )
        if row is not None:
            s.delete(row)
            self._audit(s, lead.username, "call", call_id, "unassign", "reviewer", reviewer, None)
        s.flush()
        return self._call_views(s, [call], lead)[0]

    @staged_action(auth.LEADS, "sample calls for review", write=True)
    def sample_for_review(
        self,
        act: Act,
        n: int,
        filters: CallFilter | None = None,
        seed: int | None = None,
        *,
        assign_to: str | None = None,
    ) -> list[CallView]:
        """A random, reproducible sample (default: unreviewed calls), optionally assigned."""
        if n < 0:
            raise QAError(f"sample size must be >= 0, got {n}")
        with act.tx(write=True) as tx:
            if assign_to is not None:  # refused before anything is sampled or audited
                self._reviewer(tx.s, assign_to)
            pool = self._query_calls(tx.s, tx.user, filters or CallFilter(reviewed=False))
            pool.sort(key=lambda c: c.call_id)
            chosen = random.Random(seed).sample(pool, min(n, len(pool)))
            ids = [c.call_id for c in chosen]
            self._audit(tx.s, tx.by, "call", "*", "sample", "call_ids", None, ids)
        if assign_to is not None:
            for call_id in ids:
                self.assign(act.actor, call_id, assign_to)
        with self._tx(write=True) as s:
            calls = [s.get(Call, i) for i in ids]
            return self._call_views(s, [c for c in calls if c is not None], None)
