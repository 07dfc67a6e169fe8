"""Diarization speed and memory: the configured pipeline against CAM++ on every window.

A two-channel call is mixed down to mono and diarized in several modes (batched embeddings,
one chunk at a time, the call played several times for a long call); each mode runs in a
fresh process so its peak memory (RSS high-water mark) is its own, and its DER is reported
against the channels' voice activity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel
from rich.table import Table

from qa.asr.diarize import Diarizer, load_config
from qa.config import Settings
from qa.errors import QAError
from qa.evaluation.diarization import der, stereo_reference

# (batched, embedding stride or None for the configured one, times the call is played)
Mode = tuple[bool, int | None, int]


class BenchResult(BaseModel):
    """One mode on the mixdown: speed, CPU, peak memory and DER."""

    mode: str
    audio_seconds: float
    seconds: float
    cpu_seconds: float
    x_real_time: float
    peak_rss_mb: float
    der: float


def bench_one(
    settings: Settings, path: Path, batched: bool, stride: int | None = None, repeat: int = 1
) -> BenchResult:
    """One mode in this process (run each mode in a fresh process: peak RSS is per process).
    `stride` overrides the config's embedding_stride (1: every window embedded); `repeat`
    plays the call that many times in a row, for the memory of a long call."""
    import resource
    import time

    samples, rate, reference = stereo_reference(path, settings)
    if repeat > 1:
        length = len(samples) / rate
        reference = [
            t.model_copy(update={"start": t.start + k * length, "end": t.end + k * length})
            for k in range(repeat)
            for t in reference
        ]
        samples = np.tile(samples, repeat)
    config, _ = load_config(settings.diarization_config)
    config.embedding_batched = batched
    if stride is not None:
        config.embedding_stride = stride
    diarizer = Diarizer(settings, config=config)
    wall, cpu = time.perf_counter(), time.process_time()
    turns = diarizer(samples, rate, num_speakers=config.num_speakers, progress=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    audio_seconds = len(samples) / rate
    every = "" if config.embedding_stride == 1 else f"{config.embedding_stride}rd "
    return BenchResult(
        mode=f"{'batched' if batched else 'one chunk at a time'}, every {every}window"
        + (f", call played {repeat}x" if repeat > 1 else ""),
        audio_seconds=audio_seconds,
        seconds=round(wall, 2),
        cpu_seconds=round(cpu, 2),
        x_real_time=round(audio_seconds / wall, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        der=round(der(reference, turns)["der"], 4),
    )


def modes(path: Path, long_minutes: float = 0.0) -> list[Mode]:
    """The configured pipeline, CAM++ on every window batched and one chunk at a time, and
    with `long_minutes`, the configured pipeline on the call played again and again."""
    runs: list[Mode] = [(True, None, 1), (True, 1, 1), (False, 1, 1)]
    if long_minutes > 0:
        import soundfile as sf

        runs.append((True, None, max(2, round(long_minutes * 60 / sf.info(str(path)).duration))))
    return runs


def bench_isolated(settings: Settings, path: Path, mode: Mode) -> BenchResult:
    """`bench_one` in a fresh (spawned) process."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    batched, stride, repeat = mode
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(bench_one, settings, path, batched, stride, repeat).result()


def rich_table(title: str, results: list[BenchResult]) -> Table:
    table = Table(
        "CAM++ embeddings",
        "audio s",
        "wall s",
        "x real time",
        "CPU s",
        "peak RSS MB",
        "DER",
        title=title,
    )
    for r in results:
        table.add_row(
            r.mode,
            f"{r.audio_seconds:.1f}",
            f"{r.seconds:.1f}",
            f"{r.x_real_time:.1f}",
            f"{r.cpu_seconds:.1f}",
            f"{r.peak_rss_mb:.0f}",
            f"{r.der:.1%}",
        )
    return table


def comparison(results: list[BenchResult]) -> list[str]:
    """The configured pipeline against CAM++ on every window (the first three `modes`)."""
    default, batched, single = results[:3]
    return [
        f"configured vs {name}, every window: {r.seconds / default.seconds:.2f}x "
        f"wall, {r.cpu_seconds / default.cpu_seconds:.2f}x CPU"
        for name, r in (("batched", batched), ("one at a time", single))
    ]


def run(settings: Settings, path: Path, long_minutes: float = 0.0) -> tuple[Table, list[str]]:
    """`qa bench diarization`: every mode of `modes` on the mixdown of `path`, one fresh
    process after the other; the table, the comparisons and the load they ran under."""
    import os
    import platform
    from datetime import date

    if not path.is_file():
        raise QAError("benchmark recording not found (give --audio)", file=str(path))
    results = [bench_isolated(settings, path, mode) for mode in modes(path, long_minutes)]
    table = rich_table(f"{path.name} mixdown, {platform.node()}, {date.today()}", results)
    load = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    return table, [*comparison(results), load]
