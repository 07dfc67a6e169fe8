"""`qa alerts run` and `qa alerts test`: alerts on stored results, outside the pipeline.

`run` catches up what the pipeline could not send (a recipient down all along, a process
killed before its alerts went out); the once-only claim in the workflow database keeps it
from sending anything twice. `test` checks a rule file and shows what it would fire on the
stored results, sending nothing and writing nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from qa.config import get_settings

alerts_app = typer.Typer(help="Alerts on breaches: run them on stored results, test rules.")
console = Console()
err_console = Console(stderr=True)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def stored_results(store: object, since: datetime | None = None) -> Iterator[object]:
    """The newest result of every call with one, started (or processed) at `since` or later."""
    from qa.results import latest_result
    from qa.store import Keys

    calls = sorted({p[0] for k in store.list(Keys.RESULTS) if (p := Keys.parse_result(k))})  # type: ignore[attr-defined]
    for call_id in calls:
        result = latest_result(store, call_id)  # type: ignore[arg-type]
        if result is None:
            continue
        when = result.meta.started_at or result.created_at
        if since is not None and when.astimezone(UTC) < since:
            continue
        yield result


def _problems(path: Path) -> bool:
    from qa.alerts.rules import check_file

    rules, problems = check_file(path)
    for problem in problems:
        typer.echo(str(problem))
    if rules is not None:
        console.print(f"[green]ok[/] {path}: {len(rules.rules)} rules", highlight=False)
    return bool(problems)


@alerts_app.command("run")
def alerts_run(
    since: str | None = typer.Option(None, help="only calls from this date (YYYY-MM-DD) on"),
    rules: Path | None = typer.Option(None, help="rule file (default: QA_ALERT_RULES)"),
) -> None:
    """Evaluate the alert rules on stored results and send what has not been sent."""
    from qa.alerts.engine import AlertEngine
    from qa.store import open_store
    from qa.workflow import open_workflow

    settings = get_settings()
    engine = AlertEngine.from_settings(
        settings, open_workflow(settings), str(rules) if rules else None
    )
    counts: Counter[str] = Counter()
    table = Table("rule", "call", "team", "status", "attempts", "error")
    for result in stored_results(open_store(settings), _since(since)):
        for d in engine.process_safely(result):  # type: ignore[arg-type]
            counts[d.status] += 1
            if d.status != "skipped":
                table.add_row(
                    d.hit.rule_id,
                    d.hit.call_id,
                    d.hit.team or "-",
                    d.status,
                    str(d.attempts),
                    d.error or "",
                )
    if table.row_count:
        console.print(table)
    said = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing fired"
    console.print(f"alerts: {said}")
    if counts["failed"]:
        raise typer.Exit(1)


@alerts_app.command("test")
def alerts_test(
    rules: Path = typer.Argument(..., help="alert rule YAML file"),
    since: str | None = typer.Option(None, help="only calls from this date (YYYY-MM-DD) on"),
    limit: int = typer.Option(200, help="show at most this many alerts"),
) -> None:
    """Check a rule file (FILE:LINE: reason per problem) and show what it would fire on the
    stored results; nothing is sent and nothing is written. Exit 1 on a bad file."""
    from qa.alerts.engine import AlertEngine
    from qa.alerts.mask import mask_url
    from qa.alerts.rules import load_rules
    from qa.store import open_store

    if _problems(rules):
        raise typer.Exit(1)
    settings = get_settings()
    engine = AlertEngine(load_rules(rules), workflow=None)
    hits = engine.dry_run(stored_results(open_store(settings), _since(since)))  # type: ignore[arg-type]
    table = Table("rule", "call", "team", "reason", "recipients")
    for hit in hits[:limit]:
        table.add_row(
            hit.rule_id,
            hit.call_id,
            hit.team or "-",
            hit.reason,
            ", ".join(mask_url(u) for u in hit.recipients) or "(log only)",
        )
    console.print(table)
    per_rule = Counter(h.rule_id for h in hits)
    console.print(
        f"{len(hits)} alert(s) would fire: "
        + (", ".join(f"{r} {n}" for r, n in sorted(per_rule.items())) or "none")
    )
