"""The Ray pipeline on real models, a real Ray, and a real S3 server.

Faults are real too: a transcribe actor's process is killed with SIGKILL mid-run, the S3
server is stopped while calls are in flight, and `qa run` itself is sent SIGTERM or SIGKILL.
Afterwards every call has exactly one result or error record, running again finishes what was
left, and no Ray process of the run survives it.

On a busy machine a call takes minutes, so every wait here is for an event (a call finished,
a process appeared or exited) with a generous ceiling that fails with what it waited for;
the pytest timeout sits above those ceilings, never inside Ray's wait.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.config import Settings
from qa.pipeline import PIPELINE_VERSION
from qa.results import call_metas, done_calls, failed_calls
from qa.store import Keys, open_store

pytest_plugins = ["s3server"]
STALL = 900.0  # seconds without any call finishing before a run counts as stuck
STARTUP = 600.0  # seconds for Ray and the actors' models to come up
RAY = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

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
    from workers.runner import ray_init, ray_stop

    ray_init(None)
    yield
    ray_stop()


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
            writer.writerow(
                [
                    path.name,
                    call_id,
                    "A1",
                    "zh" if call_id.startswith("bf_") else "en",
                    "0=agent,1=customer" if stereo else "",
                ]
            )
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


def wait_for(
    condition: Callable[[], object], what: str, timeout: float, every: float = 0.5
) -> object:
    """The condition's first true value; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def ray_value(ref, what: str, timeout: float = STARTUP):
    """ray.get in short waits, so a slow machine gives a clear failure, not a hang."""
    import ray

    wait_for(lambda: ray.wait([ref], timeout=1.0)[0], what, timeout, every=0)
    return ray.get(ref)


def ray_test(fn: Callable) -> Callable:
    """A test on a real Ray: slow, integration, and a timeout above the waits' ceilings."""
    for mark in reversed(RAY):
        fn = mark(fn)
    return fn


