"""Fill a workflow database with many calls for page benchmarks, from synthetic index rows.

The index rows are `qa.summary.CallSummary` records already, so the database gets exactly
what `Workflow.sync_summary` would store, written in bulk (one executemany per chunk)
instead of one transaction per call: 100,000 calls take seconds, not an hour.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pyarrow as pa
from sqlalchemy import insert

from qa.summary import DERIVED, CallSummary
from qa.workflow import Workflow
from qa.workflow.models import Call, CallItem

CHUNK = 5_000


def load_calls(
    wf: Workflow, table: pa.Table, progress: Callable[[int, int], None] | None = None
) -> int:
    """Insert every row of `table` (in `qa.summary.SCHEMA`) as a call with its items."""
    now = datetime.now(UTC)
    done = 0
    for batch in table.to_batches(CHUNK):
        calls, items = [], []
        for row in batch.to_pylist():
            summary = CallSummary.model_validate(row)
            values = summary.model_dump(exclude={"items", *DERIVED})
            values["flag_codes"] = "," + "".join(f"{code}," for code in summary.flags)
            calls.append({**values, "synced_at": now})
            items.extend(
                {
                    **item.model_dump(),
                    "auto_outcome": item.auto_outcome.value,
                    "call_id": summary.call_id,
                    "position": position,
                }
                for position, item in enumerate(summary.items)
            )
        with wf.engine.begin() as conn:
            conn.execute(insert(Call), calls)
            conn.execute(insert(CallItem), items)
        done += len(calls)
        if progress:
            progress(done, table.num_rows)
    return done
