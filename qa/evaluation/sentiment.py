"""Sentiment accuracy on held-out labelled data: the configured backend beside a baseline.

MAIA-DQE ``pt_br_client_02.json`` customer sentences (another client, domain and source
language than training: English and the Portuguese original) give 3-class macro-F1; the
STC-3 dialogues in the *eval* half (`qa.scoring.train_sentiment.stc3_half`) give the
Spearman correlation of the mean customer-turn score with the annotated satisfaction, and
the balanced accuracy of its sign. The rows and their loaders are the training script's, so
no held-out row can drift into training.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from qa.config import Settings
from qa.scoring.train_sentiment import (
    LABELS,
    MAIA_EVAL,
    STC3_FILES,
    CachedEncoder,
    default_data_dir,
    load_maia,
    load_stc3,
    stc3_half,
)


@dataclass
class Figures:
    """Held-out figures of one backend; a dict-like record for printing and docs."""

    backend: str
    results: dict[str, float] = field(default_factory=dict)


def macro_f1(gold: list[str], pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(LABELS), average="macro", zero_division=0))


def evaluate(
    settings: Settings, data_dir: Path, backends: list[str], *, cache: bool = True
) -> list[Figures]:
    """Held-out figures for each backend, computed on the same rows in the same run.

    With `cache`, sentence embeddings are kept in <home>/cache/sentiment: the scores go
    through the same SentimentModel code, only the encoder's output is reused.
    """
    from scipy.stats import spearmanr

    from qa.scoring.encoder import Encoder
    from qa.scoring.sentiment import SentimentModel

    maia = [s for s in load_maia(data_dir / MAIA_EVAL, original_language="pt") if s.customer]
    stc = {
        lang: [d for d in load_stc3(data_dir / name, lang) if stc3_half(d.id) == "eval"]
        for lang, name in STC3_FILES.items()
    }
    figures: list[Figures] = []
    for backend in backends:
        encoder = None
        if backend == "default" and cache:
            encoder = CachedEncoder(Encoder(settings), settings.home / "cache" / "sentiment")
        model = SentimentModel(
            settings.model_copy(update={"sentiment_backend": backend}), encoder=encoder
        )
        fig = Figures(backend)
        for lang in ("en", "pt"):
            rows = [s for s in maia if s.language == lang]
            pred = model.score([s.text for s in rows], lang)
            fig.results[f"maia_{lang}_macro_f1"] = macro_f1(
                [s.label for s in rows], [p.label for p in pred]
            )
            fig.results[f"maia_{lang}_n"] = len(rows)
        for lang, dialogues in stc.items():
            texts = [t for d in dialogues for t in d.customer_turns]
            scores = iter(p.score for p in model.score(texts, lang))
            predicted = [
                statistics.fmean(next(scores) for _ in d.customer_turns) for d in dialogues
            ]
            truth = [d.satisfaction for d in dialogues]
            rho = spearmanr(predicted, truth).statistic
            fig.results[f"stc3_{lang}_spearman"] = float(rho)
            signed = [(p, t) for p, t in zip(predicted, truth, strict=True) if t != 0]
            recalls = []
            for sign in (-1, 1):
                group = [p for p, t in signed if np.sign(t) == sign]
                if group:
                    recalls.append(sum(np.sign(p) == sign for p in group) / len(group))
            fig.results[f"stc3_{lang}_sign_balanced_acc"] = float(np.mean(recalls))
            fig.results[f"stc3_{lang}_n"] = len(dialogues)
        figures.append(fig)
    return figures


def rich_table(figures: list[Figures]) -> Table:
    """One row per held-out metric, one column per backend, and the rows it was measured on."""
    table = Table("held-out metric", *[f.backend for f in figures], "rows")
    for key in (k for k in figures[0].results if not k.endswith("_n")):
        n_key = "_".join(key.split("_")[:2]) + "_n"  # maia_en_macro_f1 -> maia_en_n
        table.add_row(
            key,
            *[f"{f.results[key]:.3f}" for f in figures],
            str(int(figures[0].results.get(n_key, 0))),
        )
    return table


def print_figures(figures: list[Figures]) -> None:
    Console().print(rich_table(figures))


def run(settings: Settings, data_dir: Path | None = None, baseline: str = "lexicon") -> Table:
    """`qa eval sentiment`: the configured backend and `baseline` (once if they are the same),
    on the held-out rows of `data_dir` (default: the shared text data)."""
    backends = list(dict.fromkeys([settings.sentiment_backend, baseline]))
    return rich_table(evaluate(settings, data_dir or default_data_dir(), backends))
