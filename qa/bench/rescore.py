"""Re-scoring speed: stored calls scored again with a new scorecard version, without ASR.

Builds `calls` stored results in a temporary local store (scripted calls of a few
templates, each annotated once with the real sentiment model as the pipeline stores them,
copied under varied ids, agents, teams and dates), then times what `qa rescore` does per
call, in this process, one call after another: choose the calls (`plan_rescore`), read the
stored result, score it with the real sentence encoder (semantic rules), publish it and
sync the workflow database; the analytics index is appended at the end. With a time budget
the run stops early and the total is extrapolated from the calls measured.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qa.config import Settings
from qa.progress import progress_bar

TEAMS = ("alpha", "beta", "gamma", "delta")
PIPELINE = "bench"


def _new_card(directory: Path) -> Path:
    """The bundled English card with its version bumped and a stricter dead-air item."""
    from qa.scoring.scorecard import SCORECARD_DIR

    text = (SCORECARD_DIR / "en_customer_service.yaml").read_text(encoding="utf-8")
    text = text.replace('version: "1.1"', 'version: "bench-2"').replace(
        'op: "<=", threshold: 30}', 'op: "<=", threshold: 10}'
    )
    path = directory / "en_bench.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def build_store(
    settings: Settings,
    calls: int,
    *,
    templates: int = 20,
    minutes: float = 3.0,
    console: Console | None = None,
) -> float:
    """`calls` stored results scored with the bundled card; seconds taken."""
    from qa.pipeline import Models
    from qa.results import publish_result
    from qa.rules.scripted import long_call
    from qa.schema import CallMeta, CallResult
    from qa.scoring.scorecard import default_scorecard, score_call
    from qa.store import open_store

    t0 = time.perf_counter()
    store, models, card = open_store(settings), Models(settings), default_scorecard("en")
    made = []
    for seed in range(templates):
        transcript = long_call(minutes, seed=seed, call_id="template")
        models.sentiment.annotate(transcript)  # stored transcripts carry it
        meta = CallMeta(call_id="template", language="en")
        made.append((transcript, score_call(transcript, meta, card)))
    base = datetime(2026, 9, 1, 8, tzinfo=UTC)
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task("building stored calls", total=calls)
        for n in range(calls):
            call_id = f"bench-{n:06d}"
            transcript, score = made[n % templates]
            meta = CallMeta(
                call_id=call_id,
                agent_id=f"A{n % 97:03d}",
                team=TEAMS[n % 4],
                queue="billing" if n % 3 else "sales",
                language="en",
                started_at=base + timedelta(minutes=13 * n),
            )
            publish_result(
                store,
                CallResult(
                    meta=meta,
                    transcript=transcript.model_copy(update={"call_id": call_id}),
                    score=score.model_copy(update={"call_id": call_id}),
                    pipeline_version=PIPELINE,
                    scorecard_version=card.version,
                    created_at=base,
                ),
            )
            bar.update(task, completed=n + 1)
    return time.perf_counter() - t0


def rescore_sequential(
    settings: Settings, card: Path, *, budget_s: float | None = None, console: Console | None = None
) -> dict[str, float]:
    """Time `qa rescore`'s work per call in this process; figures in seconds."""
    from qa.index import Index
    from qa.pipeline import Models, scorecard_tag
    from qa.results import plan_rescore, publish_result
    from qa.schema import CallResult
    from qa.scoring.rescore import rescore_with_configured
    from qa.store import open_store
    from qa.summary import CallSummary
    from qa.workflow import open_workflow

    settings = settings.model_copy(update={"scorecard": str(card)})
    store, models, wf = open_store(settings), Models(settings), open_workflow(settings)
    t = time.perf_counter()
    models.encoder, models.sentiment  # noqa: B018 - loaded before timing, as a worker does
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    plan = plan_rescore(store, lambda lang: scorecard_tag(models, lang))
    plan_s = time.perf_counter() - t
    figures = {
        "selected": len(plan.targets),
        "plan_s": plan_s,
        "load_s": load_s,
        "read_s": 0.0,
        "score_s": 0.0,
        "publish_s": 0.0,
    }
    rows: list[CallSummary] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    with progress_bar(console=console, transient=True) as bar:
        task = bar.add_task("re-scoring", total=len(plan.targets))
        for n, target in enumerate(plan.targets):
            t = time.perf_counter()
            old = store.get_json(target.key, CallResult)
            t1 = time.perf_counter()
            new = rescore_with_configured(old, models)
            t2 = time.perf_counter()
            publish_result(store, new)
            wf.sync_result(new)
            rows.append(CallSummary.from_result(new))
            t3 = time.perf_counter()
            figures["read_s"] += t1 - t
            figures["score_s"] += t2 - t1
            figures["publish_s"] += t3 - t2
            figures["measured"] = n + 1
            bar.update(task, completed=n + 1)
            if budget_s is not None and t3 - t0 > budget_s:
                break
    t = time.perf_counter()
    Index(store).append(rows)
    figures["index_s"] = time.perf_counter() - t
    figures["wall_s"] = time.perf_counter() - t0
    figures["cpu_s"] = time.process_time() - cpu0
    return figures


