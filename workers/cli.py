"""Pipeline commands, registered on the `qa` command through the `qa.commands` entry point.

They live here, not in `qa.cli`, because the library never imports `workers/`.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from qa.config import get_settings

console = Console()


def _print_summary(summary) -> None:
    table = Table("calls", "done", "failed", "left for next run", "audio min", "wall s",
                  "worker restarts", title="run summary")
    table.add_row(str(summary.total), str(summary.done), str(summary.failed),
                  str(summary.skipped), f"{summary.audio_seconds / 60:.1f}",
                  f"{summary.wall_seconds:.1f}", str(summary.worker_restarts))
    console.print(table)
    for call_id, reason in sorted(summary.errors.items()):
        console.print(f"[red]failed[/] {call_id}: {reason}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @app.command("run")
    def run(
        address: str = typer.Option(None, "--address", help="Ray cluster (ray://host:10001); "
                                    "default: QA_RAY_ADDRESS or Ray on this machine"),
        retry_errors: bool = typer.Option(False, "--retry-errors",
                                          help="process calls that have an error record again"),
        limit: int = typer.Option(None, "--limit", help="process at most this many calls"),
    ) -> None:
        """Process every call that has no result for the current pipeline and scorecards."""
        from workers.batch import run_batch

        summary = run_batch(get_settings(), address=address, retry_errors=retry_errors,
                            limit=limit, console=console)
        if summary.total:
            _print_summary(summary)
        if summary.failed:
            raise typer.Exit(1)

    @app.command("watch")
    def watch(
        address: str = typer.Option(None, "--address", help="Ray cluster address"),
        interval: float = typer.Option(10.0, "--interval", help="seconds between store polls"),
    ) -> None:
        """Keep processing new calls as they arrive (Ctrl-C to stop)."""
        from workers.batch import watch as watch_loop

        try:
            watch_loop(get_settings(), address=address, interval=interval, console=console,
                       on_batch=lambda s: _print_summary(s) if s.total else None)
        except KeyboardInterrupt:
            console.print("watch: stopped")

    @app.command("demo")
    def demo(
        serve: bool = typer.Option(True, "--serve/--no-serve",
                                   help="end by serving the dashboard on the results"),
        port: int = typer.Option(8501, "--port"),
    ) -> None:
        """Main job: sample calls in, scored results and the dashboard out."""
        from workers.demo import run_demo

        run_demo(get_settings(), console=console)
        import ray

        ray.shutdown()  # the dashboard replaces this process; the local Ray cluster goes first
        if serve:
            from qa.cli import serve as serve_dashboard

            serve_dashboard(port=port, address="127.0.0.1")

    @bench_app.command("pipeline")
    def bench_pipeline(
        calls: int = typer.Option(20, "--calls", help="number of calls in the batch"),
    ) -> None:
        """Ray pipeline vs a sequential loop over the same functions, same calls, same run."""
        from workers.bench import bench_pipeline as run_bench

        run_bench(get_settings(), n_calls=calls, console=console)
