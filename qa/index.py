"""Analytics index: one row per call in Parquet parts under `index/calls/`, queried with DuckDB.

Writers only ever add immutable part files (`append`, one per batch, published atomically by
the store), so the pipeline can append while the dashboard reads. A call processed again
(new pipeline or scorecard version) gets a newer row in a newer part; readers keep the row
with the latest `processed_at` per call, so duplicates between parts are harmless and
`rebuild` / `compact` can write their new parts before deleting the old ones.

DuckDB cannot download its httpfs extension here, so parts on S3 are copied once into a
local cache (parts never change, so a cached copy is valid forever) and read from disk.

Pipeline use::

    index = Index(store)
    index.append(CallSummary.from_result(r) for r in batch_results)   # after publishing them
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from qa.errors import QAError
from qa.schema import CallResult
from qa.store import CorruptObjectError, ObjectNotFoundError, Store, keys
from qa.summary import SCHEMA, CallSummary, to_arrow, utc

if TYPE_CHECKING:
    import duckdb
    import pandas as pd

ROWS_PER_PART = 50_000
ProgressFn = Callable[[int, int], None]


class IndexQueryError(QAError):
    """A query the index cannot answer (bad SQL, unknown grouping or filter)."""


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=128_000)
    return buf.getvalue()


def _part_name() -> str:
    return f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"


# --------------------------------------------------------------------------- reports


class RebuildReport(BaseModel):
    results: int = 0
    rows: int = 0
    parts_written: int = 0
    parts_removed: int = 0
    skipped: dict[str, str] = Field(default_factory=dict)  # key -> reason


class CompactReport(BaseModel):
    rows_before: int = 0
    rows_after: int = 0
    parts_removed: int = 0
    part: str | None = None


# --------------------------------------------------------------------------- index

GROUPS = {
    "team": "team",
    "agent": "agent_id",
    "queue": "queue",
    "scorecard": "scorecard_id",
    "language": "language",
    "direction": "direction",
}
PERIODS = ("day", "week", "month", "quarter", "year")
FILTERS = ("team", "agent_id", "queue", "scorecard_id", "language", "direction")


class Index:
    """The per-call analytics table over a store; safe to share between threads."""

    def __init__(self, store: Store, cache_dir: str | Path | None = None, threads: int = 2) -> None:
        self.store = store
        self.threads = threads
        if cache_dir is None:
            digest = hashlib.sha1(store.url_root.encode()).hexdigest()[:12]
            cache_dir = Path(tempfile.gettempdir()) / "qa-index-cache" / digest
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._parts: tuple[str, ...] | None = None

    # ---- writing

    def parts(self) -> list[str]:
        return [k for k in self.store.list(keys.INDEX) if k.endswith(".parquet")]

    def append(self, rows: Iterable[CallSummary | CallResult]) -> str | None:
        """Publish one new part with these rows; returns its key (None for no rows)."""
        batch = [r if isinstance(r, CallSummary) else CallSummary.from_result(r) for r in rows]
        if not batch:
            return None
        return self._write(to_arrow(batch))

    def append_table(self, table: pa.Table) -> str:
        """Publish an Arrow table already in `SCHEMA` (bulk loads, benchmarks)."""
        return self._write(table.cast(SCHEMA))

    def _write(self, table: pa.Table) -> str:
        key = keys.index_part(_part_name())
        self.store.put_bytes(
            key, _parquet_bytes(table), "application/vnd.apache.parquet", overwrite=False
        )
        return key

    def rebuild(self, progress: ProgressFn | None = None) -> RebuildReport:
        """Re-derive the index from every result in the store, then drop the old parts."""
        old = self.parts()
        report = RebuildReport()
        result_keys = [k for k in self.store.list(keys.RESULTS) if keys.parse_result(k)]
        batch: list[CallSummary] = []

        def flush() -> None:
            if batch:
                self.append(batch)
                report.parts_written += 1
                report.rows += len(batch)
                batch.clear()

        for i, key in enumerate(result_keys, 1):
            try:
                batch.append(CallSummary.from_result(self.store.get_json(key, model=CallResult)))
                report.results += 1
            except (CorruptObjectError, ObjectNotFoundError) as exc:
                report.skipped[key] = exc.reason
            if len(batch) >= ROWS_PER_PART:
                flush()
            if progress:
                progress(i, len(result_keys))
        flush()
        for key in old:
            self.store.delete(key)
        report.parts_removed = len(old)
        self._invalidate()
        return report

    def compact(self) -> CompactReport:
        """Merge all parts into one, keeping only each call's latest row."""
        old = self.parts()
        report = CompactReport(parts_removed=len(old))
        if len(old) <= 1:
            report.parts_removed = 0
            report.rows_before = report.rows_after = self.count()
            return report
        with self._lock:
            con = self._connect_parts(old)
            report.rows_before = con.execute("SELECT count(*) FROM calls_all").fetchall()[0][0]
            table = con.sql("SELECT * FROM calls ORDER BY week, call_id").to_arrow_table()
            con.close()
        report.rows_after = table.num_rows
        report.part = self._write(table.select(SCHEMA.names).cast(SCHEMA))
        for key in old:
            self.store.delete(key)
        self._invalidate()
        return report

    # ---- reading

    def _invalidate(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con, self._parts = None, None

    def _local_files(self, parts: Sequence[str]) -> list[str]:
        files: list[str] = []
        wanted: set[Path] = set()
        for key in parts:
            local = self.store.local_path(key)
            if local is None:
                local = self.cache_dir / key.rsplit("/", 1)[-1]
                wanted.add(local)
                if not local.exists():
                    self.store.get_file(key, local)
            files.append(str(local))
        if self.cache_dir.is_dir() and wanted:
            for stale in self.cache_dir.glob("part-*.parquet"):
                if stale not in wanted:
                    stale.unlink(missing_ok=True)
        return files

    def _connect_parts(self, parts: Sequence[str]) -> duckdb.DuckDBPyConnection:
        import duckdb

        con = duckdb.connect(
            config={
                "threads": self.threads,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
            }
        )
        con.execute("SET TimeZone = 'UTC'")  # weeks and months are UTC, like `week`
        files = self._local_files(parts)
        if files:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                "CREATE VIEW calls_all AS "
                f"SELECT * FROM read_parquet([{listed}], union_by_name=true)"
            )
            columns = {row[0] for row in con.execute("DESCRIBE calls_all").fetchall()}
            if columns != set(SCHEMA.names):
                con.close()
                raise IndexQueryError(
                    "the index has parts written by an earlier release (columns "
                    f"{', '.join(sorted(columns ^ set(SCHEMA.names)))} differ); "
                    "run `qa index rebuild`"
                )
        else:
            con.register("empty_calls", SCHEMA.empty_table())
            con.execute("CREATE VIEW calls_all AS SELECT * FROM empty_calls")
        # Views, not copies: each query reads only the columns it needs from the parts.
        # The dedup window costs a sort, so it is applied only when a call has several rows.
        dups = con.execute("SELECT count(*) - count(DISTINCT call_id) FROM calls_all").fetchall()[
            0
        ][0]
        if dups:
            con.execute("""
                CREATE VIEW calls AS SELECT * FROM calls_all
                QUALIFY row_number() OVER (PARTITION BY call_id
                                           ORDER BY processed_at DESC, pipeline_version DESC,
                                                    scorecard_version DESC) = 1
            """)
        else:
            con.execute("CREATE VIEW calls AS SELECT * FROM calls_all")
        return con

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with tables `calls` (one row per call) and `calls_all`.

        Reloaded only when the set of parts changed since the last call.
        """
        parts = tuple(self.parts())
        with self._lock:
            if self._con is None or parts != self._parts:
                if self._con is not None:
                    self._con.close()
                self._con = self._connect_parts(parts)
                self._parts = parts
            return self._con

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run SQL over `calls` (deduplicated) / `calls_all`; returns a pandas frame."""
        import duckdb

        con = self.connection()
        with self._lock:
            try:
                return con.execute(sql, params or []).df()
            except duckdb.Error as exc:
                raise IndexQueryError(f"index query failed: {exc}") from exc

    def count(self) -> int:
        return int(self.query("SELECT count(*) AS n FROM calls")["n"].iloc[0])

    # ---- named queries

    @staticmethod
    def _where(
        filters: dict[str, Any], since: date | datetime | None, until: date | datetime | None
    ) -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        for column, value in filters.items():
            if column not in FILTERS:
                raise IndexQueryError(f"unknown filter {column!r}; use one of {', '.join(FILTERS)}")
            if value is None:
                continue
            if isinstance(value, list | tuple | set):
                clauses.append(f"{column} IN (SELECT unnest(?::VARCHAR[]))")
                params.append(list(value))
            else:
                clauses.append(f"{column} = ?")
                params.append(value)
        when = "coalesce(started_at, processed_at)"
        if since is not None:
            clauses.append(f"{when} >= ?")
            params.append(_as_ts(since))
        if until is not None:
            clauses.append(f"{when} < ?")
            params.append(_as_ts(until))
        return " AND ".join(clauses), params

    def trend(
        self,
        by: str | None = "team",
        period: Literal["day", "week", "month", "quarter", "year"] = "week",
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        **filters: Any,
    ) -> pd.DataFrame:
        """Quality over time: calls, mean score, pass / auto-fail / flagged rates, sentiment."""
        if by is not None and by not in GROUPS:
            raise IndexQueryError(f"cannot group by {by!r}; use one of {', '.join(GROUPS)}")
        if period not in PERIODS:
            raise IndexQueryError(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")
        bucket = (
            "week"
            if period == "week"
            else f"date_trunc('{period}', coalesce(started_at, processed_at))::DATE"
        )
        group = GROUPS[by] if by else "'all'"
        where, params = self._where(filters, since, until)
        sql = f"""
            SELECT {bucket} AS period, {group} AS "{by or "group"}",
                   count(*) AS calls,
                   round(avg(auto_total), 2) AS mean_score,
                   round(avg(auto_passed::INT), 4) AS pass_rate,
                   round(avg(auto_fail::INT), 4) AS auto_fail_rate,
                   round(avg((flag_count > 0)::INT), 4) AS flagged_rate,
                   round(avg(customer_sentiment_mean), 4) AS customer_sentiment,
                   round(avg(customer_sentiment_end), 4) AS customer_sentiment_end,
                   round(avg(duration), 1) AS mean_duration
            FROM calls WHERE {where}
            GROUP BY ALL ORDER BY period, 2
        """
        return self.query(sql, params)

    def review_queue(
        self,
        *,
        flags: Sequence[str] | None = None,
        include_passed: bool = True,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        limit: int = 200,
        **filters: Any,
    ) -> pd.DataFrame:
        """Calls a person should look at: auto-fails first, then most flags, then lowest score."""
        where, params = self._where(filters, since, until)
        if flags:
            where += " AND list_has_any(flags, ?::VARCHAR[])"
            params.append(list(flags))
        else:
            where += " AND flag_count > 0"
        if not include_passed:
            where += " AND NOT auto_passed"
        sql = f"""
            SELECT call_id, agent_id, team, queue, started_at, auto_total, pass_mark, auto_passed,
                   auto_fail, flags, flag_count, customer_sentiment_end, role_confidence,
                   asr_confidence, scorecard_id, scorecard_version, pipeline_version
            FROM calls WHERE {where}
            ORDER BY auto_fail DESC, flag_count DESC, auto_total ASC, started_at DESC NULLS LAST,
                     call_id
            LIMIT {int(limit)}
        """
        return self.query(sql, params)

    def item_pareto(
        self,
        *,
        since: date | datetime | None = None,
        until: date | datetime | None = None,
        **filters: Any,
    ) -> pd.DataFrame:
        """Scorecard items by failures, with the cumulative share: which few items cost most."""
        where, params = self._where(filters, since, until)
        sql = f"""
            WITH it AS (SELECT unnest(items) AS i FROM calls WHERE {where}),
            agg AS (
                SELECT i.item_id AS item_id,
                       count(*) FILTER (WHERE i.auto_outcome = 'fail') AS fails,
                       count(*) FILTER (WHERE i.auto_outcome <> 'na') AS applicable,
                       coalesce(sum(i.points_possible - i.auto_points)
                                FILTER (WHERE i.auto_outcome = 'fail'), 0) AS points_lost,
                       bool_or(i.critical) AS critical
                FROM it GROUP BY 1)
            SELECT item_id, fails, applicable,
                   round(fails / nullif(applicable, 0), 4) AS fail_rate,
                   points_lost, critical,
                   round(sum(fails) OVER (ORDER BY fails DESC, item_id
                                          ROWS UNBOUNDED PRECEDING)
                         / nullif(sum(fails) OVER (), 0), 4) AS cumulative_share
            FROM agg ORDER BY fails DESC, item_id
        """
        return self.query(sql, params)


def _as_ts(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return utc(value)  # type: ignore[return-value]
    return datetime(value.year, value.month, value.day, tzinfo=UTC)
