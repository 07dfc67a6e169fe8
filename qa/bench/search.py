"""Transcript search speed and Chinese recall.

`run`: synthetic calls (utterances drawn from a call-centre vocabulary, English and
Chinese) are indexed by `qa.search.SearchIndex.build`, then a mix of searches a reviewer
types (rare and common words, quoted phrases, Chinese words, with and without filters) is
timed; the figures are the build rate, the file size and the query time percentiles.

`zh_recall`: which way of cutting Chinese finds more of what a person types, on real
helpdesk text: character bigrams (what the index does) or jieba words. Each phrase is a
real word or two-word phrase of the text; recall is the share of utterances that contain
the phrase (as characters) that each way finds.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from qa.search import SearchCall, SearchIndex, SearchQuery, index_terms, match_expression


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


EN_WORDS = _words(
    "thank you for calling my name is how can i help today account number verify your "
    "date of birth postcode please hold while i check the system payment card refund order "
    "delivery late broken cancel subscription upgrade plan invoice charge billing address "
    "email confirm security question anything else have a great day sorry about that "
    "understand frustration manager escalate complaint ticket reference number broadband "
    "router engineer appointment monday tuesday morning afternoon recorded for quality "
    "training purposes direct debit balance overdue discount offer loyalty contract"
)
RARE_WORDS = ("chargeback", "ombudsman", "arbitration", "solicitor", "fraudulent")
ZH_WORDS = _words(
    "您好 请问 有什么 可以 帮您 账户 号码 验证 身份 退款 订单 快递 延迟 取消 套餐 升级 话费 "
    "宽带 投诉 工单 经理 工程师 预约 上午 下午 录音 质量 培训 余额 优惠 合同 谢谢 再见 抱歉"
)


def _utterance(rng: random.Random, zh: bool) -> str:
    if zh:
        words = rng.choices(ZH_WORDS, k=rng.randint(4, 12))
        if rng.random() < 0.001:
            words.insert(rng.randrange(len(words)), "仲裁委员会")
        return "".join(words) + "。"
    words = rng.choices(EN_WORDS, k=rng.randint(5, 16))
    if rng.random() < 0.001:
        words.insert(rng.randrange(len(words)), rng.choice(RARE_WORDS))
    return " ".join(words).capitalize() + "."


def synthetic_calls(
    n: int, utterances: int = 50, *, seed: int = 0, zh_share: float = 0.2
) -> Iterator[SearchCall]:
    """`n` plausible calls, oldest first, 400 agents in 12 teams, 8 queues."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 6, tzinfo=UTC)
    for i in range(n):
        zh = rng.random() < zh_share
        agent = rng.randrange(400)
        t = 0.0
        utts = []
        for k in range(utterances):
            end = t + rng.uniform(1.0, 8.0)
            utts.append((round(t, 2), round(end, 2), "agent" if k % 2 == 0 else "customer", ""))
            t = end + rng.uniform(0.1, 1.5)
        yield SearchCall(
            call_id=f"c{i:07d}",
            agent_id=f"A{agent:03d}",
            team=f"team{agent % 12}",
            queue=f"q{rng.randrange(8)}",
            language="zh" if zh else "en",
            started_at=start + timedelta(seconds=i * 180),
            auto_total=round(rng.uniform(40, 100), 1),
            flags=["below_pass"] if rng.random() < 0.2 else [],
            failed_items=["disclosure"] if rng.random() < 0.15 else [],
            utterances=[(s, e, r, _utterance(rng, zh)) for s, e, r, _ in utts],
        )


def _queries(n_calls: int) -> list[SearchQuery]:
    week = timedelta(days=7)
    first_week = datetime(2025, 1, 6, tzinfo=UTC) + week
    since = datetime(2025, 1, 6, tzinfo=UTC) + timedelta(seconds=n_calls * 90)
    return [
        SearchQuery(text="refund"),
        SearchQuery(text="chargeback"),
        SearchQuery(text='"cancel subscription"'),
        SearchQuery(text='"speak to the ombudsman"'),
        SearchQuery(text="refund late", role="customer"),
        SearchQuery(text="退款"),
        SearchQuery(text='"取消套餐"'),
        SearchQuery(text="仲裁委员会"),
        SearchQuery(text="complaint", agent_id="A123"),
        SearchQuery(text="escalate manager", team="team3", since=since),
        SearchQuery(text="engineer", max_score=60, flag="below_pass"),
        SearchQuery(text="discount", item_failed="disclosure", queue="q2"),
        SearchQuery(text="solicitor", agent_id="A007"),
        SearchQuery(text="投诉", agent_id="A042", role="customer"),
        SearchQuery(text="refund", until=first_week),
        SearchQuery(text="thank", team="team1", role="customer", since=since, until=since + week),
    ]


