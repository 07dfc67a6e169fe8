"""The batch and watch pipelines: stream calls through transcribe and score actors.

Each call moves independently (a long call does not hold back short ones): the driver keeps
at most `inflight` calls per actor, hands a transcript to the scoring actors as soon as it is
ready, and replaces any actor that dies, re-submitting its call (a call whose workers die
`MAX_ATTEMPTS` times gets an error record). Results are published by the driver through the
callbacks under keys derived from the call id and versions, so re-running after a crash only
processes what has no result yet.

The driver waits in short slices (`WAIT_SLICE`), never in one blocking `ray.wait`: a stop
request (SIGTERM, Ctrl-C) is noticed within a slice and leaves the calls in flight for the
next run, and an exception from a signal handler is never raised inside Ray's C++ wait.

A local Ray (no cluster address) is this process's to stop: `ray_stop` shuts it down, and a
small watchdog (`workers/reaper.py`) stops its agents if the driver dies without doing so
(SIGKILL), because Ray's dashboard and runtime-env agents outlive a killed driver.

On a cluster, transcribe actors ask for a GPU when ASR runs on CUDA and, with
`QA_TRANSCRIBE_RESOURCE`, for a token of a custom resource that only the transcription nodes
offer, so they are placed there. Before starting them the runner checks that the cluster
can place them at all: an actor no node can hold would wait forever, and its call with it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from pydantic import BaseModel

from qa.config import Settings
from qa.errors import QAError
from qa.schema import CallMeta, CallResult, ErrorRecord, Transcript
from workers.actors import ScoreActor, TranscribeActor

MAX_ATTEMPTS = 3  # a call whose worker dies this many times gets an error record
WAIT_SLICE = 1.0  # seconds per ray.wait; stop requests and stalls are checked in between
REAPER_POLL = 1.0  # seconds between telling the watchdog of new Ray processes
# of QA_TRANSCRIBE_RESOURCE per transcribe actor: the resource marks the nodes, it does not
# count actors; their CPUs and GPUs bound how many each node runs
PIN_AMOUNT = 0.001


class WorkerDiedError(QAError):
    """The worker process running a call died (killed or crashed) too many times."""


class RunStalledError(QAError):
    """No call finished within the stall timeout; names what the run was waiting for."""


def finished_refs(
    pending: dict[ray.ObjectRef, Any],
    summary: RunSummary,
    *,
    left: Callable[[], int],
    stop: threading.Event | None,
    stall_timeout: float | None,
    stalled: Callable[[], str],
    notice: Callable[[str], None],
) -> Iterator[ray.ObjectRef]:
    """Each pending object as it finishes (the caller pops it). A stop request ends the
    iteration with the `left()` calls counted as skipped; no object finishing for
    `stall_timeout` raises RunStalledError saying `stalled()`. One loop for `qa run` and
    `qa rescore`, so both stop and give up alike."""
    last_progress = time.monotonic()
    while pending:
        if stop is not None and stop.is_set():
            n = left()
            summary.skipped += n
            summary.interrupted = True
            notice(f"stopped: {n} call(s) not finished are left for the next run")
            return
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SLICE)
        if not ready:
            if stall_timeout is not None and time.monotonic() - last_progress > stall_timeout:
                raise RunStalledError(stalled())
            continue
        last_progress = time.monotonic()
        yield ready[0]


class ClusterMismatchError(QAError):
    """No node of the Ray cluster offers what a transcribe worker asks for."""


class RunSummary(BaseModel):
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # left for the next run: the store could not be reached, or stopped
    interrupted: bool = False  # a stop was requested; the calls in flight were left
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker_restarts: int = 0
    results: list[str] = []  # call ids with a result
    errors: dict[str, str] = {}  # call id -> reason
    notices: list[str] = []  # what happened to workers, in the product's words


@dataclass
class _Job:
    meta: CallMeta
    attempts: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    started: float = 0.0
    transcript: Transcript | None = None  # kept to re-submit if a scoring actor dies


@dataclass
class _Pool:
    """Actors of one kind with the refs each is working on."""

    make: Callable[[], Any]
    size: int
    actors: list[Any] = field(default_factory=list)
    busy: dict[Any, int] = field(default_factory=dict)

    def start(self) -> None:
        self.actors = [self.make() for _ in range(self.size)]
        self.busy = {a: 0 for a in self.actors}

    def least_busy(self, limit: int) -> Any | None:
        actor = min(self.actors, key=lambda a: self.busy[a])
        return actor if self.busy[actor] < limit else None

    def replace(self, actor: Any) -> Any:
        new = self.make()
        self.actors[self.actors.index(actor)] = new
        self.busy[new] = self.busy.pop(actor, 0)
        return new


_reaper: subprocess.Popen | None = None


def ray_init(address: str | None) -> None:
    """Connect to the cluster at `address`, or start Ray on this machine (no dashboard).

    `ray.init` replaces the SIGTERM handler with one that raises SystemExit wherever the
    driver is (inside Ray's C++ wait it surfaces as SystemError), and its C++ core installs
    a crash handler for SIGTERM that aborts the process; a handler the caller set (`qa run`'s
    stop request) is kept during `ray.init` and installed again after it.
    """
    if ray.is_initialized():
        return
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    keep = main and callable(previous)
    _quiet_worker_deaths()
    # "local": start our own Ray even where `ray start` left one running (RAY_ADDRESS wins)
    local = not address and not os.environ.get("RAY_ADDRESS")
    utils = ray._private.utils
    setter = utils.set_sigterm_handler
    if keep:
        utils.set_sigterm_handler = lambda handler: None
    try:
        ray.init(
            address=address or ("local" if local else None),
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            configure_logging=True,
        )
    finally:
        utils.set_sigterm_handler = setter
    if keep:  # again: Ray's C++ core put its own (aborting) handler under Python's
        signal.signal(signal.SIGTERM, previous)
    if local:
        _start_reaper()


def ray_stop() -> None:
    """Shut down Ray (a local one with all its processes) and the watchdog; idempotent."""
    global _reaper
    if ray.is_initialized():
        ray.shutdown()
    if _reaper is not None:
        reaper, _reaper = _reaper, None
        try:
            reaper.stdin.close()  # type: ignore[union-attr]
            reaper.wait(timeout=15)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            reaper.kill()


def _start_reaper() -> None:
    """Start the watchdog and keep telling it this process's descendants (Ray's head
    processes, the agents and workers the raylet starts), every `REAPER_POLL` seconds, for
    as long as Ray runs: a worker still loading its models outlives a killed driver too."""
    global _reaper
    import psutil

    reaper = _reaper = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("reaper.py"))],
        stdin=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # Ctrl-C is not for it
    me = psutil.Process()

    def tell() -> None:
        told: set[int] = set()
        while reaper.poll() is None:
            try:
                for child in me.children(recursive=True):
                    if child.pid not in told and child.pid != reaper.pid:
                        reaper.stdin.write(  # type: ignore[union-attr]
                            f"{child.pid} {child.create_time()}\n"
                        )
                        told.add(child.pid)
                reaper.stdin.flush()  # type: ignore[union-attr]
            except psutil.Error:
                pass  # a child went while being listed: the next round has the rest
            except (OSError, ValueError):
                return  # the pipe is closed: ray_stop has run
            time.sleep(REAPER_POLL)

    threading.Thread(target=tell, name="qa-reaper-feed", daemon=True).start()


def _quiet_worker_deaths() -> None:
    """Drop Ray's console message for a dead worker (a guess at the cause, "likely OOM"):
    the runner reports each death itself, with the call it was running."""
    worker = ray._private.worker
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "_qa_quiet", False):
        return

    def quiet(data: dict, *args: Any, **kwargs: Any) -> None:
        lines = data.get("lines") or []
        if (
            data.get("pid") == "raylet"
            and lines
            and str(lines[0]).startswith("A worker died or was killed")
        ):
            return
        printer(data, *args, **kwargs)

    quiet._qa_quiet = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = quiet


_PID = re.compile(r"\bpid: (\d+)")


def death_notice(exc: Exception) -> str:
    """What is known of a dead worker, from Ray's error: its pid, and whether it failed to
    start. Ray does not pass on the exit signal; it only guesses at a cause."""
    text = str(getattr(exc, "error_msg", "") or exc)
    pid = _PID.search(text)
    where = f"pid {pid.group(1)}, " if pid else ""
    if getattr(exc, "_actor_init_failed", False):
        return f"{where}it failed while starting"
    return f"{where}exit signal not reported by Ray: killed or crashed"


def transcribe_request(settings: Settings, cpus: float) -> dict[str, float]:
    """What one transcribe actor asks Ray for: CPUs, a GPU when ASR runs on CUDA, and a
    token of `QA_TRANSCRIBE_RESOURCE`, which pins it to the nodes that offer that resource."""
    request = {"CPU": cpus}
    if settings.asr_device == "cuda":
        request["GPU"] = 1.0
    if settings.transcribe_resource:
        request[settings.transcribe_resource] = PIN_AMOUNT
    return request


def actor_options(request: dict[str, float]) -> dict[str, Any]:
    """`request` as the keyword arguments of an actor's `.options()`."""
    custom = {k: v for k, v in request.items() if k not in ("CPU", "GPU")}
    options: dict[str, Any] = {"num_cpus": request.get("CPU", 0), "num_gpus": request.get("GPU", 0)}
    if custom:
        options["resources"] = custom
    return options


