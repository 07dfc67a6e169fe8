"""Ingest: recordings + metadata into the object store, validated, de-duplicated, never overwriting.

A call is published when its `calls/<id>/meta.json` exists; the audio is written before it and
the content-hash entry `calls/_hashes/<sha256>` after it, so a crash at any point is repaired
by running the same ingest again. Bad rows and bad files are reported and skipped; the rest go on.

Metadata is a CSV (one row per call) or a JSON list of objects with the same keys. A row that
is rejected still claims the recording it names: nothing of it is stored, rather than the
recording being ingested as a call without its agent or team. Rows that disagree about one
call (the same call id or the same file with different values) are all rejected, since
which one is right is not known; a row repeated verbatim is ingested once.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from qa.audio import load_audio, select_channels
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

AUDIO_EXTENSIONS = {
    ".wav",
    ".mp3",
    ".flac",
    ".ogg",
    ".opus",
    ".m4a",
    ".aac",
    ".wma",
    ".amr",
    ".au",
    ".aif",
    ".aiff",
    ".caf",
    ".mp4",
    ".webm",
    ".gsm",
    ".vox",
}
CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "aac": "audio/aac",
    "webm": "audio/webm",
}

# CSV column -> CallMeta field; "file" names the recording (relative to the CSV's folder).
COLUMNS = {
    "file": None,
    "call_id": "call_id",
    "agent_id": "agent_id",
    "team": "team",
    "queue": "queue",
    "direction": "direction",
    "started_at": "started_at",
    "language": "language",
    "channels": "channel_roles",
    "source": "source",
}
FIELD_TO_COLUMN = {v: k for k, v in COLUMNS.items() if v}
_LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


class IngestedCall(BaseModel):
    call_id: str
    file: str
    audio_key: str
    sha256: str
    duration: float
    format: str = ""  # container/codec, e.g. "wav/pcm_mulaw"
    channels: int = 1  # after channels that are copies were merged


class Duplicate(BaseModel):
    file: str
    call_id: str  # the id this file would have had
    existing_call_id: str
    reason: str


class Rejection(BaseModel):
    """Why a row or file was not ingested; row is the CSV line number (header = 1) or the
    JSON item number (first = 1)."""

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
    """One recording to ingest, with its metadata fields (still unvalidated); a row already
    rejected carries its rejection and only claims its recording."""

    path: Path
    row: int | None = None
    named: bool = False  # the metadata gave a file name (else it matched by call id)
    fields: dict[str, Any] = Field(default_factory=dict)
    rejection: Rejection | None = None
    meta: CallMeta | None = None  # mapped already (a vendor's record): used as it is


class MappedCall(BaseModel):
    """A recording whose CallMeta was built from a vendor's record (qa.ingest_vendors);
    `row` is the record's number in its file, for the report."""

    path: Path
    meta: CallMeta
    row: int | None = None


ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- parsing


def parse_channel_roles(text: str) -> dict[int, Role]:
    """'0=agent,1=customer' (or 'agent=0,customer=1') -> {0: agent, 1: customer};
    ValueError says what is wrong."""
    roles: dict[int, Role] = {}
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        chan, sep, role = part.partition("=")
        if not sep:
            raise ValueError(f"{part!r} is not channel=role (e.g. 0=agent,1=customer)")
        if chan.strip().lower() in set(Role) and role.strip().isdigit():
            chan, role = role, chan
        try:
            index = int(chan)
        except ValueError:
            raise ValueError(f"channel {chan.strip()!r} is not a number") from None
        if index < 0:
            raise ValueError(f"channel {index} is negative")
        if index in roles:
            raise ValueError(f"channel {index} is given twice")
        try:
            roles[index] = Role(role.strip().lower())
        except ValueError:
            raise ValueError(
                f"role {role.strip()!r} is not one of {', '.join(r.value for r in Role)}"
            ) from None
    return roles


