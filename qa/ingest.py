"""Ingest: recordings + metadata into the object store, validated, de-duplicated, never overwriting.

A call is published when its `calls/<id>/meta.json` exists; the audio is written before it and
the content-hash entry `calls/_hashes/<sha256>` after it, so a crash at any point is repaired
by running the same ingest again. Bad rows and bad files are reported and skipped; the rest go on.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from qa.config import Settings
from qa.errors import AudioError, MetadataError, QAError
from qa.schema import CallMeta, Role, validate_call_id
from qa.store import (
    ObjectExistsError,
    ObjectNotFoundError,
    Store,
    StoreError,
    keys,
    sha256_file,
)

AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".wma", ".amr",
                    ".au", ".aif", ".aiff", ".caf", ".mp4", ".webm", ".gsm", ".vox"}
CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac",
                 "ogg": "audio/ogg", "opus": "audio/ogg", "m4a": "audio/mp4",
                 "mp4": "audio/mp4", "aac": "audio/aac", "webm": "audio/webm"}

# CSV column -> CallMeta field; "file" names the recording (relative to the CSV's folder).
COLUMNS = {"file": None, "call_id": "call_id", "agent_id": "agent_id", "team": "team",
           "queue": "queue", "direction": "direction", "started_at": "started_at",
           "language": "language", "channels": "channel_roles", "source": "source"}
FIELD_TO_COLUMN = {v: k for k, v in COLUMNS.items() if v}


class IngestedCall(BaseModel):
    call_id: str
    file: str
    audio_key: str
    sha256: str
    duration: float


class Duplicate(BaseModel):
    file: str
    call_id: str  # the id this file would have had
    existing_call_id: str
    reason: str


class Rejection(BaseModel):
    """Why a row or file was not ingested; row is the CSV line number (header = 1)."""

    file: str | None = None
    row: int | None = None
    column: str | None = None
    reason: str


class IngestReport(BaseModel):
    ingested: list[IngestedCall] = Field(default_factory=list)
    duplicates: list[Duplicate] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)  # non-audio files found in folders

    @property
    def ok(self) -> bool:
        return not self.rejected


class _Row(BaseModel):
    """One recording to ingest, with its metadata fields (still unvalidated)."""

    path: Path
    row: int | None = None
    named: bool = False  # the CSV gave a file name (else it matched by call id)
    fields: dict[str, Any] = Field(default_factory=dict)


ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- parsing


def parse_channel_roles(text: str) -> dict[int, Role]:
    """'0=agent,1=customer' -> {0: agent, 1: customer}; ValueError says what is wrong."""
    roles: dict[int, Role] = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        chan, sep, role = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not channel=role (e.g. 0=agent,1=customer)")
        try:
            index = int(chan)
        except ValueError:
            raise ValueError(f"channel {chan.strip()!r} is not a number") from None
        if index < 0:
            raise ValueError(f"channel {index} is negative")
        try:
            roles[index] = Role(role.strip().lower())
        except ValueError:
            raise ValueError(f"role {role.strip()!r} is not one of "
                             f"{', '.join(r.value for r in Role)}") from None
    return roles


def _parse_started_at(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC so weeks do not shift between sites."""
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date-time "
                         "(e.g. 2025-03-04T09:30:00+01:00)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_meta_csv(path: Path) -> tuple[list[_Row], list[Rejection]]:
    """Rows of a metadata CSV; a bad header raises MetadataError, a bad row is a Rejection."""
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    rows: list[_Row] = []
    rejected: list[Rejection] = []
    with fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise MetadataError(f"unknown column(s) {', '.join(map(repr, unknown))}; "
                                f"expected some of {', '.join(COLUMNS)}", file=str(path))
        if "file" not in header and "call_id" not in header:
            raise MetadataError("needs a 'file' or a 'call_id' column", file=str(path))
        seen: dict[str, int] = {}
        for raw in reader:
            line = reader.line_num
            values = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                rejected.append(Rejection(row=line, reason="more values than columns"))
                continue
            name = values.get("file") or ""
            call_id = values.get("call_id") or ""
            file_path = (path.parent / name) if name else None
            if file_path is None and call_id:
                file_path = Path(call_id)  # matched by stem against the given paths
            if file_path is None:
                rejected.append(Rejection(row=line, column="file", reason="no file and no call_id"))
                continue
            key = call_id or file_path.stem
            if key in seen:
                rejected.append(Rejection(row=line, column="call_id" if call_id else "file",
                                          file=name or None,
                                          reason=f"call {key!r} already given on row {seen[key]}"))
                continue
            seen[key] = line
            fields: dict[str, Any] = {c: values[c] for c in values
                                      if c != "file" and values[c] != ""}
            rows.append(_Row(path=file_path, row=line, named=bool(name), fields=fields))
    return rows, rejected


