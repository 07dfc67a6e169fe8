"""Full-text search over transcripts: find the moment a word or phrase was said.

One row per utterance in an SQLite FTS5 table (built into Python's sqlite3; measured against
tantivy in docs/benchmarks.md), beside a table of each call's filter columns. The file lives
under `$QA_HOME/search/`: the pipeline adds each call as it publishes the result
(`workers.batch.Publisher`), `qa search rebuild` re-derives it from the stored results.

Why our own terms instead of an FTS tokenizer: English words are matched whole and case-free,
and Chinese runs are indexed as overlapping character bigrams, so any run of two or more
characters a person types is found as a phrase of bigrams wherever it was said (a word
segmenter such as jieba cuts the same characters differently in different sentences and
misses them; the recall measured on real helpdesk text is in docs/benchmarks.md). The terms
are computed here, stored nowhere (a contentless FTS5 table) and recomputed from the
utterance text when a call's rows are replaced.

Access: `search` takes the acting user; an agent gets hits on their own calls only
(`auth.SEARCHERS` says who may search at all). Hits come newest indexed first (rebuild
inserts calls in order of their start), which needs no sort of every match.

A rebuild writes a new generation file and switches `CURRENT` to it atomically, so readers
never see a half-built index; a reader opens the new generation at its next search.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from qa.errors import AccessDenied, QAError
from qa.schema import CallResult, ItemOutcome, Role
from qa.store import CorruptObjectError, ObjectNotFoundError, Store, keys
from qa.workflow import auth
from qa.workflow.views import UserRole, UserView

MAX_QUERY_CHARS = 200
MAX_TERMS = 12
MAX_LIMIT = 500
SNIPPET_CHARS = 160
BATCH_CALLS = 500

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_WORDCHAR = rf"[^\W_{_CJK}]"
_QUERY_PART = re.compile(r'"([^"]*)"?|(\S+)')

ProgressFn = Callable[[int, int], None]


class SearchError(QAError):
    """A query the search cannot run (empty, too long, bad filter)."""


# --------------------------------------------------------------------------- terms


def _pieces(text: str) -> list[str]:
    """Latin / digit words and CJK runs, normalised (full-width forms, case)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def _is_cjk(piece: str) -> bool:
    return "\u3400" <= piece[0] <= "\ufaff"


def _piece_terms(piece: str) -> list[str]:
    if not _is_cjk(piece) or len(piece) == 1:
        return [piece]
    return [piece[i : i + 2] for i in range(len(piece) - 1)]


def index_terms(text: str) -> str:
    """What FTS5 indexes for an utterance: words, and Chinese as overlapping bigrams."""
    return " ".join(t for p in _pieces(text) for t in _piece_terms(p))


def _match_term(text: str) -> str | None:
    """One typed term or quoted phrase as an FTS5 phrase (None when it has no words)."""
    pieces = _pieces(text)
    if not pieces:
        return None
    if len(pieces) == 1 and _is_cjk(pieces[0]) and len(pieces[0]) == 1:
        return f'"{pieces[0]}"*'  # one character: alone, or the first of a bigram
    return '"' + " ".join(t for p in pieces for t in _piece_terms(p)) + '"'


def parse_query(text: str) -> list[str]:
    """The typed query's terms: quoted phrases kept whole, other words one term each."""
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the search is longer than {MAX_QUERY_CHARS} characters")
    terms = []
    for m in _QUERY_PART.finditer(text):
        term = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        if term and _pieces(term):
            terms.append(term)
    if not terms:
        raise SearchError("type a word or a phrase to search for")
    if len(terms) > MAX_TERMS:
        raise SearchError(f"at most {MAX_TERMS} words or phrases at once")
    return terms


def match_expression(terms: Iterable[str]) -> str:
    """All terms must occur in the utterance (AND); each is an exact phrase of terms."""
    parts = [p for t in terms if (p := _match_term(t))]
    if not parts:
        raise SearchError("type a word or a phrase to search for")
    return " AND ".join(parts)


def _term_pattern(term: str) -> str:
    parts = []
    for piece in _pieces(term):
        body = re.escape(piece)
        parts.append(body if _is_cjk(piece) else rf"(?<!{_WORDCHAR}){body}(?!{_WORDCHAR})")
    return r"[\W_]*".join(parts)


class SnippetPart(BaseModel):
    """A piece of an utterance's text; `hit` marks what the search matched. Plain text:
    the page escapes it before it marks anything."""

    text: str
    hit: bool = False