@ray_test
def test_run_survives_a_killed_worker_and_bad_audio(
    settings, rendered, ray_session, tmp_path, capfd
):
    from qa.index import Index
    from qa.schema import CallMeta
    from qa.workflow import open_workflow
    from workers.batch import run_batch
    from workers.runner import Runner

    ingest_calls(settings, rendered, tmp_path)
    store = open_store(settings)
    # a recording that passed an older ingest but is corrupt now: bad input is data
    store.put_bytes(Keys.audio("broken", "wav"), b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    store.put_json(
        Keys.meta("broken"),
        CallMeta(call_id="broken", language="en", audio_key=Keys.audio("broken", "wav")),
    )

    runner = Runner(settings)
    runner.start()
    victim = ray_value(
        runner.transcribe.actors[1].pid.remote(),
        "the second transcribe actor to start (load its models)",
    )
    killed = threading.Event()

    def kill_once(summary) -> None:  # after the first call, while the victim is mid-call
        if not killed.is_set():
            killed.set()
            os.kill(victim, signal.SIGKILL)

    try:
        summary = run_batch(settings, runner=runner, on_progress=kill_once, stall_timeout=STALL)
    finally:
        runner.shutdown()

    assert killed.is_set()
    # the death is told in the product's words, naming the call; not Ray's "OOM" guess
    deaths = [n for n in summary.notices if f"(pid {victim}, exit signal not reported" in n]
    assert len(deaths) == 1, summary.notices
    assert deaths[0].startswith("transcribe worker process for call ")
    assert deaths[0].endswith("the call is tried again on a new worker (attempt 2 of 3)")
    printed = capfd.readouterr()
    assert deaths[0].split(" died")[0] in printed.out
    assert "OOM" not in printed.out + printed.err
    assert "A worker died or was killed" not in printed.out + printed.err
    assert summary.total == 4
    assert summary.done == 3 and summary.failed == 1, summary.errors
    assert "broken" in summary.errors
    assert summary.worker_restarts >= 1
    assert outcomes(settings) == {c: 1 for c in [*CALLS, "broken"]}
    # each scored call has its redacted copy to play; originals are deleted (the default),
    # except the failed call's, kept for a retry
    from qa.pipeline import PIPELINE_VERSION

    assert all(store.exists(Keys.playable(c, PIPELINE_VERSION)) for c in CALLS)
    assert list(store.list(Keys.ORIGINALS)) == [Keys.audio("broken", "wav")]
    assert Index(store).count() == 3
    wf = open_workflow(settings)
    manager = wf.add_user(None, "mgr", "manager-password", "manager")
    assert {c.call_id for c in wf.list_calls(manager)} == set(CALLS)

    again = run_batch(settings)
    assert again.total == 0  # nothing left: re-running never processes a call twice


@ray_test
def test_a_stalled_run_fails_naming_what_it_waited_for(settings, rendered, ray_session, tmp_path):
    from workers.batch import run_batch
    from workers.runner import Runner, RunStalledError

    first = "nw_address_change"
    ingest_calls(settings, {first: rendered[first]}, tmp_path)
    runner = Runner(settings, transcribers=1)
    runner.start()
    try:  # loading the models alone takes longer than this
        with pytest.raises(RunStalledError, match=f"waiting for transcribe of {first}$"):
            run_batch(settings, runner=runner, stall_timeout=0.5)
    finally:
        runner.shutdown()


@ray_test
def test_s3_outage_mid_run_loses_nothing(s3_settings, s3_server, rendered, ray_session, tmp_path):
    from workers.batch import run_batch

    ingest_calls(s3_settings, rendered, tmp_path)
    outage, back = threading.Event(), threading.Event()
    restart = threading.Thread(target=lambda: (back.wait(), s3_server.start()))
    restart.start()

    def outage_until_a_call_is_left(summary) -> None:
        if not outage.is_set():  # the first call is in: the store goes away
            outage.set()
            s3_server.stop()
        elif summary.skipped and not back.is_set():  # the outage cost a call: it comes back
            back.set()

    try:
        first = run_batch(s3_settings, on_progress=outage_until_a_call_is_left, stall_timeout=STALL)
    finally:
        back.set()
        restart.join()
    assert outage.is_set()
    s3_server.start()  # idempotent
    assert first.total == 3
    assert first.skipped >= 1, first  # the outage did leave calls for the next run
    second = run_batch(s3_settings, stall_timeout=STALL)
    assert first.done + second.done == 3  # what the outage left, the second run finished
    assert first.skipped == second.total
    assert outcomes(s3_settings) == {c: 1 for c in CALLS}
    from qa.index import Index

    frame = Index(open_store(s3_settings)).query("SELECT call_id FROM calls")
    assert sorted(frame["call_id"]) == sorted(CALLS)  # the index converged on the results


@ray_test
def test_watch_processes_calls_as_they_arrive(settings, rendered, ray_session, tmp_path):
    from workers.batch import watch

    first, second = "nw_no_disclosure_no_verification", "nw_address_change"
    ingest_calls(settings, {first: rendered[first]}, tmp_path / "a")
    batches = []

    def arrive(summary) -> None:  # a new recording lands while the watcher sleeps
        batches.append(summary)
        if len(batches) == 1:
            ingest_calls(settings, {second: rendered[second]}, tmp_path / "b")

    watch(settings, interval=0.5, max_polls=2, on_batch=arrive, stall_timeout=STALL)
    assert [b.results for b in batches] == [[first], [second]]
    assert outcomes(settings) == {first: 1, second: 1}


# --------------------------------------------------------------------------- qa run


def run_app():
    """`qa run` as the `qa` command registers it (through the plugin entry point)."""
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
        ({"total": 3, "done": 1, "failed": 1, "skipped": 1}, 3),  # run again first
        ({}, 0),  # nothing to do
    ],
)
def test_qa_run_exit_status(monkeypatch, counts, code):
    import workers.batch
    from workers.runner import RunSummary

    monkeypatch.setattr(workers.batch, "run_batch", lambda *a, **k: RunSummary(**counts))
    result = CliRunner().invoke(run_app(), ["run"])
    assert result.exit_code == code, result.output
    assert (
        "3    some calls were left for the next run"
        in CliRunner().invoke(run_app(), ["run", "--help"]).output
    )


