"""A fixed pool of decode workers shared by every live track of a server.

One Whisper model is loaded per process and shared: CTranslate2 runs `num_workers`
decodes at once, each on `cpu_threads` threads, so workers x threads stays near the
cores and a decode never waits for a free core. Tracks do not own threads: a worker takes
the due track that has waited longest, so no call starves when there are more tracks than
workers, and a silent track, never due, costs nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import Field

from qa.asr.whisper import MODEL_KEYS, _resolve_device, cpu_threads, select_model_key
from qa.config import Settings
from qa.live.models import Commit
from qa.models import model_path
from qa.schema import Record

log = logging.getLogger(__name__)


class Track(Protocol):
    """What the pool needs of a track (`qa.live.stream.TrackTranscriber`)."""

    def due(self) -> bool: ...

    def step(self, now: Callable[[], float] = ...) -> list[Commit]: ...

    def flush(self, now: Callable[[], float] = ...) -> list[Commit]: ...


def load_live_model(settings: Settings, language: str | None, workers: int | None = None) -> Any:
    """The Whisper model live decoding shares: the batch path's model for the language
    (tiny.en for English, the multilingual model otherwise), `workers` concurrent decodes
    (default: one per core) with the cores divided between them."""
    from faster_whisper import WhisperModel

    cores = max(1, len(os.sched_getaffinity(0)))
    device, compute_type = _resolve_device(settings)
    if workers is None:
        workers = cores if device == "cpu" else 2
    threads = max(1, min(cpu_threads(settings), cores // max(1, workers)))
    path = model_path(MODEL_KEYS[select_model_key(language, settings)], settings)
    return WhisperModel(
        str(path),
        device=device,
        compute_type=compute_type,
        cpu_threads=threads,
        num_workers=workers,
        local_files_only=True,
    )


LATENCIES_KEPT = 100_000


class PoolStats(Record):
    """What the workers did: decodes, time in them, and each committed word's latency."""

    steps: int = 0  # steps run (a step over silence decodes nothing)
    decode_seconds: float = 0.0  # wall time inside steps and flushes
    latencies: list[float] = Field(default_factory=list)  # committed_at - heard_at per word


@dataclass
class _Entry:
    track: Track
    served: float  # when it was last decoded (or added): who waited longest goes first
    busy: bool = False
    finishing: Future[list[Commit]] | None = None


class DecodePool:
    """`workers` threads decoding the due tracks of every call, longest-waiting first."""

    def __init__(
        self,
        model: Any,
        workers: int,
        on_commit: Callable[[Hashable, list[Commit]], None],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.model = model  # the shared model the pool's tracks decode with
        self.on_commit = on_commit
        self.now = now
        self.stats = PoolStats()
        self._tracks: dict[Hashable, _Entry] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"live-decode-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    def add(self, key: Hashable, transcriber: Track) -> None:
        with self._cond:
            if key in self._tracks:
                raise ValueError(f"track {key!r} is already in the pool")
            self._tracks[key] = _Entry(transcriber, served=time.monotonic())
            self._cond.notify()

    def wake(self) -> None:
        """New audio arrived somewhere: let an idle worker look (cheap)."""
        with self._cond:
            self._cond.notify()

    def finish(self, key: Hashable) -> Future[list[Commit]]:
        """Flush the track in a worker and remove it; the future holds its last commits."""
        future: Future[list[Commit]] = Future()
        with self._cond:
            entry = self._tracks.get(key)
            if entry is None:
                future.set_exception(KeyError(key))
                return future
            if entry.finishing is not None:
                return entry.finishing
            entry.finishing = future
            self._cond.notify()
        return future

    def close(self) -> None:
        """Stop the workers; tracks still in the pool are dropped unflushed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        with self._cond:
            for entry in self._tracks.values():
                if entry.finishing is not None and not entry.finishing.done():
                    entry.finishing.cancel()
            self._tracks.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._tracks)

    # ------------------------------------------------------------------ workers

    def _pick(self) -> tuple[Hashable, _Entry] | None:
        """A finishing track first, else the due track served longest ago."""
        best: tuple[Hashable, _Entry] | None = None
        for key, entry in self._tracks.items():
            if entry.busy:
                continue
            if entry.finishing is not None:
                return key, entry
            if (best is None or entry.served < best[1].served) and entry.track.due():
                best = key, entry
        return best

    def _run(self) -> None:
        while True:
            with self._cond:
                picked = None
                while not self._closed:
                    picked = self._pick()
                    if picked is not None:
                        break
                    self._cond.wait()
                if picked is None:
                    return
                key, entry = picked
                entry.busy = True
            if entry.finishing is not None:
                self._finish(key, entry)
            else:
                self._step(key, entry)

    def _step(self, key: Hashable, entry: _Entry) -> None:
        t = time.perf_counter()
        commits: list[Commit] = []
        try:
            commits = entry.track.step(self.now)
        except Exception:  # a failing track must not take a worker down
            log.exception("live decode of %r failed", key)
        elapsed = time.perf_counter() - t
        with self._cond:
            entry.busy = False
            entry.served = time.monotonic()
            self.stats.steps += 1
            self.stats.decode_seconds += elapsed
            self._note_latencies(commits)
            self._cond.notify()
        commits = [c for c in commits if c.words or c.final]
        if commits:
            try:
                self.on_commit(key, commits)
            except Exception:
                log.exception("on_commit for %r failed", key)

    def _finish(self, key: Hashable, entry: _Entry) -> None:
        assert entry.finishing is not None
        t = time.perf_counter()
        try:
            commits = entry.track.flush(self.now)
        except Exception as exc:
            with self._cond:
                self._tracks.pop(key, None)
            entry.finishing.set_exception(exc)
            return
        elapsed = time.perf_counter() - t
        with self._cond:
            self._tracks.pop(key, None)
            self.stats.decode_seconds += elapsed
            self._note_latencies(commits)
        entry.finishing.set_result(commits)

    def _note_latencies(self, commits: list[Commit]) -> None:
        """Keep the latest words' latencies (a server runs for weeks)."""
        self.stats.latencies += [w.latency for c in commits for w in c.words]
        del self.stats.latencies[:-LATENCIES_KEPT]
