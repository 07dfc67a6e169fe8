"""The generated redaction corpus (`qa eval redaction`): the targets the product promises."""

from __future__ import annotations

import pytest

from qa.evaluation.redaction import SEED, corpus, evaluate, markdown
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
