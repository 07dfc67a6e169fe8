"""Sentiment per utterance and its trajectory per speaker role.

Backends (``settings.sentiment_backend``):
- ``default``: a logistic-regression head trained by `qa.scoring.train_sentiment` on the
  multilingual sentence encoder's embeddings; inference is a numpy matrix product.
- ``transformers``: any local AutoModelForSequenceClassification directory
  (``settings.sentiment_model``), on GPU when one is present; classes come from id2label.
- ``lexicon``: VADER for English, SnowNLP for Chinese: the baseline the others must beat.

Every backend reports score = P(positive) - P(negative) in -1..1 (or the lexicon's own
polarity) and a label, so rules and dashboards do not care which one ran.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from qa.config import Settings
from qa.errors import ModelNotFoundError, QAError
from qa.schema import Role, Sentiment, SentimentSummary, Transcript

LABELS = ("negative", "neutral", "positive")
HEAD_FORMAT = "qa-sentiment-head/1"
# VADER's documented thresholds on the compound score.
VADER_NEUTRAL_BAND = 0.05
# SnowNLP gives P(positive); a band around 0.5 is neutral.
SNOWNLP_NEUTRAL_BAND = 0.2
BATCH_SIZE = 32


def _is_chinese(language: str) -> bool:
    return language.lower().startswith(("zh", "cmn", "yue"))


def _clip(value: float) -> float:
    return float(min(1.0, max(-1.0, value)))


def _from_probabilities(probs: np.ndarray) -> list[Sentiment]:
    """Rows of P(negative, neutral, positive) -> Sentiment records."""
    out = []
    for row in probs:
        out.append(
            Sentiment(score=_clip(float(row[2] - row[0])), label=LABELS[int(np.argmax(row))])
        )
    return out


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Backend(Protocol):
    def score(self, texts: list[str], language: str) -> list[Sentiment]: ...


class _HeadBackend:
    """The trained head: softmax(W x + b) on encoder embeddings."""

    def __init__(self, settings: Settings, encoder: Any = None) -> None:
        from qa.models import model_path
        from qa.scoring.encoder import Encoder

        path = model_path("sentiment_model", settings)
        head = load_head(path)
        self.encoder = encoder if encoder is not None else Encoder(settings)
        if head["encoder"] != self.encoder.name or head["dim"] != self.encoder.dim:
            raise QAError(
                f"sentiment head was trained on {head['encoder']} ({head['dim']}-d) but the "
                f"configured encoder is {self.encoder.name} ({self.encoder.dim}-d); retrain "
                "with `python -m qa.scoring.train_sentiment`",
                file=str(path),
            )
        self.weights = np.asarray(head["weights"], dtype=np.float32)
        self.bias = np.asarray(head["bias"], dtype=np.float32)

    def probabilities(self, texts: list[str]) -> np.ndarray:
        x = self.encoder.encode(texts)
        return _softmax(x @ self.weights.T + self.bias)

    def score(self, texts: list[str], language: str) -> list[Sentiment]:
        return _from_probabilities(self.probabilities(texts))


def load_head(path: Path) -> dict[str, Any]:
    """Read and check a head file, so a wrong or damaged file fails with its name."""
    try:
        head = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotFoundError(f"cannot read sentiment head: {exc}", file=str(path)) from exc
    if not isinstance(head, dict) or head.get("format") != HEAD_FORMAT:
        raise QAError(f"not a sentiment head (format {HEAD_FORMAT} expected)", file=str(path))
    if list(head.get("labels", [])) != list(LABELS):
        raise QAError(f"sentiment head labels must be {list(LABELS)}", file=str(path))
    weights = np.asarray(head.get("weights"), dtype=np.float32)
    bias = np.asarray(head.get("bias"), dtype=np.float32)
    if weights.shape != (len(LABELS), head.get("dim")) or bias.shape != (len(LABELS),):
        raise QAError(
            f"sentiment head weights have shape {weights.shape}, expected "
            f"({len(LABELS)}, {head.get('dim')})",
            file=str(path),
        )
    return head


def map_id2label(id2label: dict[Any, str]) -> np.ndarray:
    """A (num_model_classes, 3) matrix that sums model classes into negative/neutral/positive.

    Understands names containing neg/neu/pos (any case, any language prefix), and
    review-star scales ("1 star" .. "5 stars"), whose middle star is neutral.
    """
    items = sorted(((int(k), str(v)) for k, v in id2label.items()), key=lambda kv: kv[0])
    mapping = np.zeros((len(items), len(LABELS)), dtype=np.float32)
    unknown = []
    stars = {
        i: int(m.group(1))
        for i, name in items
        if (m := re.match(r"^\s*(\d)\s*stars?\s*$", name, re.IGNORECASE))
    }
    for i, name in items:
        low = name.lower()
        if stars and i in stars:
            top = max(stars.values())
            mid = (top + 1) / 2
            n = stars[i]
            col = 1 if n == mid else (0 if n < mid else 2)
        elif "neg" in low:
            col = 0
        elif "neu" in low:
            col = 1
        elif "pos" in low:
            col = 2
        else:
            unknown.append(name)
            continue
        mapping[i, col] = 1.0
    if unknown or not mapping[:, 0].any() or not mapping[:, 2].any():
        raise QAError(
            "cannot map the classifier's labels to negative/neutral/positive: "
            f"{[v for _, v in items]} (set id2label in its config.json)"
        )
    return mapping


class _TransformersBackend:
    """A local sequence classifier, batched, on GPU when available."""

    def __init__(self, settings: Settings) -> None:
        if not settings.sentiment_model:
            raise ModelNotFoundError(
                "the transformers sentiment backend needs "
                "QA_SENTIMENT_MODEL (a local model directory)"
            )
        path = Path(settings.sentiment_model)
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                "not a transformers model directory (no config.json)", file=str(path)
            )
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForSequenceClassification.from_pretrained(str(path))
        if self.device == "cuda":
            model = model.half()
        self.model = model.eval().to(self.device)
        self.mapping = map_id2label(self.model.config.id2label)

    def score(self, texts: list[str], language: str) -> list[Sentiment]:
        torch = self._torch
        out: list[Sentiment] = []
        for i in range(0, len(texts), BATCH_SIZE):
            batch = self.tokenizer(
                texts[i : i + BATCH_SIZE],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            probs = torch.softmax(logits, dim=-1).cpu().numpy()
            out.extend(_from_probabilities(probs @ self.mapping))
        return out


class _LexiconBackend:
    """VADER (English) and SnowNLP (Chinese): no training, the baseline."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.vader = SentimentIntensityAnalyzer()

    def score(self, texts: list[str], language: str) -> list[Sentiment]:
        if _is_chinese(language):
            from snownlp import SnowNLP

            out = []
            for text in texts:
                p = SnowNLP(text).sentiments if text.strip() else 0.5
                score = _clip(2.0 * p - 1.0)
                label = (
                    "neutral"
                    if abs(score) < SNOWNLP_NEUTRAL_BAND
                    else "positive"
                    if score > 0
                    else "negative"
                )
                out.append(Sentiment(score=score, label=label))
            return out
        out = []
        for text in texts:
            compound = float(self.vader.polarity_scores(text)["compound"])
            label = (
                "neutral"
                if abs(compound) < VADER_NEUTRAL_BAND
                else "positive"
                if compound > 0
                else "negative"
            )
            out.append(Sentiment(score=_clip(compound), label=label))
        return out