def capacity(request: dict[str, float], nodes: Iterable[dict[str, float]]) -> int:
    """How many actors asking for `request` the nodes (their total resources) can hold,
    an actor being placed on one node: what is already in use is not counted."""
    needed = {k: v for k, v in request.items() if v > 0}
    return sum(
        min((int(node.get(k, 0) / v + 1e-9) for k, v in needed.items()), default=0)
        for node in nodes
    )


def _describe(request: dict[str, float]) -> str:
    parts = [f"{request['CPU']:g} CPU"] if request.get("CPU") else []
    if request.get("GPU"):
        parts.append(f"{request['GPU']:g} GPU (QA_ASR_DEVICE=cuda)")
    parts += [
        f"resource {k!r} (QA_TRANSCRIBE_RESOURCE)" for k in request if k not in ("CPU", "GPU")
    ]
    return ", ".join(parts)


class Runner:
    """Holds the actors between batches (the watch loop reuses them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        transcribers: int = 2,
        scorers: int = 1,
        cpus_per_actor: float = 0.5,
        threads: int = 1,
        inflight: int = 1,
    ) -> None:
        # the store as the driver resolves it: an actor's process starts in its node's
        # directory, where a relative QA_HOME means another place
        values = {
            **settings.model_dump(mode="json", exclude_unset=False),
            "store_url": settings.resolved_store_url,
        }
        self.transcribe_request = transcribe_request(settings, cpus_per_actor)
        options = actor_options(self.transcribe_request)
        self.transcribe = _Pool(
            lambda: TranscribeActor.options(**options).remote(values, threads), transcribers
        )
        self.score = _Pool(
            lambda: ScoreActor.options(num_cpus=cpus_per_actor).remote(values, threads), scorers
        )
        self.inflight = inflight
        self.restarts = 0
        self._notices: list[str] = []  # from start, told by the next run

    def start(self) -> None:
        """Start the actors, as many transcribe actors as the cluster can hold (a call
        handed to one that can never start would wait forever); ClusterMismatchError when
        it can hold none."""
        request = self.transcribe_request
        fits = capacity(request, (n["Resources"] for n in ray.nodes() if n.get("Alive")))
        if fits == 0:
            raise ClusterMismatchError(
                f"no node of the Ray cluster offers what a transcribe worker asks for: "
                f"{_describe(request)}; start such a node (ray start --num-gpus, "
                f"--resources) or change the setting"
            )
        if fits < self.transcribe.size:
            self._notices.append(
                f"the Ray cluster holds {fits} of the {self.transcribe.size} transcribe "
                f"workers asked for ({_describe(request)}): running {fits}"
            )
            self.transcribe.size = fits
        self.transcribe.start()
        self.score.start()

    def run(
        self,
        metas: Iterable[CallMeta],
        on_result: Callable[[CallResult], bool] | None = None,
        on_error: Callable[[ErrorRecord], bool] | None = None,
        on_progress: Callable[[RunSummary], None] | None = None,
        *,
        stop: threading.Event | None = None,
        stall_timeout: float | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> RunSummary:
        """Process the calls; `stop` ends the run early (what is in flight is left for the
        next run); with `stall_timeout`, RunStalledError when no call finishes for that
        long, naming the calls and stages waited for."""
        summary = RunSummary()
        queue: deque[_Job] = deque(_Job(m) for m in metas)
        summary.total = len(queue)
        pending: dict[ray.ObjectRef, tuple[str, Any, _Job]] = {}
        t0 = time.perf_counter()

        def submit_transcribe() -> None:
            while queue:
                actor = self.transcribe.least_busy(self.inflight)
                if actor is None:
                    return
                job = queue.popleft()
                job.attempts += 1
                job.started = time.perf_counter()
                self.transcribe.busy[actor] += 1
                pending[actor.run.remote(job.meta)] = ("transcribe", actor, job)

        def submit_score(job: _Job, transcript: Transcript) -> None:
            actor = min(self.score.actors, key=lambda a: self.score.busy[a])
            self.score.busy[actor] += 1
            pending[actor.run.remote(transcript, job.meta, job.timings)] = ("score", actor, job)
            job.transcript = transcript

        def finish(job: _Job, outcome: CallResult | ErrorRecord) -> None:
            # a callback returning False could not publish: the call is left for the next run
            if isinstance(outcome, ErrorRecord):
                if on_error and on_error(outcome) is False:
                    summary.skipped += 1
                else:
                    summary.failed += 1
                    summary.errors[job.meta.call_id] = outcome.message
            elif on_result and on_result(outcome) is False:
                summary.skipped += 1
            else:
                summary.done += 1
                summary.results.append(job.meta.call_id)
                summary.audio_seconds += outcome.transcript.duration
            summary.wall_seconds = time.perf_counter() - t0
            if on_progress:
                on_progress(summary)

        def notice(message: str) -> None:
            summary.notices.append(message)
            if on_notice:
                on_notice(message)

        def worker_died(stage: str, actor: Any, job: _Job, exc: Exception) -> None:
            from qa.pipeline import error_record

            pool = self.transcribe if stage == "transcribe" else self.score
            pool.replace(actor)
            self.restarts += 1
            summary.worker_restarts += 1
            how = death_notice(exc)
            call = job.meta.call_id
            if job.attempts >= MAX_ATTEMPTS:
                notice(
                    f"{stage} worker process for call {call} died ({how}); that is "
                    f"{job.attempts} times: the call gets an error record"
                )
                finish(
                    job,
                    error_record(
                        job.meta,
                        stage,
                        WorkerDiedError(
                            f"the {stage} worker process died {job.attempts} times while "
                            f"processing this call (last: {how})"
                        ),
                    ),
                )
                return
            notice(
                f"{stage} worker process for call {call} died ({how}); the call is tried "
                f"again on a new worker (attempt {job.attempts + 1} of {MAX_ATTEMPTS})"
            )
            if stage == "transcribe":
                queue.appendleft(job)
            else:
                job.attempts += 1
                submit_score(job, job.transcript)

        while self._notices:
            notice(self._notices.pop(0))
        submit_transcribe()
        for ref in finished_refs(
            pending,
            summary,
            left=lambda: len(queue) + len(pending),
            stop=stop,
            stall_timeout=stall_timeout,
            stalled=lambda: (
                f"no stage of any call finished for {stall_timeout:g} s; waiting for "
                + ", ".join(sorted(f"{s} of {j.meta.call_id}" for s, _, j in pending.values()))
            ),
            notice=notice,
        ):
            stage, actor, job = pending.pop(ref)
            pool = self.transcribe if stage == "transcribe" else self.score
            if actor in pool.busy:
                pool.busy[actor] -= 1
            try:
                outcome = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                worker_died(stage, actor, job, exc)
                submit_transcribe()
                continue
            if stage == "transcribe" and isinstance(outcome, Transcript):
                job.timings["transcribe"] = time.perf_counter() - job.started
                submit_score(job, outcome)
            else:
                finish(job, outcome)
            submit_transcribe()
        summary.wall_seconds = time.perf_counter() - t0
        return summary

    def shutdown(self) -> None:
        if not ray.is_initialized():
            return
        for actor in self.transcribe.actors + self.score.actors:
            ray.kill(actor)
