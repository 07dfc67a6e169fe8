"""The Ray pipeline on real models, a real Ray, and a real S3 server.

Faults are real too: a transcribe actor's process is killed with SIGKILL mid-run, and the S3
server is stopped while calls are in flight. Afterwards every call has exactly one result or
error record, and running again finishes what was left.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
from pathlib import Path

import pytest

from qa.config import Settings
from qa.pipeline import PIPELINE_VERSION
from qa.results import call_metas, done_calls, failed_calls
from qa.store import Keys, open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]
pytest_plugins = ["s3server"]

CALLS = {  # script -> recording variant
    "nw_no_disclosure_no_verification": "stereo_8k",
    "nw_address_change": "mono_16k",
    "bf_zh_outage_violations": "stereo_8k",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, request) -> dict[str, Path]:
    from fixtures_demo import synth_cache

    from qa.synth import render_all

    calls = render_all(synth_cache(request, tmp_path_factory), names=list(CALLS))
    return {c.call_id: Path(c.files[CALLS[c.call_id]]) for c in calls}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from workers.runner import ray_init

    ray_init(None)
    yield
    ray.shutdown()


def ingest_calls(settings: Settings, rendered: dict[str, Path], tmp: Path) -> None:
    from qa.ingest import ingest

    inbox = tmp / "inbox"
    inbox.mkdir(parents=True)
    with (inbox / "meta.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "call_id", "agent_id", "language", "channels"])
        for call_id, path in rendered.items():
            (inbox / path.name).write_bytes(path.read_bytes())
            stereo = CALLS[call_id].startswith("stereo")
            writer.writerow([path.name, call_id, "A1", "zh" if call_id.startswith("bf_") else "en",
                             "0=agent,1=customer" if stereo else ""])
    report = ingest(open_store(settings), [inbox], inbox / "meta.csv", settings)
    assert not report.rejected, report.rejected


def outcomes(settings: Settings) -> dict[str, int]:
    """Number of result + error records per call: exactly one each is the guarantee."""
    from workers.batch import current_scorecards

    store = open_store(settings)
    counts = {m.call_id: 0 for m in call_metas(store)}
    for call_id in done_calls(store, PIPELINE_VERSION, current_scorecards(settings)):
        counts[call_id] += len(list(store.list(Keys.results_prefix(call_id, PIPELINE_VERSION))))
    for call_id in failed_calls(store, PIPELINE_VERSION):
        counts[call_id] += 1
    return counts


def test_run_survives_a_killed_worker_and_bad_audio(settings, rendered, ray_session, tmp_path):
    from qa.index import Index
    from qa.schema import CallMeta
    from qa.workflow import open_workflow
    from workers.batch import run_batch
    from workers.runner import Runner

    ingest_calls(settings, rendered, tmp_path)
    store = open_store(settings)
    # a recording that passed an older ingest but is corrupt now: bad input is data
    store.put_bytes(Keys.audio("broken", "wav"), b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    store.put_json(Keys.meta("broken"), CallMeta(call_id="broken", language="en",
                                                 audio_key=Keys.audio("broken", "wav")))

    import ray

    runner = Runner(settings)
    runner.start()
    victim = ray.get(runner.transcribe.actors[1].pid.remote())
    killed = threading.Event()

    def kill_once(summary) -> None:  # after the first call, while the victim is mid-call
        if not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)

    try:
        summary = run_batch(settings, runner=runner, on_progress=kill_once)
    finally:
        runner.shutdown()

    assert killed.is_set()
    assert summary.total == 4
    assert summary.done == 3 and summary.failed == 1, summary.errors
    assert "broken" in summary.errors
    assert summary.worker_restarts >= 1
    assert outcomes(settings) == {c: 1 for c in [*CALLS, "broken"]}
    assert Index(store).count() == 3
    wf = open_workflow(settings)
    manager = wf.add_user(None, "mgr", "manager-password", "manager")
    assert {c.call_id for c in wf.list_calls(manager)} == set(CALLS)

    again = run_batch(settings)
    assert again.total == 0  # nothing left: re-running never processes a call twice


def test_s3_outage_mid_run_loses_nothing(s3_settings, s3_server, rendered, ray_session,
                                         tmp_path):
    from workers.batch import run_batch

    ingest_calls(s3_settings, rendered, tmp_path)
    outage = threading.Event()

    def stop_server(summary) -> None:
        if not outage.is_set():
            outage.set()
            s3_server.stop()
            threading.Timer(20.0, s3_server.start).start()

    first = run_batch(s3_settings, on_progress=stop_server)
    assert outage.is_set()
    s3_server.start()  # idempotent when the timer already restarted it
    assert first.total == 3
    second = run_batch(s3_settings)
    assert first.done + second.done == 3  # what the outage left, the second run finished
    assert first.skipped == second.total
    assert outcomes(s3_settings) == {c: 1 for c in CALLS}
    from qa.index import Index

    frame = Index(open_store(s3_settings)).query("SELECT call_id FROM calls")
    assert sorted(frame["call_id"]) == sorted(CALLS)  # the index converged on the results


def test_watch_processes_calls_as_they_arrive(settings, rendered, ray_session, tmp_path):
    from workers.batch import watch

    first, second = "nw_no_disclosure_no_verification", "nw_address_change"
    ingest_calls(settings, {first: rendered[first]}, tmp_path / "a")
    batches = []

    def arrive(summary) -> None:  # a new recording lands while the watcher sleeps
        batches.append(summary)
        if len(batches) == 1:
            ingest_calls(settings, {second: rendered[second]}, tmp_path / "b")

    watch(settings, interval=0.5, max_polls=2, on_batch=arrive)
    assert [b.results for b in batches] == [[first], [second]]
    assert outcomes(settings) == {first: 1, second: 1}
