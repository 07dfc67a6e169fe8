"""Call drivers: why customers call, found by grouping what they say first.

A call's *opening* is the customer's first minute of speech (`OPENING_SECONDS`): the reason
for the call is nearly always there, and the agent's scripted greeting would only pull every
call together. Openings are embedded with the bundled sentence encoder (English and Chinese
in one space), centred on the corpus mean (e5 puts all text within a narrow cone, and the
centring spreads it so one cosine threshold means the same on any corpus), and grouped with
scikit-learn's agglomerative clustering (average linkage, cosine distance, a distance
threshold instead of a fixed count); `docs/benchmarks.md` has the agreement figures that
chose it over HDBSCAN. Each driver is named by its class-based TF-IDF keywords (English
words, Chinese character bigrams), so a lead sees at once what a group is about.

A pinned driver keeps its centre and centroid: a new call whose opening is at least
`ASSIGN_THRESHOLD` similar to the nearest pinned centroid gets that driver, else "other".
Nothing here touches the database; `qa.workflow.drivers` keeps the drivers and their calls.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import Field

from qa.schema import Record, Role, Transcript
from qa.scoring.redact import SPOKEN_NUMBER_WORDS

OPENING_SECONDS = 60.0
OPENING_CHARS = 600  # what is kept of an opening for keywords and examples
# cosine distance (1 - similarity) below which agglomerative clustering joins groups, on
# centred embeddings; chosen with `qa eval drivers`
CLUSTER_DISTANCE = 0.90
# similarity to a pinned centroid (centred embeddings) from which a new call takes its label
ASSIGN_THRESHOLD = 0.30
MIN_DRIVER_CALLS = 2  # a group smaller than this goes to "other"
MAX_CLUSTER_CALLS = 5000  # a build clusters at most this many calls; the rest are assigned
KEYWORDS = 6
EXAMPLES = 3
REPEAT_DAYS = 7
Method = Literal["agglomerative", "hdbscan"]

_WORD = re.compile(r"[a-z][a-z']+")
_NAME = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# words every opening shares (greetings, fillers, the call itself): never a driver's name
_FILLER = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "yes",
        "yeah",
        "okay",
        "ok",
        "um",
        "uh",
        "erm",
        "hmm",
        "oh",
        "well",
        "thanks",
        "thank",
        "please",
        "sorry",
        "calling",
        "call",
        "calls",
        "just",
        "like",
        "really",
        "got",
        "ve",
        "ll",
        "don",
        "didn",
        "doesn",
        "isn",
        "wasn",
        "im",
        "it's",
        "i'm",
        "i've",
        "that's",
        "there's",
        "can't",
        "won't",
        "ring",
        "rang",
        "speak",
        "speaking",
        "help",
        "morning",
        "afternoon",
        "evening",
    ]
)
_ZH_FILLER = frozenset(
    [
        "你好",
        "您好",
        "谢谢",
        "请问",
        "一下",
        "我想",
        "我的",
        "我们",
        "这个",
        "那个",
        "就是",
        "然后",
        "可以",
        "什么",
        "怎么",
        "没有",
        "已经",
        "现在",
        "今天",
        "一个",
        "喂你",
        "好我",
        "是的",
        "对对",
    ]
)


# numbers are read out in dates, postcodes and card numbers: what they say, not why
_NUMBER_WORDS = SPOKEN_NUMBER_WORDS | frozenset(
    [
        "hundred",
        "thousand",
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "twentieth",
        "thirtieth",
        "oh",
        "double",
        "triple",
        "right",
        "know",
        "thought",
        "great",
        "long",
        "left",
        "wasn't",
        "usually",
    ]
)
_REASON_WORDS = frozenset(
    [
        "bill",
        "amount",
        "move",
        "system",
        "interest",
        "fire",
        "computer",
        "detail",
        "full",
        "found",
        "find",
        "back",
        "top",
    ]
)


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    # scikit-learn's list has words that are call reasons here ("bill", "move", "amount")
    return (frozenset(ENGLISH_STOP_WORDS) - _REASON_WORDS) | _FILLER | _NUMBER_WORDS


class Opening(Record):
    """One call's opening and what trends need about the call."""

    call_id: str
    text: str
    language: str | None = None
    customer_id: str | None = None
    started_at: datetime | None = None
    auto_passed: bool | None = None
    customer_sentiment: float | None = None


class DriverGroup(Record):
    """One group a build found: its calls, keywords, examples and where it sits."""

    key: int
    name: str
    keywords: list[str] = Field(default_factory=list)
    call_ids: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)  # call ids nearest the centroid
    centroid: list[float] = Field(default_factory=list)  # unit vector, centred space
    center: list[float] = Field(default_factory=list)  # the corpus mean it is centred on


