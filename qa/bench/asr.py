"""Transcription speed and memory: the accurate (default) and fast modes on every channel.

Each mode runs in a fresh process, so its peak memory (RSS high-water mark) is its own; CPU
seconds are reported beside wall time, being less sensitive to a busy machine.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from qa.asr.whisper import SAMPLE_RATE, Transcriber, cpu_threads
from qa.config import Settings
from qa.errors import QAError
from qa.schema import Record

MODES = ("accurate", "fast")


class BenchResult(Record):
    """One mode on one recording: speed, CPU, peak memory, words and speech lost."""

    mode: str
    model: str
    compute_type: str
    threads: int
    batch_size: int
    audio_seconds: float
    load_seconds: float
    wall_seconds: float
    cpu_seconds: float  # user + system: less sensitive than wall time to a busy machine
    peak_rss_mb: float
    words: int
    lost_seconds: float | None = None  # speech without words (accurate mode measures it)

    @property
    def x_real_time(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def audio_per_cpu_second(self) -> float:
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds else 0.0


def bench_once(
    path: str, settings: Settings, model: str, mode: str, batch_size: int = 8
) -> BenchResult:
    """Transcribe every channel of one file in `mode` ("accurate" or "fast"); run in a fresh
    process so the peak memory (RSS high-water mark) belongs to this mode alone."""
    import resource
    import time

    from qa.audio import load_audio

    settings = settings.model_copy(update={"asr_mode": mode, "asr_batch_size": batch_size})
    audio = load_audio(path).resampled(SAMPLE_RATE)
    t0 = time.perf_counter()
    transcriber = Transcriber(settings, model)
    t1 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    words, lost = 0, 0.0
    for i in range(audio.channels):
        result = transcriber.transcribe(
            audio.channel(i), "en" if not transcriber.multilingual else None
        )
        words += len(result.words)
        lost += result.lost_seconds
    t2 = time.perf_counter()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    batched = transcriber.batched is not None
    return BenchResult(
        mode=mode + (f" (batched {batch_size})" if batched else ""),
        model=transcriber.name,
        compute_type=transcriber.compute_type,
        threads=cpu_threads(settings),
        batch_size=batch_size if batched else 0,
        audio_seconds=audio.duration * audio.channels,
        load_seconds=round(t1 - t0, 2),
        wall_seconds=round(t2 - t1, 2),
        cpu_seconds=round(usage.ru_utime + usage.ru_stime - cpu0, 2),
        peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
        words=words,
        lost_seconds=round(lost, 2) if mode == "accurate" else None,
    )


def bench_isolated(
    path: str, settings: Settings, model: str, mode: str, batch_size: int = 8
) -> BenchResult:
    """`bench_once` in a fresh (spawned) process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(bench_once, path, settings, model, mode, batch_size).result()


def rich_table(title: str, results: list[BenchResult]) -> Table:
    table = Table(
        "mode",
        "model",
        "compute",
        "threads",
        "audio s",
        "load s",
        "wall s",
        "x real time",
        "CPU s",
        "audio s / CPU s",
        "peak RSS MB",
        "words",
        "lost s",
        title=title,
    )
    for r in results:
        table.add_row(
            r.mode,
            r.model,
            r.compute_type,
            str(r.threads),
            f"{r.audio_seconds:.1f}",
            f"{r.load_seconds:.2f}",
            f"{r.wall_seconds:.1f}",
            f"{r.x_real_time:.1f}",
            f"{r.cpu_seconds:.1f}",
            f"{r.audio_per_cpu_second:.1f}",
            f"{r.peak_rss_mb:.0f}",
            str(r.words),
            "-" if r.lost_seconds is None else f"{r.lost_seconds:.1f}",
        )
    return table


def comparison(accurate: BenchResult, fast: BenchResult) -> str | None:
    """Fast against accurate, wall and CPU; None when the accurate run measured nothing."""
    if not (accurate.x_real_time and accurate.audio_per_cpu_second):
        return None
    return (
        f"fast / accurate: {fast.x_real_time / accurate.x_real_time:.2f}x wall, "
        f"{fast.audio_per_cpu_second / accurate.audio_per_cpu_second:.2f}x CPU"
    )


def run(
    settings: Settings, path: Path, model: str = "en", batch_size: int = 8, *, console: Console
) -> tuple[Table, list[str]]:
    """`qa bench asr`: each mode on every channel of `path`, one fresh process after the
    other (progress on `console`); the table, and fast against accurate with the load."""
    import os
    import platform
    from datetime import date

    if not path.is_file():
        raise QAError("benchmark recording not found (give --audio)", file=str(path))
    results = []
    for mode in MODES:
        with console.status(f"{mode}: transcribing {path.name}"):
            results.append(bench_isolated(str(path), settings, model, mode, batch_size))
    table = rich_table(f"{path.name}, all channels, {platform.node()}, {date.today()}", results)
    ratio = comparison(*results)
    if ratio is None:
        return table, []
    return table, [f"{ratio}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"]
