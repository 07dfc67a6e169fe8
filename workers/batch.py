"""`qa run` and `qa watch`: process every call that has no result for the current versions.

The driver lists pending calls, streams them through a `Runner`, publishes each result or
error record as it arrives, keeps the workflow database and the analytics index in step,
and shows progress. A call whose store was unreachable is left pending (no error record),
so the next run finishes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from qa.alerts.engine import AlertDispatcher
from qa.config import Settings
from qa.pipeline import PIPELINE_VERSION, Models, scorecard_tag
from qa.playback import discard_originals, settle_original
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
        from qa.driver_jobs import DriverAssigner
        from qa.index import Index
        from qa.search import SearchIndex, default_root
        from qa.workflow import open_workflow

        self.store = open_store(settings)
        self.original_audio = settings.original_audio
        self.workflow = open_workflow(settings)
        self.index = Index(self.store)
        self.rows: list = []
        # transcript search beside the index rows, written when they are flushed
        self.search = SearchIndex(default_root(settings.home))
        self.search_rows: list = []
        # new calls take the nearest pinned driver as they are published
        self.drivers = DriverAssigner(settings, self.workflow)
        # alert rules run on a thread of their own: a slow or failing recipient never holds
        # or fails the pipeline (qa.alerts.engine)
        self.alerts = AlertDispatcher.from_settings(settings, self.workflow)

    def result(self, result: CallResult) -> bool:
        from qa.search import SearchCall
        from qa.summary import CallSummary

        try:
            publish_result(self.store, result)
            settle_original(self.store, result.meta, self.original_audio)
        except StoreUnavailableError:
            return False
        self.workflow.sync_result(result)
        # the call's driver first (one opening to embed, nothing when no driver is pinned),
        # so the alerts' driver-spike rule counts it
        self.drivers.add(result)
        self.drivers.flush()
        self.alerts.submit(result)
        self.rows.append(CallSummary.from_result(result))
        self.search_rows.append(SearchCall.from_result(result))
        if len(self.rows) >= INDEX_FLUSH_EVERY:
            self.flush()
        return True

    def error(self, error: ErrorRecord) -> bool:
        if error.error_type == StoreUnavailableError.__name__:
            return False  # the store, not the call, failed
        try:
            publish_error(self.store, error)
        except StoreUnavailableError:
            return False
        return True

    def flush(self) -> None:
        if self.search_rows:  # a local file: written even when the store is unreachable
            self.search.add(self.search_rows)
            self.search_rows = []
        if self.rows:
            self.index.append(self.rows)
            self.rows = []

    def close(self) -> None:
        """Let the queued alerts go out (bounded wait) before the process may end."""
        self.alerts.close()

    def catch_up(self, scorecards: set[str]) -> int:
        """Index the results published while the index could not be written (a store outage
        at the end of an earlier run), so the index converges on the results; likewise
        delete the originals such a run left behind."""
        from qa.results import done_calls, latest_result
        from qa.summary import CallSummary

        indexed: set[str] = set()
        if self.index.parts():
            frame = self.index.query(
                "SELECT DISTINCT call_id FROM calls_all WHERE pipeline_version = ?",
                [PIPELINE_VERSION],
            )
            indexed = set(frame["call_id"])
        done = done_calls(self.store, PIPELINE_VERSION, scorecards)
        if self.original_audio == "discard":  # the run that published them was cut short
            discard_originals(self.store, done)
        missing = done - indexed
        rows = [
            CallSummary.from_result(r)
            for c in sorted(missing)
            if (r := latest_result(self.store, c))
        ]
        if rows:
            self.index.append(rows)
        searched = self.search.call_ids()
        missing_search = sorted(done - searched)
        for start in range(0, len(missing_search), INDEX_FLUSH_EVERY):
            self.search.add(
                r
                for c in missing_search[start : start + INDEX_FLUSH_EVERY]
                if (r := latest_result(self.store, c))
            )
        return len(rows)


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
    stop: threading.Event | None = None,
    stall_timeout: float | None = None,
) -> RunSummary:
    """One pass over the pending calls; `stop` and `stall_timeout` as in `Runner.run`."""
    console = console or Console()
    store = open_store(settings)
    scorecards = current_scorecards(settings)
    publisher = Publisher(settings)
    if caught_up := publisher.catch_up(scorecards):
        console.print(f"run: indexed {caught_up} result(s) missing from the analytics index")
    if metas is None:
        metas = pending_calls(store, PIPELINE_VERSION, scorecards, retry_errors=retry_errors)
    metas = metas[:limit] if limit else metas
    if not metas:
        console.print("run: every call has a result for the current versions")
        return RunSummary()
    if stop is not None and stop.is_set():  # stopped while listing: start nothing
        return RunSummary(total=len(metas), skipped=len(metas), interrupted=True)
    own_runner = runner is None
    if runner is None:
        ray_init(address or settings.ray_address)
        runner = Runner(settings)
        runner.start()
    try:
        display = progress_bar(
            "{task.fields[audio]:.2f} h audio",
            "{task.fields[rate]}",
            "[red]{task.fields[failed]} failed",
            console=console,
        )
        with display as progress:
            task = progress.add_task("calls", total=len(metas), audio=0.0, rate="", failed=0)

            def show(s: RunSummary) -> None:
                minutes = max(s.wall_seconds, 1e-9) / 60
                rate = (
                    f"{(s.done + s.failed) / minutes:.1f} calls/min, "
                    f"{s.audio_seconds / 60 / minutes:.1f} audio min/min"
                )
                progress.update(
                    task,
                    completed=s.done + s.failed,
                    audio=s.audio_seconds / 3600,
                    rate=rate,
                    failed=s.failed,
                )
                if on_progress:
                    on_progress(s)

            summary = runner.run(
                metas,
                publisher.result,
                publisher.error,
                show,
                stop=stop,
                stall_timeout=stall_timeout,
                on_notice=lambda m: progress.console.print(f"[yellow]{escape(m)}[/]"),
            )
        try:
            publisher.flush()
        except StoreUnavailableError:
            console.print(
                "[yellow]analytics index not updated (store unreachable); "
                "the next run adds the rows[/]"
            )
    finally:
        publisher.close()
        if own_runner:
            runner.shutdown()
    if summary.skipped:
        why = "stopped" if summary.interrupted else "store unreachable"
        console.print(f"[yellow]{summary.skipped} call(s) left for the next run ({why})[/]")
    return summary


def watch(
    settings: Settings,
    *,
    address: str | None = None,
    interval: float = 10.0,
    max_polls: int | None = None,
    console: Console | None = None,
    on_batch: Callable[[RunSummary], None] | None = None,
    stall_timeout: float | None = None,
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
            summary = run_batch(
                settings, runner=runner, console=console, stall_timeout=stall_timeout
            )
            if on_batch:
                on_batch(summary)
            if max_polls is None or polls < max_polls:
                time.sleep(interval)
    finally:
        runner.shutdown()
