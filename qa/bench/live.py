"""Live transcription under load: real stereo calls streamed at once, in real time.

Each call's two channels are resampled to 8 kHz and passed through G.711 mu-law, as a phone
platform delivers them, and pushed in 20 ms frames at the wall-clock pace of the call (one
feeder thread per call) into one `DecodePool`. What matters to a supervisor is the word
latency (from the audio of a word's end arriving to its commit), whether the decoders keep
up (no backlog growing, no audio lost), and how much worse the live text is than a plain
decode of the same audio: each channel is compared with the reference words, and with plain
faster-whisper (its default options, same model and audio) as the anchor of the same run.
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
from pydantic import Field

from qa.asr.whisper import SAMPLE_RATE
from qa.audio import load_audio, resample
from qa.config import Settings
from qa.evaluation.asr import normalize_text
from qa.live import g711
from qa.live.decode import DecodePool, load_live_model
from qa.live.models import Commit, LiveWord
from qa.live.stream import StreamOptions, TrackTranscriber
from qa.schema import Record, Role

RATE = 8000
FRAME_S = 0.02
# Channel roles of the development calls: swoz_* are customer (reference speaker A) then
# agent (B); auto_repairs_40 is agent then caller.
DEFAULT_ROLES: dict[str, tuple[Role, Role]] = {
    "auto_repairs_40_stereo": (Role.AGENT, Role.CUSTOMER),
}
REFERENCE_SPEAKER = {Role.CUSTOMER: "A", Role.AGENT: "B"}


class ChannelResult(Record):
    """One channel of one streamed call: its live text against the reference and anchor."""

    call: str
    channel: int
    role: Role
    words: int
    lost_seconds: float
    text: str  # the committed live text
    anchor_text: str  # plain faster-whisper on the same audio
    wer_live: float | None = None  # against the reference words (None: no reference)
    wer_anchor: float | None = None


class LiveBenchReport(Record):
    """One concurrency level: latency, capacity and accuracy of live transcription."""

    concurrency: int
    speed: float
    workers: int
    threads: int
    cores: int
    model: str
    options: StreamOptions
    calls: list[str]
    audio_seconds: float  # all tracks together
    wall_seconds: float
    steps: int
    decodes: int  # steps that ran the model (silent tracks skip it)
    decode_seconds: float  # wall time of steps in all workers
    cpu_seconds: float  # process CPU during the stream (decoders, VAD, feeders)
    words: int
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_max: float | None = None
    lost_seconds: float
    max_backlog_seconds: float  # the most undecoded audio a track held
    end_backlog_seconds: float  # the most a track held when its call ended
    wer_live: float | None = None  # pooled over channels with a reference
    wer_anchor: float | None = None
    wer_live_vs_anchor: float | None = None  # pooled over every channel
    channels: list[ChannelResult] = Field(default_factory=list)

    @property
    def cpu_share(self) -> float:
        """Of the machine's CPU during the stream."""
        return self.cpu_seconds / (self.wall_seconds * self.cores) if self.wall_seconds else 0.0

    @property
    def real_time_factor(self) -> float:
        """Worker time per second of audio: below 1/workers the pool keeps up."""
        return self.decode_seconds / self.audio_seconds if self.audio_seconds else 0.0

    @property
    def keeps_up(self) -> bool:
        return self.lost_seconds == 0 and self.end_backlog_seconds < 3.0


def phone_line(samples: np.ndarray, rate: int) -> np.ndarray:
    """A channel as a phone platform delivers it: 8 kHz, through G.711 mu-law."""
    return g711.decode(g711.encode(resample(samples, rate, RATE)))


def reference_text(path: Path, role: Role) -> str | None:
    """The reference words of one role's speaker (`<call>.words.json` beside the audio)."""
    ref = path.with_name(path.stem.removesuffix("_stereo") + ".words.json")
    if not ref.is_file():
        return None
    speaker = REFERENCE_SPEAKER[role]
    words = json.loads(ref.read_text())
    return " ".join(
        w["word"] for w in sorted(words, key=lambda w: w["start"]) if w["speaker"] == speaker
    )


