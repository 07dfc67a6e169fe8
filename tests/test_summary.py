"""One per-call summary: the database, the index and the views carry the same fields."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from qa.index import Index
from qa.schema import (
    CallMeta,
    CallMetrics,
    CallResult,
    CallScore,
    Flag,
    FlagCode,
    ItemOutcome,
    ItemResult,
    Role,
    RoleAssignment,
    SentimentSummary,
    Transcript,
)
from qa.store import LocalStore
from qa.summary import DERIVED, SCHEMA, CallSummary, SummaryItem, arrow_type
from qa.workflow import Workflow
from qa.workflow.models import Call, CallItem
from qa.workflow.views import CallItemView, CallView

T0 = datetime(2026, 3, 4, 9, 30, tzinfo=UTC)  # a Wednesday


def a_result() -> CallResult:
    items = [
        ItemResult(
            item_id="verify",
            name="Identity verified",
            section="Compliance",
            outcome=ItemOutcome.FAIL,
            critical=True,
            points_possible=40,
            points_awarded=0,
        ),
        ItemResult(
            item_id="greet",
            name="Greeting",
            outcome=ItemOutcome.PASS,
            points_possible=60,
            points_awarded=60,
        ),
    ]
    return CallResult(
        meta=CallMeta(call_id="s1", agent_id="A1", team="red", queue="billing", started_at=T0),
        transcript=Transcript(
            call_id="s1",
            language="en",
            duration=95.0,
            roles=RoleAssignment(confidence=0.62),
            asr_confidence=0.81,
        ),
        score=CallScore(
            call_id="s1",
            scorecard_id="en_cs",
            scorecard_version="3",
            total=0.0,
            pass_mark=80,
            passed=False,
            auto_fail=True,
            scoring="weighted",
            auto_fail_reasons=["critical item 'Identity verified' failed"],
            items=items,
            flags=[
                Flag(code=FlagCode.AUTO_FAIL, reason="critical item failed"),
                Flag(code=FlagCode.LOW_ROLE_CONFIDENCE, reason="roles 0.62"),
            ],
            metrics=CallMetrics(duration=95.0, longest_silence=7.5, hold_total=0, overtalk_total=2),
            sentiment=[
                SentimentSummary(role=Role.CUSTOMER, start=0.1, end=-0.4, mean=-0.1, trend=-0.2)
            ],
        ),
        pipeline_version="4",
        scorecard_version="3",
        created_at=datetime(2026, 3, 4, 10, 0, tzinfo=UTC),
    )


def test_every_store_of_the_summary_has_its_fields():
    stored = set(CallSummary.model_fields) - DERIVED - {"call_id", "items"}
    assert stored <= set(Call.__table__.c.keys()), "the calls table lacks summary columns"
    assert set(SummaryItem.model_fields) <= set(CallItem.__table__.c.keys())
    assert SCHEMA.names == list(CallSummary.model_fields)
    assert issubclass(CallView, CallSummary) and issubclass(CallItemView, SummaryItem)


def test_summary_of_a_result():
    s = CallSummary.from_result(a_result())
    assert (s.auto_total, s.auto_passed, s.auto_fail, s.scoring_mode) == (
        0.0,
        False,
        True,
        "weighted",
    )
    assert s.flags == ["auto_fail", "low_role_confidence"] and s.flag_count == 2
    assert s.items_failed == 1 and s.items[0].name == "Identity verified"
    assert s.week == date(2026, 3, 2)
    assert (s.role_confidence, s.asr_confidence, s.longest_silence) == (0.62, 0.81, 7.5)
    assert s.customer_sentiment_end == -0.4 and s.agent_sentiment_mean is None
    # derived fields cannot be set to disagree
    assert CallSummary.model_validate({**s.model_dump(), "flag_count": 9}).flag_count == 2


@pytest.mark.parametrize(
    "annotation,expected",
    [(bool, "bool"), (int | None, "int32"), (list[str], "list<item: string>")],
)
def test_arrow_types(annotation, expected):
    assert str(arrow_type(annotation)) == expected


def test_database_index_and_view_agree(database_url, tmp_path):
    result = a_result()
    summary = CallSummary.from_result(result)
    wf = Workflow(database_url)
    view = wf.sync_result(result)
    assert view.summary() == summary
    index = Index(LocalStore(tmp_path / "store"))
    index.append([result])
    row = index.query("SELECT * FROM calls").to_dict("records")[0]
    assert row["auto_total"] == view.auto_total and row["items"][0]["name"] == "Identity verified"
    assert row["role_confidence"] == view.role_confidence == 0.62
    assert row["flag_reasons"].tolist() == view.flag_reasons
