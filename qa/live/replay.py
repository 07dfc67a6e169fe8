"""`qa live replay FILE`: stream a recorded stereo call to the live endpoint as a platform
would, in real time (or faster), for demos, tests and benchmarks.

It speaks Twilio Media Streams (qa.live.protocol.twilio_messages): the agent's channel
is the outbound track and the other channel the inbound (caller's) track, in 20 ms
frames of 8 kHz mu-law paced on the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from qa.audio import load_audio
from qa.errors import AudioError, QAError
from qa.live.protocol import twilio_messages

FRAME_MS = 20


class ReplayReport(BaseModel):
    call_id: str
    seconds: float  # audio sent
    started_at: float  # epoch seconds the first frame was sent: audio time t went at this + t
    wall_seconds: float
    close_code: int | None
    close_reason: str


def tracks_of(path: Path, agent_channel: int = 0) -> dict[str, object]:
    """The recording's two channels at 8 kHz as Twilio's tracks (outbound = the agent)."""
    audio = load_audio(path).resampled(8000)
    if audio.channels != 2:
        raise AudioError(
            f"a live replay needs a stereo recording, one channel per party; this one has "
            f"{audio.channels} channel{'s' * (audio.channels != 1)}"
            + (" (its two channels are copies of one signal)" if audio.fake_stereo else ""),
            file=str(path),
        )
    if agent_channel not in (0, 1):
        raise QAError(f"--agent-channel is 0 or 1, not {agent_channel}")
    return {
        "outbound": audio.channel(agent_channel),
        "inbound": audio.channel(1 - agent_channel),
    }


async def replay(
    path: Path,
    url: str,
    *,
    token: str,
    call_id: str,
    speed: float = 1.0,
    agent_channel: int = 0,
    params: dict[str, str] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> ReplayReport:
    """Stream `path` to `url`; `speed` 1 is real time, 0 as fast as the server reads."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    tracks = tracks_of(path, agent_channel)
    custom = {"token": token, "call_id": call_id, **(params or {})}
    opening, frames, stop = twilio_messages(call_id, tracks, custom, frame_ms=FRAME_MS)
    total = max(len(t) for t in tracks.values()) / 8000  # type: ignore[arg-type]
    sent = 0.0
    began, started_at = time.monotonic(), time.time()
    async with connect(url, max_size=2**20, compression=None, close_timeout=120) as ws:
        try:
            for message in opening:
                await ws.send(message)
            began, started_at = time.monotonic(), time.time()
            for i, frame in enumerate(frames):
                if speed > 0:
                    wait = began + i * FRAME_MS / 1000 / speed - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                for message in frame:
                    await ws.send(message)
                sent = min(total, (i + 1) * FRAME_MS / 1000)
                if progress and i % 50 == 0:
                    progress(sent, total)
            await ws.send(stop)
            if progress:
                progress(total, total)
            while True:  # the server closes once the call is finished
                await ws.recv()
        except ConnectionClosed:
            pass
        code, reason = ws.close_code, ws.close_reason or ""
    return ReplayReport(
        call_id=call_id,
        seconds=round(sent, 2),
        started_at=started_at,
        wall_seconds=round(time.monotonic() - began, 2),
        close_code=code,
        close_reason=reason,
    )
