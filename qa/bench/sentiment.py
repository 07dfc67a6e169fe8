"""Sentiment speed: load time and utterances per second of each backend, on CPU.

The same utterances go to every backend in this process: customer sentences of the
held-out MAIA-DQE file in the requested language where the shared data is present, three
stock call-centre sentences otherwise, repeated up to the number asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.table import Table

from qa.config import Settings

FALLBACK_TEXTS = (
    "I have been waiting for forty minutes and nobody called me back.",
    "Thanks, that fixed it, you have been really helpful.",
    "Can you tell me when the engineer will arrive?",
)


def sample_texts(n: int, language: str = "en") -> list[str]:
    """`n` utterances in `language`, cycling through the pool."""
    from qa.scoring.train_sentiment import MAIA_EVAL, default_data_dir, load_maia

    path = default_data_dir() / MAIA_EVAL
    if path.is_file():
        pool = [s.text for s in load_maia(path, original_language="pt") if s.language == language]
    else:
        pool = list(FALLBACK_TEXTS)
    return [pool[i % len(pool)] for i in range(n)]


def benchmark(
    settings: Settings,
    texts: Sequence[str],
    *,
    language: str = "en",
    backends: Sequence[str] = ("default", "lexicon"),
) -> list[dict[str, float | str]]:
    """Load time and utterances per second of each backend on the same texts, this process."""
    from qa.scoring.sentiment import SentimentModel

    rows: list[dict[str, float | str]] = []
    for backend in backends:
        started = time.perf_counter()
        model = SentimentModel(settings.model_copy(update={"sentiment_backend": backend}))
        loaded = time.perf_counter()
        model.score(list(texts[:4]), language)  # warm-up: first-call allocations
        begin = time.perf_counter()
        model.score(list(texts), language)
        elapsed = time.perf_counter() - begin
        rows.append(
            {
                "backend": backend,
                "load_s": loaded - started,
                "texts": len(texts),
                "seconds": elapsed,
                "per_second": len(texts) / max(elapsed, 1e-9),
            }
        )
    return rows


def rich_table(rows: list[dict[str, float | str]]) -> Table:
    table = Table("backend", "load s", "utterances", "seconds", "utterances/s")
    for row in rows:
        table.add_row(
            str(row["backend"]),
            f"{row['load_s']:.2f}",
            str(row["texts"]),
            f"{row['seconds']:.2f}",
            f"{row['per_second']:.1f}",
        )
    return table


def run(settings: Settings, n: int = 256, language: str = "en") -> Table:
    """`qa bench sentiment`: the configured backend and the lexicon baseline on `n` utterances."""
    backends = list(dict.fromkeys([settings.sentiment_backend, "lexicon"]))
    return rich_table(
        benchmark(settings, sample_texts(n, language), language=language, backends=backends)
    )
