"""Pipeline commands, registered on the `qa` command through the `qa.commands` entry point.

They live here, not in `qa.cli`, because the library never imports `workers/`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from qa.config import get_settings

console = Console()

# `qa run` exit status (also in its --help)
EXIT_OK = 0  # every call has a result
EXIT_FAILED = 1  # some calls got an error record (bad input); the rest have results
EXIT_LEFT_OVER = 3  # some calls were left for the next run (store unreachable): run again
# stopped by a signal: 128 + its number, as a shell reports it (130 Ctrl-C, 143 SIGTERM)


@contextmanager
def _stop_on_signals() -> Iterator[tuple[threading.Event, list[int]]]:
    """SIGTERM and Ctrl-C ask the run to stop instead of killing the driver mid-call: the
    runner notices within a second, leaves what is in flight for the next run, and Ray is
    shut down on the way out. A second Ctrl-C stops at once (Ray is still shut down)."""
    stop, received = threading.Event(), []

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        received.append(signum)  # nothing else here: the runner says what it left
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop, received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stoppable(label: str, work: Callable[[threading.Event], Any]) -> tuple[Any, list[int]]:
    """Run `work(stop)` under `_stop_on_signals`; a store outage leaves every call for the
    next run (exit 3), and the Ray processes are stopped whatever happens."""
    from qa.store import StoreUnavailableError
    from workers.runner import ray_stop

    with _stop_on_signals() as (stop, received):
        try:
            summary = work(stop)
        except StoreUnavailableError as exc:
            console.print(f"[yellow]{label}: {exc}; every call is left for the next run[/]")
            raise typer.Exit(EXIT_LEFT_OVER) from None
        finally:
            ray_stop()
    return summary, received


def _exit_status(summary: Any, received: list[int]) -> None:
    """The documented exit status of a run: a signal, then calls left over, then failures."""
    if received:
        raise typer.Exit(128 + received[0])
    if summary.skipped:
        raise typer.Exit(EXIT_LEFT_OVER)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


def _print_summary(summary) -> None:
    table = Table(
        "calls",
        "done",
        "failed",
        "left for next run",
        "audio min",
        "wall s",
        "worker restarts",
        title="run summary",
    )
    table.add_row(
        str(summary.total),
        str(summary.done),
        str(summary.failed),
        str(summary.skipped),
        f"{summary.audio_seconds / 60:.1f}",
        f"{summary.wall_seconds:.1f}",
        str(summary.worker_restarts),
    )
    console.print(table)
    for call_id, reason in sorted(summary.errors.items()):
        console.print(f"[red]failed[/] {call_id}: {reason}")


def _day(value: str | None) -> datetime | None:
    """An ISO date (or date and time) from the command line, as UTC."""
    if not value:
        return None
    when = datetime.fromisoformat(value)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _print_rescore_summary(summary) -> None:
    table = Table(
        "scorecards",
        "selected",
        "re-scored",
        "failed",
        "left for next run",
        "already scored",
        "wall s",
        "calls/s",
        "worker restarts",
        title="rescore summary",
    )
    rate = summary.done / summary.wall_seconds if summary.wall_seconds else 0.0
    table.add_row(
        " / ".join(summary.scorecards),
        str(summary.total),
        str(summary.done),
        str(summary.failed),
        str(summary.skipped),
        str(summary.already),
        f"{summary.wall_seconds:.1f}",
        f"{rate:.2f}",
        str(summary.worker_restarts),
    )
    console.print(table)
    for call_id, reason in sorted(summary.errors.items()):
        console.print(f"[red]not re-scored[/] {call_id}: {reason}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @app.command("run")
    def run(
        address: str = typer.Option(
            None,
            "--address",
            help="Ray cluster (ray://host:10001); default: QA_RAY_ADDRESS or Ray on this machine",
        ),
        retry_errors: bool = typer.Option(
            False, "--retry-errors", help="process calls that have an error record again"
        ),
        limit: int = typer.Option(None, "--limit", help="process at most this many calls"),
    ) -> None:
        """Process every call that has no result for the current pipeline and scorecards.

        \b
        Exit status:
          0    every call has a result
          1    some calls got an error record (bad input); the others have results
          2    usage or configuration error (nothing processed)
          3    some calls were left for the next run (store unreachable): run again
          130  stopped by Ctrl-C, 143 stopped by SIGTERM: calls in flight are left for
               the next run; Ray is shut down either way
        """
        from workers.batch import run_batch

        summary, received = _stoppable(
            "run",
            lambda stop: run_batch(
                get_settings(),
                address=address,
                retry_errors=retry_errors,
                limit=limit,
                console=console,
                stop=stop,
            ),
        )
        if summary.total:
            _print_summary(summary)
        _exit_status(summary, received)

    @app.command("rescore")
    def rescore(
        scorecard: Path = typer.Option(
            None, "--scorecard", help="English scorecard file (default: the configured one)"
        ),
        scorecard_zh: Path = typer.Option(None, "--scorecard-zh", help="Chinese scorecard file"),
        since: str = typer.Option(None, "--since", help="calls started on or after this ISO date"),
        until: str = typer.Option(None, "--until", help="calls started before this ISO date"),
        team: str = typer.Option(None, "--team"),
        queue: str = typer.Option(None, "--queue"),
        call: list[str] = typer.Option(None, "--call", help="this call id (repeatable)"),
        address: str = typer.Option(
            None,
            "--address",
            help="Ray cluster (ray://host:10001); default: QA_RAY_ADDRESS or Ray on this machine",
        ),
        limit: int = typer.Option(None, "--limit", help="score at most this many calls"),
    ) -> None:
        """Score stored calls again with a new scorecard version, without ASR.

        Each selected call's newest stored transcript (redacted, roles as a reviewer left
        them) is scored with the scorecard and published beside the old results under the
        new card's id@version. Calls that already have a result for it are skipped, so
        running again does nothing.

        \b
        Exit status:
          0    every selected call has a result for the scorecard
          1    some calls could not be scored again (stored result missing or unreadable,
               scoring failed); they are listed and keep their old results
          2    usage or configuration error, e.g. a bad scorecard (nothing scored)
          3    some calls were left for the next run (store unreachable): run again
          130  stopped by Ctrl-C, 143 stopped by SIGTERM: calls in flight are left for
               the next run; Ray is shut down either way
        """
        from qa.errors import QAError
        from qa.results import RescoreFilter
        from workers.rescore import run_rescore

        try:
            selection = RescoreFilter(
                call_ids=call or None, team=team, queue=queue, since=_day(since), until=_day(until)
            )
        except ValueError as exc:
            raise QAError(f"--since/--until: {exc}") from None
        summary, received = _stoppable(
            "rescore",
            lambda stop: run_rescore(
                get_settings(),
                scorecard=scorecard,
                scorecard_zh=scorecard_zh,
                selection=selection,
                address=address,
                limit=limit,
                console=console,
                stop=stop,
            ),
        )
        _print_rescore_summary(summary)
        _exit_status(summary, received)

    @app.command("watch")
    def watch(
        address: str = typer.Option(None, "--address", help="Ray cluster address"),
        interval: float = typer.Option(10.0, "--interval", help="seconds between store polls"),
    ) -> None:
        """Keep processing new calls as they arrive (Ctrl-C to stop)."""
        from workers.batch import watch as watch_loop
        from workers.runner import ray_stop

        try:
            watch_loop(
                get_settings(),
                address=address,
                interval=interval,
                console=console,
                on_batch=lambda s: _print_summary(s) if s.total else None,
            )
        except KeyboardInterrupt:
            console.print("watch: stopped")
        finally:
            ray_stop()

    @app.command("demo")
    def demo(
        serve: bool = typer.Option(
            True, "--serve/--no-serve", help="end by serving the dashboard on the results"
        ),
        port: int = typer.Option(8501, "--port"),
    ) -> None:
        """Main job: sample calls in, scored results and the dashboard out."""
        from workers.demo import run_demo
        from workers.runner import ray_stop

        try:
            run_demo(get_settings(), console=console)
        finally:
            ray_stop()  # the dashboard replaces this process; the local Ray cluster goes first
        if serve:
            from qa.cli import serve as serve_dashboard
            from workers.demo import start_live_demo

            start_live_demo(get_settings(), console)
            serve_dashboard(port=port, address="127.0.0.1")

    @bench_app.command("pipeline")
    def bench_pipeline(
        calls: int = typer.Option(20, "--calls", help="number of calls in the batch"),
    ) -> None:
        """Ray pipeline vs a sequential loop over the same functions, same calls, same run."""
        from workers.bench import bench_pipeline as run_bench

        run_bench(get_settings(), n_calls=calls, console=console)
