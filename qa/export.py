"""Results out of the product: a documented, versioned export model (docs/formats.md).

The stored `CallResult` is an internal record that changes with the pipeline; the export is
a separate model with its own version, so a centre's reporting does not break when the
pipeline does. JSON is one file per call (`<call_id>.json`); CSV is `calls.csv` (one row per
call) and `items.csv` (one row per call and scorecard item). Each call's newest result is
exported (a reviewer's role swap or a re-score included), as the dashboard shows it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qa.schema import CallResult
from qa.store import CorruptObjectError, Keys, ObjectNotFoundError, Store

EXPORT_FORMAT = "qa.call"
EXPORT_VERSION = 1


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportCall(_Out):
    call_id: str
    agent_id: str | None
    team: str | None
    queue: str | None
    direction: str
    started_at: datetime | None
    duration: float | None
    language: str | None
    customer_id: str | None
    source: str | None
    channel_roles: dict[int, str] | None


class ExportProcessing(_Out):
    pipeline_version: str
    scorecard_id: str
    scorecard_version: str
    scored_at: datetime
    asr_model: str


class ExportFlag(_Out):
    code: str
    reason: str


class ExportScore(_Out):
    total: float
    max_total: float
    pass_mark: float
    passed: bool
    auto_fail: bool
    auto_fail_reasons: list[str]
    flags: list[ExportFlag]


class ExportEvidence(_Out):
    start: float
    end: float
    role: str | None
    text: str
    matched: str | None
    note: str | None


class ExportItem(_Out):
    item_id: str
    name: str
    section: str
    outcome: Literal["pass", "fail", "na"]
    critical: bool
    points_possible: float
    points_awarded: float
    reason: str
    evidence: list[ExportEvidence]


class ExportUtterance(_Out):
    start: float
    end: float
    role: str
    speaker: str
    text: str  # redacted: placeholders stand where PII was
    sentiment: float | None


class ExportRedaction(_Out):
    kind: str
    start: float
    end: float
    utterance_index: int
    placeholder: str


class ExportTranscript(_Out):
    language: str
    duration: float
    role_method: str
    role_confidence: float
    asr_confidence: float | None
    utterances: list[ExportUtterance]
    redactions: list[ExportRedaction]


class ExportMetrics(_Out):
    talk_time: dict[str, float]
    talk_share: dict[str, float]
    silence_total: float
    longest_silence: float
    hold_total: float
    overtalk_total: float
    longest_dead_air: float
    interruptions: dict[str, int]
    speaking_rate_wpm: dict[str, float]
    first_agent_response: float | None
    mean_response_latency: float | None


class ExportSentiment(_Out):
    role: str
    start: float
    end: float
    mean: float
    trend: float  # per minute


class ExportQuality(_Out):
    doubtful: bool
    issues: list[ExportFlag]


class ExportedCall(_Out):
    """One call's result as exported; `format` and `version` say how to read it."""

    format: Literal["qa.call"] = EXPORT_FORMAT
    version: Literal[1] = EXPORT_VERSION
    call: ExportCall
    processing: ExportProcessing
    score: ExportScore
    items: list[ExportItem]
    transcript: ExportTranscript
    metrics: ExportMetrics | None
    sentiment: list[ExportSentiment]
    quality: ExportQuality | None


