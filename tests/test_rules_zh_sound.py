"""Mandarin phrases matched by sound: Whisper's homophones (位您服务 for 为您服务) still match,
with the times of the characters heard; unrelated speech and 2-character phrases do not."""

from __future__ import annotations

import pytest

from qa.errors import ScorecardError
from qa.rules.text import phrase_sound_keys, sound_key
from tests.test_rules import FAIL, PASS, A, C, call, card, evaluate, item

HEARD = "您好，很高兴位您服务，我的公号是一二三。"  # 为您服务, 工号 written with homophones


def phrase(*phrases: str, extra: str = "") -> str:
    return f"type: phrase\nphrases: [{', '.join(phrases)}]\n{extra}"


def chars(transcript, text: str) -> tuple[float, float]:
    """Times of `text` in the first utterance, from its scripted per-character words."""
    words = transcript.utterances[0].words
    joined = "".join(w.text[0] for w in words)
    i = joined.index(text)
    return words[i].start, words[i + len(text) - 1].end


def test_sound_key_folds_homophones_and_common_confusions():
    assert sound_key("为您服务") == sound_key("位您服务")
    assert sound_key("工号") == sound_key("公号")
    assert sound_key("是") == sound_key("四")  # sh/s
    assert sound_key("能") == sound_key("楞")  # n/l, eng/en
    assert sound_key("您") != sound_key("你")
    assert len(sound_key("ab工号\n")) == 2 * len("ab工号\n")  # two symbols per character
    # a heteronym is read in context (银行: hang) and as speech is keyed (行: xing)
    assert sound_key("银航卡") in phrase_sound_keys("银行卡")
    assert sound_key("银行卡") in phrase_sound_keys("银行卡")


def test_homophones_match_by_sound_with_the_times_of_the_characters_heard():
    t = call((A, HEARD), language="zh")
    r = evaluate(t, card(item("x", phrase("为您服务"))))
    assert r.outcome == PASS
    (ev,) = r.evidence
    assert ev.matched == "为您服务 (by sound: 位您服务)"
    assert (ev.start, ev.end) == pytest.approx(chars(t, "位您服务"), abs=1e-3)
    assert ev.similarity == 1.0 and ev.role == A
    assert "by sound: 位您服务" in r.reason

    r = evaluate(t, card(item("x", phrase("我的工号"))))
    assert r.outcome == PASS and r.evidence[0].matched == "我的工号 (by sound: 我的公号)"
    assert (r.evidence[0].start, r.evidence[0].end) == pytest.approx(chars(t, "我的公号"), abs=1e-3)


def test_a_near_homophone_matches_within_the_threshold():
    t = call((A, HEARD), language="zh")
    near = evaluate(t, card(item("x", phrase("为你服务"))))  # 你 ni for 您 nin: one final
    assert near.outcome == PASS and near.evidence[0].similarity == pytest.approx(0.875)
    strict = evaluate(t, card(item("x", phrase("为你服务", extra="threshold: 90"))))
    assert strict.outcome == FAIL


def test_unrelated_speech_does_not_match_by_sound():
    t = call(
        (A, "请问还有什么可以帮您的吗？"),
        (C, "没有了，谢谢。"),
        (A, "感谢您的来电，再见。"),
        language="zh",
    )
    for phrases in (["为您服务"], ["我的工号"], ["请稍等"], ["本次通话可能会被录音"]):
        r = evaluate(t, card(item("x", phrase(*phrases, extra="speaker: any"))))
        assert r.outcome == FAIL, (phrases, r.reason)


def test_two_character_phrases_never_match_by_sound():
    t = call((A, HEARD), language="zh")
    r = evaluate(t, card(item("x", phrase("工号"))))  # 公号 sounds the same: still no
    assert r.outcome == FAIL
    absent = evaluate(t, card(item("x", phrase("工号", extra="mode: absent"))))
    assert absent.outcome == PASS


def test_three_character_phrases_must_sound_the_same():
    t = call((A, "我们会尽块处理。"), language="zh")  # 尽快 written 尽块 (kuai both)
    assert evaluate(t, card(item("x", phrase("尽快处")))).outcome == PASS
    t2 = call((A, "我们会尽量处理。"), language="zh")  # 量 liang: not a homophone
    assert evaluate(t2, card(item("x", phrase("尽快处")))).outcome == FAIL


def test_exact_matches_are_unchanged():
    t = call((A, "您好，很高兴为您服务，我的工号是一二三。"), language="zh")
    for p, seen in (("为您服务", "为您服务"), ("工号", "工号"), ("爲您服務", "为您服务")):
        r = evaluate(t, card(item("x", phrase(p))))
        assert r.outcome == PASS
        (ev,) = r.evidence
        assert ev.matched == p and ev.similarity == 1.0  # no "by sound" label
        assert (ev.start, ev.end) == pytest.approx(chars(t, seen), abs=1e-3)


def test_by_sound_is_configurable_per_rule():
    t = call((A, HEARD), language="zh")
    off = evaluate(t, card(item("x", phrase("为您服务", extra="by_sound: false"))))
    assert off.outcome == FAIL
    exact = evaluate(t, card(item("x", phrase("为您服务", extra="fuzzy: false"))))
    assert exact.outcome == FAIL  # fuzzy: false stays exact only
    alone = card(item("x", phrase("为您服务", extra="fuzzy: false\nby_sound: true")))
    assert evaluate(t, alone).outcome == PASS
    with pytest.raises(ScorecardError, match="by_sound"):
        card(item("x", phrase("为您服务", extra="by_sound: maybe")))


def test_absent_phrase_heard_by_sound_fails_the_rule():
    t = call((A, "这个不是我的问体，你自己看着办。"), language="zh")  # 问题 as 问体
    r = evaluate(t, card(item("x", phrase("不是我的问题", extra="mode: absent"))))
    assert r.outcome == FAIL and "by sound: 不是我的问体" in r.reason


def test_only_mandarin_matches_by_sound():
    t = call((A, HEARD), language="ja")
    assert evaluate(t, card(item("x", phrase("为您服务")))).outcome == FAIL


def test_zh_phrases_evaluation_measures_through_the_rules():
    from qa.evaluation.zh_phrases import measure, sample_phrases

    other = "请问还有什么可以帮您的吗？"
    refs = [("a.flac", "很高兴为您服务，我的工号是一二三。"), ("b.flac", other)]
    heard = {"a.flac": "很高兴位您服务，我的公号是一二三。", "b.flac": other}
    words = {n: [[k * 0.2, k * 0.2 + 0.2, ch] for k, ch in enumerate(t)] for n, t in heard.items()}
    phrases = sample_phrases(refs, per_sentence=3)
    assert phrases == sample_phrases(refs, per_sentence=3)  # deterministic
    assert all(4 <= len(p) <= 6 and p in refs[i][1] for i, p in phrases)
    figures = {f.config: f for f in measure(refs, words, phrases, 80)}
    exact, sound = figures["exact"], figures["exact + by sound"]
    assert exact.phrases == sound.phrases == len(phrases)
    assert sound.found_own == len(phrases) >= exact.found_own
    assert exact.found_other == sound.found_other == 0 and exact.pairs == len(phrases)