def run(
    calls: int = 10_000,
    *,
    budget_s: float | None = 600.0,
    keep: Path | None = None,
    console: Console | None = None,
) -> tuple[str, Table]:
    """A line describing the run and the table of figures."""
    console = console or Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="qa-bench-rescore-") as tmp:
        home = Path(keep or tmp).resolve()
        home.mkdir(parents=True, exist_ok=True)
        settings = Settings(
            home=home,
            store_url=f"file://{home / 'store'}",
            database_url=f"sqlite:///{home / 'workflow.db'}",
        )
        build_s = build_store(settings, calls, console=console)
        f = rescore_sequential(settings, _new_card(home), budget_s=budget_s, console=console)
    measured = int(f["measured"])
    per_call = f["wall_s"] / measured
    table = Table("what", "calls", "seconds", "ms/call", "calls/s")
    table.add_row(
        "build the stored calls (not timed as re-scoring)", str(calls), f"{build_s:.1f}", "", ""
    )
    table.add_row(
        "load encoder + sentiment model (once per worker)", "", f"{f['load_s']:.1f}", "", ""
    )
    table.add_row(
        "choose calls (list store, read result heads)",
        str(int(f["selected"])),
        f"{f['plan_s']:.1f}",
        f"{1000 * f['plan_s'] / f['selected']:.2f}",
        "",
    )
    for key, label in (
        ("read_s", "read stored result"),
        ("score_s", "score (encoder, rules)"),
        ("publish_s", "publish result + sync workflow DB"),
    ):
        table.add_row(label, str(measured), f"{f[key]:.1f}", f"{1000 * f[key] / measured:.1f}", "")
    table.add_row("append index rows (once)", str(measured), f"{f['index_s']:.2f}", "", "")
    table.add_row(
        "re-scoring, sequential, one process",
        str(measured),
        f"{f['wall_s']:.1f}",
        f"{1000 * per_call:.1f}",
        f"{measured / f['wall_s']:.2f}",
    )
    note = ""
    if measured < calls:
        table.add_row(
            f"extrapolated to {calls} calls",
            str(calls),
            f"{f['plan_s'] + per_call * calls:.0f}",
            "",
            "",
        )
        note = f"; stopped after the {budget_s:g} s budget, {measured} of {calls} measured"
    header = (
        f"{calls} stored 3-minute English calls; CPU {f['cpu_s']:.1f} s for "
        f"{f['wall_s']:.1f} s wall ({f['cpu_s'] / f['wall_s']:.2f} cores busy); load "
        f"average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores{note}"
    )
    return header, table