def test_qa_run_with_the_store_unreachable_exits_3(tmp_path, monkeypatch):
    """Nothing can be listed: every call is left for the next run; Ray is never started."""
    for key, value in {
        "QA_HOME": str(tmp_path / "home"),
        "QA_STORE_URL": "s3://calls",
        "QA_S3_ENDPOINT": "127.0.0.1:9",
        "QA_S3_ACCESS_KEY": "key",
        "QA_S3_SECRET_KEY": "secret-key",
    }.items():
        monkeypatch.setenv(key, value)
    from qa.config import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(run_app(), ["run"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 3, result.output
    assert "every call is left for the next run" in " ".join(result.output.split())


RAY_PROCESSES = ("gcs_server", "raylet", "DashboardAgent", "RuntimeEnvAgent", "TranscribeActor")


@ray_test
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_qa_run_leaves_no_ray_process_behind(sig, rendered, tmp_path):
    """`qa run` is stopped mid-run: with SIGTERM it exits promptly (143), leaving the calls
    in flight for the next run; with SIGKILL its watchdog stops what Ray left. Either way
    no process the run started survives: not the raylet, not Ray's agents, not a worker."""
    import psutil

    home = tmp_path / "home"
    settings = Settings(home=home)
    ingest_calls(settings, rendered, tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "QA_RAY_ADDRESS", "QA_STORE_URL", "QA_DATABASE_URL")
    }
    env.update(QA_HOME=str(home), HF_HUB_OFFLINE="1", PYANNOTE_METRICS_ENABLED="0")
    log_path = tmp_path / "run.log"
    started: dict[int, tuple[psutil.Process, str]] = {}  # pid -> process, last name seen
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("qa")), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    driver = psutil.Process(proc.pid)

    def names() -> set[str]:
        return {name for _, name in started.values()}

    def ray_is_up() -> bool:
        if proc.poll() is not None:
            pytest.fail(
                f"qa run exited ({proc.returncode}) before it was stopped:\n" + log_path.read_text()
            )
        try:
            for child in driver.children(recursive=True):
                started[child.pid] = (started.get(child.pid, (child,))[0], child.name())
        except psutil.Error:
            pass
        return all(any(wanted in n for n in names()) for wanted in RAY_PROCESSES)

    def survivors() -> list[str]:
        return [
            f"{name} (pid {p.pid})"
            for p, name in started.values()
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]

    try:
        wait_for(
            ray_is_up,
            f"qa run to start Ray and its transcribe actors {RAY_PROCESSES}",
            STARTUP,
            every=0.2,
        )
        sent = time.monotonic()
        proc.send_signal(sig)
        wait_for(
            lambda: proc.poll() is not None,
            f"qa run to exit after {sig.name} (still running: {survivors()})",
            120,
        )
        took = time.monotonic() - sent
        wait_for(
            lambda: not survivors(),
            f"the processes qa run started to exit (left: {survivors()})",
            60,
        )
    finally:
        proc.kill()
        for p, _ in started.values():
            with contextlib.suppress(psutil.Error):
                p.kill()
    output = " ".join(log_path.read_text().split())
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM, output
        assert took < 120
        assert "call(s) left for the next run (stopped)" in output, output
    else:
        assert proc.returncode == -signal.SIGKILL
    counts = outcomes(settings)
    assert set(counts.values()) <= {0, 1} and 0 in counts.values(), counts  # left, not lost