class SentimentModel:
    """Loads its backend once per process; score, annotate and summarize calls.

    `encoder` lets a process that already holds the sentence encoder (semantic rules, the
    evaluation's embedding cache) share it with the default backend.
    """

    def __init__(self, settings: Settings, *, encoder: Any = None) -> None:
        self.backend_name = settings.sentiment_backend
        if self.backend_name == "default":
            self._backend: _Backend = _HeadBackend(settings, encoder)
        elif self.backend_name == "transformers":
            self._backend = _TransformersBackend(settings)
        elif self.backend_name == "lexicon":
            self._backend = _LexiconBackend()
        else:  # Settings validates this; kept for objects built without validation
            raise QAError(f"unknown sentiment backend {self.backend_name!r}")

    def score(self, texts: Sequence[str], language: str) -> list[Sentiment]:
        """One Sentiment per text; blank texts are neutral without asking the model."""
        texts = list(texts)
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        out = [Sentiment(score=0.0, label="neutral") for _ in texts]
        if todo:
            for i, s in zip(
                todo, self._backend.score([texts[i] for i in todo], language), strict=True
            ):
                out[i] = s
        return out

    def annotate(self, transcript: Transcript) -> None:
        """Set Utterance.sentiment on every utterance, in one batched pass."""
        utterances = transcript.utterances
        scores = self.score([u.text for u in utterances], transcript.language or "en")
        for utterance, sentiment in zip(utterances, scores, strict=True):
            utterance.sentiment = sentiment

    @staticmethod
    def summarize(transcript: Transcript) -> list[SentimentSummary]:
        return summarize(transcript)


def summarize(transcript: Transcript, *, edge: int = 3) -> list[SentimentSummary]:
    """Per role: mean of the first and last few utterances, overall mean, least-squares trend.

    Start and end average up to `edge` utterances (a third of the role's utterances at
    most) because one short reply ("ok") says little on its own. The trend is the slope
    of score against utterance mid-time, in score units per minute.
    """
    by_role: dict[Role, list[tuple[float, float]]] = {}
    for u in transcript.utterances:
        if u.sentiment is None:
            continue
        by_role.setdefault(u.role, []).append(((u.start + u.end) / 2.0, u.sentiment.score))
    out = []
    for role in sorted(by_role, key=lambda r: list(Role).index(r)):
        points = sorted(by_role[role])
        times = np.array([t for t, _ in points], dtype=np.float64) / 60.0
        scores = np.array([s for _, s in points], dtype=np.float64)
        k = max(1, min(edge, len(points) // 3))
        trend = 0.0
        if len(points) >= 2 and np.ptp(times) > 0:
            trend = float(np.polyfit(times, scores, 1)[0])
        out.append(
            SentimentSummary(
                role=role,
                start=float(scores[:k].mean()),
                end=float(scores[-k:].mean()),
                mean=float(scores.mean()),
                trend=trend,
            )
        )
    return out
