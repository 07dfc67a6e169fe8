"""The wire protocols live audio arrives in, each behind one small adapter.

An adapter turns a platform's WebSocket messages into three events the server knows:
`StreamStart` (the call, its tracks and what the platform says of it), `StreamMedia` (one
frame of one track, as float samples) and `StreamStop`. Everything else a platform sends
(keep-alives, marks, DTMF) parses to None and is ignored. A message that breaks the
protocol raises `ProtocolError` with the WebSocket close code and a reason the sender can
read, so a platform's engineer sees why the stream was refused.

Twilio Media Streams (`<Start><Stream track="both_tracks">`) is the first adapter: JSON
text messages `connected`, `start`, `media` (base64 8 kHz mu-law per track) and `stop`.
A second protocol is a second class with the same three methods: Genesys AudioHook sends
JSON control messages (`open`, `close`, `ping`) and binary frames of interleaved PCMU
stereo, so its `parse` would split a binary frame into two `StreamMedia` (hence the list),
and SIPREC reaches it through a gateway that re-streams the recorded legs the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qa.live import g711

# WebSocket close codes (RFC 6455 section 7.4.1) the server gives, with its reason
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED = 1003  # binary where text is expected, or the reverse
CLOSE_INVALID = 1007  # a message that is not what the protocol says
CLOSE_POLICY = 1008  # no or wrong token, no start in time, call too long
CLOSE_TOO_BIG = 1009
CLOSE_ERROR = 1011  # the server failed
CLOSE_BUSY = 1013  # at capacity: try again later

MAX_FRAME_BYTES = 16_000  # one media payload: 2 s of 8 kHz mu-law (Twilio sends 20 ms)


class ProtocolError(Exception):
    """The sender broke the protocol; the stream is closed with `code` and `reason`."""

    def __init__(self, reason: str, code: int = CLOSE_INVALID) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason[:120]  # a close reason must fit in a control frame


class StreamStart(BaseModel):
    model_config = ConfigDict(frozen=True)

    call_id: str
    stream_id: str
    tracks: tuple[str, ...]
    params: dict[str, str] = Field(default_factory=dict)  # the platform's custom parameters
    rate: int = 8000


class StreamMedia(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    track: str
    samples: Any  # float32 at the stream's rate
    offset_ms: int | None = None  # the platform's timestamp of the frame from stream start


class StreamStop(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str = "the platform ended the stream"


StreamEvent = StreamStart | StreamMedia | StreamStop


class Adapter(Protocol):
    """One platform's protocol; `parse` is called for every message in order."""

    name: ClassVar[str]

    def parse(self, message: str | bytes) -> list[StreamEvent]: ...


# --------------------------------------------------------------------------- Twilio


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _MediaFormat(_Msg):
    encoding: str = "audio/x-mulaw"
    sampleRate: int = 8000  # noqa: N815 - Twilio's field names
    channels: int = 1


class _StartBody(_Msg):
    callSid: str = Field(min_length=1, max_length=128)  # noqa: N815
    streamSid: str | None = None  # noqa: N815
    tracks: list[str] = Field(min_length=1, max_length=2)
    customParameters: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    mediaFormat: _MediaFormat = Field(default_factory=_MediaFormat)  # noqa: N815


class _Start(_Msg):
    event: Literal["start"]
    streamSid: str = Field(min_length=1, max_length=128)  # noqa: N815
    start: _StartBody


class _MediaBody(_Msg):
    track: str = Field(min_length=1, max_length=32)
    timestamp: int | None = None  # ms from stream start (Twilio sends it as a string)
    payload: str


class _Media(_Msg):
    event: Literal["media"]
    media: _MediaBody


def _field_error(exc: ValidationError, event: str) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{event} message: {where}: {first['msg']}"


