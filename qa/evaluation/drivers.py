"""Agreement of the driver grouping with known call reasons (`qa eval drivers`).

Labelled sets, none of them large:
- the scripted calls (qa/synth_scripts): the customer's opening turns, labelled by the
  call's queue (billing, faults, payments, upgrades, account changes; Chinese queues count
  as their English twin, so one driver must hold both languages);
- ABCD (../shared/data/text/abcd_guidelines.json): the 55 subflow names of its 10 flows
  ("Recover Password", "Shipping Cost"), labelled by flow: short requests, not speech;
- STC-3 (stc3_dev_en.json / stc3_dev_cn.json): no topic labels exist, so the check is
  derived: the 43 dialogues present in both files are grouped once from their English and
  once from their Chinese first customer turn, and the two groupings are compared (ARI /
  NMI between languages), and, grouped together, how many translation pairs share a driver.

Each clustering method and distance is scored with the adjusted Rand index and normalised
mutual information (scikit-learn); calls in no group count as groups of one.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from qa.config import Settings
from qa.drivers import CLUSTER_DISTANCE, Method, centred, cluster_labels

OPENING_WORDS = 150  # about the first minute of speech at 150 words a minute
DISTANCES = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1)


class Row(BaseModel):
    dataset: str
    method: str
    distance: float | None = None
    items: int
    labels: int
    groups: int
    ari: float
    nmi: float


class Report(BaseModel):
    rows: list[Row] = Field(default_factory=list)
    pairs_together: dict[str, float] = Field(default_factory=dict)  # config -> share
    encoder: str = ""
    machine: str = ""
    date: str = ""
    seconds: float = 0.0


def shared_text_dir(data: Path | None = None) -> Path:
    if data is not None:
        return Path(data)
    env = os.environ.get("QA_SHARED_DATA")
    if env:
        return Path(env) / "text"
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "text"


def script_openings() -> tuple[list[str], list[str]]:
    """Customer turns of each bundled script (about a minute of words) and its queue."""
    from qa.synth import load_scripts

    texts, labels = [], []
    for s in load_scripts():
        said = " ".join(t.text for t in s.turns if t.role == "customer")
        words = said.split() if s.language == "en" else list(said)
        limit = OPENING_WORDS if s.language == "en" else OPENING_WORDS * 2
        texts.append((" " if s.language == "en" else "").join(words[:limit]))
        labels.append(str(s.meta.queue or "").removesuffix("_zh"))
    return texts, labels


def abcd_requests(data: Path) -> tuple[list[str], list[str]]:
    flows = json.loads((data / "abcd_guidelines.json").read_text())
    texts, labels = [], []
    for flow, body in flows.items():
        for sub in body["subflows"]:
            texts.append(sub)
            labels.append(flow)
    return texts, labels


def stc3_pairs(data: Path) -> tuple[list[str], list[str]]:
    """First customer turn of the dialogues in both files: English, Chinese, same order."""

    def first(d: dict) -> str:
        for t in d["turns"]:
            if t["sender"] == "customer":
                return " ".join(t["utterances"])[:600]
        return ""

    en = {d["id"]: first(d) for d in json.loads((data / "stc3_dev_en.json").read_text())}
    cn = {d["id"]: first(d) for d in json.loads((data / "stc3_dev_cn.json").read_text())}
    ids = sorted(set(en) & set(cn))
    return [en[i] for i in ids], [cn[i] for i in ids]


def _with_singletons(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    nxt = int(out.max(initial=-1)) + 1
    for i in np.flatnonzero(out < 0):
        out[i] = nxt
        nxt += 1
    return out


def _configs() -> list[tuple[Method, float | None]]:
    return [("agglomerative", d) for d in DISTANCES] + [("hdbscan", None)]


def _group(vectors: np.ndarray, method: Method, distance: float | None) -> np.ndarray:
    return _with_singletons(cluster_labels(vectors, method, distance or CLUSTER_DISTANCE))


def _score(name: str, embeddings: np.ndarray, truth: list[str], report: Report) -> None:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    vectors = centred(embeddings, embeddings.mean(axis=0))
    for method, distance in _configs():
        got = _group(vectors, method, distance)
        report.rows.append(
            Row(
                dataset=name,
                method=method,
                distance=distance,
                items=len(truth),
                labels=len(set(truth)),
                groups=int((np.bincount(got) >= 2).sum()),
                ari=round(float(adjusted_rand_score(truth, got)), 3),
                nmi=round(float(normalized_mutual_info_score(truth, got)), 3),
            )
        )


def run(settings: Settings, data: Path | None = None) -> Report:
    import time

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from qa.scoring.encoder import Encoder

    t0 = time.perf_counter()
    encoder = Encoder(settings)
    report = Report(
        encoder=encoder.name,
        machine=f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        date=datetime.now(UTC).date().isoformat(),
    )
    texts, labels = script_openings()
    _score("scripted calls (queue)", encoder.encode(texts), labels, report)
    folder = shared_text_dir(data)
    if (folder / "abcd_guidelines.json").is_file():
        texts, labels = abcd_requests(folder)
        _score("ABCD subflows (flow)", encoder.encode(texts), labels, report)
    if (folder / "stc3_dev_en.json").is_file() and (folder / "stc3_dev_cn.json").is_file():
        en, cn = stc3_pairs(folder)
        e_en, e_cn = encoder.encode(en), encoder.encode(cn)
        both = np.vstack([e_en, e_cn])
        v_en = centred(e_en, e_en.mean(axis=0))
        v_cn = centred(e_cn, e_cn.mean(axis=0))
        v_both = centred(both, both.mean(axis=0))
        n = len(en)
        for method, distance in _configs():
            g_en, g_cn = _group(v_en, method, distance), _group(v_cn, method, distance)
            report.rows.append(
                Row(
                    dataset="STC-3 English vs Chinese (same dialogues)",
                    method=method,
                    distance=distance,
                    items=n,
                    labels=int((np.bincount(g_en) >= 2).sum()),
                    groups=int((np.bincount(g_cn) >= 2).sum()),
                    ari=round(float(adjusted_rand_score(g_en, g_cn)), 3),
                    nmi=round(float(normalized_mutual_info_score(g_en, g_cn)), 3),
                )
            )
            raw = cluster_labels(v_both, method, distance or CLUSTER_DISTANCE)
            together = sum(1 for i in range(n) if raw[i] >= 0 and raw[i] == raw[n + i])
            report.pairs_together[f"{method} {distance or ''}".strip()] = round(together / n, 3)
    report.seconds = round(time.perf_counter() - t0, 1)
    return report


def markdown(report: Report) -> str:
    lines = [
        f"Encoder {report.encoder}; {report.machine}; {report.date}; {report.seconds} s.",
        "",
        "| data | method | distance | items | labels | groups (≥2) | ARI | NMI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        dist = "-" if r.distance is None else f"{r.distance:.2f}"
        lines.append(
            f"| {r.dataset} | {r.method} | {dist} | {r.items} | {r.labels} | {r.groups} | "
            f"{r.ari:.3f} | {r.nmi:.3f} |"
        )
    if report.pairs_together:
        lines += ["", "STC-3, both languages grouped together: share of translation pairs in one"]
        lines.append(
            "driver: " + ", ".join(f"{k}: {v:.0%}" for k, v in report.pairs_together.items())
        )
    return "\n".join(lines)
