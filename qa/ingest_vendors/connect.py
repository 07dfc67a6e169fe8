"""Amazon Connect: call recordings with their contact records (CTRs).

Connect records a call in stereo with the customer on the left channel and the agent on the
right, so the channel map is {0: customer, 1: agent} unless the operator says otherwise.
Contact records arrive through Kinesis Firehose or a contact-record export, at least once:
the same record can be delivered again, and a record is delivered again when the contact is
updated. Records are therefore de-duplicated on ContactId + LastUpdateTimestamp: the latest
update of a contact is used, a repeat of the same update is skipped and reported.

A record is paired with its recording by the file name in Recording.Location (or in a
Recordings entry), else by a file whose name starts with the ContactId (Connect names
recordings `<ContactId>_<timestamp>.wav`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationError

from qa.ingest import Duplicate, MappedCall, Rejection
from qa.ingest_vendors import (
    VendorOptions,
    VendorPlan,
    VendorRecord,
    collect,
    field_rejection,
    place,
    read_json_values,
    two_party_roles,
    unpaired_audio,
    utc,
)
from qa.schema import CallMeta, Direction, validate_call_id

SOURCE = "connect"
AGENT_CHANNEL = 1  # Connect: agent on the right channel
# InitiationMethod -> direction. The customer placed INBOUND, TRANSFER and QUEUE_TRANSFER
# calls; the centre placed the others.
DIRECTIONS = {
    "INBOUND": Direction.INBOUND,
    "TRANSFER": Direction.INBOUND,
    "QUEUE_TRANSFER": Direction.INBOUND,
    "OUTBOUND": Direction.OUTBOUND,
    "CALLBACK": Direction.OUTBOUND,
    "API": Direction.OUTBOUND,
    "EXTERNAL_OUTBOUND": Direction.OUTBOUND,
}


class ConnectNamed(VendorRecord):
    name: str | None = Field(default=None, alias="Name")
    arn: str | None = Field(default=None, alias="ARN")


class ConnectAgent(VendorRecord):
    username: str | None = Field(default=None, alias="Username")
    arn: str | None = Field(default=None, alias="ARN")
    routing_profile: ConnectNamed | None = Field(default=None, alias="RoutingProfile")

    @property
    def agent_id(self) -> str | None:
        """The login name, else the agent's id from its ARN (`.../agent/<id>`)."""
        if self.username:
            return self.username
        return self.arn.rsplit("/", 1)[-1] if self.arn else None


class ConnectEndpoint(VendorRecord):
    address: str | None = Field(default=None, alias="Address")
    type: str | None = Field(default=None, alias="Type")


class ConnectRecording(VendorRecord):
    location: str = Field(alias="Location")
    status: str | None = Field(default=None, alias="Status")
    media_stream_type: str | None = Field(default=None, alias="MediaStreamType")

    @property
    def file_name(self) -> str:
        return self.location.rstrip("/").rsplit("/", 1)[-1]


class ContactRecord(VendorRecord):
    """The fields of a Connect contact record that a call's metadata comes from."""

    contact_id: Annotated[str, AfterValidator(validate_call_id)] = Field(alias="ContactId")
    last_update: datetime = Field(alias="LastUpdateTimestamp")
    channel: str = Field(alias="Channel")
    initiation_method: str = Field(alias="InitiationMethod")
    initiated_at: datetime = Field(alias="InitiationTimestamp")
    disconnected_at: datetime | None = Field(default=None, alias="DisconnectTimestamp")
    agent: ConnectAgent | None = Field(default=None, alias="Agent")
    queue: ConnectNamed | None = Field(default=None, alias="Queue")
    customer_endpoint: ConnectEndpoint | None = Field(default=None, alias="CustomerEndpoint")
    recording: ConnectRecording | None = Field(default=None, alias="Recording")
    recordings: list[ConnectRecording] | None = Field(default=None, alias="Recordings")
    attributes: dict[str, Any] = Field(default_factory=dict, alias="Attributes")

    def audio_names(self) -> list[str]:
        """File names of the call's audio recordings named in the record."""
        recs = [self.recording] if self.recording else []
        recs += [r for r in self.recordings or [] if (r.media_stream_type or "AUDIO") == "AUDIO"]
        return list(dict.fromkeys(r.file_name for r in recs if r.location))

    def direction(self) -> Direction:
        try:
            return DIRECTIONS[self.initiation_method.upper()]
        except KeyError:
            raise ValueError(
                f"InitiationMethod: {self.initiation_method!r} is not a call direction "
                f"({', '.join(DIRECTIONS)})"
            ) from None

    def to_meta(self, agent_channel: int) -> CallMeta:
        customer = self.customer_endpoint
        return CallMeta(
            call_id=self.contact_id,
            agent_id=self.agent.agent_id if self.agent else None,
            team=self.agent.routing_profile.name
            if self.agent and self.agent.routing_profile
            else None,
            queue=self.queue.name if self.queue else None,
            direction=self.direction(),
            started_at=utc(self.initiated_at),
            channel_roles=two_party_roles(agent_channel),
            source=SOURCE,
            customer_id=customer.address if customer and customer.address else None,
        )


