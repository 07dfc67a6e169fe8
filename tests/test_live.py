"""The live endpoint: Twilio Media Streams parsing, tokens, limits and close reasons.

These run without models: every refusal happens before a call starts decoding. The
streaming of real calls end to end is tests/test_live_calls.py.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest

from qa.config import Settings
from qa.live import g711
from qa.live.protocol import (
    CLOSE_INVALID,
    CLOSE_POLICY,
    CLOSE_UNSUPPORTED,
    ProtocolError,
    StreamMedia,
    StreamStart,
    StreamStop,
    TwilioMediaStreams,
    twilio_messages,
)
from qa.live.server import LiveServer, ServerThread, call_info, token_source
from qa.schema import Role

TOKENS = {"twilio-main": "s3cret-token-main", "other-site": "s3cret-token-other"}


def _tone(seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _messages(params: dict[str, str] | None = None, seconds: float = 0.1):
    tracks = {"inbound": _tone(seconds), "outbound": _tone(seconds)}
    return twilio_messages("CA123", tracks, params or {"token": TOKENS["twilio-main"]})


# --------------------------------------------------------------------------- the protocol


def test_a_twilio_stream_parses_to_start_media_and_stop():
    opening, frames, stop = _messages({"token": "t", "agent_id": "a1"}, seconds=0.1)
    adapter = TwilioMediaStreams()
    assert adapter.parse(opening[0]) == []  # connected
    (start,) = adapter.parse(opening[1])
    assert isinstance(start, StreamStart)
    assert start.call_id == "CA123" and start.tracks == ("inbound", "outbound")
    assert start.params["agent_id"] == "a1"
    media = [e for frame in frames for m in frame for e in adapter.parse(m)]
    assert len(media) == 10  # 5 frames of 20 ms, two tracks
    assert all(isinstance(m, StreamMedia) and len(m.samples) == 160 for m in media)
    assert media[2].offset_ms == 20
    assert isinstance(adapter.parse(stop)[0], StreamStop)


def test_mu_law_keeps_speech_level_audio():
    tone = _tone(0.5)
    back = g711.decode(g711.encode(tone))
    assert len(back) == len(tone)
    assert np.max(np.abs(back - tone)) < 0.02


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (b"\x00\x01", CLOSE_UNSUPPORTED, "JSON text"),
        ("{not json", CLOSE_INVALID, "not JSON"),
        ('{"no": "event"}', CLOSE_INVALID, "no `event`"),
        ('{"event": "dance"}', CLOSE_INVALID, "unknown event"),
        (
            '{"event": "media", "media": {"track": "inbound", "payload": "AA=="}}',
            CLOSE_INVALID,
            "before the start",
        ),
    ],
)
def test_bad_messages_close_with_a_reason(message, code, words):
    with pytest.raises(ProtocolError) as err:
        TwilioMediaStreams().parse(message)
    assert err.value.code == code and words in err.value.reason


def test_bad_media_after_a_start_is_refused():
    opening, _, _ = _messages()
    adapter = TwilioMediaStreams()
    adapter.parse(opening[1])

    def media(track: str, payload: str) -> str:
        return json.dumps({"event": "media", "media": {"track": track, "payload": payload}})

    with pytest.raises(ProtocolError, match="not base64"):
        adapter.parse(media("inbound", "%%%"))
    with pytest.raises(ProtocolError, match="track 'both'"):
        adapter.parse(media("both", base64.b64encode(b"\xff" * 160).decode()))
    with pytest.raises(ProtocolError, match="second start"):
        adapter.parse(opening[1])


def test_a_format_other_than_mu_law_is_refused():
    start = json.loads(_messages()[0][1])
    start["start"]["mediaFormat"]["encoding"] = "audio/l16"
    with pytest.raises(ProtocolError) as err:
        TwilioMediaStreams().parse(json.dumps(start))
    assert err.value.code == CLOSE_UNSUPPORTED and "audio/l16" in err.value.reason


def test_tokens_name_their_source():
    assert token_source(TOKENS, "s3cret-token-other") == "other-site"
    assert token_source(TOKENS, "s3cret") is None
    assert token_source(TOKENS, None) is None


def test_roles_follow_the_tracks_and_the_agent_track_parameter():
    start = StreamStart(call_id="CA1", stream_id="MZ1", tracks=("inbound", "outbound"))
    info = call_info(start, "src", "twilio", _now())
    assert info.tracks == {"inbound": Role.CUSTOMER, "outbound": Role.AGENT}
    swapped = start.model_copy(update={"params": {"agent_track": "inbound", "team": "care"}})
    info = call_info(swapped, "src", "twilio", _now())
    assert info.tracks == {"inbound": Role.AGENT, "outbound": Role.CUSTOMER}
    assert info.team == "care"
    with pytest.raises(ProtocolError, match="agent_track"):
        call_info(start.model_copy(update={"params": {"agent_track": "x"}}), "s", "t", _now())


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --------------------------------------------------------------------------- the server


class _Workflow:
    """What the server writes before any call starts (no call here gets that far)."""

    def live_lost(self, older_than):
        return 0


@pytest.fixture
def live_server(tmp_path, monkeypatch):
    import qa.live.server as server_mod

    monkeypatch.setattr(server_mod, "START_TIMEOUT_S", 1.0)
    settings = Settings(home=tmp_path, live_max_calls=1)
    server = LiveServer(settings, workflow=_Workflow(), store=None, tokens=TOKENS)
    running = ServerThread(server).start()
    yield running
    running.stop()


async def _talk(url: str, messages: list[str], headers: dict | None = None) -> tuple[int, str]:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url, additional_headers=headers) as ws:
        try:
            for m in messages:
                await ws.send(m)
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason


def test_a_stream_without_a_valid_token_is_closed_before_it_starts(live_server):
    opening, _, _ = _messages({"token": "wrong"})
    code, reason = asyncio.run(_talk(live_server.url, opening))
    assert (code, reason) == (CLOSE_POLICY, "unknown or missing token")
    opening, _, _ = _messages({"agent_id": "a1"})
    assert asyncio.run(_talk(live_server.url, opening))[0] == CLOSE_POLICY


def test_a_stream_that_never_starts_is_closed(live_server):
    code, reason = asyncio.run(_talk(live_server.url, [_messages()[0][0]]))
    assert code == CLOSE_POLICY and "no start message within" in reason


def test_a_wrong_bearer_token_or_path_is_refused_at_the_handshake(live_server):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as err:
        asyncio.run(_talk(live_server.url, [], {"Authorization": "Bearer nope"}))
    assert err.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as err:
        asyncio.run(_talk(live_server.url.replace("/twilio", "/audiohook"), []))
    assert err.value.response.status_code == 404


def test_broken_messages_get_their_close_code(live_server):
    code, reason = asyncio.run(_talk(live_server.url, ["{oops"]))
    assert code == CLOSE_INVALID and "not JSON" in reason


def test_a_server_without_tokens_does_not_start(tmp_path):
    from qa.errors import QAError

    with pytest.raises(QAError, match="QA_LIVE_TOKENS"):
        LiveServer(Settings(home=tmp_path), workflow=_Workflow(), store=None, tokens={})


# --------------------------------------------------------------------------- one call's state


class _Asr:
    """A transcriber stand-in: records what it was fed."""

    def __init__(self) -> None:
        self.fed: list[int] = []
        self.last_voice: float | None = None
        self.lost_seconds = 0.0

    def feed(self, samples, heard_at):
        self.fed.append(len(samples))


def _call(tmp_path, language: str = "en"):
    from qa.live.models import LiveCallInfo
    from qa.live.session import LiveCall

    info = LiveCallInfo(
        call_id="CA9",
        source="s",
        language=language,
        started_at=_now(),
        tracks={"inbound": Role.CUSTOMER, "outbound": Role.AGENT},
    )
    return LiveCall(info, tmp_path / "spool", lambda _: _Asr())


def _words(*spec: tuple[str, float, float]):
    from qa.live.models import LiveWord

    return [
        LiveWord(start=a, end=b, text=t, heard_at=100.0 + b, committed_at=101.5 + b)
        for t, a, b in spec
    ]


def test_lines_grow_with_commits_and_close_on_a_pause(tmp_path):
    from qa.live.models import Commit

    call = _call(tmp_path)
    call.commit("outbound", [Commit(words=_words((" Thank", 0.1, 0.4), (" you", 0.4, 0.6)))])
    call.commit("inbound", [Commit(words=_words((" Hi", 0.5, 0.7)), final=True)])
    changed, lines = call.take_changes()
    assert [(x.role, x.text, x.final) for x in lines] == [
        (Role.AGENT, "Thank you", False),
        (Role.CUSTOMER, "Hi", True),
    ]
    assert len(changed) == 2 and call.take_changes()[0] == []
    call.commit("outbound", [Commit(words=_words((" for", 0.6, 0.8)), final=True)])
    changed, lines = call.take_changes()
    assert [(x.index, x.text, x.final) for x in changed] == [(0, "Thank you for", True)]
    call.commit("outbound", [Commit(words=_words((" Bye", 3.0, 3.2)))])
    assert [x.index for x in call.take_changes()[1]] == [0, 1, 2]
    assert call.latency() == (1.5, 1.5)


def test_chinese_words_join_without_spaces(tmp_path):
    from qa.live.models import Commit

    call = _call(tmp_path, "zh")
    call.commit("inbound", [Commit(words=_words(("我要", 0.1, 0.4), ("投诉", 0.4, 0.8)))])
    assert call.take_changes()[1][0].text == "我要投诉"


def test_the_recording_keeps_the_tracks_in_step_and_puts_the_agent_first(tmp_path):
    call = _call(tmp_path)
    frame = np.full(160, 0.25, dtype=np.float32)
    call.feed("inbound", frame, 0, 1.0)
    call.feed("inbound", frame, 60, 1.0)  # frames at 20 and 40 ms never came
    call.feed("outbound", frame, 0, 1.0)
    call.feed("outbound", frame, 0, 1.0)  # the same frame again: not written twice
    assert call.seconds == pytest.approx(0.08)
    assert call.tracks["inbound"].asr.fed == [160, 160]
    stereo = call.stereo()
    assert stereo.shape == (2, 640)
    assert call.channel_roles() == {0: Role.AGENT, 1: Role.CUSTOMER}
    agent, customer = stereo
    assert np.allclose(agent[:160], 0.25, atol=1e-3) and not agent[160:].any()
    assert np.allclose(customer[:160], 0.25, atol=1e-3) and not customer[160:480].any()
    assert np.allclose(customer[480:], 0.25, atol=1e-3)