def _parse_started_at(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC so weeks do not shift between sites."""
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2025-03-04T09:30:00+01:00)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def channel_roles_from_value(value: Any) -> dict[int, Role]:
    """A channel map as metadata gives it: '0=agent,3=customer', {"0": "agent", "3":
    "customer"} or {"agent": 0, "customer": 3}. ValueError says what is wrong."""
    if isinstance(value, str):
        return parse_channel_roles(value)
    if isinstance(value, dict):
        pairs = [(str(k), v) for k, v in value.items()]
        if all(k.strip().lower() in set(Role) for k, _ in pairs):
            pairs = [(str(v), k) for k, v in pairs]
        for _, role in pairs:
            if not isinstance(role, str):
                raise ValueError(f"role {role!r} is not one of {', '.join(r.value for r in Role)}")
        return parse_channel_roles(",".join(f"{k}={v}" for k, v in pairs))
    raise ValueError(f'{value!r} is not a channel map (e.g. "0=agent,1=customer")')


def _mb(n: float) -> str:
    return f"{n / 1024**2:,.1f} MB"


def read_metadata(path: Path, max_bytes: int | None = None) -> list[_Row]:
    """Rows of a metadata CSV or JSON file (by its extension). A file that cannot be used
    at all (unreadable, unknown columns, over `max_bytes`) raises MetadataError; a bad row
    comes back with its rejection, still naming its recording so nothing of it is ingested."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    if max_bytes is not None and size > max_bytes:
        raise MetadataError(
            f"metadata file is {_mb(size)}; at most {_mb(max_bytes)} is accepted "
            "(QA_MAX_METADATA_MB)",
            file=str(path),
        )
    rows = _read_meta_json(path) if path.suffix.lower() == ".json" else _read_meta_csv(path)
    return _reject_conflicts(rows)


def _check_columns(columns: Iterable[str], path: Path) -> None:
    unknown = [h for h in columns if h not in COLUMNS]
    if unknown:
        raise MetadataError(
            f"unknown column(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(COLUMNS)}",
            file=str(path),
        )


def _row(path: Path, line: int, values: dict[str, Any]) -> _Row:
    """A row from its values (None or "" is absent); the recording it names, by file name
    relative to the metadata's folder, else by call id."""
    values = {k: v for k, v in values.items() if v is not None and v != ""}
    name, call_id = values.get("file"), values.get("call_id")
    fields = {c: v for c, v in values.items() if c != "file"}
    if name is not None and not isinstance(name, str):
        return _Row(
            path=path,
            row=line,
            fields=fields,
            rejection=Rejection(
                row=line, column="file", reason=f"file {name!r} is not a file name"
            ),
        )
    if call_id is not None and not isinstance(call_id, str):
        return _Row(
            path=path.parent / name if name else path,
            row=line,
            named=bool(name),
            fields={},
            rejection=Rejection(
                row=line,
                column="call_id",
                file=name or None,
                reason=f"call_id {call_id!r} is not a string",
            ),
        )
    if name:
        return _Row(path=path.parent / name, row=line, named=True, fields=fields)
    if call_id is not None:
        return _Row(path=Path(str(call_id)), row=line, fields=fields)
    return _Row(
        path=path,
        row=line,
        fields=fields,
        rejection=Rejection(row=line, column="file", reason="no file and no call_id"),
    )


def _read_meta_csv(path: Path) -> list[_Row]:
    try:
        fh = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    rows: list[_Row] = []
    with fh:
        try:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            _check_columns(header, path)
            if "file" not in header and "call_id" not in header:
                raise MetadataError("needs a 'file' or a 'call_id' column", file=str(path))
            for raw in reader:
                line = reader.line_num
                values = {
                    k.strip(): (v or "").strip() for k, v in raw.items() if isinstance(k, str)
                }
                row = _row(path, line, values)
                if None in raw:
                    row.rejection = Rejection(
                        row=line, file=values.get("file") or None, reason="more values than columns"
                    )
                rows.append(row)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MetadataError(f"not a UTF-8 CSV file ({exc})", file=str(path)) from exc
    return rows


def _read_meta_json(path: Path) -> list[_Row]:
    """A JSON list of objects (or {"calls": [...]}) with the CSV's column names as keys;
    values keep their JSON types, so a number where a name belongs is rejected."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise MetadataError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetadataError(f"not a JSON file ({exc})", file=str(path)) from exc
    if isinstance(data, dict) and set(data) == {"calls"}:
        data = data["calls"]
    if not isinstance(data, list):
        raise MetadataError(
            'expected a list of calls ([{"file": ..., "call_id": ...}, ...])', file=str(path)
        )
    rows: list[_Row] = []
    for i, item in enumerate(data, 1):
        if not isinstance(item, dict):
            rows.append(
                _Row(
                    path=path,
                    row=i,
                    rejection=Rejection(
                        row=i, reason=f"item {i} is not an object with the call's fields"
                    ),
                )
            )
            continue
        _check_columns(item, path)
        rows.append(_row(path, i, item))
    return rows


def _reject_conflicts(rows: list[_Row]) -> list[_Row]:
    """Rows giving the same call id or the same file with different values are all
    rejected (which one is right is not known); a verbatim repeat only loses the repeat."""

    def key(row: _Row) -> str:
        return str(row.fields.get("call_id") or row.path.stem)

    def file(row: _Row) -> str | None:
        return str(row.path.resolve()) if row.named else None

    for what, of in (("call", key), ("file", file)):
        groups: dict[str, list[_Row]] = {}
        for row in rows:
            if row.rejection is None and (k := of(row)) is not None:
                groups.setdefault(k, []).append(row)
        for same in groups.values():
            if len(same) < 2:
                continue
            first = same[0]
            name = key(first) if what == "call" else str(first.path)
            if all(r.fields == first.fields and r.path == first.path for r in same):
                for r in same[1:]:
                    r.rejection = Rejection(
                        row=r.row,
                        file=str(r.path) if r.named else None,
                        column="call_id" if "call_id" in r.fields else "file",
                        reason=f"repeats row {first.row}",
                    )
                continue
            lines = ", ".join(str(r.row) for r in same)
            for r in same:
                r.rejection = Rejection(
                    row=r.row,
                    file=str(r.path) if r.named else None,
                    column="call_id" if what == "call" and "call_id" in r.fields else "file",
                    reason=f"{what} {name!r} is given on rows {lines} with different values; "
                    "nothing is ingested for it until the metadata says it once",
                )
    return rows


def _meta_from_fields(call_id: str, fields: dict[str, Any]) -> CallMeta:
    """CallMeta from metadata values; ValueError/ValidationError carry the column at fault.

    CSV values are strings; JSON values keep their types, and one of the wrong type is left
    for CallMeta to refuse (an agent id that is a number, a team that is a list).
    """
    data: dict[str, Any] = {"call_id": call_id}
    for column, value in fields.items():
        field = COLUMNS[column]
        if field is None or field == "call_id":
            continue
        if column == "channels":
            try:
                data[field] = channel_roles_from_value(value)
            except ValueError as exc:
                raise _ColumnError(column, str(exc)) from None
        elif column == "started_at" and isinstance(value, str):
            try:
                data[field] = _parse_started_at(value)
            except ValueError as exc:
                raise _ColumnError(column, str(exc)) from None
        elif column == "started_at":
            raise _ColumnError(
                column, f"{value!r} is not an ISO 8601 date-time (e.g. 2025-03-04T09:30:00+01:00)"
            )
        elif column == "direction" and isinstance(value, str):
            data[field] = value.lower()
        elif column == "language" and isinstance(value, str):
            data[field] = _check_language(value)
        else:
            data[field] = value
    return CallMeta(**data)


def _check_language(code: str) -> str:
    """A language Whisper can be asked for (its base code: 'en', 'zh', 'pt-BR' -> 'pt'),
    so a typo is refused at ingest rather than failing every run of the call."""
    base = code.strip().replace("_", "-").split("-")[0].lower()
    known: Iterable[str] | None
    try:
        from faster_whisper.tokenizer import _LANGUAGE_CODES as known  # noqa: N811
    except ImportError:  # without the ASR installed only the shape is checked
        known = None
    if not _LANGUAGE_RE.match(code.strip()) or (known is not None and base not in known):
        raise _ColumnError(
            "language", f"{code!r} is not a language code Whisper knows (e.g. en, zh, es, pt-BR)"
        )
    return code.strip()


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


def _plan(
    paths: list[Path],
    meta_file: Path | None,
    report: IngestReport,
    max_meta_bytes: int | None = None,
) -> list[_Row]:
    """Pair each recording with its metadata row (by file name, else by call id = stem).

    A recording named by a rejected row is claimed by it and left out: ingesting it bare
    would score a call without its agent or team.
    """
    files = _expand(paths, report)
    if meta_file is None:
        return [_Row(path=f) for f in files]
    rows = read_metadata(meta_file, max_meta_bytes)
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
                match = row.path  # metadata-only ingest: the metadata names the files
        elif "call_id" in row.fields:
            candidates = by_stem.get(str(row.fields.get("call_id")), [])
            match = candidates[0] if len(candidates) == 1 else None
        if row.rejection is not None:
            if match is not None:
                used.add(match.resolve())
                row.rejection.file = str(match)
            report.rejected.append(row.rejection)
            continue
        if match is None:
            report.rejected.append(
                Rejection(
                    row=row.row,
                    column="file" if named else "call_id",
                    file=str(row.path) if named else None,
                    reason="no such recording among the files given"
                    if files or not named
                    else "file not found",
                )
            )
            continue
        used.add(match.resolve())
        planned.append(_Row(path=match, row=row.row, fields=row.fields))
    # Recordings without a metadata row are ingested with the call id from their name.
    planned.extend(_Row(path=f) for f in files if f.resolve() not in used)
    return planned


# --------------------------------------------------------------------------- ingest


def ingest(
    store: Store,
    paths: list[Path],
    meta_csv: Path | None,
    settings: Settings,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Upload recordings with validated metadata; see the module docstring for the guarantees.

    `meta_csv` is a CSV or JSON metadata file. Raises MetadataError for one that cannot be
    used at all (unknown columns, unreadable); everything else (bad rows, bad audio, id
    clashes) is reported and skipped.
    """
    report = IngestReport()
    planned = _plan(
        [Path(p) for p in paths],
        Path(meta_csv) if meta_csv else None,
        report,
        int(settings.max_metadata_mb * 1024**2),
    )
    for i, row in enumerate(planned, 1):
        if progress:
            progress(i - 1, len(planned), row.path.name)
        _ingest_one(store, row, settings, report, load_audio)
    if progress:
        progress(len(planned), len(planned), "")
    return report


def ingest_mapped(
    store: Store,
    calls: list[MappedCall],
    settings: Settings,
    report: IngestReport | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Upload recordings whose metadata is already mapped, through the same checks and
    guarantees as `ingest` (duplicates skipped, nothing overwritten, bad files reported)."""
    report = report or IngestReport()
    for i, call in enumerate(calls, 1):
        if progress:
            progress(i - 1, len(calls), call.path.name)
        row = _Row(path=call.path, row=call.row, named=True, meta=call.meta)
        _ingest_one(store, row, settings, report, load_audio)
    if progress:
        progress(len(calls), len(calls), "")
    return report


def _ingest_one(
    store: Store,
    row: _Row,
    settings: Settings,
    report: IngestReport,
    load_audio: Callable[..., Any],
) -> None:
    path = row.path
    name = str(path)

    def reject(reason: str, column: str | None = None) -> None:
        report.rejected.append(Rejection(file=name, row=row.row, column=column, reason=reason))

    call_id = row.meta.call_id if row.meta else str(row.fields.get("call_id") or path.stem)
    try:
        validate_call_id(call_id)
    except ValueError as exc:
        if "call_id" in row.fields:
            reject(str(exc), "call_id")
        else:
            reject(
                f"{exc} (taken from the file name; give the call a call_id in the metadata)", "file"
            )
        return
    try:
        meta = row.meta or _meta_from_fields(call_id, row.fields)
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
    limit = int(settings.max_audio_mb * 1024**2)
    try:
        size = path.stat().st_size
    except OSError as exc:
        reject(f"cannot read: {exc.strerror}")
        return
    if size > limit:  # refused before it is hashed, decoded or stored
        reject(f"recording is {_mb(size)}; at most {_mb(limit)} is accepted (QA_MAX_AUDIO_MB)")
        return
    try:
        sha = sha256_file(path)
    except OSError as exc:
        reject(f"cannot read: {exc.strerror}")
        return

    # De-duplicate by content, then refuse a clash of ids with different content.
    existing = _call_for_hash(store, sha)
    if existing is not None:
        report.duplicates.append(
            Duplicate(
                file=name,
                call_id=call_id,
                existing_call_id=existing,
                reason=f"same audio as call {existing}",
            )
        )
        return
    try:
        published = store.get_json(keys.meta(call_id), model=CallMeta)
    except ObjectNotFoundError:
        published = None
    if published is not None:
        if published.audio_sha256 == sha:  # published before the hash entry was written
            _write_hash(store, sha, call_id)
            report.duplicates.append(
                Duplicate(
                    file=name,
                    call_id=call_id,
                    existing_call_id=call_id,
                    reason=f"call {call_id} already ingested",
                )
            )
        else:
            reject(
                f"call {call_id} already exists with different audio; choose another call id",
                "call_id" if "call_id" in row.fields else "file",
            )
        return

    try:
        decoded = load_audio(
            path, name=name, max_duration=settings.max_duration, silence_dbfs=settings.silence_dbfs
        )
    except AudioError as exc:
        reject(exc.reason)
        return
    try:  # the same check the pipeline makes, so a call that cannot be run is not stored
        tracks, _ = select_channels(decoded, meta.channel_roles)
    except AudioError as exc:
        reject(exc.reason, "channels")
        return
    ext = path.suffix.lower().lstrip(".") or str(getattr(decoded, "format", "") or "bin")
    ext = ext if ext.isalnum() and len(ext) <= 8 else "bin"
    audio_key = keys.audio(call_id, ext)
    meta = meta.model_copy(
        update={
            "audio_key": audio_key,
            "audio_sha256": sha,
            "audio_format": decoded.format,
            "duration": round(float(decoded.duration), 3),
        }
    )
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
    report.ingested.append(
        IngestedCall(
            call_id=call_id,
            file=name,
            audio_key=audio_key,
            sha256=sha,
            duration=meta.duration or 0.0,
            format=decoded.format,
            channels=tracks.channels,
        )
    )


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
        store.put_json(keys.content_hash(sha), {"call_id": call_id, "sha256": sha}, overwrite=False)


def iter_calls(store: Store) -> Iterable[CallMeta]:
    """Every published call's metadata, in call-id order (for the pipeline's batch input)."""
    for key in store.list(keys.CALLS):
        if keys.parse_meta(key):
            yield store.get_json(key, model=CallMeta)