def is_record_file(path: Path) -> bool:
    return path.suffix.lower() in (".json", ".jsonl", ".ndjson")


def plan(paths: list[Path], options: VendorOptions) -> VendorPlan:
    """Pair the latest update of each contact with its recording; see the module docstring."""
    out = VendorPlan()
    audio, record_files = collect(paths, is_record_file)
    agent_channel = AGENT_CHANNEL if options.agent_channel is None else options.agent_channel

    # Every valid record, and the contacts an invalid record names (nothing is ingested for
    # them: which update is right is not known until the record is fixed).
    found: list[tuple[ContactRecord, Path, int | None]] = []
    spoilt: dict[str, str] = {}
    spoilt_names: set[str] = set()
    for file in record_files:
        try:
            values = read_json_values(file)
        except ValueError as exc:
            out.rejected.append(Rejection(file=str(file), reason=str(exc)))
            continue
        for n, value in enumerate(values, 1):
            row = n if len(values) > 1 else None
            if not isinstance(value, dict):
                out.rejected.append(
                    Rejection(file=str(file), row=row, reason="not a contact record (an object)")
                )
                continue
            try:
                found.append((ContactRecord.model_validate(value), file, row))
            except ValidationError as exc:
                out.rejected.append(field_rejection(exc, file, row))
                cid = value.get("ContactId")
                if isinstance(cid, str):
                    spoilt[cid] = place(file, row)
                spoilt_names.update(_raw_audio_names(value))

    latest: dict[str, tuple[ContactRecord, Path, int | None]] = {}
    for rec, file, row in sorted(found, key=lambda f: f[0].last_update):
        where = place(file, row)
        prev = latest.get(rec.contact_id)
        if prev is not None:
            old, old_file, old_row = prev
            same = old.last_update == rec.last_update
            out.duplicates.append(
                Duplicate(
                    file=where if same else place(old_file, old_row),
                    call_id=rec.contact_id,
                    existing_call_id=rec.contact_id,
                    reason=f"repeat delivery of the update at {rec.last_update.isoformat()}"
                    if same
                    else f"superseded by the update at {rec.last_update.isoformat()} ({where})",
                )
            )
            if same:
                continue
        latest[rec.contact_id] = (rec, file, row)

    by_name: dict[str, list[Path]] = {}
    for f in audio:
        by_name.setdefault(f.name, []).append(f)
    claimed: set[Path] = set()
    for cid, (rec, file, row) in sorted(latest.items()):
        names = rec.audio_names()
        match = _match(rec, names, by_name, audio)
        if match is not None:
            claimed.add(match.resolve())
        if cid in spoilt:
            out.rejected.append(
                Rejection(
                    file=str(file),
                    row=row,
                    column="ContactId",
                    reason=f"another record of contact {cid} ({spoilt[cid]}) is invalid; "
                    "nothing is ingested for it until that record is fixed",
                )
            )
            continue
        if rec.channel.upper() != "VOICE":
            out.ignored.append(f"{file}: contact {cid} is a {rec.channel} contact, not a call")
            continue
        if not names and match is None:
            out.ignored.append(f"{file}: contact {cid} has no recording")
            continue
        try:
            meta = rec.to_meta(agent_channel)
        except ValueError as exc:
            column = str(exc).split(":", 1)[0]
            out.rejected.append(Rejection(file=str(file), row=row, column=column, reason=str(exc)))
            continue
        if match is None:
            out.rejected.append(
                Rejection(
                    file=str(file),
                    row=row,
                    column="Recording.Location",
                    reason=f"recording {', '.join(names) or cid + '_*'} of contact {cid} "
                    "is not among the files given",
                )
            )
            continue
        out.calls.append(MappedCall(path=match, meta=meta, row=row))
    for f in audio:  # an invalid record still claims its contact's recording
        if f.name in spoilt_names or any(f.name.startswith(cid) for cid in spoilt):
            claimed.add(f.resolve())
    out.rejected.extend(unpaired_audio(audio, claimed, "Amazon Connect contact"))
    return out


def _raw_audio_names(value: dict[str, Any]) -> set[str]:
    """File names an unvalidated record gives for its recording."""
    recs = [value.get("Recording")]
    if isinstance(value.get("Recordings"), list):
        recs += value["Recordings"]
    return {
        r["Location"].rstrip("/").rsplit("/", 1)[-1]
        for r in recs
        if isinstance(r, dict) and isinstance(r.get("Location"), str)
    }


def _match(
    rec: ContactRecord, names: list[str], by_name: dict[str, list[Path]], audio: list[Path]
) -> Path | None:
    for name in names:
        if len(by_name.get(name, [])) == 1:
            return by_name[name][0]
    prefixed = [f for f in audio if f.name.startswith(rec.contact_id)]
    return prefixed[0] if len(prefixed) == 1 else None
