"""The rule types and call metrics are each declared once: every rule type the format accepts
has an evaluator, every metric in `qa.scoring.metrics.METRICS` is computed and accepted, and
an unknown one is refused with the file, the line and the known names."""

from __future__ import annotations

from pathlib import Path

import pytest

import qa.rules.format as format_module
from qa.errors import ScorecardError
from qa.rules.format import RULE_MODELS, RULE_TYPES, check_text, load_scorecard, walk_rules
from qa.rules.matchers import EVALUATORS, CallContext
from qa.schema import ItemOutcome, Role, Transcript, Utterance
from qa.scoring.metrics import METRICS, compute_metrics
from tests.test_rules import card, card_text, item

A, C = Role.AGENT, Role.CUSTOMER

# One rule of each type; a new rule type needs a sample here.
SAMPLES = {
    "phrase": "type: phrase\nphrases: [thank you for calling]",
    "regex": "type: regex\npattern: 'REF-\\d{3}'",
    "order": "type: order\nfirst: {type: phrase, phrases: [date of birth]}\n"
    "then: {type: phrase, phrases: [your balance]}",
    "semantic": "type: semantic\nexamples: [sorry for the trouble]",
    "metric": "type: metric\nmetric: dead_air\nop: '<='\nthreshold: 30",
    "sentiment": "type: sentiment\nop: '>='\nthreshold: 0",
    "ref": "type: any\nrules: [{type: phrase, id: hello, phrases: [hello]}, hello]",
    "all": "type: all\nrules: [{type: phrase, phrases: [hello]}]",
    "any": "type: any\nrules: [{type: phrase, phrases: [hello]}]",
    "not": "type: not\nrule: {type: phrase, phrases: [hello]}",
}


def utt(role: Role, start: float, end: float, text: str) -> Utterance:
    return Utterance(speaker=role.value, role=role, start=start, end=end, text=text)


def busy_call() -> Transcript:
    """A call with something for every metric: holds, dead air, overtalk, interruptions."""
    utts = [
        utt(A, 1.0, 4.0, "Thank you for calling, how can I help?"),
        utt(C, 5.0, 11.0, "I have been trying to explain this problem for ages now"),
        utt(A, 9.0, 13.0, "Yes but you need to restart the router first"),  # cuts in
        utt(A, 14.0, 17.0, "Let me put you on hold while I check."),
        utt(A, 57.0, 60.0, "Thanks for holding, your reference is REF-123."),  # 40 s hold
        utt(C, 61.0, 63.0, "Okay, hello."),
        utt(A, 98.0, 101.0, "Right, it is fixed."),  # 35 s dead air
        utt(C, 99.5, 102.0, "Oh great so it works now"),  # cuts in
        utt(C, 103.0, 104.0, "Thanks."),
    ]
    return Transcript(call_id="busy", language="en", duration=105.0, utterances=utts)


def test_every_rule_type_has_an_evaluator_and_a_model():
    assert set(EVALUATORS) == set(RULE_TYPES) == set(SAMPLES)
    assert len(RULE_MODELS) == len(RULE_TYPES) == len(set(RULE_TYPES))


@pytest.mark.parametrize("rule_type", RULE_TYPES)
def test_every_rule_type_evaluates(rule_type):
    scorecard = card(item("x", SAMPLES[rule_type]))
    rule = next(
        r for _, r in walk_rules(scorecard.sections[0].items[0].rule, ()) if r.type == rule_type
    )
    transcript = busy_call()
    result = CallContext(transcript, scorecard, compute_metrics(transcript)).evaluate(rule)
    assert result.outcome in (ItemOutcome.PASS, ItemOutcome.FAIL, ItemOutcome.NA)
    assert result.reason


def test_an_object_of_no_rule_type_is_refused():
    scorecard = card(item("x", SAMPLES["phrase"]))
    transcript = busy_call()
    ctx = CallContext(transcript, scorecard, compute_metrics(transcript))
    with pytest.raises(TypeError, match="unknown rule"):
        ctx.evaluate(object())


@pytest.mark.parametrize("name", list(METRICS))
def test_every_metric_is_computed_accepted_and_evaluated(name):
    metric = METRICS[name]
    transcript = busy_call()
    computed = compute_metrics(transcript)
    roles = ("agent", "customer") if metric.per_role else ("agent",)
    for role in roles:
        value = metric.value(computed, role)
        assert isinstance(value, float) and value > 0, (name, role, value)
    role = "\nrole: customer" if metric.per_role else ""
    scorecard = card(item("x", f"type: metric\nmetric: {name}{role}\nop: '<'\nthreshold: 1000"))
    result = CallContext(transcript, scorecard, computed).evaluate(
        scorecard.sections[0].items[0].rule
    )
    assert result.outcome == ItemOutcome.PASS and result.reason.startswith(metric.label)


def test_a_metric_with_segments_shows_them_as_evidence():
    transcript = busy_call()
    scorecard = card(item("x", "type: metric\nmetric: hold_count\nop: '=='\nthreshold: 0"))
    result = CallContext(transcript, scorecard, compute_metrics(transcript)).evaluate(
        scorecard.sections[0].items[0].rule
    )
    assert result.outcome == ItemOutcome.FAIL
    assert [(e.start, e.end, e.note) for e in result.evidence] == [(17.0, 57.0, "hold 40.0 s")]


def test_role_only_on_per_role_metrics():
    for name, metric in METRICS.items():
        _, problems = check_text(
            card_text(
                item("x", f"type: metric\nmetric: {name}\nrole: agent\nop: '<'\nthreshold: 1")
            )
        )
        assert bool(problems) != metric.per_role, (name, problems)


def test_unknown_metric_is_refused_with_file_line_and_the_known_names(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text(
        card_text(item("x", "type: metric\nmetric: loudness\nop: '<'\nthreshold: 3")),
        encoding="utf-8",
    )
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "loudness" in text)
    with pytest.raises(ScorecardError) as info:
        load_scorecard(path)
    message = str(info.value)
    assert f"{path}:{line}" in message and "unknown metric 'loudness'" in message
    assert all(name in message for name in METRICS)


@pytest.mark.parametrize(
    "rule, reason",
    [
        ("type: volume\nphrases: [hello]", "unknown rule type 'volume'; use one of"),
        ("phrases: [hello]", "a rule needs a `type`: one of"),
    ],
)
def test_unknown_or_missing_rule_type_is_refused_with_file_line_and_the_types(
    tmp_path, rule, reason
):
    path = tmp_path / "card.yaml"
    path.write_text(card_text(item("x", rule)), encoding="utf-8")
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip() == "rule:"
    )
    with pytest.raises(ScorecardError) as info:
        load_scorecard(path)
    message = str(info.value)
    assert f"{path}:{line}" in message and reason in message
    assert all(t in message for t in RULE_TYPES)


def test_the_format_documentation_lists_every_metric_and_rule_type():
    readme = (Path(format_module.__file__).parent / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in METRICS)
    assert all(f"`{t}`" in readme for t in RULE_TYPES)
