"""Analytics index speed: a manager's queries on a synthetic index of plausible rows.

The rows are built column-wise with numpy straight into the index's Arrow schema, so a
million calls take seconds and need no pipeline run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import pyarrow as pa
from rich.table import Table

from qa.index import Index
from qa.store import LocalStore
from qa.summary import ITEM_TYPE, SCHEMA, TS


def synthetic_table(
    n: int,
    *,
    seed: int = 0,
    teams: int = 12,
    agents: int = 400,
    queues: int = 8,
    items: int = 8,
    weeks: int = 26,
    start: date = date(2025, 1, 6),
) -> pa.Table:
    """`n` plausible index rows built column-wise with numpy (a million in a few seconds)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    agent = rng.integers(0, agents, n)
    team = agent % teams
    queue = rng.integers(0, queues, n)
    seconds = rng.integers(0, weeks * 7 * 86400, n)
    started = (np.datetime64(start.isoformat(), "s") + seconds.astype("timedelta64[s]")).astype(
        "datetime64[us]"
    )
    week_days = (seconds // 86400) - ((seconds // 86400) % 7)
    week = np.datetime64(start.isoformat(), "D") + week_days.astype("timedelta64[D]")
    skill = (agent % 17) / 17.0
    n_items = n * items
    item_fail = rng.random(n_items) < np.repeat(0.05 + 0.25 * (1 - skill), items) * (
        np.tile(np.linspace(1.6, 0.3, items), n)
    )
    item_na = rng.random(n_items) < 0.05
    outcome_code = np.where(item_na, 2, np.where(item_fail, 1, 0))
    possible = np.tile(np.full(items, 100.0 / items), n)
    points = np.where(outcome_code == 0, possible, 0.0)
    critical = np.tile(np.arange(items) == 0, n)
    auto_fail = item_fail.reshape(n, items)[:, 0] & ~item_na.reshape(n, items)[:, 0]
    applicable = ~item_na.reshape(n, items)
    earned = (points.reshape(n, items) * applicable).sum(axis=1)
    available = np.maximum((possible.reshape(n, items) * applicable).sum(axis=1), 1e-9)
    total = np.where(auto_fail, 0.0, np.round(100.0 * earned / available, 2))
    passed = (total >= 80.0) & ~auto_fail
    sentiment = np.clip(rng.normal(0.1 + 0.3 * skill, 0.35, n), -1, 1)
    neg_end = sentiment < -0.3
    low_role = rng.random(n) < 0.02
    flag_mask = np.stack([auto_fail, ~passed & ~auto_fail, neg_end, low_role], axis=1)
    flag_names = np.array(["auto_fail", "below_pass", "negative_ending", "low_role_confidence"])
    flag_count = flag_mask.sum(axis=1).astype(np.int32)
    flags = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(flag_count)]).astype(np.int32)),
        _labels(np.broadcast_to(np.arange(4), flag_mask.shape)[flag_mask], flag_names),
    )
    offsets = pa.array(np.arange(0, n_items + 1, items, dtype=np.int32))
    item_ids = np.tile(np.arange(items), n)
    item_struct = pa.StructArray.from_arrays(
        [
            _labels(item_ids, [f"item_{j}" for j in range(items)]),
            _labels(item_ids, [f"Item {j}" for j in range(items)]),
            _labels(np.zeros(n_items, dtype=np.int32), ["Synthetic"]),
            _flat(critical),
            _flat(possible),
            _labels(outcome_code, ["pass", "fail", "na"]),
            _flat(points),
        ],
        fields=list(ITEM_TYPE),
    )
    auto_fail_reasons = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(auto_fail)]).astype(np.int32)),
        _labels(np.zeros(int(auto_fail.sum()), dtype=np.int32), ["critical item 'Item 0' failed"]),
    )
    processed = started + np.timedelta64(3600, "s").astype("timedelta64[us]")
    cols = {
        "call_id": pa.array([f"syn-{i:08d}" for i in range(n)]),
        "agent_id": _labels(agent, [f"agent-{i}" for i in range(agents)]),
        "team": _labels(team, [f"team-{i}" for i in range(teams)]),
        "queue": _labels(queue, [f"queue-{i}" for i in range(queues)]),
        "direction": _labels(rng.random(n) < 0.2, ["inbound", "outbound"]),
        "language": _labels(rng.random(n) < 0.3, ["en", "zh"]),
        "started_at": pa.array(started, type=TS),
        "week": pa.array(week, type=pa.date32()),
        "duration": pa.array(rng.gamma(4.0, 80.0, n)),
        "max_total": pa.array(np.full(n, 100.0)),
        "pass_mark": pa.array(np.full(n, 80.0)),
        "scoring_mode": _labels(np.zeros(n, dtype=np.int32), ["weighted"]),
        "auto_fail_zeroes_total": pa.array(np.ones(n, dtype=bool)),
        "auto_total": pa.array(total),
        "auto_passed": pa.array(passed),
        "auto_fail": pa.array(auto_fail),
        "auto_fail_reasons": auto_fail_reasons,
        "flags": flags,
        "flag_reasons": flags,
        "flag_count": pa.array(flag_count),
        "items": pa.ListArray.from_arrays(offsets, item_struct),
        "items_failed": pa.array(item_fail.reshape(n, items).sum(axis=1).astype(np.int32)),
        "customer_sentiment_mean": pa.array(sentiment),
        "customer_sentiment_end": pa.array(np.clip(sentiment + rng.normal(0, 0.2, n), -1, 1)),
        "agent_sentiment_mean": pa.array(np.clip(rng.normal(0.3, 0.2, n), -1, 1)),
        "role_confidence": pa.array(np.where(low_role, 0.4, 0.95)),
        "asr_confidence": pa.array(rng.uniform(0.7, 0.99, n)),
        "longest_silence": pa.array(rng.gamma(2.0, 3.0, n)),
        "hold_total": pa.array(rng.gamma(1.0, 10.0, n)),
        "overtalk_total": pa.array(rng.gamma(1.0, 2.0, n)),
        "pipeline_version": _labels(np.zeros(n, dtype=np.int32), ["bench"]),
        "scorecard_id": _labels(np.zeros(n, dtype=np.int32), ["synthetic"]),
        "scorecard_version": _labels(np.zeros(n, dtype=np.int32), ["1"]),
        "processed_at": pa.array(processed, type=TS),
    }
    return pa.table(cols, schema=SCHEMA)


