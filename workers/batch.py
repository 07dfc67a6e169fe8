"""`qa run` and `qa watch`: process every call that has no result for the current versions.

The driver lists pending calls, streams them through a `Runner`, publishes each result or
error record as it arrives, keeps the workflow database and the analytics index in step,
and shows progress. A call whose store was unreachable is left pending (no error record),
so the next run finishes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.console import Console

from qa.config import Settings
from qa.pipeline import PIPELINE_VERSION, Models, scorecard_tag
from qa.progress import progress_bar
from qa.results import pending_calls, publish_error, publish_result
from qa.schema import CallMeta, CallResult, ErrorRecord
from qa.store import StoreUnavailableError, open_store
from workers.runner import Runner, RunSummary, ray_init

INDEX_FLUSH_EVERY = 25


def current_scorecards(settings: Settings) -> set[str]:
    models = Models(settings)
    return {scorecard_tag(models, "en"), scorecard_tag(models, "zh")}


class Publisher:
    """Writes what the runner produces: store first (the truth), then workflow and index."""

    def __init__(self, settings: Settings) -> None:
        from qa.index import Index
        from qa.workflow import open_workflow

        self.store = open_store(settings)
        self.workflow = open_workflow(settings)
        self.index = Index(self.store)
        self.rows: list = []
        self.deferred: list[str] = []

    def result(self, result: CallResult) -> None:
        from qa.index import IndexRow

        try:
            publish_result(self.store, result)
        except StoreUnavailableError:
            self.deferred.append(result.meta.call_id)
            return
        self.workflow.sync_result(result)
        self.rows.append(IndexRow.from_result(result))
        if len(self.rows) >= INDEX_FLUSH_EVERY:
            self.flush()

    def error(self, error: ErrorRecord) -> None:
        if error.error_type == StoreUnavailableError.__name__:
            self.deferred.append(error.call_id)
            return
        try:
            publish_error(self.store, error)
        except StoreUnavailableError:
            self.deferred.append(error.call_id)

    def flush(self) -> None:
        if self.rows:
            self.index.append(self.rows)
            self.rows = []


def run_batch(
    settings: Settings,
    *,
    address: str | None = None,
    retry_errors: bool = False,
    limit: int | None = None,
    runner: Runner | None = None,
    console: Console | None = None,
    metas: list[CallMeta] | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    console = console or Console()
    store = open_store(settings)
    if metas is None:
        metas = pending_calls(
            store, PIPELINE_VERSION, current_scorecards(settings), retry_errors=retry_errors
        )
    metas = metas[:limit] if limit else metas
    if not metas:
        console.print("run: every call has a result for the current versions")
        return RunSummary()
    own_runner = runner is None
    if runner is None:
        ray_init(address or settings.ray_address)
        runner = Runner(settings)
        runner.start()
    publisher = Publisher(settings)
    try:
        display = progress_bar("{task.fields[audio]:.2f} h audio", "{task.fields[rate]}",
                               "[red]{task.fields[failed]} failed", console=console)
        with display as progress:
            task = progress.add_task("calls", total=len(metas), audio=0.0, rate="", failed=0)

            def show(s: RunSummary) -> None:
                minutes = max(s.wall_seconds, 1e-9) / 60
                rate = f"{(s.done + s.failed) / minutes:.1f} calls/min, " \
                       f"{s.audio_seconds / 60 / minutes:.1f} audio min/min"
                progress.update(task, completed=s.done + s.failed, audio=s.audio_seconds / 3600,
                                rate=rate, failed=s.failed)
                if on_progress:
                    on_progress(s)

            summary = runner.run(metas, publisher.result, publisher.error, show)
        publisher.flush()
    finally:
        if own_runner:
            runner.shutdown()
    summary.skipped = len(publisher.deferred)
    if publisher.deferred:
        console.print(f"[yellow]{len(publisher.deferred)} call(s) left for the next run "
                      "(store unreachable)[/]")
    return summary


def watch(
    settings: Settings,
    *,
    address: str | None = None,
    interval: float = 10.0,
    max_polls: int | None = None,
    console: Console | None = None,
    on_batch: Callable[[RunSummary], None] | None = None,
) -> None:
    """Keep processing calls as they arrive; actors stay loaded between polls."""
    console = console or Console()
    ray_init(address or settings.ray_address)
    runner = Runner(settings)
    runner.start()
    polls = 0
    try:
        while max_polls is None or polls < max_polls:
            polls += 1
            summary = run_batch(settings, runner=runner, console=console)
            if on_batch:
                on_batch(summary)
            if max_polls is None or polls < max_polls:
                time.sleep(interval)
    finally:
        runner.shutdown()
