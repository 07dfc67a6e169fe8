"""The generated redaction corpus (`qa eval redaction`): the targets the product promises."""

from __future__ import annotations

from collections import Counter

import pytest

from qa.evaluation.redaction import (
    SEED,
    AsrExchange,
    asr_markdown,
    asr_report,
    asr_sample,
    corpus,
    evaluate,
    exchange_turns,
    markdown,
    readable,
    rescore,
    score_call,
    secret_value,
    transcript_of,
)
from qa.schema import Role
from qa.scoring.redact import KINDS


@pytest.fixture(scope="module")
def report():
    return evaluate(corpus(SEED))


def test_corpus_is_deterministic_and_large_enough() -> None:
    cases = corpus(SEED)
    assert cases == corpus(SEED)
    assert sum(len(c.turns) for c in cases) >= 300
    assert {c.language for c in cases} == {"en", "zh"}
    assert {m.kind for c in cases for m in c.marks} == set(KINDS)
    assert sum(not c.marks for c in cases) >= 100  # negatives


def test_card_numbers_are_all_redacted_and_nothing_of_them_stays_readable(report) -> None:
    cards = report.row("card_number")
    assert cards.positives >= 100
    assert cards.recall == 1.0, report.misses
    assert report.card_leaks == []  # no run of 4+ digits in a redacted card utterance


def test_precision_on_the_negatives(report) -> None:
    assert report.precision >= 0.95, report.false_redactions
    assert 1 - report.false_redaction_rate >= 0.95, report.false_redactions


def test_report_renders(report) -> None:
    table = markdown(report)
    assert "| card_number |" in table and "negatives" in table


def test_asr_sample_is_fixed_and_covers_every_kind() -> None:
    """`qa eval redaction --asr` speaks this sample; without audio, check what it holds."""
    sample = asr_sample(15)
    assert sample == asr_sample(15)
    kinds = Counter((c.marks[0].kind if c.marks else "negative", c.language) for c in sample)
    assert all(kinds[(k, "en")] == 12 and kinds[(k, "zh")] == 3 for k in KINDS)
    assert kinds[("negative", "en")] + kinds[("negative", "zh")] == 30
    for k, case in enumerate(sample):
        turns = exchange_turns(case, k)
        assert turns[0].role == Role.AGENT  # a question before every answer
        if case.marks and case.language == "en":  # digits are spoken one by one
            assert not any(ch.isdigit() for t in turns for ch in t.text)


def test_leak_measure() -> None:
    assert readable("4556737586899855", "card_number", ["It's 4, 5, five, 6 and [CARD_NUMBER]"])
    assert not readable("4556737586899855", "card_number", ["It's 4, 5, 5 [CARD_NUMBER]"])
    assert readable("731", "cvv", ["the code is seven, three"])
    assert not readable("731", "cvv", ["the code is [CVV]"])
    assert readable("robert chen example", "email", ["The Robert not Ken"])
    assert readable("emmabrown gmail", "email", ["it's Emma Brown at [EMAIL]"])
    assert not readable("robert chen example", "email", ["The [EMAIL],"])


def test_scoring_an_exchange_from_its_transcript() -> None:
    """What a perfect ASR would write is redacted without a leak."""
    case = next(c for c in asr_sample(15) if c.marks and c.marks[0].kind == "card_number")
    transcript, _ = transcript_of(case)
    exchange = AsrExchange(
        kind="card_number",
        language=case.language,
        form=case.form,
        spoken=[],
        value=secret_value(case),
        call=0,
        start=0.0,
        end=transcript.duration,
    )
    report = asr_report(score_call(transcript, [exchange]), [transcript])
    row = report.row("card_number")
    assert (row.spoken, row.kept, row.leaked) == (1, 1, 0)
    assert "| card_number | 1 |" in asr_markdown(rescore(report))
