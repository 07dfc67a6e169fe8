"""A call's score as a readable report: header, flags, and one row per item with its
outcome, points and the evidence a reviewer can jump to (time, speaker, words)."""

from __future__ import annotations

import io

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from qa.schema import CallScore, Evidence, ItemOutcome

STYLE = {ItemOutcome.PASS: "green", ItemOutcome.FAIL: "red", ItemOutcome.NA: "dim"}
MAX_EVIDENCE = 3


def clock(seconds: float) -> str:
    """m:ss.s, the way a player shows a position in the call."""
    minutes, rest = divmod(max(0.0, seconds), 60.0)
    if round(rest, 1) >= 60.0:
        minutes, rest = minutes + 1, 0.0
    return f"{int(minutes)}:{rest:04.1f}"


def _evidence_line(ev: Evidence) -> str:
    when = f"{clock(ev.start)}-{clock(ev.end)}"
    who = f" {ev.role.value if ev.role else ev.speaker}" if (ev.role or ev.speaker) else ""
    parts = [f"[{when}]{who}"]
    if ev.matched:
        sim = f" ({ev.similarity:.2f})" if ev.similarity is not None and ev.similarity < 1 else ""
        parts.append(f'"{ev.matched}"{sim}')
    if ev.note:
        parts.append(ev.note)
    elif ev.text and not ev.matched:
        parts.append(ev.text[:80])
    return " ".join(parts)


def render(score: CallScore) -> Group:
    """Rich renderables for a terminal or a recorded console."""
    verdict = (
        "[bold red]AUTO-FAIL[/]"
        if score.auto_fail
        else "[bold green]PASS[/]"
        if score.passed
        else "[bold red]BELOW PASS MARK[/]"
    )
    head = Text.from_markup(
        f"[bold]{score.call_id}[/]  scorecard {score.scorecard_id} v{score.scorecard_version}  "
        f"score [bold]{score.total:g}[/]/{score.max_total:g} (pass {score.pass_mark:g})  "
        f"{verdict}"
    )
    table = Table(expand=True, show_lines=True)
    table.add_column("section", max_width=12)
    table.add_column("item", ratio=1, min_width=14)
    table.add_column("outcome", no_wrap=True)
    table.add_column("points", no_wrap=True)
    table.add_column("reason / evidence", ratio=3)
    for r in score.items:
        outcome = Text(
            r.outcome.value.upper()
            + (" !" if r.critical and r.outcome == ItemOutcome.FAIL else ""),
            style=STYLE[r.outcome],
        )
        points = (
            f"{r.points_awarded:g}/{r.points_possible:g}" if r.outcome != ItemOutcome.NA else "-"
        )
        lines = [r.reason] + [_evidence_line(e) for e in r.evidence[:MAX_EVIDENCE]]
        if len(r.evidence) > MAX_EVIDENCE:
            lines.append(f"... {len(r.evidence) - MAX_EVIDENCE} more")
        name = r.name + (" (critical)" if r.critical else "")
        table.add_row(r.section, name, outcome, points, "\n".join(lines))
    parts: list = [head]
    for flag in score.flags:
        parts.append(Text.from_markup(f"[yellow]flag[/] {flag.code.value}: {flag.reason}"))
    parts.append(table)
    m = score.metrics
    if m is not None:
        share = ", ".join(f"{k} {v:.0%}" for k, v in m.talk_share.items())
        parts.append(
            Text(
                f"duration {clock(m.duration)}  talk {share}"
                f"  longest silence {m.longest_silence:.1f} s"
                f"  dead air {m.longest_dead_air:.1f} s"
                f"  holds {len(m.holds)} ({m.hold_total:.0f} s)"
                f"  overtalk {m.overtalk_total:.1f} s  interruptions "
                f"{', '.join(f'{k} {v}' for k, v in m.interruptions.items()) or 'none'}",
                style="dim",
            )
        )
    return Group(*parts)


def report_text(score: CallScore, *, width: int = 120) -> str:
    """The report as plain text (for files, e-mails and tests)."""
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(render(score))
    return console.export_text()