class TwilioMediaStreams:
    """Twilio Media Streams: JSON text, one track per media message, 8 kHz mu-law."""

    name: ClassVar[str] = "twilio"
    IGNORED: ClassVar[frozenset[str]] = frozenset({"connected", "mark", "dtmf"})

    def __init__(self) -> None:
        self.tracks: tuple[str, ...] | None = None

    def parse(self, message: str | bytes) -> list[StreamEvent]:
        if isinstance(message, bytes):
            raise ProtocolError("Twilio Media Streams messages are JSON text", CLOSE_UNSUPPORTED)
        try:
            data = json.loads(message)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"message is not JSON: {exc.msg} at {exc.pos}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise ProtocolError("message has no `event`")
        event = data["event"]
        if event in self.IGNORED:
            return []
        if event == "start":
            return [self._start(data)]
        if event == "media":
            return [self._media(data)]
        if event == "stop":
            return [StreamStop()]
        raise ProtocolError(f"unknown event {event[:40]!r}")

    def _start(self, data: dict) -> StreamStart:
        if self.tracks is not None:
            raise ProtocolError("a second start message on one stream")
        try:
            msg = _Start.model_validate(data)
        except ValidationError as exc:
            raise ProtocolError(_field_error(exc, "start")) from exc
        fmt = msg.start.mediaFormat
        if fmt.encoding != "audio/x-mulaw" or fmt.sampleRate != 8000 or fmt.channels != 1:
            raise ProtocolError(
                f"media format {fmt.encoding} {fmt.sampleRate} Hz x{fmt.channels} is not "
                "supported (audio/x-mulaw, 8000 Hz, 1 channel per track)",
                CLOSE_UNSUPPORTED,
            )
        self.tracks = tuple(dict.fromkeys(msg.start.tracks))
        return StreamStart(
            call_id=msg.start.callSid,
            stream_id=msg.streamSid,
            tracks=self.tracks,
            params=msg.start.customParameters,
            rate=fmt.sampleRate,
        )

    def _media(self, data: dict) -> StreamMedia:
        if self.tracks is None:
            raise ProtocolError("media before the start message")
        try:
            msg = _Media.model_validate(data)
        except ValidationError as exc:
            raise ProtocolError(_field_error(exc, "media")) from exc
        body = msg.media
        if body.track not in self.tracks:
            raise ProtocolError(f"media for track {body.track!r}, not one the start named")
        if len(body.payload) > MAX_FRAME_BYTES * 4 // 3 + 4:
            raise ProtocolError(f"a media payload over {MAX_FRAME_BYTES} bytes", CLOSE_TOO_BIG)
        try:
            raw = base64.b64decode(body.payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError("media payload is not base64") from exc
        return StreamMedia(track=body.track, samples=g711.decode(raw), offset_ms=body.timestamp)


ADAPTERS: dict[str, type[TwilioMediaStreams]] = {"twilio": TwilioMediaStreams}


def twilio_messages(
    call_id: str,
    tracks: dict[str, np.ndarray],
    params: dict[str, str],
    *,
    frame_ms: int = 20,
) -> tuple[list[str], Iterator[list[str]], str]:
    """What Twilio sends for a recording (8 kHz float samples per track): the opening
    messages (connected, start), the media frame by frame (each frame one message per
    track, made as they are read) and the stop message. The replay client and the tests
    speak the protocol through this."""
    stream_id = f"MZ{call_id}"[:64]
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": stream_id,
        "start": {
            "accountSid": "AC-replay",
            "streamSid": stream_id,
            "callSid": call_id,
            "tracks": list(tracks),
            "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    encoded = {name: g711.encode(samples) for name, samples in tracks.items()}
    step = 8 * frame_ms
    n = max(len(b) for b in encoded.values())
    seq = 2 + len(encoded) * -(-n // step)

    def frames() -> Iterator[list[str]]:
        number = 2
        for i, at in enumerate(range(0, n, step)):
            frame = []
            for name, raw in encoded.items():
                if not raw[at : at + step]:
                    continue
                media = {
                    "track": name,
                    "chunk": str(i + 1),
                    "timestamp": str(i * frame_ms),
                    "payload": base64.b64encode(raw[at : at + step]).decode(),
                }
                frame.append(
                    json.dumps(
                        {
                            "event": "media",
                            "sequenceNumber": str(number),
                            "streamSid": stream_id,
                            "media": media,
                        }
                    )
                )
                number += 1
            yield frame

    connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    stop = {
        "event": "stop",
        "sequenceNumber": str(seq),
        "streamSid": stream_id,
        "stop": {"accountSid": "AC-replay", "callSid": call_id},
    }
    return [json.dumps(connected), json.dumps(start)], frames(), json.dumps(stop)
