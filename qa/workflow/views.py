"""Pydantic records the workflow API takes and returns.

Pages get plain values, never ORM objects, so nothing loads lazily after the database
session that read it has closed, and a page cannot write by mutating what it was given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from qa.schema import ItemOutcome
from qa.scoring.outcome import Outcome, OutcomeItem, Scoring, outcome
from qa.summary import CallSummary, SummaryItem
from qa.workflow.inputs import LIMITS, Checked


class View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class UserRole(StrEnum):
    AGENT = "agent"
    INSPECTOR = "inspector"
    LEAD = "lead"
    MANAGER = "manager"
    ADMIN = "admin"


class ReviewStatus(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"


class DisputeStatus(StrEnum):
    OPEN = "open"
    UPHELD = "upheld"  # the disputed score stands
    OVERTURNED = "overturned"  # the disputed score is changed


class CoachingStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    COMPLETED = "completed"


class CaseKind(StrEnum):
    GOOD_EXAMPLE = "good_example"
    COMMON_MISTAKE = "common_mistake"


# --------------------------------------------------------------------------- users


class UserView(View):
    """The acting user; every service method takes one first and checks it against the DB."""

    id: int
    username: str
    display_name: str
    role: UserRole
    team: str | None = None
    agent_id: str | None = None
    active: bool = True


# --------------------------------------------------------------------------- calls


class CallFilter(View):
    """What a call list is narrowed to; every field left None means "any"."""

    team: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    date_from: datetime | None = None  # started_at >= date_from
    date_to: datetime | None = None  # started_at < date_to
    flag: str | None = None  # a FlagCode value
    flagged: bool | None = None  # any flag at all
    min_total: float | None = None  # on the final-or-automatic total
    max_total: float | None = None
    passed: bool | None = None  # final-or-automatic pass
    reviewed: bool | None = None  # has a submitted review by an inspector or lead
    finalised: bool | None = None  # a lead's final score or an overturned item changed it
    assigned_to_me: bool = False
    unassigned: bool | None = None  # True: nobody is assigned to review it
    scorecard_id: str | None = None
    limit: int | None = Field(default=None, ge=1)


class CallItemView(SummaryItem):
    final_outcome: ItemOutcome | None = None  # set by a lead or an overturned dispute
    final_points: float | None = None
    final_comment: str | None = None  # the lead's feedback, published with the final score

    @property
    def outcome(self) -> ItemOutcome:
        """The outcome that counts: the lead's decision when there is one."""
        return self.final_outcome or self.auto_outcome

    @property
    def points(self) -> float:
        return self.auto_points if self.final_points is None else self.final_points


class CallView(CallSummary):
    """A call as a page shows it: the machine's summary, then what people decided."""

    items: list[CallItemView] = Field(default_factory=list)  # type: ignore[assignment]
    final_total: float | None = None
    final_passed: bool | None = None
    final_auto_fail: bool | None = None  # a critical item fails after the final outcomes
    final_note: str | None = None
    final_by_hand: bool = False  # the lead typed the total instead of the card's arithmetic
    final_by: str | None = None
    final_at: datetime | None = None
    assigned_reviewers: list[str] = Field(default_factory=list)  # usernames
    submitted_reviews: int = 0  # by inspectors and leads (self-reviews not counted)
    acknowledged_at: datetime | None = None
    role_swapped: bool = False
    synced_at: datetime | None = None

    def summary(self) -> CallSummary:
        """The machine's part alone, as the pipeline summarised the call."""
        return CallSummary(
            **self.model_dump(include=set(CallSummary.model_fields) - {"items"}),
            items=[
                SummaryItem(**i.model_dump(include=set(SummaryItem.model_fields)))
                for i in self.items
            ],
        )

    @property
    def total(self) -> float:
        """The total that counts: final after calibration, automatic until then."""
        return self.auto_total if self.final_total is None else self.final_total

    @property
    def passed(self) -> bool:
        return self.auto_passed if self.final_passed is None else self.final_passed

    @property
    def failed_critical(self) -> bool:
        """The auto-fail that counts: over the final outcomes once a person changed one."""
        return self.auto_fail if self.final_auto_fail is None else self.final_auto_fail

    @property
    def scoring(self) -> Scoring:
        return Scoring(
            mode=self.scoring_mode,
            pass_mark=self.pass_mark,
            max_total=self.max_total,
            auto_fail_zeroes_total=self.auto_fail_zeroes_total,
        )

    def outcome_of(self, outcomes: Mapping[str, ItemOutcome | str]) -> Outcome:
        """What the card makes of these item outcomes (items not named keep the outcome
        that counts now), e.g. to suggest a lead's final total before it is set."""
        return outcome(
            (
                OutcomeItem(
                    item_id=i.item_id,
                    name=i.name,
                    critical=i.critical,
                    points_possible=i.points_possible,
                    outcome=ItemOutcome(outcomes.get(i.item_id, i.outcome)),
                    points_awarded=None if i.item_id in outcomes else i.points,
                )
                for i in self.items
            ),
            self.scoring,
        )

    @property
    def reviewed(self) -> bool:
        return self.submitted_reviews > 0


# --------------------------------------------------------------------------- reviews


class ReviewItemInput(Checked):
    """One item of a review; points default to full marks on pass and zero otherwise.

    A refused value (a comment past its limit) raises `InvalidInput`, a QAError, so the
    page that builds one shows the message instead of a traceback."""

    what: ClassVar[str] = "review item"

    item_id: str = Field(max_length=LIMITS["item_id"])
    outcome: ItemOutcome
    points: float | None = None
    comment: str = Field(default="", max_length=LIMITS["item_comment"])


