"""Twilio dual-channel call recordings with their Recording resource JSON.

A dual-channel recording holds the parent call leg on channel 1 (index 0, left) and the
child leg on channel 2 (index 1, right). Which leg is the agent depends on how the call was
made, so it is configured, not guessed:

- `--agent-leg parent|child` says it for every recording given;
- otherwise the direction of the call decides, when the JSON carries the Call resource under
  "call": an `inbound` call is the customer's (parent) leg that <Dial>ed the agent (child);
  an `outbound-api` call rang the agent first (parent) and then the customer (child);
- without either, the call is taken as inbound: agent on the child leg.

The recording is paired with its JSON by the Recording sid (`RE....wav` beside `RE....json`),
else by the JSON file's name. A call with one recording here is stored under its call sid;
one with several under `<CallSid>.<RecordingSid>` for each. Twilio's records do not name the
agent or the team; the agent id is set only where the agent's leg is a Twilio Client
(`client:<identity>`).
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from qa.ingest import MappedCall, Rejection
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

SOURCE = "twilio"
Leg = Literal["parent", "child"]
# Call resource direction -> (call direction, the leg the agent is on)
DIRECTIONS: dict[str, tuple[Direction, Leg]] = {
    "inbound": (Direction.INBOUND, "child"),
    "outbound-api": (Direction.OUTBOUND, "parent"),
    "outbound-dial": (Direction.OUTBOUND, "parent"),
}


def _twilio_time(value: Any) -> Any:
    """Twilio's REST API writes RFC 2822 dates ("Tue, 04 Mar 2025 09:30:00 +0000");
    ISO 8601 is accepted too."""
    if isinstance(value, str) and value[:3].isalpha():
        try:
            return parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return value
    return value


TwilioTime = Annotated[datetime, BeforeValidator(_twilio_time)]
Sid = Annotated[str, AfterValidator(validate_call_id)]


class TwilioCall(VendorRecord):
    """The Call resource, when saved with the recording: direction and the two addresses."""

    direction: Annotated[str, BeforeValidator(lower)]
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    start_time: TwilioTime | None = None

    @property
    def mapping(self) -> tuple[Direction, Leg]:
        try:
            return DIRECTIONS[self.direction]
        except KeyError:
            raise ValueError(
                f"call.direction: {self.direction!r} is not one of {', '.join(DIRECTIONS)}"
            ) from None


class TwilioRecording(VendorRecord):
    """The fields of a Recording resource that a call's metadata comes from."""

    sid: Sid
    call_sid: Sid
    date_created: TwilioTime
    start_time: TwilioTime | None = None
    duration: float | None = None
    channels: int
    status: str | None = None
    call: TwilioCall | None = None

    def to_meta(self, call_id: str, agent_leg: Leg | None) -> CallMeta:
        if self.channels != 2:
            raise ValueError(
                f"channels: {self.channels}; only a dual-channel recording has each leg on "
                "its own channel (record with recordingChannels=dual, or ingest it with "
                "--from csv)"
            )
        if self.status and self.status.lower() not in ("completed", "processing"):
            raise ValueError(f"status: {self.status!r}; only a completed recording is ingested")
        direction, by_direction = self.call.mapping if self.call else (Direction.INBOUND, "child")
        leg = agent_leg or by_direction
        started = self.start_time or (self.call.start_time if self.call else None)
        return CallMeta(
            call_id=call_id,
            agent_id=self._client(leg, direction, agent=True),
            direction=direction,
            started_at=utc(started or self.date_created),
            channel_roles=two_party_roles(0 if leg == "parent" else 1),
            source=SOURCE,
            customer_id=self._client(leg, direction, agent=False),
        )

    def _client(self, leg: Leg, direction: Direction, agent: bool) -> str | None:
        """The address of a party's leg where the Call resource shows it: the parent call's
        `from` is the caller of an inbound call, its `to` the party an outbound call rang."""
        if self.call is None:
            return None
        remote = self.call.from_ if direction == Direction.INBOUND else self.call.to
        party_on_parent = (leg == "parent") == agent
        address = remote if party_on_parent else None
        if not agent:
            return address
        is_client = address is not None and address.startswith("client:")
        return address.removeprefix("client:") if address and is_client else None


def is_record_file(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def plan(paths: list[Path], options: VendorOptions) -> VendorPlan:
    """Pair each Recording JSON with its recording and map it; see the module docstring."""
    out = VendorPlan()
    audio, record_files = collect(paths, is_record_file)
    claimed: set[Path] = set()
    found: list[tuple[TwilioRecording, Path, Path]] = []
    for file in record_files:
        by_name = [f for f in audio if f.stem == file.stem]
        try:
            values = read_json_values(file)
            if len(values) != 1 or not isinstance(values[0], dict):
                raise ValueError("expected one JSON object (a Recording resource)")
        except ValueError as exc:
            claimed.update(f.resolve() for f in by_name)
            out.rejected.append(Rejection(file=str(file), reason=str(exc)))
            continue
        sid = values[0].get("sid")
        matches = [f for f in audio if isinstance(sid, str) and f.stem == sid] or by_name
        claimed.update(f.resolve() for f in matches)
        try:
            record = TwilioRecording.model_validate(values[0])
        except ValidationError as exc:
            out.rejected.append(field_rejection(exc, file, None))
            continue
        if refused := one_recording(matches, file, "sid", record.sid):
            out.rejected.append(refused)
            continue
        found.append((record, file, matches[0]))

    groups: dict[str, list[str]] = {}
    for record, _, _ in found:
        groups.setdefault(record.call_sid, []).append(record.sid)
    call_ids = unique_call_ids(groups)
    for record, file, wav in found:
        try:
            meta = record.to_meta(call_ids[(record.call_sid, record.sid)], options.agent_leg)
        except ValueError as exc:
            column = str(exc).split(":", 1)[0]
            out.rejected.append(Rejection(file=str(file), column=column, reason=str(exc)))
            continue
        out.calls.append(MappedCall(path=wav, meta=meta))
    out.rejected.extend(unpaired_audio(audio, claimed, "Twilio Recording"))
    return out
