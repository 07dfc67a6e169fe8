"""Genesys Cloud recording bulk export (the AWS S3 recording bulk-actions integration).

The export writes one folder per conversation
(`<org>/year=/month=/day=/hour=/conversation_id=<id>/`) holding each recording, named by its
recording id, and beside it a `<name>_metadata.json`. The fields used here are those of the
documented metadata layout: conversationId, recordingId, mediaType, direction,
conversationStartTime / conversationEndTime, ani / dnis, userIds, queueIds, and participants
(purpose agent / customer, userId, name, queue). Genesys records a two-party call with the
external party (customer) on the left channel and the agent on the right; another layout is
given with `--agent-channel`.

A conversation with one recording here is stored under its conversation id; one with several
(transfers, consults) under `<conversationId>.<recordingId>` for each.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, BeforeValidator, Field, ValidationError

from qa.ingest import AUDIO_EXTENSIONS, MappedCall, Rejection
from qa.ingest_vendors import (
    VendorOptions,
    VendorPlan,
    VendorRecord,
    collect,
    field_rejection,
    lower,
    one_recording,
    read_json_values,
    two_party_roles,
    unique_call_ids,
    unpaired_audio,
    utc,
)
from qa.schema import CallMeta, Direction, validate_call_id

SOURCE = "genesys"
AGENT_CHANNEL = 1  # Genesys Cloud: external party left, agent right
SUFFIX = "_metadata.json"
AGENT_PURPOSES = {"agent", "user"}
CUSTOMER_PURPOSES = {"customer", "external"}


class GenesysParticipant(VendorRecord):
    purpose: str
    user_id: str | None = Field(default=None, alias="userId")
    name: str | None = Field(default=None, validation_alias=AliasChoices("name", "participantName"))
    queue_id: str | None = Field(default=None, alias="queueId")
    queue_name: str | None = Field(default=None, alias="queueName")
    external_contact_id: str | None = Field(default=None, alias="externalContactId")
    ani: str | None = Field(default=None, validation_alias=AliasChoices("ani", "address"))


class GenesysRecordingMetadata(VendorRecord):
    """The fields of a recording's `_metadata.json` that a call's metadata comes from."""

    conversation_id: Annotated[str, AfterValidator(validate_call_id)] = Field(
        alias="conversationId"
    )
    recording_id: str | None = Field(default=None, alias="recordingId")
    media_type: str | None = Field(default=None, alias="mediaType")
    direction: Annotated[Direction | None, BeforeValidator(lower)] = None
    started_at: datetime = Field(
        validation_alias=AliasChoices("conversationStartTime", "conversationStart")
    )
    ended_at: datetime | None = Field(
        default=None, validation_alias=AliasChoices("conversationEndTime", "conversationEnd")
    )
    ani: str | None = None
    dnis: str | None = None
    user_ids: list[str] = Field(default_factory=list, alias="userIds")
    queue_ids: list[str] = Field(default_factory=list, alias="queueIds")
    participants: list[GenesysParticipant] = Field(default_factory=list)

    def _with(self, purposes: set[str]) -> list[GenesysParticipant]:
        return [p for p in self.participants if p.purpose.lower() in purposes]

    def agent_id(self) -> str | None:
        ids = [p.user_id for p in self._with(AGENT_PURPOSES) if p.user_id]
        return ids[0] if ids else (self.user_ids[0] if self.user_ids else None)

    def queue(self) -> str | None:
        for p in [*self._with(AGENT_PURPOSES), *self.participants]:
            if p.queue_name:
                return p.queue_name
        ids = [p.queue_id for p in self.participants if p.queue_id] + self.queue_ids
        return ids[0] if ids else None

    def customer_id(self) -> str | None:
        for p in self._with(CUSTOMER_PURPOSES):
            if p.external_contact_id or p.ani:
                return p.external_contact_id or p.ani
        return self.dnis if self.direction == Direction.OUTBOUND else self.ani

    def to_meta(self, call_id: str, agent_channel: int) -> CallMeta:
        return CallMeta(
            call_id=call_id,
            agent_id=self.agent_id(),
            queue=self.queue(),
            direction=self.direction or Direction.INBOUND,
            started_at=utc(self.started_at),
            channel_roles=two_party_roles(agent_channel),
            source=SOURCE,
            customer_id=self.customer_id(),
        )


def is_record_file(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIX)


def _audio_for(meta_file: Path, audio: list[Path]) -> list[Path]:
    """The recording a metadata file describes: `<rec>.opus_metadata.json` or
    `<rec>_metadata.json` beside `<rec>.<ext>`."""
    base = meta_file.name[: -len(SUFFIX)]
    here = [f for f in audio if f.parent == meta_file.parent]
    if Path(base).suffix.lower() in AUDIO_EXTENSIONS:
        return [f for f in here if f.name == base]
    return [f for f in here if f.stem == base]


def plan(paths: list[Path], options: VendorOptions) -> VendorPlan:
    """Pair each `_metadata.json` with the recording beside it and map it."""
    out = VendorPlan()
    audio, meta_files = collect(paths, is_record_file)
    agent_channel = AGENT_CHANNEL if options.agent_channel is None else options.agent_channel
    claimed: set[Path] = set()
    found: list[tuple[GenesysRecordingMetadata, Path, Path]] = []
    for file in meta_files:
        matches = _audio_for(file, audio)
        claimed.update(m.resolve() for m in matches)
        try:
            values = read_json_values(file)
            if len(values) != 1 or not isinstance(values[0], dict):
                raise ValueError("expected one JSON object (the recording's metadata)")
        except ValueError as exc:
            out.rejected.append(Rejection(file=str(file), reason=str(exc)))
            continue
        try:
            record = GenesysRecordingMetadata.model_validate(values[0])
        except ValidationError as exc:
            out.rejected.append(field_rejection(exc, file, None))
            continue
        if record.media_type and record.media_type.lower() != "call":
            out.ignored.append(f"{file}: a {record.media_type} recording, not a call")
            continue
        if refused := one_recording(matches, file, "recordingId", file.name[: -len(SUFFIX)]):
            out.rejected.append(refused)
            continue
        found.append((record, file, matches[0]))

    groups: dict[str, list[str]] = {}
    for record, _, wav in found:
        groups.setdefault(record.conversation_id, []).append(record.recording_id or wav.stem)
    call_ids = unique_call_ids(groups)
    for record, file, wav in found:
        call_id = call_ids[(record.conversation_id, record.recording_id or wav.stem)]
        try:
            meta = record.to_meta(call_id, agent_channel)
        except (ValueError, ValidationError) as exc:
            out.rejected.append(Rejection(file=str(file), reason=str(exc)))
            continue
        out.calls.append(MappedCall(path=wav, meta=meta))
    out.rejected.extend(unpaired_audio(audio, claimed, "Genesys _metadata.json"))
    return out
