"""Coaching: sessions on an agent's calls, their acknowledgement, follow-up and effect."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from qa.errors import AccessDenied, QAError
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess
from qa.workflow.actions import EVERYONE, Tx, action, role_of
from qa.workflow.inputs import CoachingInput, FollowUpInput
from qa.workflow.models import Call, CallItem, Coaching, User
from qa.workflow.stats import pass_rate
from qa.workflow.unit import NotFoundError
from qa.workflow.views import (
    CoachingEffect,
    CoachingStatus,
    CoachingView,
    ItemEffect,
    UserRole,
)


def item_names(s: Session, item_ids: Iterable[str], call_ids: Iterable[str] = ()) -> dict[str, str]:
    """Item id -> name as the coached calls' own cards say (else any call's card), so a
    page never shows bare ids, nor a Chinese card's name for an English item."""
    wanted, calls = set(item_ids), list(call_ids)
    names: dict[str, str] = {}
    for where in ([CallItem.call_id.in_(calls)] if calls else []) + [True]:
        missing = wanted - set(names)
        if not missing:
            break
        query = select(CallItem.item_id, CallItem.name).where(CallItem.item_id.in_(missing))
        for item_id, name in s.execute(query.where(where).order_by(CallItem.call_id)):
            names.setdefault(item_id, name or item_id)
    return {i: names.get(i, i) for i in wanted}


def coaching_view(s: Session, c: Coaching) -> CoachingView:
    return CoachingView(
        item_names=item_names(s, c.item_ids or [], c.call_ids or []),
        id=c.id,
        agent_id=c.agent_id,
        created_by=c.created_by,
        created_at=c.created_at,
        session_at=c.session_at,
        call_ids=list(c.call_ids or []),
        item_ids=list(c.item_ids or []),
        notes=c.notes,
        due=c.due,
        acknowledged_at=c.acknowledged_at,
        follow_up_notes=c.follow_up_notes,
        follow_up_date=c.follow_up_date,
        status=CoachingStatus(c.status),
    )