def _wer(refs: Sequence[str], hyps: Sequence[str]) -> float | None:
    import jiwer

    pairs = [(normalize_text(r), normalize_text(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return None
    return round(float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])), 4)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def bench_live(
    paths: list[Path],
    *,
    concurrency: int,
    speed: float = 1.0,
    settings: Settings,
    workers: int | None = None,
    channel_roles: Mapping[str, Sequence[Role]] | None = None,
    options: StreamOptions | None = None,
    language: str | None = "en",
    anchor: bool = True,
    model: object | None = None,
) -> LiveBenchReport:
    """Stream `concurrency` calls (taken from `paths` in turn) at once through one pool and
    report latency, capacity and accuracy. `speed` > 1 plays the calls faster than real
    time (more load per core). `model`: an already loaded live model to reuse."""
    options = options or StreamOptions()
    roles_by_call = {**DEFAULT_ROLES, **(channel_roles or {})}
    cores = max(1, len(os.sched_getaffinity(0)))
    if model is None:
        model = load_live_model(settings, language, workers)
    n_workers = int(getattr(model.model, "num_workers", 0) or workers or cores)
    threads = int(getattr(model.model, "intra_threads", 0) or 0) or max(1, cores // n_workers)

    calls: list[tuple[str, Path, list[np.ndarray]]] = []
    for i in range(concurrency):
        path = paths[i % len(paths)]
        audio = load_audio(path)
        channels = [phone_line(ch, audio.sample_rate) for ch in np.atleast_2d(audio.samples)]
        calls.append((f"{path.stem}#{i}", path, channels))

    lock = threading.Lock()
    live: dict[Hashable, list[LiveWord]] = {}

    def on_commit(key: Hashable, commits: list[Commit]) -> None:
        with lock:
            live.setdefault(key, []).extend(w for c in commits for w in c.words)

    pool = DecodePool(model, n_workers, on_commit)
    tracks: dict[tuple[str, int], TrackTranscriber] = {}
    for name, _path, channels in calls:
        for ch in range(len(channels)):
            tracks[(name, ch)] = TrackTranscriber(model, language=language, options=options)
            pool.add((name, ch), tracks[(name, ch)])
    backlog = {"max": 0.0, "end": 0.0}
    finals: dict[Hashable, list[LiveWord]] = {}

    def feeder(name: str, channels: list[np.ndarray], t0: float) -> None:
        frame = int(RATE * FRAME_S)
        length = max(len(c) for c in channels)
        mine = [tracks[(name, ch)] for ch in range(len(channels))]
        for k, i in enumerate(range(0, length, frame)):
            delay = t0 + k * FRAME_S / speed - time.time()
            if delay > 0:
                time.sleep(delay)
            heard = time.time()
            for tr, samples in zip(mine, channels, strict=True):
                tr.feed(samples[i : i + frame], heard)
            pool.wake()
            if k % 50 == 0:
                worst = max(tr.backlog_seconds for tr in mine)
                with lock:
                    backlog["max"] = max(backlog["max"], worst)
        worst = max(tr.backlog_seconds for tr in mine)
        futures = [pool.finish((name, ch)) for ch in range(len(channels))]
        for ch, fut in enumerate(futures):
            words = [w for c in fut.result() for w in c.words]
            with lock:
                finals[(name, ch)] = words
                backlog["max"] = max(backlog["max"], worst)
                backlog["end"] = max(backlog["end"], worst)

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.time() + 0.5
    feeders = [
        threading.Thread(target=feeder, args=(name, channels, start), daemon=True)
        for name, _path, channels in calls
    ]
    for t in feeders:
        t.start()
    for t in feeders:
        t.join()
    wall = time.time() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    pool.close()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)

    results: list[ChannelResult] = []
    for name, path, channels in calls:
        roles = list(roles_by_call.get(path.stem, (Role.CUSTOMER, Role.AGENT)))
        for ch, samples in enumerate(channels):
            words = live.get((name, ch), []) + finals.get((name, ch), [])
            text = "".join(w.text for w in words).strip()
            anchor_text = ""
            if anchor:
                segments, _ = model.transcribe(
                    resample(samples, RATE, SAMPLE_RATE), language=language
                )
                anchor_text = "".join(s.text for s in segments).strip()
            ref = reference_text(path, roles[ch])
            results.append(
                ChannelResult(
                    call=name,
                    channel=ch,
                    role=roles[ch],
                    words=len(words),
                    lost_seconds=round(tracks[(name, ch)].lost_seconds, 2),
                    text=text,
                    anchor_text=anchor_text,
                    wer_live=_wer([ref], [text]) if ref is not None else None,
                    wer_anchor=_wer([ref], [anchor_text]) if ref is not None and anchor else None,
                )
            )
    with_ref = [
        (reference_text(path, r.role), r)
        for (name, path, _c) in calls
        for r in results
        if r.call == name
    ]
    refs = [(ref, r) for ref, r in with_ref if ref is not None]
    latencies = pool.stats.latencies
    return LiveBenchReport(
        concurrency=concurrency,
        speed=speed,
        workers=n_workers,
        threads=threads,
        cores=cores,
        model=str(getattr(model, "model_path", "")) or type(model).__name__,
        options=options,
        calls=[name for name, _p, _c in calls],
        audio_seconds=round(sum(tr.audio_seconds for tr in tracks.values()), 2),
        wall_seconds=round(wall, 2),
        steps=pool.stats.steps,
        decodes=sum(tr.decodes for tr in tracks.values()),
        decode_seconds=round(pool.stats.decode_seconds, 2),
        cpu_seconds=round(cpu, 2),
        words=len(latencies),
        latency_p50=_percentile(latencies, 50),
        latency_p95=_percentile(latencies, 95),
        latency_max=_percentile(latencies, 100),
        lost_seconds=round(sum(tr.lost_seconds for tr in tracks.values()), 2),
        max_backlog_seconds=round(backlog["max"], 2),
        end_backlog_seconds=round(backlog["end"], 2),
        wer_live=_wer([ref for ref, _ in refs], [r.text for _, r in refs]),
        wer_anchor=_wer([ref for ref, _ in refs], [r.anchor_text for _, r in refs])
        if anchor
        else None,
        wer_live_vs_anchor=_wer([r.anchor_text for r in results], [r.text for r in results])
        if anchor
        else None,
        channels=results,
    )


def markdown_rows(reports: Sequence[LiveBenchReport]) -> str:
    """The docs table: one row per concurrency level."""
    head = (
        "| calls | workers x threads | words | latency p50 | p95 | max | lost s | max backlog s "
        "| real-time factor | CPU share | WER live | WER plain | live vs plain |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    def sec(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    rows = [
        f"| {r.concurrency} | {r.workers} x {r.threads} | {r.words} | {sec(r.latency_p50)} | "
        f"{sec(r.latency_p95)} | {sec(r.latency_max)} | {r.lost_seconds:.1f} | "
        f"{r.max_backlog_seconds:.1f} | {r.real_time_factor:.3f} | {100 * r.cpu_share:.0f}% | "
        f"{pct(r.wer_live)} | {pct(r.wer_anchor)} | {pct(r.wer_live_vs_anchor)} |"
        for r in reports
    ]
    return head + "\n".join(rows) + "\n"
