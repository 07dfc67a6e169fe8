"""A call's total, pass and auto-fail from its item outcomes: the one arithmetic for them.

The machine's score (`score_call`), a reviewer's review, a lead's final score, a dispute
decision and the trends all call `outcome`, so a person who confirms every automatic
outcome gets exactly the automatic total (but for a fail held in doubt, below: confirming it
is what fails the call), and a rule changed here changes it everywhere.

- deduction: the total starts at `max_total` and loses what each applicable item did not
  earn (a failed item its points). An N/A item neither adds nor takes away: it keeps its
  points, as on a paper form where the question is struck out.
- weighted: the total is the earned share of the applicable items' weights; N/A items are
  left out of both sides, so calls with fewer applicable items stay comparable.
- A failed critical item fails the call (auto-fail) whatever the total; where the card says
  so (`auto_fail_zeroes_total`) it also scores 0.
- Unless the fail is in doubt (`OutcomeItem.doubt`: the machine did not hear a required
  phrase in a transcript it cannot trust): then the item still loses its points, but the call
  is not failed automatically and not zeroed; it is `held` for a person, whose confirmed fail
  (a review, a final score) carries no doubt and fails the call as any critical fail does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qa.schema import CallScore, ItemOutcome, ItemResult

ScoringMode = Literal["deduction", "weighted"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scoring(_Model):
    """The card's settings the arithmetic needs; stored with every call so that reviews
    and final decisions are totalled as the card that scored the call says."""

    mode: ScoringMode = "deduction"
    pass_mark: float = Field(ge=0)
    max_total: float = Field(default=100.0, gt=0)
    auto_fail_zeroes_total: bool = True

    @classmethod
    def of_card(cls, card: Any) -> Scoring:
        """From a `qa.rules.format.Scorecard`."""
        return cls(
            mode=card.scoring,
            pass_mark=card.pass_mark,
            auto_fail_zeroes_total=card.auto_fail_zeroes_total,
        )

    @classmethod
    def of_score(cls, score: CallScore) -> Scoring:
        """As the card that produced a stored score said."""
        return cls(
            mode=score.scoring,
            pass_mark=score.pass_mark,
            max_total=score.max_total,
            auto_fail_zeroes_total=score.auto_fail_zeroes_total,
        )


class OutcomeItem(_Model):
    """One item as the arithmetic sees it; `points_possible` is what the item is worth on
    the card (points or weight), also when it is N/A."""

    item_id: str
    name: str = ""
    outcome: ItemOutcome
    points_possible: float = Field(ge=0)
    points_awarded: float | None = None  # None: all of it on a pass, nothing otherwise
    critical: bool = False
    reason: str = ""
    # why this fail may be the transcript's fault, not the agent's; empty when it is not in doubt
    doubt: str = ""

    @property
    def earned(self) -> float:
        if self.outcome is ItemOutcome.NA:
            return 0.0
        if self.points_awarded is None:
            return self.points_possible if self.outcome is ItemOutcome.PASS else 0.0
        return min(max(self.points_awarded, 0.0), self.points_possible)


class Outcome(_Model):
    total: float
    max_total: float
    passed: bool
    auto_fail: bool
    reasons: list[str] = Field(default_factory=list)  # one per failed critical item
    # critical items whose fail is in doubt: no auto-fail from them, a person decides
    held: list[str] = Field(default_factory=list)


def outcome(items: Iterable[OutcomeItem], scoring: Scoring) -> Outcome:
    """Total, pass, auto-fail and its reasons of one call (see the module docstring)."""
    items = list(items)
    applicable = [i for i in items if i.outcome is not ItemOutcome.NA]
    if scoring.mode == "deduction":
        total = scoring.max_total - sum(i.points_possible - i.earned for i in applicable)
    else:
        weight = sum(i.points_possible for i in applicable)
        total = (
            scoring.max_total * sum(i.earned for i in applicable) / weight
            if weight > 0
            else scoring.max_total
        )
    total = max(0.0, min(scoring.max_total, round(total, 2)))
    failed_critical = [i for i in applicable if i.critical and i.outcome is ItemOutcome.FAIL]
    reasons = [
        f"{i.name or i.item_id}: {i.reason}" if i.reason else (i.name or i.item_id)
        for i in failed_critical
        if not i.doubt
    ]
    auto_fail = bool(reasons)
    if auto_fail and scoring.auto_fail_zeroes_total:
        total = 0.0
    return Outcome(
        total=total,
        max_total=scoring.max_total,
        passed=not auto_fail and total >= scoring.pass_mark,
        auto_fail=auto_fail,
        reasons=reasons,
        held=[i.name or i.item_id for i in failed_critical if i.doubt],
    )


def outcome_items(
    results: Iterable[ItemResult], doubts: dict[str, str] | None = None
) -> list[OutcomeItem]:
    """The machine's item results as the arithmetic sees them; `doubts` maps the item ids
    whose fail is in doubt to why."""
    doubts = doubts or {}
    return [
        OutcomeItem(
            item_id=r.item_id,
            name=r.name,
            outcome=r.outcome,
            points_possible=r.points_possible,
            points_awarded=r.points_awarded,
            critical=r.critical,
            reason=r.reason,
            doubt=doubts.get(r.item_id, ""),
        )
        for r in results
    ]