def to_export(result: CallResult) -> ExportedCall:
    """The export model of a stored result."""
    meta, tr, score = result.meta, result.transcript, result.score
    m = score.metrics
    return ExportedCall(
        call=ExportCall(
            call_id=meta.call_id,
            agent_id=meta.agent_id,
            team=meta.team,
            queue=meta.queue,
            direction=meta.direction.value,
            started_at=meta.started_at,
            duration=meta.duration if meta.duration is not None else tr.duration,
            language=tr.language or meta.language,
            customer_id=meta.customer_id,
            source=meta.source,
            channel_roles={k: v.value for k, v in meta.channel_roles.items()}
            if meta.channel_roles
            else None,
        ),
        processing=ExportProcessing(
            pipeline_version=result.pipeline_version,
            scorecard_id=score.scorecard_id,
            scorecard_version=score.scorecard_version,
            scored_at=result.created_at,
            asr_model=tr.asr_model,
        ),
        score=ExportScore(
            total=score.total,
            max_total=score.max_total,
            pass_mark=score.pass_mark,
            passed=score.passed,
            auto_fail=score.auto_fail,
            auto_fail_reasons=list(score.auto_fail_reasons),
            flags=[ExportFlag(code=f.code.value, reason=f.reason) for f in score.flags],
        ),
        items=[
            ExportItem(
                item_id=i.item_id,
                name=i.name,
                section=i.section,
                outcome=i.outcome.value,
                critical=i.critical,
                points_possible=i.points_possible,
                points_awarded=i.points_awarded,
                reason=i.reason,
                evidence=[
                    ExportEvidence(
                        start=e.start,
                        end=e.end,
                        role=e.role.value if e.role else None,
                        text=e.text,
                        matched=e.matched,
                        note=e.note,
                    )
                    for e in i.evidence
                ],
            )
            for i in score.items
        ],
        transcript=ExportTranscript(
            language=tr.language,
            duration=tr.duration,
            role_method=tr.roles.method,
            role_confidence=tr.roles.confidence,
            asr_confidence=tr.asr_confidence,
            utterances=[
                ExportUtterance(
                    start=u.start,
                    end=u.end,
                    role=u.role.value,
                    speaker=u.speaker,
                    text=u.text,
                    sentiment=u.sentiment.score if u.sentiment else None,
                )
                for u in tr.utterances
            ],
            redactions=[ExportRedaction(**r.model_dump()) for r in tr.redactions],
        ),
        metrics=ExportMetrics(
            talk_time=dict(m.talk_time),
            talk_share=dict(m.talk_share),
            silence_total=m.silence_total,
            longest_silence=m.longest_silence,
            hold_total=m.hold_total,
            overtalk_total=m.overtalk_total,
            longest_dead_air=m.longest_dead_air,
            interruptions=dict(m.interruptions),
            speaking_rate_wpm=dict(m.speaking_rate_wpm),
            first_agent_response=m.first_agent_response,
            mean_response_latency=m.mean_response_latency,
        )
        if m
        else None,
        sentiment=[
            ExportSentiment(role=s.role.value, start=s.start, end=s.end, mean=s.mean, trend=s.trend)
            for s in score.sentiment
        ],
        quality=ExportQuality(
            doubtful=tr.quality.doubtful,
            issues=[ExportFlag(code=i.code.value, reason=i.reason) for i in tr.quality.issues],
        )
        if tr.quality
        else None,
    )


# --------------------------------------------------------------------------- CSV

CALL_COLUMNS = [
    "call_id",
    "agent_id",
    "team",
    "queue",
    "direction",
    "started_at",
    "duration",
    "language",
    "customer_id",
    "source",
    "scorecard_id",
    "scorecard_version",
    "pipeline_version",
    "scored_at",
    "total",
    "max_total",
    "pass_mark",
    "passed",
    "auto_fail",
    "flags",
    "items_failed",
    "agent_talk_share",
    "silence_total",
    "longest_dead_air",
    "overtalk_total",
    "agent_sentiment_end",
    "customer_sentiment_end",
    "evidence_doubt",
]
ITEM_COLUMNS = [
    "call_id",
    "scorecard_id",
    "scorecard_version",
    "item_id",
    "name",
    "section",
    "outcome",
    "critical",
    "points_possible",
    "points_awarded",
    "reason",
    "evidence",
]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    return str(value)


def call_row(c: ExportedCall) -> dict[str, str]:
    """The calls.csv row of a call."""
    sentiment = {s.role: s.end for s in c.sentiment}
    values: dict[str, object] = {
        **c.call.model_dump(exclude={"channel_roles"}),
        "scorecard_id": c.processing.scorecard_id,
        "scorecard_version": c.processing.scorecard_version,
        "pipeline_version": c.processing.pipeline_version,
        "scored_at": c.processing.scored_at,
        "total": c.score.total,
        "max_total": c.score.max_total,
        "pass_mark": c.score.pass_mark,
        "passed": c.score.passed,
        "auto_fail": c.score.auto_fail,
        "flags": ";".join(f.code for f in c.score.flags),
        "items_failed": ";".join(i.item_id for i in c.items if i.outcome == "fail"),
        "agent_talk_share": c.metrics.talk_share.get("agent") if c.metrics else None,
        "silence_total": c.metrics.silence_total if c.metrics else None,
        "longest_dead_air": c.metrics.longest_dead_air if c.metrics else None,
        "overtalk_total": c.metrics.overtalk_total if c.metrics else None,
        "agent_sentiment_end": sentiment.get("agent"),
        "customer_sentiment_end": sentiment.get("customer"),
        "evidence_doubt": c.quality.doubtful if c.quality else None,
    }
    return {k: _cell(values[k]) for k in CALL_COLUMNS}


