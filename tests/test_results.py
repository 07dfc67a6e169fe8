"""Which calls are pending, and exactly one result or error record per call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from qa.errors import CorruptAudioError
from qa.pipeline import PIPELINE_VERSION as V
from qa.pipeline import error_record
from qa.results import (
    base_version,
    call_metas,
    latest_result,
    next_revision,
    pending_calls,
    publish_error,
    publish_result,
    revision_number,
)
from qa.schema import CallMeta, CallResult, CallScore, Transcript
from qa.store import Keys, LocalStore

CARDS = {"en_customer_service@1"}


def _meta(call_id: str, day: int) -> CallMeta:
    return CallMeta(
        call_id=call_id,
        agent_id="A1",
        started_at=datetime(2026, 1, day, tzinfo=UTC),
        audio_key=f"calls/{call_id}/audio.wav",
    )


def _result(meta: CallMeta, version: str = V, created: int = 1) -> CallResult:
    score = CallScore(
        call_id=meta.call_id,
        scorecard_id="en_customer_service",
        scorecard_version="1",
        total=90,
        pass_mark=80,
        passed=True,
    )
    return CallResult(
        meta=meta,
        transcript=Transcript(call_id=meta.call_id, language="en", duration=10.0),
        score=score,
        pipeline_version=version,
        scorecard_version="1",
        created_at=datetime(2026, 2, created, tzinfo=UTC),
    )


@pytest.fixture
def store(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store")
    for i, call_id in enumerate(["c3", "c1", "c2"], 1):
        store.put_json(Keys.meta(call_id), _meta(call_id, i))
    return store


def test_pending_lists_unprocessed_calls_oldest_first(store):
    assert [m.call_id for m in pending_calls(store, V, CARDS)] == ["c3", "c1", "c2"]
    assert len(call_metas(store)) == 3


def test_result_and_error_records_remove_calls_from_pending(store):
    publish_result(store, _result(_meta("c1", 2)))
    publish_error(
        store,
        error_record(_meta("c2", 3), "transcribe", CorruptAudioError("truncated", file="c2.wav")),
    )
    assert [m.call_id for m in pending_calls(store, V, CARDS)] == ["c3"]
    assert [m.call_id for m in pending_calls(store, V, CARDS, retry_errors=True)] == ["c3", "c2"]
    # a new pipeline version makes every call pending again; a new scorecard re-scores the
    # calls with results, while bad audio stays an error for the pipeline version
    assert len(pending_calls(store, V + ".next", CARDS)) == 3
    assert [m.call_id for m in pending_calls(store, V, {"en_customer_service@2"})] == ["c3", "c1"]


def test_a_result_replaces_the_error_record_so_a_call_has_exactly_one(store):
    meta = _meta("c2", 3)
    publish_error(store, error_record(meta, "score", RuntimeError("boom")))
    publish_result(store, _result(meta))
    assert not store.exists(Keys.error("c2", V))
    assert list(store.list(Keys.results_prefix("c2"))) == [
        f"results/c2/{V}/en_customer_service@1.json"
    ]
    publish_result(store, _result(meta))  # re-running writes the same key
    assert len(list(store.list(Keys.results_prefix("c2")))) == 1


def test_latest_result_picks_newest_across_versions(store):
    meta = _meta("c1", 2)
    publish_result(store, _result(meta, "1", created=1))
    publish_result(store, _result(meta, "10", created=5))
    assert latest_result(store, "c1").pipeline_version == "10"
    assert latest_result(store, "c3") is None


def test_a_revision_keeps_the_old_result_and_the_call_done(store):
    """A reviewer's role swap stores the call scored again beside the pipeline's result."""
    meta = _meta("c1", 2)
    first = publish_result(store, _result(meta, created=1))
    assert next_revision(store, "c1", V) == f"{V}+r1"
    publish_result(store, _result(meta, next_revision(store, "c1", V), created=2))
    assert next_revision(store, "c1", f"{V}+r1") == f"{V}+r2"
    assert store.exists(first) and latest_result(store, "c1").pipeline_version == f"{V}+r1"
    assert "c1" not in {m.call_id for m in pending_calls(store, V, CARDS)}
    assert (base_version(f"{V}+r12"), revision_number(f"{V}+r12")) == (V, 12)
    assert (base_version("4+rc1"), revision_number("4+rc1")) == ("4+rc1", 0)
    # a new pipeline version processes the call again, from its audio
    assert "c1" in {m.call_id for m in pending_calls(store, V + ".next", CARDS)}


def test_error_record_keeps_user_message_and_locates_bugs():
    meta = _meta("c1", 1)
    user = error_record(meta, "transcribe", CorruptAudioError("truncated data", file="x.wav"))
    assert (user.error_type, user.message, user.file) == (
        "CorruptAudioError",
        "truncated data",
        "x.wav",
    )
    try:
        {}["missing"]
    except KeyError as exc:
        bug = error_record(meta, "score", exc)
    assert bug.error_type == "KeyError" and "test_results.py" in bug.message
