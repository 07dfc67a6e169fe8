"""Recordings as contact-centre platforms deliver them, mapped to CallMeta for ingest.

Each platform has its own module (connect, genesys, twilio) with pydantic models of its
records and a `plan` that pairs records with recordings. The mapping is explicit: the
channel map comes from the platform's documented recording layout (or the operator's
option), never from listening to the call, and a record that cannot be mapped is reported
naming its file and field. The upload itself is `qa.ingest.ingest_mapped`, so duplicates,
overwrites and bad audio are handled exactly as for a CSV.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qa.config import Settings
from qa.ingest import (
    AUDIO_EXTENSIONS,
    Duplicate,
    IngestReport,
    MappedCall,
    ProgressFn,
    Rejection,
    ingest_mapped,
)
from qa.schema import Role
from qa.store import Store

Vendor = Literal["connect", "genesys", "twilio"]
VENDORS: tuple[Vendor, ...] = ("connect", "genesys", "twilio")
# Vendor JSON files are read whole; a "record" larger than this is not metadata.
MAX_RECORD_FILE_BYTES = 64 * 1024**2


class VendorRecord(BaseModel):
    """A platform's record: fields the platform adds later are ignored (they are not
    typos of ours), the fields used are validated under the platform's own names."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, str_strip_whitespace=True)


class VendorOptions(BaseModel):
    """What the operator says about the recordings that the records do not."""

    agent_channel: int | None = Field(default=None, ge=0)  # None: the platform's default
    agent_leg: Literal["parent", "child"] | None = None  # Twilio; None: by direction


class VendorPlan(BaseModel):
    """Recordings paired with their mapped metadata, and what was left out and why."""

    calls: list[MappedCall] = Field(default_factory=list)
    rejected: list[Rejection] = Field(default_factory=list)
    duplicates: list[Duplicate] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def two_party_roles(agent_channel: int) -> dict[int, Role]:
    """The channel map of a two-channel recording with the agent on `agent_channel`."""
    if agent_channel not in (0, 1):
        raise ValueError(f"agent channel {agent_channel} is not 0 (left) or 1 (right)")
    return {agent_channel: Role.AGENT, 1 - agent_channel: Role.CUSTOMER}


def utc(value: datetime | None) -> datetime | None:
    """Platforms write UTC; a time without a zone is taken as UTC, as the CSV path does."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def lower(value: Any) -> Any:
    """Platforms write enumerations in either case (INBOUND, inbound)."""
    return value.strip().lower() if isinstance(value, str) else value


def place(file: Path, row: int | None) -> str:
    """Where a record is, for the report: the file, and the record's number in it if several."""
    return f"{file} record {row}" if row else str(file)


def collect(
    paths: Iterable[Path], records: Callable[[Path], bool]
) -> tuple[list[Path], list[Path]]:
    """Audio files and record files among `paths` (folders searched), in a stable order."""
    audio: list[Path] = []
    found: list[Path] = []
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.name.startswith("."):
                continue
            if records(f):
                found.append(f)
            elif f.suffix.lower() in AUDIO_EXTENSIONS or not p.is_dir():
                audio.append(f)
    return audio, found


def read_json_values(path: Path) -> list[Any]:
    """The JSON values in a file: one value, a list of values, JSON lines, or objects
    written back to back (as Kinesis Firehose delivers contact records). ValueError says
    why a file cannot be read."""
    try:
        size = path.stat().st_size
        if size > MAX_RECORD_FILE_BYTES:
            raise ValueError(
                f"record file is {size / 1024**2:,.1f} MB; at most "
                f"{MAX_RECORD_FILE_BYTES / 1024**2:,.0f} MB is read"
            )
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError("not a UTF-8 JSON file") from None
    decoder = json.JSONDecoder()
    values: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        values.extend(value if isinstance(value, list) else [value])
    if not values:
        raise ValueError("no records in the file")
    return values


def field_rejection(
    exc: ValidationError, file: Path, record: int | None, prefix: str = ""
) -> Rejection:
    """A rejection naming the platform's field (dotted path, e.g. Agent.Username) and why."""
    errors = exc.errors()
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__") or "record"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "missing"
        parts.append(f"{prefix}{loc}: {msg}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    first = ".".join(str(x) for x in errors[0].get("loc", ())) if errors else ""
    return Rejection(
        file=str(file), row=record, column=prefix + first or None, reason="; ".join(parts) + more
    )


def one_recording(matches: list[Path], file: Path, column: str, name: str) -> Rejection | None:
    """A record must name exactly one of the recordings given, else it is refused."""
    if len(matches) == 1:
        return None
    return Rejection(
        file=str(file),
        column=column,
        reason=f"recording {name} is not among the files given"
        if not matches
        else f"{len(matches)} recordings named {name}",
    )


def unique_call_ids(groups: dict[str, list[str]]) -> dict[tuple[str, str], str]:
    """Call ids for recordings grouped by conversation: the conversation's id when it has one
    recording here, else `<conversation>.<recording>` for each (a transfer gives several)."""
    out: dict[tuple[str, str], str] = {}
    for conversation, recordings in groups.items():
        for rec in recordings:
            out[(conversation, rec)] = (
                conversation if len(recordings) == 1 else f"{conversation}.{rec}"
            )
    return out


def unpaired_audio(audio: list[Path], claimed: set[Path], vendor: str) -> list[Rejection]:
    """Recordings no record names: without one the call would have no agent or channel map."""
    return [
        Rejection(file=str(f), reason=f"no {vendor} record names this recording")
        for f in audio
        if f.resolve() not in claimed
    ]


# --------------------------------------------------------------------------- entry point


def plan(vendor: Vendor, paths: list[Path], options: VendorOptions | None = None) -> VendorPlan:
    """Pair the platform's records with recordings among `paths` and map them."""
    from qa.ingest_vendors import connect, genesys, twilio

    planners = {"connect": connect.plan, "genesys": genesys.plan, "twilio": twilio.plan}
    if vendor not in planners:
        raise ValueError(f"unknown source {vendor!r}; expected one of {', '.join(VENDORS)}")
    return planners[vendor]([Path(p) for p in paths], options or VendorOptions())


def ingest_vendor(
    store: Store,
    vendor: Vendor,
    paths: list[Path],
    settings: Settings,
    options: VendorOptions | None = None,
    progress: ProgressFn | None = None,
) -> IngestReport:
    """Map a platform's delivery and upload it through the ordinary ingest path."""
    planned = plan(vendor, paths, options)
    report = IngestReport(
        rejected=list(planned.rejected),
        duplicates=list(planned.duplicates),
        ignored=list(planned.ignored),
    )
    return ingest_mapped(store, planned.calls, settings, report, progress)
