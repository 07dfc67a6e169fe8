"""`qa rescore`: a new scorecard version applied to stored calls, without ASR.

Only score workers run. Each reads a call's newest result from the store itself (transcripts
never pass through the driver), scores the stored transcript with the scorecard the run was
given (`qa.scoring.rescore.rescore_with_configured`) and returns the new result; the driver
publishes it beside the old ones under the same pipeline version with `qa run`'s
`Publisher` (store, workflow database, analytics index). Calls that already have a result
for their card are not chosen (`qa.results.plan_rescore`), so a second run does nothing.

The Ray loop keeps the runner's guarantees: a stop request is noticed within `WAIT_SLICE`
and leaves what is in flight for the next run, a dead worker is replaced and its call tried
again up to `MAX_ATTEMPTS`, and with `stall_timeout` a run without progress fails naming
the calls it waited for. A call that cannot be scored again (its stored result unreadable,
a scoring error) is reported, never written as an error record: its old result stands.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from rich.console import Console
from rich.markup import escape

from qa.config import Settings
from qa.pipeline import Models, error_record, guarded, scorecard_tag
from qa.progress import progress_bar
from qa.results import RescoreFilter, RescorePlan, RescoreTarget, plan_rescore
from qa.schema import CallResult, ErrorRecord
from qa.store import StoreUnavailableError, open_store
from workers.actors import ScoreActor
from workers.runner import (
    MAX_ATTEMPTS,
    RunSummary,
    WorkerDiedError,
    _Pool,
    death_notice,
    finished_refs,
    ray_init,
)

INFLIGHT = 2  # calls queued per worker, so none waits while the driver publishes


class RescoreSummary(RunSummary):
    already: int = 0  # selected calls that already had a result for their card
    scorecards: list[str] = []  # id@version the run applied (English, Chinese)


def rescore_settings(
    settings: Settings, scorecard: Path | None = None, scorecard_zh: Path | None = None
) -> Settings:
    """`settings` with these scorecard files configured (absolute: a worker's directory
    is not the driver's); the card is loaded here, so a bad file stops the run at once."""
    update = {
        k: str(Path(v).resolve())
        for k, v in (("scorecard", scorecard), ("scorecard_zh", scorecard_zh))
        if v is not None
    }
    new = settings.model_copy(update=update)
    models = Models(new)
    for language in ("en", "zh"):
        models.scorecard(language)
    return new


def rescore_one(store: Any, models: Models, target: RescoreTarget) -> CallResult | ErrorRecord:
    """The newest stored result of the call scored again; any failure becomes data."""
    from qa.scoring.rescore import rescore_with_configured

    def work() -> CallResult:
        return rescore_with_configured(store.get_json(target.key, CallResult), models)

    return guarded("rescore", target.meta, work)  # type: ignore[return-value]


class _Tally:
    """Counts outcomes into the summary as the run loop hands them over."""

    def __init__(
        self,
        summary: RescoreSummary,
        on_result: Callable[[CallResult], bool],
        on_progress: Callable[[RescoreSummary], None] | None,
    ) -> None:
        self.summary, self.on_result, self.on_progress = summary, on_result, on_progress
        self.t0 = time.perf_counter()

    def finish(self, call_id: str, outcome: CallResult | ErrorRecord) -> None:
        s = self.summary
        if isinstance(outcome, ErrorRecord):
            if outcome.error_type == StoreUnavailableError.__name__:
                s.skipped += 1  # the store, not the call, failed: left for the next run
            else:
                s.failed += 1
                s.errors[call_id] = outcome.message
        elif self.on_result(outcome) is False:
            s.skipped += 1
        else:
            s.done += 1
            s.results.append(call_id)
            s.audio_seconds += outcome.transcript.duration
        s.wall_seconds = time.perf_counter() - self.t0
        if self.on_progress:
            self.on_progress(s)


def _run_here(
    targets: list[RescoreTarget], settings: Settings, tally: _Tally, stop: threading.Event | None
) -> None:
    """In this process, one call after another (tests, and a machine without Ray)."""
    store, models = open_store(settings), Models(settings)
    for n, target in enumerate(targets):
        if stop is not None and stop.is_set():
            tally.summary.skipped += len(targets) - n
            tally.summary.interrupted = True
            return
        tally.finish(target.call_id, rescore_one(store, models, target))


def _run_on_ray(
    targets: list[RescoreTarget],
    settings: Settings,
    tally: _Tally,
    *,
    workers: int,
    stop: threading.Event | None,
    stall_timeout: float | None,
    notice: Callable[[str], None],
) -> None:
    values = {
        **settings.model_dump(mode="json", exclude_unset=False),
        "store_url": settings.resolved_store_url,
    }
    pool = _Pool(lambda: ScoreActor.options(num_cpus=1).remote(values, 1), workers)
    pool.start()
    queue: deque[tuple[RescoreTarget, int]] = deque((t, 0) for t in targets)
    pending: dict[ray.ObjectRef, tuple[Any, RescoreTarget, int]] = {}
    summary = tally.summary

    def submit() -> None:
        while queue and (actor := pool.least_busy(INFLIGHT)) is not None:
            target, attempts = queue.popleft()
            pool.busy[actor] += 1
            pending[actor.rescore.remote(target)] = (actor, target, attempts + 1)

    try:
        submit()
        for ref in finished_refs(
            pending,
            summary,
            left=lambda: len(queue) + len(pending),
            stop=stop,
            stall_timeout=stall_timeout,
            stalled=lambda: (
                f"no call finished for {stall_timeout:g} s; waiting for "
                + ", ".join(sorted(t.call_id for _, t, _ in pending.values()))
            ),
            notice=notice,
        ):
            actor, target, attempts = pending.pop(ref)
            if actor in pool.busy:
                pool.busy[actor] -= 1
            try:
                outcome = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                pool.replace(actor)
                summary.worker_restarts += 1
                how = death_notice(exc)
                if attempts >= MAX_ATTEMPTS:
                    notice(
                        f"score worker process for call {target.call_id} died ({how}); "
                        f"that is {attempts} times: the call is reported, its old "
                        "result stands"
                    )
                    tally.finish(
                        target.call_id,
                        error_record(
                            target.meta,
                            "rescore",
                            WorkerDiedError(
                                f"the score worker process died {attempts} "
                                f"times while scoring this call"
                            ),
                        ),
                    )
                else:
                    notice(
                        f"score worker process for call {target.call_id} died ({how}); "
                        f"tried again on a new worker (attempt {attempts + 1} of "
                        f"{MAX_ATTEMPTS})"
                    )
                    queue.appendleft((target, attempts))
                submit()
                continue
            tally.finish(target.call_id, outcome)
            submit()
    finally:
        for actor in pool.actors:
            ray.kill(actor)


def run_rescore(
    settings: Settings,
    *,
    scorecard: Path | None = None,
    scorecard_zh: Path | None = None,
    selection: RescoreFilter | None = None,
    address: str | None = None,
    limit: int | None = None,
    use_ray: bool = True,
    workers: int | None = None,
    console: Console | None = None,
    stop: threading.Event | None = None,
    stall_timeout: float | None = None,
    on_progress: Callable[[RescoreSummary], None] | None = None,
) -> RescoreSummary:
    """Score the selected stored calls again with the given scorecards (default: the
    configured ones) and publish the new results; `stop`, `stall_timeout` as in `qa run`."""
    from workers.batch import Publisher

    console = console or Console()
    settings = rescore_settings(settings, scorecard, scorecard_zh)
    models = Models(settings)
    cards = [scorecard_tag(models, "en"), scorecard_tag(models, "zh")]
    plan: RescorePlan = plan_rescore(
        open_store(settings), lambda lang: scorecard_tag(models, lang), selection
    )
    targets = plan.targets[:limit] if limit else plan.targets
    summary = RescoreSummary(
        total=len(targets),
        already=plan.already,
        scorecards=cards,
        errors=dict(plan.problems),
        failed=len(plan.problems),
    )
    for call_id, why in sorted(plan.problems.items()):
        console.print(f"[yellow]rescore: call {escape(call_id)} left out: {escape(why)}[/]")
    if plan.already:
        console.print(
            f"rescore: {plan.already} call(s) already have a result for {' / '.join(cards)}"
        )
    if not targets:
        console.print("rescore: nothing to score again")
        return summary
    if stop is not None and stop.is_set():
        summary.skipped, summary.interrupted = len(targets), True
        return summary
    publisher = Publisher(settings)
    display = progress_bar(
        "{task.fields[rate]}", "[red]{task.fields[failed]} failed", console=console
    )
    with display as progress:
        task = progress.add_task("rescore", total=len(targets), rate="", failed=0)

        def show(s: RescoreSummary) -> None:
            finished = s.done + s.failed - len(plan.problems)
            rate = finished / max(s.wall_seconds, 1e-9)
            progress.update(task, completed=finished, rate=f"{rate:.1f} calls/s", failed=s.failed)
            if on_progress:
                on_progress(s)

        def notice(message: str) -> None:
            summary.notices.append(message)
            progress.console.print(f"[yellow]{escape(message)}[/]")

        tally = _Tally(summary, publisher.result, show)
        if use_ray:
            ray_init(address or settings.ray_address)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            _run_on_ray(
                targets,
                settings,
                tally,
                workers=max(1, min(workers or cpus, len(targets))),
                stop=stop,
                stall_timeout=stall_timeout,
                notice=notice,
            )
        else:
            _run_here(targets, settings, tally, stop)
    try:
        publisher.flush()
    except StoreUnavailableError:
        console.print(
            "[yellow]analytics index not updated (store unreachable); "
            "`qa index rebuild` adds the rows[/]"
        )
    publisher.close()  # the alerts of the new results go out before the process ends
    summary.wall_seconds = time.perf_counter() - tally.t0
    return summary