def snippet(text: str, terms: Iterable[str], width: int = SNIPPET_CHARS) -> list[SnippetPart]:
    """The utterance around its first match, with each match marked."""
    normal = unicodedata.normalize("NFKC", text)
    patterns = [p for t in terms if (p := _term_pattern(t))]
    spans: list[tuple[int, int]] = []
    if patterns and len(normal) == len(text):  # positions agree with the shown text
        rx = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        spans = [m.span() for m in rx.finditer(normal) if m.end() > m.start()]
    lo, hi = 0, len(text)
    if len(text) > width:
        first = spans[0][0] if spans else 0
        lo = max(0, min(first - width // 3, len(text) - width))
        hi = lo + width
    out: list[SnippetPart] = []
    pos = lo
    for s, e in spans:
        if e <= lo or s >= hi:
            continue
        s, e = max(s, lo), min(e, hi)
        if s > pos:
            out.append(SnippetPart(text=text[pos:s]))
        out.append(SnippetPart(text=text[s:e], hit=True))
        pos = e
    if pos < hi:
        out.append(SnippetPart(text=text[pos:hi]))
    if lo > 0:
        out.insert(0, SnippetPart(text="…"))
    if hi < len(text):
        out.append(SnippetPart(text="…"))
    return out


# --------------------------------------------------------------------------- records


class SearchCall(BaseModel):
    """What the search keeps of a call: its filter columns and its utterances."""

    call_id: str
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    language: str | None = None
    started_at: datetime | None = None
    auto_total: float = 0.0
    flags: list[str] = Field(default_factory=list)
    failed_items: list[str] = Field(default_factory=list)
    processed_at: datetime | None = None
    utterances: list[tuple[float, float, str, str]] = Field(default_factory=list)
    # (start, end, role, text)

    @classmethod
    def from_result(cls, result: CallResult) -> SearchCall:
        meta, score = result.meta, result.score
        return cls(
            call_id=meta.call_id,
            agent_id=meta.agent_id,
            team=meta.team,
            queue=meta.queue,
            language=result.transcript.language or meta.language,
            started_at=meta.started_at,
            auto_total=score.total,
            flags=[f.code.value for f in score.flags],
            failed_items=[i.item_id for i in score.items if i.outcome is ItemOutcome.FAIL],
            processed_at=result.created_at,
            utterances=[
                (float(u.start), float(u.end), u.role.value, u.text)
                for u in result.transcript.utterances
            ],
        )


class SearchQuery(BaseModel):
    """A search and its filters; every filter left None means "any"."""

    text: str
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    since: date | datetime | None = None  # started at or after
    until: date | datetime | None = None  # started before
    min_score: float | None = None
    max_score: float | None = None
    flag: str | None = None
    item_failed: str | None = None
    role: Role | None = None  # who said it
    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)


class SearchHit(BaseModel):
    call_id: str
    start: float
    end: float
    role: str
    text: str
    snippet: list[SnippetPart]
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    started_at: datetime | None = None
    auto_total: float | None = None


class SearchResult(BaseModel):
    terms: list[str]
    hits: list[SearchHit] = Field(default_factory=list)
    more: bool = False  # more hits than the limit


class SearchRebuildReport(BaseModel):
    results: int = 0
    calls: int = 0
    utterances: int = 0
    skipped: dict[str, str] = Field(default_factory=dict)  # key -> reason


# --------------------------------------------------------------------------- index

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY, call_id TEXT NOT NULL UNIQUE, agent_id TEXT, team TEXT,
    queue TEXT, language TEXT, started REAL, auto_total REAL, flags TEXT NOT NULL,
    failed_items TEXT NOT NULL, processed REAL, first_utt INTEGER, last_utt INTEGER);