class ReviewItemView(View):
    item_id: str
    outcome: ItemOutcome
    points: float
    comment: str = ""


class ReviewView(View):
    id: int
    call_id: str
    reviewer: str  # username
    reviewer_name: str
    reviewer_role: UserRole
    self_review: bool
    status: ReviewStatus
    version: int  # pass back as expected_version on the next save
    revision: int  # bumped each time a lead reopens a submitted review
    items: list[ReviewItemView] = Field(default_factory=list)
    total: float
    passed: bool
    comment: str = ""
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None


# --------------------------------------------------------------------------- calibration


class CalibrationItem(View):
    item_id: str
    name: str
    critical: bool = False
    points_possible: float = 0.0
    auto_outcome: ItemOutcome
    final_outcome: ItemOutcome | None = None
    outcomes: dict[str, ItemOutcome] = Field(default_factory=dict)  # reviewer -> outcome
    points: dict[str, float] = Field(default_factory=dict)  # reviewer -> points
    majority: ItemOutcome | None = None  # None on a tie
    tie: bool = False  # as many reviewers said one outcome as another
    agreement: float | None = None  # share of reviewers giving the most common outcome
    all_agree: bool = False
    auto_agreement: float | None = None  # share of reviewers agreeing with the automatic outcome
    points_spread: float = 0.0  # max - min points among reviewers
    comments: dict[str, str] = Field(default_factory=dict)  # reviewer -> comment on the item
    final_comment: str | None = None  # the lead's published feedback on the item


class CalibrationView(View):
    call_id: str
    reviewers: list[str] = Field(default_factory=list)  # inspectors and leads, counted
    self_reviewer: str | None = None  # the agent's submitted self-review, shown not counted
    totals: dict[str, float] = Field(default_factory=dict)  # reviewer -> review total
    auto_total: float
    final_total: float | None = None
    score_spread: float = 0.0  # max - min review total
    items: list[CalibrationItem] = Field(default_factory=list)
    agreement: float | None = None  # mean item agreement
    comments: dict[str, str] = Field(default_factory=dict)  # reviewer -> review comment


class ReviewerAgreement(View):
    reviewer: str
    reviews: int
    alpha_vs_others: float | None = None  # reviewer vs the others' majority, per (call, item)
    agreement_vs_others: float | None = None
    alpha_vs_final: float | None = None  # reviewer vs final-or-automatic outcome
    agreement_vs_final: float | None = None
    agreement_vs_auto: float | None = None


class ItemAgreement(View):
    scorecard_id: str = ""
    item_id: str
    name: str
    alpha: float | None = None  # across reviewers, units = calls
    auto_human_agreement: float | None = None
    ratings: int = 0


class AgreementStats(View):
    """Krippendorff's alpha (nominal); None where it is undefined (one value, one rater)."""

    calls: int
    reviews: int
    alpha: float | None = None  # units = (call, item)
    auto_human_agreement: float | None = None  # share of human item outcomes equal to auto
    items: list[ItemAgreement] = Field(default_factory=list)
    reviewers: list[ReviewerAgreement] = Field(default_factory=list)


# --------------------------------------------------------------------------- disputes, coaching


class DisputeView(View):
    id: int
    call_id: str
    item_id: str
    agent_id: str | None = None
    opened_by: str
    reason: str
    status: DisputeStatus
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    created_at: datetime
    outcome_before: ItemOutcome | None = None
    outcome_after: ItemOutcome | None = None


class CoachingView(View):
    id: int
    agent_id: str
    created_by: str
    created_at: datetime
    session_at: datetime  # the coaching date: the effect compares calls before and after it
    call_ids: list[str] = Field(default_factory=list)
    item_ids: list[str] = Field(default_factory=list)
    item_names: dict[str, str] = Field(default_factory=dict)  # item id -> name on its card
    notes: str = ""
    due: date | None = None
    acknowledged_at: datetime | None = None
    follow_up_notes: str | None = None
    follow_up_date: date | None = None
    status: CoachingStatus


class ItemEffect(View):
    item_id: str
    name: str = ""
    before_rate: float | None = None
    after_rate: float | None = None
    before_n: int = 0
    after_n: int = 0


class CoachingEffect(View):
    """Pass rate on the coached items over the agent's calls before vs after the session."""

    coaching_id: int
    agent_id: str
    session_at: datetime
    before_calls: int
    after_calls: int
    before_rate: float | None = None  # passes / (passes + fails); na items are not counted
    after_rate: float | None = None
    change: float | None = None  # after - before
    items: list[ItemEffect] = Field(default_factory=list)


class CaseView(View):
    id: int
    call_id: str
    kind: CaseKind
    title: str
    notes: str = ""
    tags: list[str] = Field(default_factory=list)
    created_by: str
    created_at: datetime


class AuditView(View):
    id: int
    at: datetime
    actor: str
    entity: str
    entity_id: str
    action: str
    field: str | None = None
    old_value: str | None = None
    new_value: str | None = None


class FinalOutcomeRow(View):
    """One call as the trends see it: the lead's and disputes' decisions, else automatic."""

    call_id: str
    team: str | None = None
    agent_id: str | None = None
    queue: str | None = None
    scorecard_id: str = ""
    started_at: datetime | None = None
    week: date | None = None  # Monday of the ISO week the call started in
    total: float
    passed: bool
    auto_total: float
    auto_passed: bool
    auto_fail: bool = False  # the one that counts: over the final outcomes when set
    finalised: bool = False  # a lead set the final score or a dispute changed it
    items: dict[str, ItemOutcome] = Field(default_factory=dict)
