"""What every domain needs about calls: who may see one, the card's arithmetic, the
call's view and the pipeline's upsert; kept in one place so visibility has one rule."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from qa.errors import AccessDenied, QAError
from qa.schema import ItemOutcome
from qa.scoring.outcome import Outcome, OutcomeItem, Scoring, outcome
from qa.summary import DERIVED, CallSummary
from qa.workflow import auth
from qa.workflow.actions import role_of
from qa.workflow.models import Assignment, Call, CallItem, Review, RoleOverride, User
from qa.workflow.unit import SYSTEM, NotFoundError, UnitOfWork
from qa.workflow.views import (
    CallFilter,
    CallItemView,
    CallView,
    ReviewItemInput,
    ReviewStatus,
    UserRole,
)

NOT_PERMITTED = "call not found or not permitted"


# summary columns whose change on a re-sync is written to the audit log
SYNC_AUDITED = (
    "agent_id",
    "team",
    "scorecard_version",
    "pipeline_version",
    "auto_total",
    "auto_passed",
)


def default_points(outcome: ItemOutcome, possible: float) -> float:
    return possible if outcome is ItemOutcome.PASS else 0.0


def checked_item(
    call_id: str, item: CallItem | None, entry: ReviewItemInput
) -> tuple[ItemOutcome, float]:
    """A reviewer's or lead's outcome and points for one item, checked against the card."""
    if item is None:
        raise QAError(f"call {call_id!r} has no scorecard item {entry.item_id!r}")
    outcome = ItemOutcome(entry.outcome)
    points = (
        default_points(outcome, item.points_possible)
        if entry.points is None
        else float(entry.points)
    )
    if outcome is ItemOutcome.NA:
        points = 0.0
    if not 0.0 <= points <= item.points_possible:
        raise QAError(f"item {entry.item_id!r}: points {points} outside 0..{item.points_possible}")
    return outcome, points


def scoring_of(call: Call) -> Scoring:
    """The card's arithmetic as stored with the call at sync time."""
    return Scoring(
        mode=call.scoring_mode or "deduction",
        pass_mark=call.pass_mark,
        max_total=call.max_total,
        auto_fail_zeroes_total=call.auto_fail_zeroes_total is not False,
    )


def blind(view: CallView) -> CallView:
    """The call without what a lead decided: final score, outcomes, note."""
    return view.model_copy(
        update={
            "final_total": None,
            "final_passed": None,
            "final_auto_fail": None,
            "final_note": None,
            "final_by_hand": False,
            "final_by": None,
            "final_at": None,
            "items": [
                i.model_copy(
                    update={"final_outcome": None, "final_points": None, "final_comment": None}
                )
                for i in view.items
            ],
        }
    )


def outcome_of(call: Call, rows: Iterable[tuple[CallItem, ItemOutcome, float | None]]) -> Outcome:
    """Total, pass and auto-fail of the call for these (item, outcome, points)."""
    return outcome(
        (
            OutcomeItem(
                item_id=i.item_id,
                name=i.name,
                outcome=o,
                points_awarded=p,
                points_possible=i.points_possible,
                critical=i.critical,
            )
            for i, o, p in rows
        ),
        scoring_of(call),
    )


def final_outcome(call: Call) -> Outcome:
    """The card's arithmetic over the outcomes that count (final where set)."""
    return outcome_of(
        call,
        (
            (
                i,
                ItemOutcome(i.final_outcome or i.auto_outcome),
                i.auto_points if i.final_points is None else i.final_points,
            )
            for i in call.items
        ),
    )


def week_of(start: datetime | None) -> date | None:
    if start is None:
        return None
    d = start.date()
    return d - timedelta(days=d.weekday())


