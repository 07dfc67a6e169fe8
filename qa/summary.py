"""One per-call summary: what the database, the analytics index and the pages know of a call.

`CallSummary.of` is the only place that reads a pipeline result into per-call columns. The
workflow database keeps it as the `calls` / `call_items` rows (plus the people's decisions),
the index writes it as Parquet with the Arrow schema derived from this model, and
`qa.workflow.views.CallView` extends it with the review state. A column added here reaches
all three; `tests/test_summary.py` checks that none of them lags.

Scores here are the machine's (`auto_*`): people's decisions live beside them, never in them,
so the automatic and the human score can always be compared.
"""

from __future__ import annotations

import types
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Any, Literal, Union, get_args, get_origin

import pyarrow as pa
from pydantic import BaseModel, Field, model_validator

from qa.schema import CallMeta, CallResult, CallScore, ItemOutcome, Record, Role, Transcript
from qa.scoring.outcome import ScoringMode

# Derived from the other fields on every validation; stored in the index for SQL, not in
# the database, whose queries do not need them.
DERIVED = frozenset({"week", "flag_count", "items_failed"})


class SummaryItem(Record):
    """One scorecard item as the machine scored it."""

    item_id: str
    name: str = ""
    section: str = ""
    critical: bool = False
    points_possible: float = 0.0
    auto_outcome: ItemOutcome
    auto_points: float = 0.0


class CallSummary(Record):
    """What managers slice by and reviewers start from; the rest stays in the result JSON."""

    call_id: str
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    direction: str = "inbound"
    language: str | None = None
    started_at: datetime | None = None
    duration: float | None = None
    scorecard_id: str = ""
    scorecard_version: str = ""
    pipeline_version: str = ""
    max_total: float = 100.0
    pass_mark: float = 0.0
    scoring_mode: ScoringMode = "deduction"
    auto_fail_zeroes_total: bool = True
    auto_total: float
    auto_passed: bool
    auto_fail: bool = False
    auto_fail_reasons: list[str] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list)  # FlagCode values
    flag_reasons: list[str] = Field(default_factory=list)
    items: list[SummaryItem] = Field(default_factory=list)
    customer_sentiment_mean: float | None = None
    customer_sentiment_end: float | None = None
    agent_sentiment_mean: float | None = None
    role_confidence: float | None = None
    asr_confidence: float | None = None
    longest_silence: float | None = None
    hold_total: float | None = None
    overtalk_total: float | None = None
    processed_at: datetime | None = None
    # derived (DERIVED): recomputed on every validation, so they never disagree
    week: date | None = None  # Monday (UTC) of the call's week, or of processing
    flag_count: int = 0
    items_failed: int = 0

    @model_validator(mode="after")
    def _derive(self) -> CallSummary:
        self.started_at = utc(self.started_at)
        self.processed_at = utc(self.processed_at)
        when = self.started_at or self.processed_at
        self.week = week_of(when) if when else None
        self.flag_count = len(self.flags)
        self.items_failed = sum(i.auto_outcome == ItemOutcome.FAIL for i in self.items)
        return self

    @classmethod
    def of(
        cls,
        meta: CallMeta,
        score: CallScore,
        *,
        pipeline_version: str = "",
        scorecard_version: str | None = None,
        transcript: Transcript | None = None,
        processed_at: datetime | None = None,
    ) -> CallSummary:
        """The summary of a scored call; without its transcript the confidences stay unknown."""
        if meta.call_id != score.call_id:
            raise ValueError(
                f"metadata is for call {meta.call_id!r} but the score is for {score.call_id!r}"
            )
        sentiment = {s.role: s for s in score.sentiment}
        customer, agent = sentiment.get(Role.CUSTOMER), sentiment.get(Role.AGENT)
        metrics = score.metrics
        tr = transcript
        return cls(
            call_id=meta.call_id,
            agent_id=meta.agent_id,
            team=meta.team,
            queue=meta.queue,
            direction=meta.direction.value,
            language=(tr.language if tr else None) or meta.language,
            started_at=meta.started_at,
            duration=(tr.duration if tr else None) or meta.duration,
            scorecard_id=score.scorecard_id,
            scorecard_version=scorecard_version or score.scorecard_version,
            pipeline_version=pipeline_version,
            max_total=score.max_total,
            pass_mark=score.pass_mark,
            scoring_mode=score.scoring,
            auto_fail_zeroes_total=score.auto_fail_zeroes_total,
            auto_total=score.total,
            auto_passed=score.passed,
            auto_fail=score.auto_fail,
            auto_fail_reasons=list(score.auto_fail_reasons),
            flags=[f.code.value for f in score.flags],
            flag_reasons=[f.reason for f in score.flags],
            items=[
                SummaryItem(
                    item_id=i.item_id,
                    name=i.name,
                    section=i.section,
                    critical=i.critical,
                    points_possible=i.points_possible,
                    auto_outcome=i.outcome,
                    auto_points=i.points_awarded,
                )
                for i in score.items
            ],
            customer_sentiment_mean=customer.mean if customer else None,
            customer_sentiment_end=customer.end if customer else None,
            agent_sentiment_mean=agent.mean if agent else None,
            role_confidence=tr.roles.confidence if tr else None,
            asr_confidence=tr.asr_confidence if tr else None,
            longest_silence=metrics.longest_silence if metrics else None,
            hold_total=metrics.hold_total if metrics else None,
            overtalk_total=metrics.overtalk_total if metrics else None,
            processed_at=processed_at or datetime.now(UTC),
        )

    @classmethod
    def from_result(cls, result: CallResult) -> CallSummary:
        return cls.of(
            result.meta,
            result.score,
            pipeline_version=result.pipeline_version,
            scorecard_version=result.scorecard_version,
            transcript=result.transcript,
            processed_at=result.created_at,
        )


def utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def week_of(when: datetime) -> date:
    d = utc(when).date()  # type: ignore[union-attr]
    return d - timedelta(days=d.weekday())


# --------------------------------------------------------------------------- Arrow

TS = pa.timestamp("us", tz="UTC")


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of a field annotation (optional types are nullable columns)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return arrow_type(inner)
    if origin is list:
        return pa.list_(arrow_type(get_args(annotation)[0]))
    if origin is Literal:
        return pa.string()
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return pa.struct(
                [(n, arrow_type(f.annotation)) for n, f in annotation.model_fields.items()]
            )
        for kind, arrow in (
            (bool, pa.bool_()),  # before int: bool is an int
            (int, pa.int32()),
            (float, pa.float64()),
            (str, pa.string()),  # StrEnum too
            (datetime, TS),  # before date: datetime is a date
            (date, pa.date32()),
        ):
            if issubclass(annotation, kind):
                return arrow
    raise TypeError(f"no Arrow type for {annotation!r}")


SCHEMA = pa.schema([(n, arrow_type(f.annotation)) for n, f in CallSummary.model_fields.items()])
ITEM_TYPE = arrow_type(SummaryItem)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def to_arrow(rows: list[CallSummary]) -> pa.Table:
    return pa.Table.from_pylist([_plain(r.model_dump()) for r in rows], schema=SCHEMA)
