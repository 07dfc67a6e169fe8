"""One call in progress: its recording, its rolling transcript and what was said of it.

Audio arrives on the server's event loop and commits arrive from decode workers, so the
state a supervisor reads (lines, changed since the last publish) sits behind one lock. The
recording of each track is spooled to disk as it arrives (16-bit PCM at the line's rate),
so a long call costs disk, not memory; the platform's frame timestamps place each frame,
and a frame that never came is silence, which keeps the two tracks in step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from qa.asr.chinese import is_chinese
from qa.live.models import Commit, LiveCallInfo, LiveEvent, LiveLine, LiveWord
from qa.schema import Record, Role


class LiveRecord(Record):
    """What is kept of the live call beside the stored recording (`Keys.live`): the
    transcript and alerts the supervisor saw, and how late its words came."""

    info: LiveCallInfo
    lines: list[LiveLine]
    events: list[Any] = Field(default_factory=list)  # LiveEvent, as dicts
    latency_p50: float | None = None
    latency_p95: float | None = None
    words: int = 0
    lost_seconds: float = 0.0
    ended: str = ""  # why the stream ended


def join_words(words: list[LiveWord], language: str | None) -> str:
    """Whisper's English words carry their leading space; Chinese ones have none."""
    texts = [w.text for w in words]
    if any(t.startswith(" ") for t in texts) or is_chinese(language):
        return "".join(texts).strip()
    return " ".join(t.strip() for t in texts)


class _Track:
    def __init__(self, name: str, role: Role, path: Path, rate: int, asr: Any) -> None:
        self.name, self.role, self.rate = name, role, rate
        self.asr = asr  # qa.live.stream.TrackTranscriber
        self.path = path
        self.file = path.open("wb")
        self.samples = 0  # written to the spool
        self.open_line: int | None = None  # index of this track's growing line
        self.words: list[LiveWord] = []  # of the open line

    def write(self, samples: np.ndarray, offset_ms: int | None) -> None:
        if offset_ms is not None:
            at = offset_ms * self.rate // 1000
            if at > self.samples:  # frames that never came: silence keeps the tracks in step
                self._put(np.zeros(at - self.samples, dtype=np.int16))
            elif at < self.samples:  # overlaps what is written (a resent frame): the rest
                samples = samples[self.samples - at :]
        pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)
        self._put(pcm)

    def _put(self, pcm: np.ndarray) -> None:
        self.file.write(pcm.tobytes())
        self.samples += len(pcm)

    def read(self) -> np.ndarray:
        self.file.close()
        return np.fromfile(self.path, dtype=np.int16).astype(np.float32) / 32768.0


class LiveCall:
    """The state of one call; thread-safe between the feeder and the decode workers."""

    def __init__(
        self,
        info: LiveCallInfo,
        spool: Path,
        transcriber: Callable[[str], Any],
        rate: int = 8000,
    ) -> None:
        self.info = info
        self.rate = rate
        spool.mkdir(parents=True, exist_ok=True)
        self.spool = spool
        self._lock = threading.Lock()
        self.tracks = {
            name: _Track(name, role, spool / f"{i}.pcm", rate, transcriber(name))
            for i, (name, role) in enumerate(info.tracks.items())
        }
        self.lines: list[LiveLine] = []
        self.events: list[LiveEvent] = []
        self.words: list[LiveWord] = []  # every committed word, for latency
        self._changed: set[int] = set()

    # ---------------------------------------------------------------- audio in

    def feed(self, track: str, samples: np.ndarray, offset_ms: int | None, now: float) -> None:
        """Record a frame and hand it to the track's transcriber."""
        t = self.tracks[track]
        t.write(samples, offset_ms)
        t.asr.feed(samples, now)

    def voice_until(self) -> float | None:
        """Where voice was last heard on any track (audio seconds), for silence rules."""
        heard = [t.asr.last_voice for t in self.tracks.values() if t.asr.last_voice is not None]
        return max(heard, default=None)

    @property
    def lost_seconds(self) -> float:
        return float(sum(t.asr.lost_seconds for t in self.tracks.values()))

    @property
    def seconds(self) -> float:
        """Audio received so far (the longer track)."""
        return max((t.samples for t in self.tracks.values()), default=0) / self.rate

    # ---------------------------------------------------------------- words in

    def commit(self, track: str, commits: list[Commit]) -> None:
        with self._lock:
            t = self.tracks[track]
            for c in commits:
                if c.words:
                    self.words.extend(c.words)
                    t.words.extend(c.words)
                    if t.open_line is None:
                        t.open_line = len(self.lines)
                        self.lines.append(self._line(t, final=False))
                    else:
                        self.lines[t.open_line] = self._line(t, final=False)
                    self._changed.add(t.open_line)
                if c.final and t.open_line is not None:
                    self.lines[t.open_line] = self._line(t, final=True)
                    self._changed.add(t.open_line)
                    t.open_line, t.words = None, []

    def _line(self, t: _Track, *, final: bool) -> LiveLine:
        index = t.open_line if t.open_line is not None else len(self.lines)
        return LiveLine(
            call_id=self.info.call_id,
            index=index,
            track=t.name,
            role=t.role,
            start=t.words[0].start,
            end=t.words[-1].end,
            text=join_words(t.words, self.info.language),
            final=final,
        )

    def take_changes(self) -> tuple[list[LiveLine], list[LiveLine]]:
        """The lines changed since the last call, and all lines (for the rules)."""
        with self._lock:
            changed = [self.lines[i] for i in sorted(self._changed)]
            self._changed.clear()
            return changed, list(self.lines)

    def latency(self) -> tuple[float | None, float | None]:
        """p50 and p95 of the seconds from a word's end in the audio to its commit."""
        with self._lock:
            values = [w.latency for w in self.words]
        if not values:
            return None, None
        p50, p95 = np.percentile(values, [50, 95])
        return round(float(p50), 3), round(float(p95), 3)

    # ---------------------------------------------------------------- the end

    def _agent_first(self) -> list[_Track]:
        return sorted(self.tracks.values(), key=lambda t: t.role != Role.AGENT)

    def stereo(self) -> np.ndarray:
        """The recording, (2, n): the agent's track first, as `channel_roles` says."""
        channels = [t.read() for t in self._agent_first()]
        n = max(len(c) for c in channels)
        out = np.zeros((len(channels), n), dtype=np.float32)
        for i, c in enumerate(channels):
            out[i, : len(c)] = c
        return out

    def channel_roles(self) -> dict[int, Role]:
        return {i: t.role for i, t in enumerate(self._agent_first())}

    def close(self) -> None:
        for t in self.tracks.values():
            if not t.file.closed:
                t.file.close()