class CoachingSessions(CallAccess):
    """Creating, acknowledging, following up and measuring coaching."""

    def _coaching(self, s: Session, user: User, coaching_id: int) -> Coaching:
        c = s.get(Coaching, coaching_id)
        role = role_of(user)
        if role is UserRole.AGENT:
            if c is None or c.agent_id != user.agent_id:
                raise AccessDenied(f"coaching {coaching_id} not found or not permitted")
        elif role not in auth.SEE_ALL_CALLS:
            raise AccessDenied(f"{user.username} ({user.role}) may not read coaching")
        elif c is None:
            raise NotFoundError(f"coaching {coaching_id} not found")
        return c

    @action(auth.COACHES, "create coaching", write=True)
    def create_coaching(
        self,
        tx: Tx,
        agent_id: str,
        call_ids: Iterable[str] = (),
        item_ids: Iterable[str] = (),
        notes: str = "",
        due: date | None = None,
        *,
        session_at: datetime | None = None,
    ) -> CoachingView:
        """An inspector or lead records a coaching session on some of an agent's calls/items.

        The agent must have an account (who else would acknowledge it), and the items must
        be on the scorecard of the named calls (of any of the agent's calls if none named).
        """
        call_ids, item_ids = list(dict.fromkeys(call_ids)), list(dict.fromkeys(item_ids))
        CoachingInput(agent_id=agent_id, call_ids=call_ids, item_ids=item_ids, notes=notes)
        s, coach = tx.s, tx.user
        agent = s.scalar(
            select(User.id).where(User.agent_id == agent_id, User.role == UserRole.AGENT.value)
        )
        if agent is None:
            raise NotFoundError(f"no agent account has agent id {agent_id!r}")
        for call_id in call_ids:
            call = self._call(s, coach, call_id)
            if call.agent_id != agent_id:
                raise QAError(f"call {call_id!r} is agent {call.agent_id!r}'s, not {agent_id!r}'s")
        if item_ids:
            on_card = select(CallItem.item_id).where(CallItem.item_id.in_(item_ids))
            if call_ids:
                on_card = on_card.where(CallItem.call_id.in_(call_ids))
            else:
                on_card = on_card.join(Call, Call.call_id == CallItem.call_id).where(
                    Call.agent_id == agent_id
                )
            unknown = sorted(set(item_ids) - set(s.scalars(on_card.distinct())))
            if unknown:
                where = (
                    f"call(s) {', '.join(map(repr, call_ids))}"
                    if call_ids
                    else f"any call of agent {agent_id!r}"
                )
                raise NotFoundError(f"no scorecard item {', '.join(map(repr, unknown))} on {where}")
        now = self.now()
        c = Coaching(
            agent_id=agent_id,
            created_by=coach.username,
            created_at=now,
            session_at=session_at or now,
            call_ids=call_ids,
            item_ids=item_ids,
            notes=notes,
            due=due,
            status=CoachingStatus.OPEN.value,
        )
        s.add(c)
        s.flush()
        self._audit(s, coach.username, "coaching", c.id, "create", "agent_id", None, agent_id)
        return coaching_view(tx.s, c)

    @action(auth.AGENTS, "acknowledge coaching", write=True)
    def acknowledge_coaching(self, tx: Tx, coaching_id: int) -> CoachingView:
        """The coached agent confirms the session; only their own coaching."""
        s, user = tx.s, tx.user
        c = self._coaching(s, user, coaching_id)
        if c.acknowledged_at is None:
            now = self.now()
            self._audit(
                s, user.username, "coaching", c.id, "acknowledge", "acknowledged_at", None, now
            )
            c.acknowledged_at = now
            if c.status == CoachingStatus.OPEN.value:
                self._changes(
                    s,
                    user.username,
                    "coaching",
                    c.id,
                    c,
                    {"status": CoachingStatus.ACKNOWLEDGED.value},
                    "acknowledge",
                )
        return coaching_view(tx.s, c)

    @action(auth.COACHES, "follow up coaching", write=True)
    def add_follow_up(
        self,
        tx: Tx,
        coaching_id: int,
        notes: str,
        follow_up_date: date | None = None,
        *,
        complete: bool = False,
    ) -> CoachingView:
        """The coach records the follow-up and may close the coaching."""
        FollowUpInput(follow_up_notes=notes)
        s, coach = tx.s, tx.user
        c = self._coaching(s, coach, coaching_id)
        values: dict[str, Any] = {
            "follow_up_notes": notes,
            "follow_up_date": follow_up_date or self.now().date(),
        }
        if complete:
            values["status"] = CoachingStatus.COMPLETED.value
        self._changes(s, coach.username, "coaching", c.id, c, values, "follow_up")
        return coaching_view(tx.s, c)

    @action(EVERYONE, "read coaching")
    def list_coaching(
        self, tx: Tx, *, agent_id: str | None = None, status: CoachingStatus | str | None = None
    ) -> list[CoachingView]:
        """Coaching sessions, newest first; an agent sees only their own."""
        user = tx.user
        query = select(Coaching).order_by(Coaching.session_at.desc(), Coaching.id.desc())
        if role_of(user) is UserRole.AGENT:
            query = query.where(Coaching.agent_id == user.agent_id)
        if agent_id is not None:
            query = query.where(Coaching.agent_id == agent_id)
        if status is not None:
            query = query.where(Coaching.status == CoachingStatus(status).value)
        return [coaching_view(tx.s, c) for c in tx.s.scalars(query)]

    @action(EVERYONE, "read coaching")
    def coaching_effect(self, tx: Tx, coaching_id: int) -> CoachingEffect:
        """Pass rate of the coached items on the agent's calls before vs after the session.

        Uses the final outcome where a lead or a dispute set one, else the automatic one;
        calls are placed by start time (sync time when unknown). No items named: all items.
        """
        c = self._coaching(tx.s, tx.user, coaching_id)
        items = set(c.item_ids or [])
        rows = tx.s.execute(
            select(
                CallItem.item_id,
                CallItem.final_outcome,
                CallItem.auto_outcome,
                Call.call_id,
                Call.started_at,
                Call.synced_at,
            )
            .join(Call, Call.call_id == CallItem.call_id)
            .where(Call.agent_id == c.agent_id)
        )
        outcomes: dict[str, dict[str, list[str]]] = {
            "before": defaultdict(list),
            "after": defaultdict(list),
        }
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
        coached = sorted(items or (set(outcomes["before"]) | set(outcomes["after"])))
        names = item_names(tx.s, coached, c.call_ids or [])
        for item_id in coached:
            b, bn = pass_rate(outcomes["before"].get(item_id, []))
            a, an = pass_rate(outcomes["after"].get(item_id, []))
            per_item.append(
                ItemEffect(
                    item_id=item_id,
                    name=names[item_id],
                    before_rate=b,
                    after_rate=a,
                    before_n=bn,
                    after_n=an,
                )
            )
        return CoachingEffect(
            coaching_id=c.id,
            agent_id=c.agent_id,
            session_at=c.session_at,
            before_calls=len(calls["before"]),
            after_calls=len(calls["after"]),
            before_rate=before,
            after_rate=after,
            change=(after - before) if before is not None and after is not None else None,
            items=per_item,
        )