class DriverBuild(Record):
    """What `build_drivers` hands the workflow: groups plus each call's group (None: other)."""

    method: str
    distance: float
    encoder: str = ""
    calls: int = 0
    groups: list[DriverGroup] = Field(default_factory=list)
    assignments: dict[str, int | None] = Field(default_factory=dict)  # call_id -> group key
    similarity: dict[str, float] = Field(default_factory=dict)  # call_id -> to its centroid


class PinnedCentroid(Record):
    """A pinned driver as assignment needs it."""

    driver_id: int
    name: str
    centroid: list[float]
    center: list[float]


# --------------------------------------------------------------------------- openings


def opening_text(
    transcript: Transcript, seconds: float = OPENING_SECONDS, *, swapped: bool = False
) -> str:
    """The customer's words up to `seconds` of their speech (`swapped`: roles a reviewer
    said are the wrong way round). Falls back to the whole call's first minute when no
    utterance is the customer's (a call whose roles are unknown)."""
    want = Role.AGENT if swapped else Role.CUSTOMER
    picked = [u for u in transcript.utterances if u.role == want]
    if not picked:
        picked = [u for u in transcript.utterances if u.start < seconds]
    parts, spoken = [], 0.0
    for u in picked:
        if spoken >= seconds:
            break
        parts.append(u.text.strip())
        spoken += max(0.0, u.end - u.start)
    return " ".join(p for p in parts if p)[:OPENING_CHARS]


# --------------------------------------------------------------------------- keywords


def _names(text: str) -> set[str]:
    """Capitalised words inside a sentence: people's and places' names, never a reason."""
    return {m.lower() for m in _NAME.findall(text)}


def tokens(text: str, stop: frozenset[str] | None = None) -> list[str]:
    """English words (lower case, stop words and names out) and Chinese character bigrams."""
    stop = (_stop_words() if stop is None else stop) | _names(text)
    low = text.lower()
    out = [w.strip("'") for w in _WORD.findall(low)]
    out = [w for w in out if len(w) > 2 and w not in stop]
    for run in _CJK.findall(text):
        if len(run) == 1:
            continue
        out.extend(b for i in range(len(run) - 1) if (b := run[i : i + 2]) not in _ZH_FILLER)
    return out


def class_keywords(texts: dict[int, Sequence[str]], top: int = KEYWORDS) -> dict[int, list[str]]:
    """Class-based TF-IDF: a term's share in one group against how many groups use it.

    Each group's texts are one document; weight = tf(term, group) * log(1 + A / f(term)),
    A the mean number of terms per group and f the term's count over all groups, so words
    every group says sink and words one group says often rise.
    """
    stop = _stop_words()
    counts, spread = {}, {}
    for k, v in texts.items():
        per_text = [tokens(text, stop) for text in v]
        counts[k] = Counter(t for toks in per_text for t in toks)
        spread[k] = Counter(t for toks in per_text for t in set(toks))
    total: Counter[str] = Counter()
    for c in counts.values():
        total.update(c)
    if not total:
        return {k: [] for k in texts}
    mean_terms = sum(total.values()) / max(len(counts), 1)
    out = {}
    for key, c in counts.items():
        size = sum(c.values()) or 1
        # a word only one of several calls says is that call's, not the group's
        least = 2 if len(set(texts[key])) > 1 else 1
        scored = sorted(
            ((n / size) * math.log(1 + mean_terms / total[t]), t)
            for t, n in c.items()
            if n > 0 and spread[key][t] >= least
        )
        chosen: list[str] = []
        for _, term in reversed(scored):
            if any(term in k or k in term for k in chosen):
                continue  # 账单 and 单多: keep the stronger of two overlapping bigrams
            chosen.append(term)
            if len(chosen) == top:
                break
        out[key] = chosen
    return out


def driver_name(keywords: Sequence[str]) -> str:
    return " / ".join(keywords[:3]) if keywords else "unnamed"


# --------------------------------------------------------------------------- clustering


def centred(embeddings: np.ndarray, center: np.ndarray) -> np.ndarray:
    x = embeddings - center
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cluster_labels(
    vectors: np.ndarray,
    method: Method = "agglomerative",
    distance: float = CLUSTER_DISTANCE,
    min_size: int = MIN_DRIVER_CALLS,
) -> np.ndarray:
    """Group labels for unit vectors (-1: in no group). Small groups become -1."""
    n = len(vectors)
    if n == 0:
        return np.empty(0, dtype=int)
    if n == 1:
        return np.array([-1 if min_size > 1 else 0])
    if method == "agglomerative":
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average"
        ).fit_predict(vectors)
    elif method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        dist = np.clip(1.0 - vectors @ vectors.T, 0.0, 2.0).astype(np.float64)
        labels = HDBSCAN(
            min_cluster_size=max(2, min_size), min_samples=1, metric="precomputed", copy=True
        ).fit_predict(dist)
    else:
        raise ValueError(f"unknown clustering method {method!r}")
    sizes = Counter(labels.tolist())
    labels = np.array([lab if lab >= 0 and sizes[lab] >= min_size else -1 for lab in labels])
    # renumber by size, largest first, so group keys read in order of importance
    order = [lab for lab, _ in Counter(labels[labels >= 0].tolist()).most_common()]
    remap = {lab: i for i, lab in enumerate(order)}
    return np.array([remap.get(lab, -1) for lab in labels.tolist()])


