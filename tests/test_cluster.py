"""Transcription pinned to the nodes that offer it, on a real two-node Ray cluster.

Both nodes run on this machine, so a local store directory serves them both (a real site
needs S3). The head offers the resource `head`, the second node `asr`; `qa run --address`
with QA_TRANSCRIBE_RESOURCE=asr must give every call a result, and Ray's own record of the
run's actors (the state API, which keeps dead actors) must place every transcribe actor on
the second node. Like a site's cluster, it uses Ray's token authentication: the head, the
node, the driver and the test's state queries share one token (here a new one, passed in
the environment, so ~/.ray/auth_token is neither read nor written). The cluster's
processes are found by its temporary directory and stopped by pid: other Ray instances on
the machine are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_workers import ingest_calls, outcomes, rendered, wait_for  # noqa: F401

from qa.config import Settings

BIN = Path(sys.executable).parent
CLUSTER_CALLS = ("nw_no_disclosure_no_verification", "nw_address_change")
NODE_START = 180.0  # seconds for `ray start` on a busy machine
RUN = 600.0  # seconds for `qa run` on two calls, models loading included


# --------------------------------------------------------------------------- no Ray


def test_transcribe_request_pins_to_the_resource_and_a_gpu():
    from workers.runner import PIN_AMOUNT, actor_options, transcribe_request

    plain = transcribe_request(Settings(), 0.5)
    assert actor_options(plain) == {"num_cpus": 0.5, "num_gpus": 0}
    pinned = transcribe_request(Settings(transcribe_resource="asr", asr_device="cuda"), 0.5)
    assert actor_options(pinned) == {
        "num_cpus": 0.5,
        "num_gpus": 1.0,
        "resources": {"asr": PIN_AMOUNT},
    }


def test_capacity_counts_each_node_on_its_own():
    from workers.runner import capacity

    request = {"CPU": 0.5, "GPU": 1.0, "asr": 0.001}
    nodes = [{"CPU": 16, "GPU": 2, "asr": 1}, {"CPU": 64}, {"CPU": 1, "GPU": 4}]
    assert capacity(request, nodes) == 2  # GPUs without the resource do not count
    assert capacity({"CPU": 0.5}, nodes) == 32 + 128 + 2


def _fake_cluster(monkeypatch, nodes: list[dict[str, float]]):
    import workers.runner
    from workers.runner import Runner

    monkeypatch.setattr(
        workers.runner.ray, "nodes", lambda: [{"Alive": True, "Resources": n} for n in nodes]
    )
    runner = Runner(Settings(transcribe_resource="asr"), transcribers=2)
    runner.transcribe.start = runner.score.start = lambda: None  # no actors: no Ray
    return runner


def test_a_cluster_without_the_resource_is_a_configuration_error(monkeypatch):
    from workers.runner import ClusterMismatchError

    runner = _fake_cluster(monkeypatch, [{"CPU": 8, "head": 1}])
    with pytest.raises(ClusterMismatchError, match="resource 'asr' .QA_TRANSCRIBE_RESOURCE."):
        runner.start()


def test_the_pool_shrinks_to_what_the_cluster_holds(monkeypatch):
    runner = _fake_cluster(monkeypatch, [{"CPU": 8}, {"CPU": 0.5, "asr": 1}])
    runner.start()
    assert runner.transcribe.size == 1
    summary = runner.run([])  # the next run tells it
    assert summary.notices == [
        "the Ray cluster holds 1 of the 2 transcribe workers asked "
        "for (0.5 CPU, resource 'asr' (QA_TRANSCRIBE_RESOURCE)): "
        "running 1"
    ]


# --------------------------------------------------------------------------- a real cluster


def free_ports(n: int) -> list[int]:
    """`n` ports free now (held together while chosen, so they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def node_ports() -> list[str]:
    """Every port a node opens that has a fixed default, chosen free: another Ray on this
    machine (another test, a demo) keeps its own."""
    names = (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    return [f"--{name}={port}" for name, port in zip(names, free_ports(len(names)), strict=True)]


class Cluster:
    """A Ray cluster of nodes started by `ray start` under one temporary directory."""

    def __init__(self) -> None:
        # short and in /tmp: Ray's unix sockets live under it
        self.temp = Path(tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp"))
        self.port, self.dashboard, self.client = free_ports(3)
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "QA_RAY_ADDRESS")
        }
        self.env.update(
            HF_HUB_OFFLINE="1",
            PYANNOTE_METRICS_ENABLED="0",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=secrets.token_hex(32),
        )
        self.seen: dict[int, object] = {}  # pid -> psutil.Process, every one ever found

    def start_node(self, *args: str) -> None:
        log = self.temp / "ray-start.log"
        with log.open("a") as out:
            started = subprocess.run(
                [
                    str(BIN / "ray"),
                    "start",
                    "--num-cpus=1",
                    "--node-ip-address=127.0.0.1",
                    f"--object-store-memory={100 * 2**20}",
                    "--disable-usage-stats",
                    *node_ports(),
                    *args,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=NODE_START,
            )
        self.processes()  # note them while they are running
        assert started.returncode == 0, f"ray start {' '.join(args)} failed:\n{log.read_text()}"

    def start(self) -> None:
        self.start_node(
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.temp}",
            '--resources={"head": 1}',
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard}",
            f"--ray-client-server-port={self.client}",
        )
        self.start_node(f"--address={self.address}", '--resources={"asr": 2}')
        wait_for(
            lambda: len(self.nodes()) == 2, "both Ray nodes to be alive", NODE_START, every=1.0
        )

    def state(self, what: str) -> list[dict]:
        """Ray's record of the cluster's nodes or actors (`ray.util.state.list_<what>`),
        asked from a process with the cluster's token; [] while the dashboard starts."""
        code = (
            "import json, sys, ray.util.state as s\n"
            f"rows = s.list_{what}(address={self.address!r}, detail=True, timeout=30, "
            "raise_on_missing_output=False)\n"
            "json.dump([r.__dict__ for r in rows], sys.stdout)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        return json.loads(done.stdout) if done.returncode == 0 else []

    def nodes(self) -> list[dict]:
        return [n for n in self.state("nodes") if n["state"] == "ALIVE"]

    def processes(self) -> list:
        """The cluster's processes: those naming its directory and all they started
        (workers rename themselves `ray::...`); remembered, so a pid is never guessed."""
        import psutil

        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if str(self.temp) in " ".join(proc.info["cmdline"] or ()):
                    for p in [proc, *proc.children(recursive=True)]:
                        self.seen.setdefault(p.pid, p)
        return [p for p in self.seen.values() if p.is_running()]  # type: ignore[attr-defined]

    def stop(self) -> None:
        import psutil

        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=15)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(alive, timeout=15)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        left = [
            f"{p.name()} (pid {p.pid})"
            for p in cluster.seen.values()
            if p.is_running() and p.status() != "zombie"
        ]  # type: ignore[attr-defined]
        assert not left, f"cluster processes still running: {left}"


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_qa_run_places_transcription_on_the_nodes_that_offer_it(cluster, rendered, tmp_path):  # noqa: F811 (the fixture imported above)
    home = tmp_path / "home"
    settings = Settings(home=home)
    ingest_calls(settings, {c: rendered[c] for c in CLUSTER_CALLS}, tmp_path)
    asr_node = next(n["node_id"] for n in cluster.nodes() if "asr" in n["resources_total"])

    env = {
        k: v
        for k, v in cluster.env.items()
        if k not in ("QA_STORE_URL", "QA_DATABASE_URL", "QA_ASR_DEVICE")
    }
    env.update(QA_HOME=str(home))
    qa_run = [str(BIN / "qa"), "run", "--address", cluster.address]

    # a resource no node offers: a configuration error at once, not a run waiting forever
    wrong = subprocess.run(
        qa_run,
        env={**env, "QA_TRANSCRIBE_RESOURCE": "nowhere"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=RUN,
    )
    told = " ".join((wrong.stdout + wrong.stderr).split())
    assert wrong.returncode == 2, told
    assert "no node of the Ray cluster offers what a transcribe worker asks for" in told
    assert "resource 'nowhere' (QA_TRANSCRIBE_RESOURCE)" in told
    assert outcomes(settings) == {c: 0 for c in CLUSTER_CALLS}

    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            qa_run,
            env={**env, "QA_TRANSCRIBE_RESOURCE": "asr"},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        t0 = time.monotonic()
        wait_for(
            lambda: proc.poll() is not None,
            f"qa run on the cluster to finish {len(CLUSTER_CALLS)} calls",
            RUN,
            every=1.0,
        )
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    output = log_path.read_text()
    assert proc.returncode == 0, output
    assert outcomes(settings) == {c: 1 for c in CLUSTER_CALLS}, output

    actors = cluster.state("actors")
    transcribers = [a for a in actors if a["class_name"] == "TranscribeActor"]
    assert len(transcribers) >= 2, actors
    where = [(a["node_id"], a["required_resources"]) for a in transcribers]
    assert {node for node, _ in where} == {asr_node}, where
    assert all(resources.get("asr") for _, resources in where), where
    assert any(a["class_name"] == "ScoreActor" for a in actors), actors
    print(f"qa run on the cluster: {took:.0f} s")
