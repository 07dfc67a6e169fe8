"""Scoring speed: calls per second per core with the default scorecard on scripted calls.

The rules without models (metrics, phrase, regex, order, metric rules) are timed over many
calls, several passes (median and best shown); semantic and sentiment rules, which run a
model, over a few calls, and reported as what they add per call.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from qa.config import Settings
from qa.rules.format import Scorecard
from qa.rules.scripted import long_call
from qa.schema import Transcript
from qa.scoring.scorecard import default_scorecard, score_call


def time_scoring(
    transcripts: list[Transcript],
    scorecard: Scorecard,
    *,
    encoder: Any = None,
    sentiment: Any = None,
    progress: Any = None,
) -> dict[str, float]:
    """Score each transcript once and measure it: calls per CPU-second is calls/s per core.

    Without models everything runs in this thread, so its own CPU time is measured (a
    progress display's refresh thread does not count); with models, the whole process's,
    so the models' own threads count. `progress(done)` is told after each call.
    """
    clock = (
        time.process_time if (encoder is not None or sentiment is not None) else time.thread_time
    )
    cpu0, wall0 = clock(), time.perf_counter()
    for done, t in enumerate(transcripts, 1):
        score_call(t, None, scorecard, encoder=encoder, sentiment=sentiment)
        if progress is not None:
            progress(done)
    cpu, wall = clock() - cpu0, time.perf_counter() - wall0
    n = len(transcripts)
    return {
        "calls": n,
        "cpu_s": cpu,
        "wall_s": wall,
        "calls_per_core_s": n / cpu if cpu else float("inf"),
        "ms_per_call": 1000 * cpu / n if n else 0.0,
    }


def run(
    settings: Settings,
    *,
    calls: int = 300,
    repeat: int = 5,
    model_calls: int = 3,
    minutes: float = 5.0,
    language: str = "en",
    models: bool = True,
    console: Console | None = None,
    load_models: Callable[[], tuple[Any, Any]] = lambda: (None, None),
) -> tuple[str, Table]:
    """A line describing the run and the table of figures. `load_models()` gives the encoder
    and the sentiment model (None where not installed: that row is left out); progress is
    drawn on `console`."""
    card = default_scorecard(language, settings)
    transcripts = [long_call(minutes, language=language, seed=i) for i in range(calls)]
    words = sum(len(u.words) for u in transcripts[0].utterances)
    time_scoring(transcripts[:5], card)  # warm caches (phrase tables, normalisation tables)
    rows: list[tuple[str, dict]] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("rules without models", total=len(transcripts) * repeat)
        passes = [
            time_scoring(
                transcripts,
                card,
                progress=lambda d, k=k: bar.update(task, completed=k * len(transcripts) + d),
            )
            for k in range(repeat)
        ]
        passes.sort(key=lambda r: r["cpu_s"])
        base = passes[len(passes) // 2]
        rows.append((f"metrics + phrase/regex/order/metric rules, median of {repeat}", base))
        rows.append((f"metrics + phrase/regex/order/metric rules, best of {repeat}", passes[0]))
        if models and model_calls:
            encoder, sentiment = load_models()
            few = transcripts[:model_calls]
            for label, kw in (
                ("+ semantic rules (encoder)", {"encoder": encoder}),
                ("+ sentiment rules (sentiment model)", {"sentiment": sentiment}),
            ):
                if next(iter(kw.values())) is None:
                    continue
                task = bar.add_task(label, total=len(few))
                rows.append(
                    (
                        label,
                        time_scoring(
                            few, card, **kw, progress=lambda d, t=task: bar.update(t, completed=d)
                        ),
                    )
                )
    table = Table(
        "rules",
        "calls",
        "CPU s",
        "wall s",
        "ms/call (CPU)",
        "calls/s per core",
        "model part ms/call",
    )
    for label, r in rows:
        extra = f"{r['ms_per_call'] - base['ms_per_call']:.1f}" if label.startswith("+") else ""
        table.add_row(
            label,
            str(r["calls"]),
            f"{r['cpu_s']:.2f}",
            f"{r['wall_s']:.2f}",
            f"{r['ms_per_call']:.2f}",
            f"{r['calls_per_core_s']:.1f}",
            extra,
        )
    spread = statistics.pstdev([p["ms_per_call"] for p in passes]) if len(passes) > 1 else 0.0
    header = (
        f"scorecard {card.id} v{card.version}; {minutes:g}-minute {language} calls "
        f"({len(transcripts[0].utterances)} utterances, {words} words); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; spread of passes "
        f"{spread:.2f} ms/call"
    )
    return header, table
