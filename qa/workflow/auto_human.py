"""The automatic score beside the human one, and how far people agree with the machine.

Kept apart as Zendesk QA keeps AQS and IQS: the automatic outcome is what the pipeline
said; the human outcome is a lead's final decision where one was set, else the majority of
the submitted reviews by inspectors and leads. The agent's self-review is left out: it is
the agent's view, not a check of the machine. A tie counts as a fail, so a split panel
never makes the human pass rate look better than the people said.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from qa.errors import QAError
from qa.schema import ItemOutcome
from qa.workflow import auth
from qa.workflow.access import CallAccess, week_of
from qa.workflow.actions import Tx, action
from qa.workflow.models import Call, Review
from qa.workflow.views import CallFilter, ReviewStatus, View

GROUPS = ("team", "agent_id", "queue", "scorecard")
# a tie between outcomes goes to the first in this order
TIE_ORDER = (ItemOutcome.FAIL, ItemOutcome.PASS, ItemOutcome.NA)


class AutoHumanGroup(View):
    """Automatic vs human pass rate for one (group, week) over the calls a person reviewed."""

    group: str | None = None
    week: date | None = None
    calls: int
    auto_passed: int
    human_passed: int
    auto_pass_rate: float
    human_pass_rate: float
    agree: int  # calls where the human pass equals the automatic pass


class AutoHumanItem(View):
    """How often people keep the automatic outcome of one scorecard item."""

    item_id: str
    name: str
    calls: int  # reviewed calls where a person gave this item an outcome
    agree: int
    agreement: float | None = None  # agree / calls


class AutoHumanStats(View):
    """Automatic (AQS) vs human (IQS) outcomes over the reviewed calls of a selection."""

    calls: int
    auto_pass_rate: float | None = None
    human_pass_rate: float | None = None
    agreement: float | None = None  # share of calls where both say the same pass / fail
    groups: list[AutoHumanGroup] = Field(default_factory=list)
    items: list[AutoHumanItem] = Field(default_factory=list)


def human_majority(outcomes: Iterable[ItemOutcome]) -> ItemOutcome | None:
    """The most common outcome; a tie goes to fail, then pass (`TIE_ORDER`)."""
    counts = Counter(outcomes)
    if not counts:
        return None
    return max(TIE_ORDER, key=lambda o: (counts[o], -TIE_ORDER.index(o)))


def group_of(call: Call, by: str) -> str | None:
    if by == "scorecard":
        return f"{call.scorecard_id}@{call.scorecard_version}"
    return getattr(call, by)


class AutoVsHuman(CallAccess):
    """Automatic vs human pass rates and per-item agreement for managers' trends."""

    @action(auth.TRENDS, "compare automatic and human scores")
    def auto_vs_human(
        self, tx: Tx, filters: CallFilter | None = None, by: str = "team"
    ) -> AutoHumanStats:
        """Over the calls the user may see with the trend filters that a person reviewed
        (a submitted review by an inspector or lead, or a lead's final decision)."""
        if by not in GROUPS:
            raise QAError(f"cannot group by {by!r}; use one of {', '.join(GROUPS)}")
        s = tx.s
        calls = {c.call_id: c for c in self._query_calls(s, tx.user, filters)}
        reviews: dict[str, list[Review]] = defaultdict(list)
        query = (
            select(Review)
            .options(selectinload(Review.items))
            .where(Review.status == ReviewStatus.SUBMITTED.value, Review.self_review.is_(False))
            .order_by(Review.id)
        )
        for r in s.scalars(query):
            if r.call_id in calls:
                reviews[r.call_id].append(r)
        cells: dict[tuple[str | None, date | None], list[tuple[bool, bool]]] = defaultdict(list)
        items: dict[str, list[bool]] = defaultdict(list)
        names: dict[str, str] = {}
        for call_id, call in calls.items():
            rs = reviews.get(call_id, [])
            if call.final_passed is not None:
                human = call.final_passed
            elif rs:
                human = sum(r.passed for r in rs) * 2 > len(rs)  # a tie is a fail
            else:
                continue  # no person looked at this call
            cells[(group_of(call, by), week_of(call.started_at))].append((call.auto_passed, human))
            for ci in call.items:
                decided = ItemOutcome(ci.final_outcome) if ci.final_outcome else None
                said = [
                    ItemOutcome(i.outcome) for r in rs for i in r.items if i.item_id == ci.item_id
                ]
                outcome = decided or human_majority(said)
                if outcome is not None:
                    names.setdefault(ci.item_id, ci.name)
                    items[ci.item_id].append(outcome is ItemOutcome(ci.auto_outcome))
        groups = [
            AutoHumanGroup(
                group=g,
                week=w,
                calls=len(pairs),
                auto_passed=sum(a for a, _ in pairs),
                human_passed=sum(h for _, h in pairs),
                auto_pass_rate=sum(a for a, _ in pairs) / len(pairs),
                human_pass_rate=sum(h for _, h in pairs) / len(pairs),
                agree=sum(a == h for a, h in pairs),
            )
            for (g, w), pairs in sorted(
                cells.items(), key=lambda kv: (str(kv[0][1]), str(kv[0][0]))
            )
        ]
        n = sum(g.calls for g in groups)
        return AutoHumanStats(
            calls=n,
            auto_pass_rate=sum(g.auto_passed for g in groups) / n if n else None,
            human_pass_rate=sum(g.human_passed for g in groups) / n if n else None,
            agreement=sum(g.agree for g in groups) / n if n else None,
            groups=groups,
            items=[
                AutoHumanItem(
                    item_id=item_id,
                    name=names[item_id],
                    calls=len(same),
                    agree=sum(same),
                    agreement=sum(same) / len(same),
                )
                for item_id, same in sorted(items.items())
            ],
        )
