"""`qa rescore`: a new scorecard version applied to stored transcripts, without ASR.

A small store of scripted calls scored with the bundled card is scored again with a copy
whose version is bumped and whose dead-air item is stricter. The ASR model paths point
nowhere, so loading Whisper or the diarizer would fail the run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.config import Settings
from qa.pipeline import PIPELINE_VERSION
from qa.results import RescoreFilter, plan_rescore, publish_result
from qa.rules.scripted import long_call
from qa.schema import CallMeta, CallResult
from qa.scoring.scorecard import SCORECARD_DIR, default_scorecard, score_call
from qa.store import Keys, open_store

PIPELINE = PIPELINE_VERSION
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CALLS = {  # call id -> (team, days after START)
    "c-a1": ("alpha", 0),
    "c-a2": ("alpha", 8),
    "c-b1": ("beta", 1),
    "c-b2": ("beta", 9),
}


def new_card(tmp: Path) -> Path:
    text = (SCORECARD_DIR / "en_customer_service.yaml").read_text(encoding="utf-8")
    assert 'version: "1.2"' in text and "threshold: 30}" in text
    text = text.replace('version: "1.2"', 'version: "1.3"').replace(
        'op: "<=", threshold: 30}', 'op: "<=", threshold: 3}'
    )
    path = tmp / "en_v13.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path) -> Settings:
    """A store, index and workflow database holding the calls scored with card 1.2."""
    from qa.index import Index
    from qa.workflow import open_workflow

    home = tmp_path / "home"
    settings = Settings(
        home=home,
        store_url=f"file://{home / 'store'}",
        database_url=f"sqlite:///{home / 'workflow.db'}",
        asr_model_en=str(tmp_path / "no-whisper"),
        asr_model_multi=str(tmp_path / "no-whisper"),
        models_dir=tmp_path / "no-models-for-asr",
    )
    store, wf = open_store(settings), open_workflow(settings)
    card = default_scorecard("en")
    for n, (call_id, (team, day)) in enumerate(CALLS.items()):
        transcript = long_call(2.0, seed=n, call_id=call_id)
        meta = CallMeta(
            call_id=call_id,
            agent_id=f"A{n}",
            team=team,
            queue="billing",
            started_at=START + timedelta(days=day),
            language="en",
        )
        result = CallResult(
            meta=meta,
            transcript=transcript,
            score=score_call(transcript, meta, card),
            pipeline_version=PIPELINE,
            scorecard_version=card.version,
            created_at=datetime(2026, 11, 20, tzinfo=UTC),
        )
        publish_result(store, result)
        wf.sync_result(result)
        Index(store).append([result])
    return settings


def keys_of(settings: Settings) -> set[str]:
    return set(open_store(settings).list(Keys.RESULTS))


def rescore(settings: Settings, card: Path, **selection) -> object:
    from workers.rescore import run_rescore

    return run_rescore(
        settings, scorecard=card, selection=RescoreFilter(**selection), use_ray=False
    )


def test_rescore_writes_the_new_version_beside_the_old_and_runs_once(site, tmp_path):
    from qa.index import Index
    from qa.workflow import open_workflow

    card = new_card(tmp_path)
    before = keys_of(site)
    summary = rescore(site, card)
    assert (summary.total, summary.done, summary.failed) == (4, 4, 0)
    added = keys_of(site) - before
    assert before <= keys_of(site)  # the old results are kept
    assert added == {Keys.result(c, PIPELINE, "en_customer_service", "1.3") for c in CALLS}
    new = open_store(site).get_json(
        Keys.result("c-a1", PIPELINE, "en_customer_service", "1.3"), CallResult
    )
    assert new.scorecard_version == "1.3" and new.pipeline_version == PIPELINE
    assert "dead_air" in {i.item_id for i in new.score.items}
    old = open_store(site).get_json(
        Keys.result("c-a1", PIPELINE, "en_customer_service", "1.2"), CallResult
    )
    assert [(u.role, u.start, u.text) for u in new.transcript.utterances] == [
        (u.role, u.start, u.text) for u in old.transcript.utterances
    ]  # as stored, not redone
    rows = Index(open_store(site)).query("SELECT call_id, scorecard_version FROM calls")
    assert set(rows["scorecard_version"]) == {"1.3"} and len(rows) == 4
    from dashboard.data import GROUP_COLUMNS, PER_CARD  # the trends page, by scorecard version

    split = Index(open_store(site)).query(
        f"SELECT {GROUP_COLUMNS['scorecard']} AS card, count(*) AS n FROM {PER_CARD} GROUP BY 1"
    )
    assert dict(zip(split["card"], split["n"], strict=True)) == {
        "en_customer_service@1.2": 4,
        "en_customer_service@1.3": 4,
    }
    wf = open_workflow(site)
    admin = wf.add_user(None, "admin1", "admin-password-1", "admin")
    assert {wf.get_call(admin, c).scorecard_version for c in CALLS} == {"1.3"}

    again = rescore(site, card)
    assert (again.total, again.done, again.already) == (0, 0, 4)
    assert keys_of(site) == before | added


@pytest.mark.parametrize(
    "selection, chosen",
    [
        ({"team": "beta"}, {"c-b1", "c-b2"}),
        ({"since": START + timedelta(days=5)}, {"c-a2", "c-b2"}),
        ({"until": START + timedelta(days=5), "team": "alpha"}, {"c-a1"}),
        ({"call_ids": ["c-a2", "c-b1"]}, {"c-a2", "c-b1"}),
    ],
)
def test_selection_by_team_date_and_id(site, selection, chosen):
    plan = plan_rescore(
        open_store(site), lambda lang: "en_customer_service@1.3", RescoreFilter(**selection)
    )
    assert {t.call_id for t in plan.targets} == chosen
    assert all(t.key.endswith("en_customer_service@1.2.json") for t in plan.targets)


def test_unreadable_and_missing_results_are_reported_not_fatal(site, tmp_path):
    store = open_store(site)
    store.put_bytes(
        Keys.result("c-b2", PIPELINE, "en_customer_service", "1.2"), b"{oops", "application/json"
    )
    summary = rescore(site, new_card(tmp_path), call_ids=["c-b1", "c-b2", "c-zz"])
    assert summary.done == 1 and summary.results == ["c-b1"]
    assert set(summary.errors) == {"c-b2", "c-zz"} and summary.failed == 2
    assert "unreadable" in summary.errors["c-b2"]
    assert "no stored result" in summary.errors["c-zz"]


def test_a_bad_scorecard_stops_before_anything_is_scored(site, tmp_path):
    from qa.errors import QAError

    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nversion: 1\nsections: [nope]\n", encoding="utf-8")
    before = keys_of(site)
    with pytest.raises(QAError):
        rescore(site, bad)
    assert keys_of(site) == before


def rescore_app():
    """`qa rescore` as the `qa` command registers it (through the plugin entry point)."""
    import typer

    from workers.cli import register

    app, bench = typer.Typer(), typer.Typer()
    app.callback()(lambda: None)
    register(app, bench)
    return app


@pytest.mark.parametrize(
    "counts, code",
    [
        ({"total": 2, "done": 2}, 0),
        ({"total": 2, "done": 1, "failed": 1}, 1),
        ({"total": 2, "done": 1, "skipped": 1}, 3),
        ({"already": 4}, 0),  # nothing to do
    ],
)
def test_qa_rescore_exit_status(monkeypatch, counts, code):
    import workers.rescore

    monkeypatch.setattr(
        workers.rescore, "run_rescore", lambda *a, **k: workers.rescore.RescoreSummary(**counts)
    )
    result = CliRunner().invoke(rescore_app(), ["rescore"])
    assert result.exit_code == code, result.output
    assert "rescore summary" in result.output
    assert (
        "3    some calls were left for the next run"
        in CliRunner().invoke(rescore_app(), ["rescore", "--help"]).output
    )


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_qa_rescore_on_ray(site, tmp_path, monkeypatch):
    """Through the command and a local Ray with score workers only; the second run finds
    nothing to do."""
    from qa.config import get_settings

    for key, value in {
        "QA_HOME": str(site.home),
        "QA_STORE_URL": site.store_url,
        "QA_DATABASE_URL": site.database_url,
        "QA_ASR_MODEL_EN": site.asr_model_en,
        "QA_ASR_MODEL_MULTI": site.asr_model_multi,
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    card = new_card(tmp_path)
    before = keys_of(site)
    try:
        first = CliRunner().invoke(
            rescore_app(), ["rescore", "--scorecard", str(card), "--team", "alpha"]
        )
        assert first.exit_code == 0, first.output
        assert keys_of(site) - before == {
            Keys.result(c, PIPELINE, "en_customer_service", "1.3") for c in ("c-a1", "c-a2")
        }
        second = CliRunner().invoke(
            rescore_app(), ["rescore", "--scorecard", str(card), "--team", "alpha"]
        )
        assert second.exit_code == 0, second.output
        assert "2 call(s) already have a result" in second.output
    finally:
        get_settings.cache_clear()
