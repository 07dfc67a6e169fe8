"""`qa bench pipeline`: the Ray pipeline against a plain sequential loop, same calls, same run.

Both sides start from an empty store holding the same recordings and call the same library
functions (`qa.pipeline.process_call`); the sequential side runs them one call after another
in this process with the default thread settings. Peak memory is the high-water mark of the
summed RSS of this process and all its children (the Ray workers), sampled every 0.2 s.
"""

from __future__ import annotations

import platform
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from qa.config import Settings

VARIANTS = ("stereo_8k", "mono_16k", "stereo_16k", "mono_8k")


class MemorySampler:
    """Peak summed RSS of a process tree, for stages that run in other processes."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def bench_inbox(settings: Settings, n_calls: int, workdir: Path) -> list[Path]:
    """`n_calls` distinct recordings from the scripted calls in several formats."""
    from qa.synth import render_all

    calls = render_all(settings.home / "samples" / "rendered")
    files = [Path(c.files[v]) for v in VARIANTS for c in calls if v in c.files]
    if len(files) < n_calls:
        raise ValueError(f"only {len(files)} distinct sample recordings; ask for fewer calls")
    inbox = workdir / "inbox"
    inbox.mkdir(parents=True)
    out = []
    for i, src in enumerate(files[:n_calls]):
        dest = inbox / f"bench{i:03d}_{src.stem}.wav"
        dest.write_bytes(src.read_bytes())
        out.append(dest)
    return out


def _store_settings(settings: Settings, root: Path) -> Settings:
    return settings.model_copy(update={"home": root, "store_url": None, "database_url": None})


def bench_pipeline(settings: Settings, *, n_calls: int = 20, console: Console) -> dict:
    from qa.ingest import ingest
    from qa.pipeline import Models, process_call
    from qa.playback import publish_playable
    from qa.results import call_metas, publish_result
    from qa.store import open_store
    from workers.batch import run_batch

    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        work = Path(tmp)
        files = bench_inbox(settings, n_calls, work)
        sides = {}
        for side in ("sequential", "ray"):
            side_settings = _store_settings(settings, work / side)
            store = open_store(side_settings)
            report = ingest(store, files, None, side_settings)
            if report.rejected:
                raise RuntimeError(f"bench ingest rejected: {report.rejected}")
            sides[side] = (side_settings, store)

        seq_settings, seq_store = sides["sequential"]
        metas = call_metas(seq_store)
        audio_seconds = sum(m.duration or 0 for m in metas)
        console.print(f"bench: {len(metas)} calls, {audio_seconds / 60:.1f} min of audio")

        with MemorySampler() as seq_mem:
            t0 = time.perf_counter()
            models = Models(seq_settings)
            for meta in metas:  # what the actors do, one call after another
                audio = seq_store.get_bytes(meta.audio_key)
                result = process_call(audio, meta, models)
                publish_playable(seq_store, audio, result, margin=seq_settings.redaction_margin)
                publish_result(seq_store, result)
            seq_wall = time.perf_counter() - t0
        del models

        ray_settings, _ = sides["ray"]
        with MemorySampler() as ray_mem:
            t0 = time.perf_counter()
            summary = run_batch(ray_settings, console=console)
            ray_wall = time.perf_counter() - t0
        if summary.failed:
            raise RuntimeError(f"ray side failed calls: {summary.errors}")

    figures = {
        "calls": len(metas),
        "audio_minutes": audio_seconds / 60,
        "sequential_wall_s": seq_wall,
        "ray_wall_s": ray_wall,
        "sequential_calls_per_min": len(metas) / seq_wall * 60,
        "ray_calls_per_min": len(metas) / ray_wall * 60,
        "sequential_audio_min_per_min": audio_seconds / seq_wall,
        "ray_audio_min_per_min": audio_seconds / ray_wall,
        "ratio": seq_wall / ray_wall,
        "sequential_peak_gb": seq_mem.peak / 1e9,
        "ray_peak_gb": ray_mem.peak / 1e9,
    }
    table = Table(
        "side",
        "wall s",
        "calls/min",
        "audio min / wall min",
        "peak memory GB",
        title=f"pipeline, {len(metas)} calls, {platform.processor() or 'cpu'}, "
        f"{psutil.cpu_count()} cores, {date.today()}",
    )
    table.add_row(
        "sequential loop",
        f"{seq_wall:.1f}",
        f"{figures['sequential_calls_per_min']:.2f}",
        f"{figures['sequential_audio_min_per_min']:.2f}",
        f"{figures['sequential_peak_gb']:.2f}",
    )
    table.add_row(
        "Ray pipeline",
        f"{ray_wall:.1f}",
        f"{figures['ray_calls_per_min']:.2f}",
        f"{figures['ray_audio_min_per_min']:.2f}",
        f"{figures['ray_peak_gb']:.2f}",
    )
    console.print(table)
    console.print(f"Ray / sequential throughput: {figures['ratio']:.2f}x")
    return figures