def build_drivers(
    openings: Sequence[Opening],
    embeddings: np.ndarray,
    *,
    method: Method = "agglomerative",
    distance: float = CLUSTER_DISTANCE,
    min_size: int = MIN_DRIVER_CALLS,
    max_calls: int = MAX_CLUSTER_CALLS,
    encoder: str = "",
    seed: int = 0,
) -> DriverBuild:
    """Cluster the openings (at most `max_calls`, a random sample beyond that; the others
    join their nearest group when similar enough) into named groups."""
    build = DriverBuild(method=method, distance=distance, encoder=encoder, calls=len(openings))
    if not openings:
        return build
    center = embeddings.mean(axis=0)
    vectors = centred(embeddings, center)
    n = len(openings)
    sample = np.arange(n)
    if n > max_calls:
        sample = np.sort(np.random.default_rng(seed).choice(n, max_calls, replace=False))
    labels = np.full(n, -1)
    labels[sample] = cluster_labels(vectors[sample], method, distance, min_size)
    keys = sorted(set(labels[labels >= 0].tolist()))
    centroids = {}
    for k in keys:
        c = vectors[labels == k].mean(axis=0)
        centroids[k] = c / max(float(np.linalg.norm(c)), 1e-12)
    if n > max_calls and keys:
        rest = np.setdiff1d(np.arange(n), sample)
        mat = np.stack([centroids[k] for k in keys])
        sims = vectors[rest] @ mat.T
        best = sims.argmax(axis=1)
        for i, b, s in zip(rest, best, sims[np.arange(len(rest)), best], strict=True):
            if s >= 1.0 - distance:
                labels[i] = keys[b]
    words = class_keywords(
        {k: [openings[i].text for i in np.flatnonzero(labels == k)] for k in keys}
    )
    for k in keys:
        members = np.flatnonzero(labels == k)
        sims = vectors[members] @ centroids[k]
        nearest = members[np.argsort(-sims)][:EXAMPLES]
        build.groups.append(
            DriverGroup(
                key=k,
                name=driver_name(words[k]),
                keywords=words[k],
                call_ids=[openings[i].call_id for i in members],
                examples=[openings[i].call_id for i in nearest],
                centroid=[round(float(v), 6) for v in centroids[k]],
                center=[round(float(v), 6) for v in center],
            )
        )
    for i, o in enumerate(openings):
        k = int(labels[i])
        build.assignments[o.call_id] = k if k >= 0 else None
        if k >= 0:
            build.similarity[o.call_id] = round(float(vectors[i] @ centroids[k]), 4)
    return build


def nearest_pinned(
    embedding: np.ndarray, pinned: Sequence[PinnedCentroid], threshold: float = ASSIGN_THRESHOLD
) -> tuple[int | None, float]:
    """The pinned driver a call's opening belongs to (None: other) and its similarity."""
    best, best_sim = None, -1.0
    for p in pinned:
        v = embedding - np.asarray(p.center, dtype=np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        sim = float(v @ np.asarray(p.centroid, dtype=np.float32))
        if sim > best_sim:
            best, best_sim = p.driver_id, sim
    if best is None or best_sim < threshold:
        return None, max(best_sim, 0.0) if best is not None else 0.0
    return best, best_sim


# --------------------------------------------------------------------------- repeat callers


def repeated_calls(
    calls: Iterable[tuple[str, str | None, datetime | None]], days: int = REPEAT_DAYS
) -> dict[str, bool]:
    """For each (call_id, customer_id, started_at) with a customer and a time: whether the
    same customer called again within `days` after it (the call did not resolve the
    matter: the opposite of first-call resolution). Calls without either are left out."""
    by_customer: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for call_id, customer, started in calls:
        if customer and started is not None:
            by_customer[customer].append((started, call_id))
    window = timedelta(days=days)
    out: dict[str, bool] = {}
    for seq in by_customer.values():
        seq.sort()
        for i, (when, call_id) in enumerate(seq):
            nxt = seq[i + 1][0] if i + 1 < len(seq) else None
            out[call_id] = nxt is not None and nxt - when <= window
    return out