def _flat(values: Any) -> pa.Array:
    """pyarrow may chunk large numpy arrays; struct fields need one array."""
    arr = pa.array(values)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _labels(codes: Any, names: Sequence[str]) -> pa.Array:
    """Strings from small integer codes without a Python string per row."""
    import numpy as np

    dictionary = pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(names), pa.string())
    )
    return dictionary.cast(pa.string())


def run(rows: int = 1_000_000, repeat: int = 5) -> Table:
    """Generate `rows` calls, write them as one part in a temporary local store, then time
    the first query (which opens the index) and `repeat` runs of each named query."""
    with tempfile.TemporaryDirectory(prefix="qa-bench-index-") as tmp:
        t0 = time.perf_counter()
        table = synthetic_table(rows)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        Index(LocalStore(tmp)).append_table(table)
        t_write = time.perf_counter() - t0
        del table
        index = Index(LocalStore(tmp))
        t0 = time.perf_counter()
        index.trend("team", "week")
        t_cold = time.perf_counter() - t0
        out = Table(
            "query", "median s", "min s", "result rows", title=f"analytics index, {rows:,} calls"
        )
        out.add_row("generate rows", f"{t_gen:.2f}", "", f"{rows:,}")
        out.add_row("write Parquet part", f"{t_write:.2f}", "", "")
        out.add_row("trend by team/week, first query (opens index)", f"{t_cold:.3f}", "", "")
        queries = {
            "trend by team/week": lambda: index.trend("team", "week"),
            "trend by agent/month": lambda: index.trend("agent", "month"),
            "review queue (one team)": lambda: index.review_queue(team="team-3"),
            "item pareto": lambda: index.item_pareto(),
        }
        for label, fn in queries.items():
            times, n = [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                n = len(fn())
                times.append(time.perf_counter() - t0)
            out.add_row(label, f"{statistics.median(times):.3f}", f"{min(times):.3f}", str(n))
        return out