CREATE INDEX IF NOT EXISTS calls_when ON calls(coalesce(started, processed), first_utt, last_utt);
CREATE TABLE IF NOT EXISTS utterances (
    id INTEGER PRIMARY KEY, call INTEGER NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
    role TEXT NOT NULL, text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS utterances_call ON utterances(call);
CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5(
    body, content='', columnsize=0, detail=full, tokenize='unicode61 remove_diacritics 0');
"""


def _epoch(value: date | datetime | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _listed(values: Iterable[str]) -> str:
    return "," + "".join(f"{v}," for v in values)


def default_root(home: Path) -> Path:
    return Path(home) / "search"


class SearchIndex:
    """The search file of one QA home; safe to share between threads."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._file: Path | None = None

    # ---- files

    def _current(self) -> Path | None:
        pointer = self.root / "CURRENT"
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return self.root / name if name else None

    def _switch(self, path: Path) -> None:
        tmp = self.root / f"CURRENT.{uuid.uuid4().hex[:8]}"
        tmp.write_text(path.name, encoding="utf-8")
        os.replace(tmp, self.root / "CURRENT")

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA busy_timeout=10000")
        con.execute("PRAGMA cache_size=-65536")
        con.executescript(SCHEMA)
        return con

    def _connection(self) -> sqlite3.Connection:
        """The current generation's connection, reopened after a rebuild switched it."""
        current = self._current()
        if current is None:
            self.root.mkdir(parents=True, exist_ok=True)
            current = self.root / f"search-{uuid.uuid4().hex[:12]}.db"
            self._open(current).close()
            self._switch(current)
        if self._con is None or current != self._file:
            if self._con is not None:
                self._con.close()
            self._con, self._file = self._open(current), current
        return self._con

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con = self._file = None

    # ---- writing

    def add(self, results: Iterable[CallResult | SearchCall]) -> int:
        """Index these calls, each replacing the call's older rows (a newer result wins);
        returns the number of calls written."""
        calls = [c if isinstance(c, SearchCall) else SearchCall.from_result(c) for c in results]
        with self._lock:
            con = self._connection()
            with _transaction(con):
                return sum(_write_call(con, c, replace=True) for c in calls)

    def call_ids(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._connection().execute("SELECT call_id FROM calls")}

    def counts(self) -> tuple[int, int]:
        """(calls, utterances) in the index."""
        with self._lock:
            con = self._connection()
            calls = con.execute("SELECT count(*) FROM calls").fetchone()[0]
            utts = con.execute("SELECT max(id) FROM utterances").fetchone()[0]
            return calls, int(utts or 0)

    def build(self, calls: Iterable[SearchCall], progress: ProgressFn | None = None) -> int:
        """Write a new generation from these calls (in this order), then switch to it.
        Returns the utterances written."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"search-{uuid.uuid4().hex[:12]}.db"
        con = self._open(path)
        written = 0
        try:
            con.execute("PRAGMA synchronous=OFF")
            batch: list[SearchCall] = []
            for n, call in enumerate(calls, 1):
                batch.append(call)
                if len(batch) >= BATCH_CALLS:
                    with _transaction(con):
                        written += sum(_write_call(con, c, replace=False) for c in batch)
                    batch.clear()
                if progress:
                    progress(n, 0)
            with _transaction(con):
                written += sum(_write_call(con, c, replace=False) for c in batch)
            con.execute("INSERT INTO terms(terms) VALUES('optimize')")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException:
            con.close()
            _remove_db(path)
            raise
        con.close()
        with self._lock:
            old = self._current()
            self._switch(path)
            if self._con is not None:
                self._con.close()
            self._con = self._file = None
            if old is not None and old != path:
                _remove_db(old)  # open readers keep their file until they reopen
        return written

    def rebuild(self, store: Store, progress: ProgressFn | None = None) -> SearchRebuildReport:
        """Re-derive the search from every call's newest stored result."""
        report = SearchRebuildReport()
        newest: dict[str, SearchCall] = {}
        result_keys = [k for k in store.list(keys.RESULTS) if keys.parse_result(k)]
        for n, key in enumerate(result_keys, 1):
            try:
                call = SearchCall.from_result(store.get_json(key, model=CallResult))
            except (CorruptObjectError, ObjectNotFoundError) as exc:
                report.skipped[key] = exc.reason
                continue
            report.results += 1
            known = newest.get(call.call_id)
            if known is None or (_epoch(call.processed_at) or 0) >= (
                _epoch(known.processed_at) or 0
            ):
                newest[call.call_id] = call
            if progress:
                progress(n, len(result_keys))
        ordered = sorted(
            newest.values(),
            key=lambda c: (_epoch(c.started_at) or _epoch(c.processed_at) or 0, c.call_id),
        )
        report.calls = len(ordered)
        report.utterances = self.build(ordered)
        return report

    # ---- reading

    def _window(self, since: float | None, until: float | None) -> tuple[int, int] | None:
        """The utterance ids of the calls started in [since, until): a call's utterances
        are written together, so this bounds the match to a range of ids, which FTS5 seeks
        to instead of walking every match of a common word (None: no such call)."""
        sql = "SELECT min(first_utt), max(last_utt) FROM calls WHERE TRUE"
        params: list[float] = []
        if since is not None:
            sql += " AND coalesce(started, processed) >= ?"
            params.append(since)
        if until is not None:
            sql += " AND coalesce(started, processed) < ?"
            params.append(until)
        with self._lock:
            lo, hi = self._connection().execute(sql, params).fetchone()
        return None if lo is None else (lo, hi)

    def search(self, user: UserView | None, query: SearchQuery) -> SearchResult:
        """Hits for `query` as `user` sees them (None: the operator on the command line,
        who sees every call). An agent's hits are on their own calls only, whatever
        agent the query names."""
        agent_id = query.agent_id
        if user is not None:
            role = UserRole(user.role)
            if role not in auth.SEARCHERS:
                raise AccessDenied(f"a {role.value} may not search transcripts")
            if role is UserRole.AGENT:
                if user.agent_id is None or agent_id not in (None, user.agent_id):
                    return SearchResult(terms=parse_query(query.text))
                agent_id = user.agent_id
        terms = parse_query(query.text)
        clauses, params = ["terms MATCH ?"], [match_expression(terms)]
        for column, value in (("c.agent_id", agent_id), ("c.team", query.team)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.queue is not None:
            clauses.append("c.queue = ?")
            params.append(query.queue)
        if query.since is not None or query.until is not None:
            window = self._window(_epoch(query.since), _epoch(query.until))
            if window is None:
                return SearchResult(terms=terms)
            clauses.append("terms.rowid BETWEEN ? AND ?")
            params.extend(window)
        if query.since is not None:
            clauses.append("coalesce(c.started, c.processed) >= ?")
            params.append(_epoch(query.since))
        if query.until is not None:
            clauses.append("coalesce(c.started, c.processed) < ?")
            params.append(_epoch(query.until))
        if query.min_score is not None:
            clauses.append("c.auto_total >= ?")
            params.append(query.min_score)
        if query.max_score is not None:
            clauses.append("c.auto_total <= ?")
            params.append(query.max_score)
        if query.flag:
            clauses.append("instr(c.flags, ?) > 0")
            params.append(f",{query.flag},")
        if query.item_failed:
            clauses.append("instr(c.failed_items, ?) > 0")
            params.append(f",{query.item_failed},")
        if query.role is not None:
            clauses.append("u.role = ?")
            params.append(Role(query.role).value)
        # the match drives the loop, newest first, and stops at the limit: no sort of
        # every matching utterance, whatever the filters
        sql = (
            'SELECT c.call_id, u.start, u."end", u.role, u.text, c.agent_id, c.team, c.queue, '
            "c.started, c.auto_total FROM terms CROSS JOIN utterances u ON u.id = terms.rowid "
            f"CROSS JOIN calls c ON c.id = u.call WHERE {' AND '.join(clauses)} "
            "ORDER BY terms.rowid DESC LIMIT ?"
        )
        params.append(query.limit + 1)
        with self._lock:
            try:
                rows = self._connection().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise SearchError(f"search failed: {exc}") from exc
        hits = [
            SearchHit(
                call_id=r[0],
                start=r[1],
                end=r[2],
                role=r[3],
                text=r[4],
                snippet=snippet(r[4], terms),
                agent_id=r[5],
                team=r[6],
                queue=r[7],
                started_at=datetime.fromtimestamp(r[8], UTC) if r[8] is not None else None,
                auto_total=r[9],
            )
            for r in rows[: query.limit]
        ]
        return SearchResult(terms=terms, hits=hits, more=len(rows) > query.limit)


@contextlib.contextmanager
def _transaction(con: sqlite3.Connection) -> Iterator[None]:
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _write_call(con: sqlite3.Connection, call: SearchCall, *, replace: bool) -> int:
    """Write one call's rows; with `replace`, an older version of the call goes first and a
    newer one already indexed wins. Returns the utterances written."""
    processed = _epoch(call.processed_at)
    values = (
        call.agent_id,
        call.team,
        call.queue,
        call.language,
        _epoch(call.started_at),
        call.auto_total,
        _listed(call.flags),
        _listed(call.failed_items),
        processed,
    )
    row = con.execute("SELECT id, processed FROM calls WHERE call_id = ?", (call.call_id,))
    found = row.fetchone() if replace else None
    if found is not None:
        call_row, known = found
        if known is not None and processed is not None and known > processed:
            return 0
        for uid, text in con.execute(
            "SELECT id, text FROM utterances WHERE call = ?", (call_row,)
        ).fetchall():
            con.execute(
                "INSERT INTO terms(terms, rowid, body) VALUES('delete', ?, ?)",
                (uid, index_terms(text)),
            )
        con.execute("DELETE FROM utterances WHERE call = ?", (call_row,))
        con.execute(
            "UPDATE calls SET agent_id=?, team=?, queue=?, language=?, started=?, auto_total=?, "
            "flags=?, failed_items=?, processed=? WHERE id = ?",
            (*values, call_row),
        )
    else:
        call_row = con.execute(
            "INSERT INTO calls (call_id, agent_id, team, queue, language, started, auto_total, "
            "flags, failed_items, processed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (call.call_id, *values),
        ).lastrowid
    n, first, last = 0, None, None
    for start, end, role, text in call.utterances:
        terms = index_terms(text)
        if not terms:
            continue
        uid = con.execute(
            'INSERT INTO utterances (call, start, "end", role, text) VALUES (?, ?, ?, ?, ?)',
            (call_row, start, end, role, text),
        ).lastrowid
        con.execute("INSERT INTO terms(rowid, body) VALUES (?, ?)", (uid, terms))
        first = first or uid
        last = uid
        n += 1
    con.execute(
        "UPDATE calls SET first_utt = ?, last_utt = ? WHERE id = ?", (first, last, call_row)
    )
    return n


def _remove_db(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
