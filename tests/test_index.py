"""Analytics index: rows from results, append/rebuild/compact, dedup, named queries, S3 reads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from typer.testing import CliRunner

from qa.bench.index import synthetic_table
from qa.index import Index, IndexQueryError
from qa.schema import (
    CallMeta,
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
from qa.store import LocalStore, keys, open_store
from qa.summary import CallSummary

pytest_plugins = ["s3server"]

T0 = datetime(2025, 3, 5, 10, 0, tzinfo=UTC)  # a Wednesday


def result(
    call_id: str,
    team: str = "blue",
    agent: str = "a1",
    total: float = 90.0,
    fails: tuple[str, ...] = (),
    started: datetime | None = T0,
    processed: datetime = T0 + timedelta(hours=1),
    pipeline: str = "1.0",
    auto_fail: bool = False,
    flags: tuple[FlagCode, ...] = (),
) -> CallResult:
    items = [
        ItemResult(
            item_id=i,
            name=i,
            outcome=ItemOutcome.FAIL if i in fails else ItemOutcome.PASS,
            points_possible=25,
            points_awarded=0 if i in fails else 25,
            critical=i == "verify",
        )
        for i in ("greet", "verify", "resolve", "close")
    ]
    return CallResult(
        meta=CallMeta(
            call_id=call_id, agent_id=agent, team=team, queue="billing", started_at=started
        ),
        transcript=Transcript(
            call_id=call_id,
            language="en",
            duration=120.0,
            roles=RoleAssignment(confidence=0.9),
            asr_confidence=0.8,
        ),
        score=CallScore(
            call_id=call_id,
            scorecard_id="cs",
            scorecard_version="2",
            total=total,
            pass_mark=80,
            passed=total >= 80 and not auto_fail,
            auto_fail=auto_fail,
            items=items,
            flags=[Flag(code=c, reason="x") for c in flags],
            sentiment=[
                SentimentSummary(role=Role.CUSTOMER, start=0.0, end=-0.5, mean=-0.2, trend=-0.1)
            ],
        ),
        pipeline_version=pipeline,
        scorecard_version="2",
        created_at=processed,
    )


def test_row_from_result():
    row = CallSummary.from_result(
        result("c1", fails=("verify",), total=75, flags=(FlagCode.BELOW_PASS,))
    )
    assert row.week == date(2025, 3, 3)
    assert (row.auto_total, row.auto_passed, row.flags, row.flag_count, row.items_failed) == (
        75,
        False,
        ["below_pass"],
        1,
        1,
    )
    assert row.customer_sentiment_end == -0.5 and row.agent_sentiment_mean is None
    assert row.items[1].item_id == "verify" and row.items[1].critical
    assert row.role_confidence == 0.9 and row.asr_confidence == 0.8
    no_start = CallSummary.from_result(result("c2", started=None))
    assert no_start.started_at is None and no_start.week == date(2025, 3, 3)


def test_append_dedups_latest_and_named_queries(tmp_path):
    index = Index(LocalStore(tmp_path / "s"))
    assert index.count() == 0 and index.trend().empty
    index.append(
        [
            result("c1", team="blue", total=90),
            result(
                "c2",
                team="blue",
                total=60,
                fails=("greet", "resolve"),
                flags=(FlagCode.BELOW_PASS,),
            ),
            result(
                "c3",
                team="red",
                total=0,
                fails=("verify",),
                auto_fail=True,
                flags=(FlagCode.AUTO_FAIL, FlagCode.NEGATIVE_ENDING),
            ),
            result("c4", team="red", total=85, started=T0 + timedelta(days=7)),
        ]
    )
    # c2 reprocessed later with a better score: the newer row wins, the old one is hidden.
    index.append(
        [result("c2", team="blue", total=95, processed=T0 + timedelta(days=1), pipeline="1.1")]
    )
    assert len(index.parts()) == 2
    assert index.count() == 4
    assert index.query("SELECT count(*) AS n FROM calls_all")["n"][0] == 5

    trend = index.trend(by="team", period="week")
    got = {
        (r.period.date() if hasattr(r.period, "date") else r.period, r.team): (
            r.calls,
            r.mean_score,
            r.pass_rate,
            r.auto_fail_rate,
        )
        for r in trend.itertuples()
    }
    assert got == {
        (date(2025, 3, 3), "blue"): (2, 92.5, 1.0, 0.0),
        (date(2025, 3, 3), "red"): (1, 0.0, 0.0, 1.0),
        (date(2025, 3, 10), "red"): (1, 85.0, 1.0, 0.0),
    }
    month = index.trend(by=None, period="month", since=date(2025, 3, 1), until=date(2025, 4, 1))
    assert month["calls"].tolist() == [4]
    assert index.trend(by="agent", team="red")["calls"].sum() == 2

    queue = index.review_queue()
    assert queue["call_id"].tolist() == ["c3"]  # c2's flag was on the superseded row
    assert index.review_queue(flags=["negative_ending"], team="red")["call_id"].tolist() == ["c3"]
    assert index.review_queue(team="blue").empty

    pareto = index.item_pareto()
    assert pareto["item_id"].tolist()[0] == "verify"
    assert pareto.set_index("item_id").loc["verify", "fails"] == 1
    assert pareto["cumulative_share"].iloc[-1] == 1.0 or pareto["fails"].sum() == 1

    with pytest.raises(IndexQueryError, match="group by"):
        index.trend(by="colour")
    with pytest.raises(IndexQueryError, match="filter"):
        index.trend(colour="x")
    with pytest.raises(IndexQueryError, match="index query failed"):
        index.query("SELECT nope FROM calls")


def test_rebuild_and_compact(tmp_path):
    store = LocalStore(tmp_path / "s")
    for r in [
        result("c1"),
        result("c2", total=50),
        result("c2", total=70, pipeline="1.1", processed=T0 + timedelta(days=2)),
    ]:
        store.put_json(keys.result(r.meta.call_id, r.pipeline_version, "cs", "2"), r)
    store.put_bytes(keys.result("c9", "1.0", "cs", "2"), b"{broken")
    index = Index(store)
    index.append([result("stale", total=10)])  # not backed by a result: gone after rebuild
    report = index.rebuild()
    assert (report.results, report.rows, report.parts_removed) == (3, 3, 1)
    assert list(report.skipped) == [keys.result("c9", "1.0", "cs", "2")]
    assert sorted(
        index.query("SELECT call_id, auto_total FROM calls ORDER BY call_id").itertuples(
            index=False, name=None
        )
    ) == [("c1", 90.0), ("c2", 70.0)]

    index.append([result("c3")])
    compacted = index.compact()
    assert (compacted.rows_before, compacted.rows_after, compacted.parts_removed) == (4, 3, 2)
    assert len(index.parts()) == 1 and index.count() == 3


def test_parts_of_an_earlier_release_ask_for_a_rebuild(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = LocalStore(tmp_path / "s")
    store.put_json(keys.result("c1", "1.0", "cs", "2"), result("c1"))
    legacy = pa.table({"call_id": ["c1"], "total": [90.0], "passed": [True]})
    pq.write_table(legacy, tmp_path / "old.parquet")
    store.put_bytes(keys.index_part("part-old.parquet"), (tmp_path / "old.parquet").read_bytes())
    index = Index(store)
    with pytest.raises(IndexQueryError, match="qa index rebuild"):
        index.count()
    index.rebuild()
    assert index.count() == 1


def test_synthetic_rows_fit_the_schema(tmp_path):
    table = synthetic_table(2000, seed=1)
    index = Index(LocalStore(tmp_path / "s"))
    index.append_table(table)
    assert index.count() == 2000
    trend = index.trend("queue", "month")
    assert trend["calls"].sum() == 2000
    assert 0 < trend["pass_rate"].mean() < 1
    pareto = index.item_pareto()
    assert pareto["item_id"].iloc[0] == "item_0"


@pytest.mark.integration
def test_index_on_s3_reads_through_cache(s3_settings, tmp_path):
    store = open_store(s3_settings)
    index = Index(store, cache_dir=tmp_path / "cache")
    index.append([result("c1"), result("c2", team="red")])
    assert index.count() == 2
    assert len(list((tmp_path / "cache").glob("part-*.parquet"))) == 1
    index.append([result("c3")])
    assert Index(store, cache_dir=tmp_path / "cache").count() == 3
    index.compact()
    assert index.count() == 3
    assert len(list((tmp_path / "cache").glob("part-*.parquet"))) == 1  # stale copies pruned


def test_cli_index_commands(tmp_path, monkeypatch):
    from qa import cli
    from qa.cli import app
    from qa.config import Settings, get_settings

    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        store = open_store(Settings())
        for r in [
            result("c1"),
            result("c2", team="red", total=40, flags=(FlagCode.BELOW_PASS,), fails=("close",)),
        ]:
            store.put_json(keys.result(r.meta.call_id, "1.0", "cs", "2"), r)
        runner = CliRunner()
        out = runner.invoke(app, ["index", "rebuild"])
        assert out.exit_code == 0 and "2 rows from 2 results" in out.output, out.output
        out = runner.invoke(app, ["index", "query", "trend", "--by", "team"])
        assert out.exit_code == 0 and "red" in out.output and "blue" in out.output
        out = runner.invoke(app, ["index", "query", "review-queue"])
        assert out.exit_code == 0 and "c2" in out.output and "c1" not in out.output
        csv = tmp_path / "p.csv"
        out = runner.invoke(app, ["index", "query", "item-pareto", "--csv", str(csv)])
        assert out.exit_code == 0 and csv.read_text().startswith("item_id,fails")
        out = runner.invoke(app, ["bench", "index", "--rows", "3000", "--repeat", "1"])
        assert out.exit_code == 0 and "trend by team/week" in out.output, out.output
    finally:
        get_settings.cache_clear()