class CallAccess(UnitOfWork):
    """Reading calls as a given user, and writing them as the pipeline."""

    @staticmethod
    def _can_see_call(user: User, call: Call) -> bool:
        if role_of(user) in auth.SEE_ALL_CALLS:
            return True
        return (
            role_of(user) is UserRole.AGENT
            and user.agent_id is not None
            and call.agent_id == user.agent_id
        )

    def _call(self, s: Session, user: User, call_id: str) -> Call:
        call = s.get(Call, call_id)
        if call is None:
            if role_of(user) in auth.SEE_ALL_CALLS:
                raise NotFoundError(f"call {call_id!r} not found")
            raise AccessDenied(f"{NOT_PERMITTED}: {call_id!r}")
        if not self._can_see_call(user, call):
            raise AccessDenied(f"{NOT_PERMITTED}: {call_id!r}")
        return call

    def _sync(self, s: Session, summary: CallSummary) -> Call:
        """Upsert inside the caller's transaction, so a re-score and its audit are one."""
        now = self.now()
        call = s.get(Call, summary.call_id)
        values = summary.model_dump(exclude={"call_id", "items", *DERIVED})
        values["flag_codes"] = "," + "".join(f"{code}," for code in summary.flags)
        if call is None:
            call = Call(call_id=summary.call_id, synced_at=now, **values)
            s.add(call)
            self._audit(
                s, SYSTEM, "call", summary.call_id, "create", "auto_total", None, summary.auto_total
            )
        else:
            tracked = {k: values.pop(k) for k in SYNC_AUDITED}
            for name, value in values.items():
                setattr(call, name, value)
            self._changes(s, SYSTEM, "call", summary.call_id, call, tracked, "sync")
            call.synced_at = now
        existing = {item.item_id: item for item in call.items}
        seen = set()
        for position, summary_item in enumerate(summary.items):
            seen.add(summary_item.item_id)
            item = existing.get(summary_item.item_id)
            if item is None:
                item = CallItem(item_id=summary_item.item_id)
                call.items.append(item)
            item.position = position
            for name, value in summary_item.model_dump(exclude={"item_id"}).items():
                setattr(item, name, value)
            item.auto_outcome = summary_item.auto_outcome.value
        for item_id, item in existing.items():
            if item_id not in seen:
                call.items.remove(item)
                self._audit(
                    s,
                    SYSTEM,
                    "call",
                    summary.call_id,
                    "sync",
                    f"items.{item_id}",
                    item.auto_outcome,
                    None,
                )
        s.flush()
        return call

    def _call_views(self, s: Session, calls: Sequence[Call], user: User | None) -> list[CallView]:
        ids = [c.call_id for c in calls]
        if not ids:
            return []
        submitted: dict[str, int] = defaultdict(int)
        swapped: set[str] = set()
        assigned: dict[str, list[str]] = defaultdict(list)
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            for call_id, n in s.execute(
                select(Review.call_id, func.count(Review.id))
                .where(
                    Review.call_id.in_(chunk),
                    Review.status == ReviewStatus.SUBMITTED.value,
                    Review.self_review.is_(False),
                )
                .group_by(Review.call_id)
            ):
                submitted[call_id] = n
            swapped.update(
                s.scalars(
                    select(RoleOverride.call_id).where(
                        RoleOverride.call_id.in_(chunk), RoleOverride.swapped.is_(True)
                    )
                )
            )
            for call_id, username in s.execute(
                select(Assignment.call_id, User.username)
                .join(User, User.id == Assignment.user_id)
                .where(Assignment.call_id.in_(chunk))
                .order_by(User.username)
            ):
                assigned[call_id].append(username)
        views = [
            self._call_view(c, assigned[c.call_id], submitted[c.call_id], c.call_id in swapped)
            for c in calls
        ]
        if user is not None and role_of(user) is UserRole.INSPECTOR:
            # blind calibration: the lead's decision only after one's own review is in
            done = set(
                s.scalars(
                    select(Review.call_id).where(
                        Review.reviewer_id == user.id,
                        Review.status == ReviewStatus.SUBMITTED.value,
                        Review.call_id.in_([v.call_id for v in views]),
                    )
                )
            )
            views = [v if v.call_id in done else blind(v) for v in views]
        return views

    @staticmethod
    def _call_view(call: Call, assigned: list[str], submitted: int, swapped: bool) -> CallView:
        """The stored summary plus the people's state; old rows get the card's defaults."""
        stored = {n: getattr(call, n) for n in CallView.model_fields if n in Call.__table__.c}
        scoring = scoring_of(call)
        stored.update(
            scoring_mode=scoring.mode,
            auto_fail_zeroes_total=scoring.auto_fail_zeroes_total,
            auto_fail_reasons=list(call.auto_fail_reasons or []),
            flags=list(call.flags or []),
            flag_reasons=list(call.flag_reasons or []),
        )
        return CallView(
            **stored,
            items=[
                CallItemView(**{n: getattr(i, n) for n in CallItemView.model_fields})
                for i in call.items
            ],
            assigned_reviewers=assigned,
            submitted_reviews=submitted,
            role_swapped=swapped,
        )

    def _query_calls(self, s: Session, user: User, filters: CallFilter | None) -> list[Call]:
        f = filters or CallFilter()
        query = self._filtered(select(Call).options(selectinload(Call.items)), user, f)
        query = query.order_by(Call.started_at.desc().nulls_last(), Call.call_id)
        if f.limit is not None:
            query = query.limit(f.limit)
        return list(s.scalars(query))

    def _count_calls(self, s: Session, user: User, filters: CallFilter | None) -> int:
        """How many calls match, counted in SQL (a queue's count needs no rows)."""
        query = self._filtered(select(Call.call_id), user, filters or CallFilter())
        return int(s.scalar(select(func.count()).select_from(query.subquery())) or 0)

    @staticmethod
    def _filtered(query: Select, user: User, f: CallFilter) -> Select:
        if role_of(user) not in auth.SEE_ALL_CALLS:
            if role_of(user) is not UserRole.AGENT or not user.agent_id:
                raise AccessDenied(f"{user.username} ({user.role}) may not list calls")
            query = query.where(Call.agent_id == user.agent_id)
        if f.team is not None:
            query = query.where(Call.team == f.team)
        if f.agent_id is not None:
            query = query.where(Call.agent_id == f.agent_id)
        if f.queue is not None:
            query = query.where(Call.queue == f.queue)
        if f.scorecard_id is not None:
            query = query.where(Call.scorecard_id == f.scorecard_id)
        if f.date_from is not None:
            query = query.where(Call.started_at >= f.date_from)
        if f.date_to is not None:
            query = query.where(Call.started_at < f.date_to)
        total = func.coalesce(Call.final_total, Call.auto_total)
        if f.min_total is not None:
            query = query.where(total >= f.min_total)
        if f.max_total is not None:
            query = query.where(total <= f.max_total)
        if f.passed is not None:
            query = query.where(func.coalesce(Call.final_passed, Call.auto_passed).is_(f.passed))
        if f.reviewed is not None:
            has_review = (
                select(Review.id)
                .where(
                    Review.call_id == Call.call_id,
                    Review.status == ReviewStatus.SUBMITTED.value,
                    Review.self_review.is_(False),
                )
                .exists()
            )
            query = query.where(has_review if f.reviewed else ~has_review)
        if f.finalised is not None:
            changed = (
                Call.final_total.is_not(None)
                | select(CallItem.id)
                .where(CallItem.call_id == Call.call_id, CallItem.final_outcome.is_not(None))
                .exists()
            )
            query = query.where(changed if f.finalised else ~changed)
        if f.assigned_to_me:
            query = query.where(
                select(Assignment.id)
                .where(Assignment.call_id == Call.call_id, Assignment.user_id == user.id)
                .exists()
            )
        if f.flag is not None:
            query = query.where(Call.flag_codes.contains(f",{f.flag},", autoescape=True))
        if f.unassigned is not None:
            anyone = select(Assignment.id).where(Assignment.call_id == Call.call_id).exists()
            query = query.where(~anyone if f.unassigned else anyone)
        if f.flagged is not None:
            query = query.where((Call.flag_codes != ",") if f.flagged else (Call.flag_codes == ","))
        return query