def item_rows(c: ExportedCall) -> list[dict[str, str]]:
    """The items.csv rows of a call; evidence is `start-end role: text` joined by ' | '."""
    rows = []
    for i in c.items:
        evidence = " | ".join(
            f"{e.start:.1f}-{e.end:.1f} {e.role or '-'}: {e.note or e.text}".strip()
            for e in i.evidence
        )
        values: dict[str, object] = {
            "call_id": c.call.call_id,
            "scorecard_id": c.processing.scorecard_id,
            "scorecard_version": c.processing.scorecard_version,
            **i.model_dump(exclude={"evidence"}),
            "evidence": evidence,
        }
        rows.append({k: _cell(values[k]) for k in ITEM_COLUMNS})
    return rows


# --------------------------------------------------------------------------- selection


class ExportSelection(BaseModel):
    call_ids: list[str] | None = None  # None: every call with a result
    since: datetime | None = None  # calls started at or after


class ExportReport(BaseModel):
    out_dir: str
    format: Literal["json", "csv"]
    calls: int = 0
    items: int = 0
    files: list[str] = Field(default_factory=list)
    problems: dict[str, str] = Field(default_factory=dict)  # call id -> why not exported


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def latest_results(
    store: Store, selection: ExportSelection, problems: dict[str, str]
) -> tuple[int, Iterator[CallResult]]:
    """How many calls are selected, and each one's newest result, in call-id order. The
    store is listed once; a call whose results are all unreadable goes into `problems`."""
    by_call: dict[str, list[str]] = {}
    for key in store.list(Keys.RESULTS):
        parsed = Keys.parse_result(key)
        if parsed:
            by_call.setdefault(parsed[0], []).append(key)
    wanted = list(dict.fromkeys(selection.call_ids)) if selection.call_ids else sorted(by_call)
    for call_id in wanted:
        if call_id not in by_call:
            problems[call_id] = "no stored result"

    def gen() -> Iterator[CallResult]:
        since = _utc(selection.since)
        for call_id in wanted:
            results, why = [], ""
            for key in by_call.get(call_id, []):
                try:
                    results.append(store.get_json(key, CallResult))
                except (CorruptObjectError, ObjectNotFoundError) as exc:
                    why = f"stored result unreadable: {exc}"
            if not results:
                if call_id in by_call:
                    problems[call_id] = why or "no stored result"
                continue
            newest = max(results, key=lambda r: r.created_at)
            started = _utc(newest.meta.started_at)
            if since is not None and (started is None or started < since):
                continue
            yield newest

    return sum(1 for c in wanted if c in by_call), gen()


def export_results(
    store: Store,
    out_dir: Path,
    fmt: Literal["json", "csv"] = "json",
    selection: ExportSelection | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ExportReport:
    """Write the selected calls' newest results to `out_dir` in the export format.

    Files are written whole under a temporary name and renamed, so a reader never sees half
    a file; JSON files of calls not selected this time are left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(out_dir=str(out_dir), format=fmt)
    total, results = latest_results(store, selection or ExportSelection(), report.problems)
    calls_csv = items_csv = None
    if fmt == "csv":
        calls_csv = _CsvOut(out_dir / "calls.csv", CALL_COLUMNS)
        items_csv = _CsvOut(out_dir / "items.csv", ITEM_COLUMNS)
    try:
        for n, result in enumerate(results, 1):
            if progress:
                progress(n - 1, total, result.meta.call_id)
            exported = to_export(result)
            report.calls += 1
            report.items += len(exported.items)
            if calls_csv and items_csv:
                calls_csv.write(call_row(exported))
                for row in item_rows(exported):
                    items_csv.write(row)
            else:
                path = out_dir / f"{exported.call.call_id}.json"
                _write_text(path, exported.model_dump_json(indent=2) + "\n")
                report.files.append(str(path))
        if calls_csv and items_csv:
            report.files += [calls_csv.close(), items_csv.close()]
    finally:
        for out in (calls_csv, items_csv):
            if out:
                out.abort()
    if progress:
        progress(total, total, "")
    return report


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class _CsvOut:
    """A CSV written to a temporary file and renamed into place when complete."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.fh = self.tmp.open("w", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.fh, fieldnames=columns)
        self.writer.writeheader()
        self.done = False

    def write(self, row: dict[str, str]) -> None:
        self.writer.writerow(row)

    def close(self) -> str:
        self.fh.close()
        self.tmp.replace(self.path)
        self.done = True
        return str(self.path)

    def abort(self) -> None:
        if not self.done:
            self.fh.close()
            self.tmp.unlink(missing_ok=True)


def read_export(path: Path) -> ExportedCall:
    """An exported JSON file, validated against the export model (for consumers and tests)."""
    return ExportedCall.model_validate(json.loads(path.read_text(encoding="utf-8")))
