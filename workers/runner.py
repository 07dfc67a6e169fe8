"""The batch and watch pipelines: stream calls through transcribe and score actors.

Each call moves independently (a long call does not hold back short ones): the driver keeps
at most `inflight` calls per actor, hands a transcript to the scoring actors as soon as it is
ready, and replaces any actor that dies, re-submitting its call. Results are published
atomically by the actors under keys derived from the call id and versions, so re-running
after a crash only processes what has no result yet.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
from pydantic import BaseModel

from qa.config import Settings
from qa.schema import CallMeta, CallResult, ErrorRecord, Transcript
from workers.actors import ScoreActor, TranscribeActor

MAX_ATTEMPTS = 3  # a call whose worker dies this many times gets an error record


class RunSummary(BaseModel):
    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # left for the next run: the store could not be reached
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker_restarts: int = 0
    results: list[str] = []  # call ids with a result
    errors: dict[str, str] = {}  # call id -> reason


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


def ray_init(address: str | None) -> None:
    if ray.is_initialized():
        return
    ray.init(
        address=address or None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        configure_logging=True,
    )


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
        values = settings.model_dump(mode="json", exclude_unset=False)
        gpus = 1 if settings.asr_device == "cuda" else 0
        self.transcribe = _Pool(
            lambda: TranscribeActor.options(num_cpus=cpus_per_actor, num_gpus=gpus).remote(
                values, threads
            ),
            transcribers,
        )
        self.score = _Pool(
            lambda: ScoreActor.options(num_cpus=cpus_per_actor).remote(values, threads), scorers
        )
        self.inflight = inflight
        self.restarts = 0

    def start(self) -> None:
        self.transcribe.start()
        self.score.start()

    def run(
        self,
        metas: Iterable[CallMeta],
        on_result: Callable[[CallResult], bool] | None = None,
        on_error: Callable[[ErrorRecord], bool] | None = None,
        on_progress: Callable[[RunSummary], None] | None = None,
    ) -> RunSummary:
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

        def worker_died(stage: str, actor: Any, job: _Job) -> None:
            from qa.pipeline import error_record

            pool = self.transcribe if stage == "transcribe" else self.score
            pool.replace(actor)
            self.restarts += 1
            summary.worker_restarts += 1
            if job.attempts >= MAX_ATTEMPTS:
                finish(job, error_record(job.meta, stage, RuntimeError(
                    f"worker died {job.attempts} times while processing this call")))
            elif stage == "transcribe":
                queue.appendleft(job)
            else:
                job.attempts += 1
                submit_score(job, job.transcript)

        submit_transcribe()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            stage, actor, job = pending.pop(ref)
            pool = self.transcribe if stage == "transcribe" else self.score
            if actor in pool.busy:
                pool.busy[actor] -= 1
            try:
                outcome = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                worker_died(stage, actor, job)
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
        for actor in self.transcribe.actors + self.score.actors:
            ray.kill(actor)