class SearchBench(BaseModel):
    calls: int
    utterances: int
    build_seconds: float
    utterances_per_second: float
    file_mb: float
    queries: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    slowest: str


def run(calls: int = 100_000, utterances: int = 50, repeat: int = 5) -> SearchBench:
    """Build a synthetic search index in a temporary folder and time the query mix."""
    with tempfile.TemporaryDirectory(prefix="qa-search-bench-") as tmp:
        index = SearchIndex(Path(tmp))
        t0 = time.perf_counter()
        written = index.build(synthetic_calls(calls, utterances))
        build = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).glob("search-*.db*"))
        queries = _queries(calls)
        index.search(None, queries[0])  # open the file once
        timings: list[tuple[float, str]] = []
        for _ in range(repeat):
            for q in queries:
                t = time.perf_counter()
                index.search(None, q)
                timings.append(
                    ((time.perf_counter() - t) * 1000, q.model_dump_json(exclude_defaults=True))
                )
        index.close()
    ms = sorted(t for t, _ in timings)
    slowest = max(timings)
    return SearchBench(
        calls=calls,
        utterances=written,
        build_seconds=round(build, 1),
        utterances_per_second=round(written / build),
        file_mb=round(size / 2**20, 1),
        queries=len(ms),
        p50_ms=round(statistics.median(ms), 1),
        p95_ms=round(ms[int(0.95 * (len(ms) - 1))], 1),
        max_ms=round(slowest[0], 1),
        slowest=slowest[1],
    )


# --------------------------------------------------------------------------- Chinese recall


class ZhRecall(BaseModel):
    utterances: int
    phrases: int
    relevant: int  # (phrase, utterance) pairs where the utterance contains the phrase
    bigram_found: int
    jieba_found: int
    jieba_search_found: int  # jieba's search mode (words and their sub-words)
    bigram_recall: float
    jieba_recall: float
    jieba_search_recall: float


def _zh_utterances(shared_data: Path) -> list[str]:
    out = []
    stc3 = shared_data / "text" / "stc3_dev_cn.json"
    if stc3.exists():
        for dialogue in json.loads(stc3.read_text(encoding="utf-8")):
            for turn in dialogue["turns"]:
                out.extend(u for u in turn["utterances"] if u.strip())
    refs = shared_data / "zh_dev" / "refs.tsv"
    if refs.exists():
        for line in refs.read_text(encoding="utf-8").splitlines():
            if "\t" in line:
                out.append(line.split("\t", 1)[1])
    return out


def _fts(rows: list[str]) -> sqlite3.Connection:
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE t USING fts5(x, content='', detail=full)")
    con.executemany("INSERT INTO t(rowid, x) VALUES (?, ?)", enumerate(rows))
    return con


def _found(con: sqlite3.Connection, expression: str) -> set[int]:
    return {r[0] for r in con.execute("SELECT rowid FROM t WHERE t MATCH ?", (expression,))}


def zh_recall(shared_data: Path, phrases: int = 200, seed: int = 0) -> ZhRecall:
    """Recall of bigrams and of jieba on phrases taken from real Chinese helpdesk text."""
    import jieba

    jieba.setLogLevel(60)
    utts = _zh_utterances(shared_data)
    if not utts:
        raise FileNotFoundError(f"no Chinese text under {shared_data}")
    rng = random.Random(seed)
    han = [w for w in (jieba.lcut(u) for u in utts)]
    candidates: list[str] = []
    for words in han:
        words = [w for w in words if all("\u4e00" <= ch <= "\u9fff" for ch in w)]
        candidates.extend(w for w in words if len(w) >= 2)
        candidates.extend(a + b for a, b in zip(words, words[1:], strict=False) if len(a + b) >= 3)
    chosen = rng.sample(sorted(set(candidates)), min(phrases, len(set(candidates))))
    bigram = _fts([index_terms(u) for u in utts])
    words = _fts([" ".join(w for w in jieba.lcut(u) if w.strip()) for u in utts])
    search_words = _fts([" ".join(w for w in jieba.lcut_for_search(u) if w.strip()) for u in utts])
    relevant = found_b = found_j = found_s = 0
    for phrase in chosen:
        truth = {i for i, u in enumerate(utts) if phrase in u}
        relevant += len(truth)
        found_b += len(truth & _found(bigram, match_expression([phrase])))
        query = '"' + " ".join(jieba.lcut(phrase)) + '"'
        found_j += len(truth & _found(words, query))
        found_s += len(truth & _found(search_words, query))
    return ZhRecall(
        utterances=len(utts),
        phrases=len(chosen),
        relevant=relevant,
        bigram_found=found_b,
        jieba_found=found_j,
        jieba_search_found=found_s,
        bigram_recall=round(found_b / relevant, 4),
        jieba_recall=round(found_j / relevant, 4),
        jieba_search_recall=round(found_s / relevant, 4),
    )