def _meta_from_fields(call_id: str, fields: dict[str, Any]) -> CallMeta:
    """CallMeta from CSV strings; ValueError/ValidationError carry the column at fault."""
    data: dict[str, Any] = {"call_id": call_id}
    for column, value in fields.items():
        field = COLUMNS[column]
        if field is None or field == "call_id":
            continue
        if column == "channels":
            try:
                data[field] = parse_channel_roles(value)
            except ValueError as exc:
                raise _ColumnError(column, str(exc)) from None
        elif column == "started_at":
            try:
                data[field] = _parse_started_at(value)
            except ValueError as exc:
                raise _ColumnError(column, str(exc)) from None
        elif column == "direction":
            data[field] = value.lower()
        else:
            data[field] = value
    return CallMeta(**data)


class _ColumnError(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


def _validation_rejection(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else None
    column = FIELD_TO_COLUMN.get(field or "", field)
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    value = err.get("input")
    if field == "direction":
        msg = f"{value!r} is not inbound or outbound"
    return column, msg


def _expand(paths: Iterable[Path], report: IngestReport) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith("."):
                    if f.suffix.lower() in AUDIO_EXTENSIONS:
                        files.append(f)
                    elif f.suffix.lower() != ".csv":
                        report.ignored.append(str(f))
        else:
            files.append(p)
    return files


def _plan(paths: list[Path], meta_csv: Path | None, report: IngestReport) -> list[_Row]:
    """Pair each recording with its CSV row (by file name, else by call id = stem)."""
    files = _expand(paths, report)
    if meta_csv is None:
        return [_Row(path=f) for f in files]
    rows, rejected = read_meta_csv(meta_csv)
    report.rejected.extend(rejected)
    by_resolved = {f.resolve(): f for f in files}
    by_name: dict[str, list[Path]] = {}
    by_stem: dict[str, list[Path]] = {}
    for f in files:
        by_name.setdefault(f.name, []).append(f)
        by_stem.setdefault(f.stem, []).append(f)
    planned: list[_Row] = []
    used: set[Path] = set()
    for row in rows:
        named = row.named
        match: Path | None = None
        if named:
            resolved = row.path.resolve()
            match = by_resolved.get(resolved)
            if match is None and len(by_name.get(row.path.name, [])) == 1:
                match = by_name[row.path.name][0]
            if match is None and not files and row.path.is_file():
                match = row.path  # CSV-only ingest: the CSV names the files
        else:
            candidates = by_stem.get(str(row.fields.get("call_id")), [])
            match = candidates[0] if len(candidates) == 1 else None
        if match is None:
            report.rejected.append(Rejection(
                row=row.row, column="file" if named else "call_id",
                file=str(row.path) if named else None,
                reason="no such recording among the files given" if files or not named
                else "file not found"))
            continue
        used.add(match.resolve())
        planned.append(_Row(path=match, row=row.row, fields=row.fields))
    # Recordings without a CSV row are ingested with the call id from their name.
    planned.extend(_Row(path=f) for f in files if f.resolve() not in used)
    return planned


# --------------------------------------------------------------------------- ingest


def ingest(store: Store, paths: list[Path], meta_csv: Path | None, settings: Settings,
           progress: ProgressFn | None = None) -> IngestReport:
    """Upload recordings with validated metadata; see the module docstring for the guarantees.

    Raises MetadataError for a CSV that cannot be used at all (unknown columns, unreadable);
    everything else (bad rows, bad audio, id clashes) is reported and skipped.
    """
    from qa.audio import load_audio

    report = IngestReport()
    planned = _plan([Path(p) for p in paths], Path(meta_csv) if meta_csv else None, report)
    for i, row in enumerate(planned, 1):
        if progress:
            progress(i - 1, len(planned), row.path.name)
        _ingest_one(store, row, settings, report, load_audio)
    if progress:
        progress(len(planned), len(planned), "")
    return report


def _ingest_one(store: Store, row: _Row, settings: Settings, report: IngestReport,
                load_audio: Callable[..., Any]) -> None:
    path = row.path
    name = str(path)

    def reject(reason: str, column: str | None = None) -> None:
        report.rejected.append(Rejection(file=name, row=row.row, column=column, reason=reason))

    call_id = str(row.fields.get("call_id") or path.stem)
    try:
        validate_call_id(call_id)
    except ValueError as exc:
        reject(str(exc), "call_id" if "call_id" in row.fields else "file")
        return
    try:
        meta = _meta_from_fields(call_id, row.fields)
    except _ColumnError as exc:
        reject(exc.reason, exc.column)
        return
    except ValidationError as exc:
        column, reason = _validation_rejection(exc)
        reject(reason, column)
        return
    if not path.is_file():
        reject("file not found")
        return
    try:
        sha = sha256_file(path)
    except OSError as exc:
        reject(f"cannot read: {exc.strerror}")
        return

    # De-duplicate by content, then refuse a clash of ids with different content.
    existing = _call_for_hash(store, sha)
    if existing is not None:
        report.duplicates.append(Duplicate(file=name, call_id=call_id, existing_call_id=existing,
                                           reason=f"same audio as call {existing}"))
        return
    try:
        published = store.get_json(keys.meta(call_id), model=CallMeta)
    except ObjectNotFoundError:
        published = None
    if published is not None:
        if published.audio_sha256 == sha:  # published before the hash entry was written
            _write_hash(store, sha, call_id)
            report.duplicates.append(Duplicate(file=name, call_id=call_id,
                                               existing_call_id=call_id,
                                               reason=f"call {call_id} already ingested"))
        else:
            reject(f"call {call_id} already exists with different audio; "
                   "choose another call id", "call_id" if "call_id" in row.fields else "file")
        return

    try:
        decoded = load_audio(path, name=name, max_duration=settings.max_duration,
                             silence_dbfs=settings.silence_dbfs)
    except AudioError as exc:
        reject(exc.reason)
        return
    ext = path.suffix.lower().lstrip(".") or str(getattr(decoded, "format", "") or "bin")
    ext = ext if ext.isalnum() and len(ext) <= 8 else "bin"
    audio_key = keys.audio(call_id, ext)
    meta = meta.model_copy(update={
        "audio_key": audio_key, "audio_sha256": sha, "audio_format": decoded.format,
        "duration": round(float(decoded.duration), 3),
    })
    if meta.channel_roles and max(meta.channel_roles) >= decoded.channels:
        reject(f"channel {max(meta.channel_roles)} mapped but the recording has "
               f"{decoded.channels} channel(s)", "channels")
        return
    try:
        # Audio of an unpublished call (a crash before its meta.json) may be replaced.
        store.put_file(audio_key, path, CONTENT_TYPES.get(ext))
        store.put_json(keys.meta(call_id), meta, overwrite=False)
    except ObjectExistsError:
        reject(f"call {call_id} was ingested concurrently by another process")
        return
    except StoreError:
        raise
    except QAError as exc:
        reject(exc.reason)
        return
    _write_hash(store, sha, call_id)
    report.ingested.append(IngestedCall(call_id=call_id, file=name, audio_key=audio_key,
                                        sha256=sha, duration=meta.duration or 0.0))


def _call_for_hash(store: Store, sha: str) -> str | None:
    """The call holding this content, if it is really published (a stale entry is ignored)."""
    try:
        entry = store.get_json(keys.content_hash(sha))
    except ObjectNotFoundError:
        return None
    call_id = entry.get("call_id") if isinstance(entry, dict) else None
    if not call_id or not store.exists(keys.meta(call_id)):
        return None
    return str(call_id)


def _write_hash(store: Store, sha: str, call_id: str) -> None:
    # If another call with the same content won a race, it stays the reference.
    with contextlib.suppress(ObjectExistsError):
        store.put_json(keys.content_hash(sha), {"call_id": call_id, "sha256": sha},
                       overwrite=False)


def iter_calls(store: Store) -> Iterable[CallMeta]:
    """Every published call's metadata, in call-id order (for the pipeline's batch input)."""
    for key in store.list(keys.CALLS):
        if keys.parse_meta(key):
            yield store.get_json(key, model=CallMeta)
