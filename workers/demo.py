"""The main job on the embedded defaults: sample calls in, scored results and dashboard out.

The sample calls are the scripted calls of `qa.synth`, rendered with espeak-ng: most as
8 kHz stereo (agent left, customer right, as call-centre recorders write them), two as mono
16 kHz so that diarization runs too. Each gets a start time over the last weeks so the
trend pages have a history.
"""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from qa.config import Settings
from qa.schema import CallResult
from workers.runner import RunSummary

if TYPE_CHECKING:
    from qa.synth import SynthScript

MONO_CALLS = {"nw_address_change", "bf_zh_billing_clean"}

DEMO_STAFF = [  # username, role, team
    ("inspector1", "inspector", None),
    ("inspector2", "inspector", None),
    ("lead1", "lead", None),
    ("manager1", "manager", None),
    ("admin", "admin", None),
]


# the sample call the demo streams live: an angry customer and an agent's forbidden words
LIVE_SAMPLE = "nw_angry_outage_forbidden"


def demo_password(username: str) -> str:
    return f"{username}-demo"


def prepare_samples(settings: Settings, console: Console) -> tuple[Path, Path]:
    """Render the scripted calls and lay them out as a recorder export with a metadata CSV."""
    from qa.synth import render_all

    synth_dir = settings.home / "samples" / "rendered"
    inbox = settings.home / "samples" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    console.print("demo: rendering the sample calls (espeak-ng)")
    calls = render_all(synth_dir, progress=True)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    meta_csv = inbox / "meta.csv"
    with meta_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "file",
                "call_id",
                "agent_id",
                "team",
                "queue",
                "direction",
                "started_at",
                "language",
                "channels",
            ]
        )
        for i, call in enumerate(sorted(calls, key=lambda c: c.call_id)):
            mono = call.call_id in MONO_CALLS
            src = Path(call.files["mono_16k" if mono else "stereo_8k"])
            dest = inbox / f"{call.call_id}.wav"
            if not dest.exists():
                shutil.copyfile(src, dest)
            started = now - timedelta(days=3 * i + 1, hours=i % 7)
            writer.writerow(
                [
                    dest.name,
                    call.call_id,
                    call.meta.agent_id,
                    call.meta.team,
                    call.meta.queue,
                    call.meta.direction.value,
                    started.isoformat(),
                    call.language,
                    "" if mono else "0=agent,1=customer",
                ]
            )
    return inbox, meta_csv


def ensure_demo_users(settings: Settings, agent_ids: list[str]) -> list[tuple[str, str, str]]:
    """Demo accounts for every role; existing accounts are left as they are."""
    from qa.workflow import open_workflow

    wf = open_workflow(settings)
    existing = {u.username for u in wf.list_users(None)}
    accounts = [(name, role, team) for name, role, team in DEMO_STAFF]
    accounts += [(f"agent.{a.lower()}", "agent", None) for a in sorted(set(agent_ids))]
    out = []
    for username, role, team in accounts:
        agent_id = username.removeprefix("agent.").upper() if role == "agent" else None
        if username not in existing:
            wf.add_user(None, username, demo_password(username), role, team=team, agent_id=agent_id)
        out.append((username, role, demo_password(username)))
    return out


def results_table(results: list[CallResult], scripts: dict[str, SynthScript]) -> Table:
    """Scores and flags, beside what each sample call was written to show and whether the
    result agrees, so the demo shows where the product is right and where it is not."""
    from qa.synth import agreement, written_to_show

    table = Table(
        "call", "agent", "lang", "speakers", "score", "result", "flags", "written to show",
        "agrees",
    )  # fmt: skip
    for r in sorted(results, key=lambda r: r.meta.call_id):
        s = r.score
        verdict = (
            "[red]AUTO-FAIL[/]"
            if s.auto_fail
            else ("[green]pass[/]" if s.passed else "[yellow]fail[/]")
        )
        script = scripts.get(r.meta.call_id)
        if script is None:
            intent, agrees = "-", "-"
        else:
            found = agreement(script, s)
            intent = written_to_show(script)
            agrees = "[green]✓[/]" if found.agrees else f"[red]{escape(found.text())}[/]"
        table.add_row(
            r.meta.call_id,
            r.meta.agent_id or "-",
            r.transcript.language,
            r.transcript.speaker_source,
            f"{s.total:.0f}",
            verdict,
            ", ".join(f.code.value for f in s.flags) or "-",
            intent,
            agrees,
        )
    return table


def run_demo(settings: Settings, *, console: Console | None = None) -> RunSummary:
    from qa.ingest import ingest
    from qa.results import latest_result
    from qa.store import open_store
    from workers.batch import run_batch

    console = console or Console()
    inbox, meta_csv = prepare_samples(settings, console)
    store = open_store(settings)
    report = ingest(store, [inbox], meta_csv, settings)
    console.print(
        f"demo: ingested {len(report.ingested)} new call(s), "
        f"{len(report.duplicates)} already in the store"
    )
    for rejection in report.rejected:
        console.print(f"[red]rejected[/] {rejection.file}: {rejection.reason}")
    summary = run_batch(settings, console=console)
    from qa.results import call_metas

    metas = call_metas(store)
    results = [r for m in metas if (r := latest_result(store, m.call_id))]
    from qa.synth import load_scripts

    console.print(results_table(results, {s.call_id: s for s in load_scripts()}))
    console.print(f"results in {settings.resolved_store_url}")
    users = ensure_demo_users(settings, [m.agent_id for m in metas if m.agent_id])
    users_table = Table("username", "role", "password", title="demo accounts")
    for row in users:
        users_table.add_row(*row)
    console.print(users_table)
    return summary


def start_live_demo(settings: Settings, console: Console) -> None:
    """A sample call streamed live, again and again, beside the dashboard (`qa live demo`):
    leads and managers watch it on the Live page. It runs as a child of the dashboard, so
    stopping the dashboard stops it; its log is <home>/live-demo.log."""
    import subprocess
    import sys

    from qa.synth import render_all

    (call,) = render_all(settings.home / "samples" / "rendered", [LIVE_SAMPLE])
    meta = call.meta
    log = settings.home / "live-demo.log"
    command = [str(Path(sys.executable).parent / "qa"), "live", "demo", call.files["stereo_8k"]]
    for option, value in (("--agent", meta.agent_id), ("--team", meta.team),
                          ("--queue", meta.queue), ("--language", call.language)):  # fmt: skip
        if value:
            command += [option, value]
    with log.open("ab") as out:
        subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    console.print(
        f"live demo: a sample call streams to ws://{settings.live_host}:{settings.live_port}"
        f"/twilio every minute; sign in as manager1 (or a lead of its team) and open Live "
        f"(log: {log})"
    )
