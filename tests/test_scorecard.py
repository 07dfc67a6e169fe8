"""Scoring the synthetic calls against the default scorecards: every planted violation is
found with evidence at the right time, clean calls have no false violations; totals,
auto-fail and flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa.rules.format import parse_scorecard
from qa.rules.scripted import ScriptedTurn, long_call, scripted_transcript
from qa.rules.text import normalize
from qa.schema import (
    CallMeta,
    Direction,
    EvidenceQuality,
    FlagCode,
    ItemOutcome,
    QualityCode,
    QualityIssue,
    Role,
    Sentiment,
)
from qa.scoring.outcome import Scoring, outcome, outcome_items
from qa.scoring.scorecard import default_scorecard, sample_draw, score_call
from qa.synth import SynthCall, SynthError, espeak_binary, load_scripts, render_all

PASS, FAIL, NA = ItemOutcome.PASS, ItemOutcome.FAIL, ItemOutcome.NA
SCRIPTS = {s.call_id: s for s in load_scripts()}
TOL = 0.01


@pytest.fixture(scope="session")
def synth_calls(tmp_path_factory) -> dict[str, SynthCall]:
    try:
        espeak_binary()
    except SynthError as exc:
        pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("synth-scoring")
    return {c.call_id: c for c in render_all(out, rates=(8000,))}


def scored(call: SynthCall, **kw):
    return score_call(call.to_transcript(), call.meta, default_scorecard(call.language), **kw)


def turn_of(call: SynthCall, ev) -> int | None:
    """Index of the turn (by the evidence's role) that contains the evidence span."""
    for i, t in enumerate(call.turns):
        if t.role == ev.role and t.start - TOL <= ev.start <= ev.end <= t.end + TOL:
            return i
    return None


def hold_gaps(call: SynthCall) -> list[tuple[float, float, int]]:
    """(silence start, silence end, index of the turn after it) for every scripted hold."""
    script = SCRIPTS[call.call_id]
    out = []
    for i, turn in enumerate(script.turns):
        if turn.hold:
            out.append((max(t.end for t in call.turns[:i]), call.turns[i].start, i))
    return out


@pytest.mark.parametrize("call_id", sorted(SCRIPTS))
def test_planted_violations_found_and_nothing_else(synth_calls, call_id):
    call = synth_calls[call_id]
    score = scored(call)
    failed = {r.item_id: r for r in score.items if r.outcome == FAIL}
    assert set(failed) == set(call.violations), {i: r.reason for i, r in failed.items()}

    for result in score.items:
        assert result.reason
        for ev in result.evidence:  # speech evidence lies inside a turn of that party
            if ev.speaker is not None:
                assert turn_of(call, ev) is not None, (result.item_id, ev)

    duration = call.duration
    for item_id, result in failed.items():
        assert result.evidence, item_id
        ev = result.evidence
        if item_id in ("greeting", "agent_introduction", "recording_disclosure"):
            assert (ev[0].start, ev[0].end) == (0.0, 15.0 if item_id == "greeting" else 30.0)
        elif item_id == "closing":
            assert ev[0].start == pytest.approx(duration - 60, abs=TOL)
            assert ev[0].end == pytest.approx(duration, abs=TOL)
        elif item_id in ("identity_verification", "resolution_confirmation", "empathy"):
            assert (ev[0].start, ev[0].end) == (0.0, pytest.approx(duration, abs=TOL))
        elif item_id == "no_forbidden_language":
            for e in ev:
                turn = call.turns[turn_of(call, e)]
                assert turn.role == Role.AGENT
                assert normalize(e.matched, call.language == "zh")[:4] in normalize(
                    turn.text, call.language == "zh"
                )
        elif item_id == "verify_before_account":
            assert call.turns[turn_of(call, ev[0])].role == Role.AGENT
        elif item_id == "dead_air":
            ((start, end, _),) = [g for g in hold_gaps(call) if g[1] - g[0] > 30]
            assert (ev[0].start, ev[0].end) == (
                pytest.approx(start, abs=TOL),
                pytest.approx(end, abs=TOL),
            )
        elif item_id == "overtalk":
            script = SCRIPTS[call_id]
            cut_in = [
                call.turns[i].start
                for i, t in enumerate(script.turns)
                if t.role == Role.AGENT and t.pause_before < 0
            ]
            assert [e.start for e in ev] == pytest.approx(cut_in, abs=TOL)
        elif item_id == "hold_etiquette":
            ((start, end, _),) = hold_gaps(call)
            assert ev[0].end == pytest.approx(start, abs=TOL)  # ask before the hold
            assert ev[1].start == pytest.approx(end, abs=TOL)  # thank after it
        else:
            pytest.fail(f"no evidence check for {item_id}")


def test_clean_call_evidence_times(synth_calls):
    call = synth_calls["nw_billing_complaint"]
    score = scored(call)
    assert score.total == 100 and score.passed and not score.flags
    items = {r.item_id: r for r in score.items}
    ((start, end, after),) = hold_gaps(call)
    permission, thanks = items["hold_etiquette"].evidence
    assert "put you on hold" in call.turns[turn_of(call, permission)].text
    assert permission.end <= start
    assert thanks.start == pytest.approx(end, abs=TOL)  # first words of the turn after
    assert items["empathy"].outcome == PASS  # the customer complained
    disclosure = items["recording_disclosure"].evidence[0]
    words = call.to_transcript().utterances[0].words
    said = next(w for w in words if w.text.strip().lower() == "this")
    assert disclosure.start == pytest.approx(said.start, abs=TOL)


def test_items_that_do_not_apply_are_na(synth_calls):
    items = {r.item_id: r for r in scored(synth_calls["nw_address_change"]).items}
    assert items["empathy"].outcome == NA and "not applicable" in items["empathy"].reason
    assert items["hold_etiquette"].outcome == NA
    # still worth its points on the card; it earns none and loses none
    assert items["empathy"].points_possible > 0 and items["empathy"].points_awarded == 0


def test_critical_fail_is_auto_fail(synth_calls):
    score = scored(synth_calls["nw_angry_outage_forbidden"])
    assert score.auto_fail and not score.passed and score.total == 0
    assert any("No forbidden language" in r for r in score.auto_fail_reasons)
    assert {f.code for f in score.flags} >= {FlagCode.AUTO_FAIL, FlagCode.BELOW_PASS}


def test_deduction_total(synth_calls):
    score = scored(synth_calls["nw_dead_air_interrupts"])
    # 40 s of dead air, three interruptions and no closing fail the call
    assert score.total == 100 - 10 - 10 - 5 and not score.passed and not score.auto_fail
    lost = [r for r in score.items if r.outcome == FAIL]
    assert all(r.points_awarded == 0 for r in lost)
    # the one arithmetic, with the card's settings the score carries
    again = outcome(outcome_items(score.items), Scoring.of_score(score))
    assert (again.total, again.passed, again.auto_fail) == (
        score.total,
        score.passed,
        score.auto_fail,
    )
    assert score.scoring == "deduction" and score.auto_fail_zeroes_total


def test_negative_ending_flag_from_sentiment(synth_calls):
    call = synth_calls["nw_angry_outage_forbidden"]

    class Grumpy:
        def score(self, texts, language):
            return [Sentiment(score=-0.8, label="negative") for _ in texts]

    score = scored(call, sentiment=Grumpy())
    codes = {f.code for f in score.flags}
    assert FlagCode.NEGATIVE_ENDING in codes
    # the model's reading flags the call; it deducts no points (scorecards 1.2)
    assert {r.rule_type for r in score.items if r.outcome == FAIL} <= {"phrase", "any", "all"}
    assert {s.role for s in score.sentiment} == {Role.AGENT, Role.CUSTOMER}


NO_DISCLOSURE = [
    ScriptedTurn(
        role=Role.AGENT,
        text="Thank you for calling Northwind Telecom, my name is Ann. How can I help you?",
    ),
    ScriptedTurn(role=Role.CUSTOMER, text="I'd like to check my bill."),
    ScriptedTurn(
        role=Role.AGENT,
        text="Can you confirm your full name and date of birth? Thank you. Your bill is paid. "
        "Is there anything else I can help you with? Thank you for calling, goodbye.",
    ),
]


def test_doubtful_transcript_holds_a_missing_critical_phrase_for_a_person():
    """A disclosure not found in a transcript that cannot be trusted is a flag with the
    reason, not an auto-fail; in a trusted transcript it fails the call as before."""
    card = default_scorecard("en")
    trusted = score_call(scripted_transcript(NO_DISCLOSURE, call_id="trusted"), None, card)
    assert trusted.auto_fail and trusted.total == 0
    assert FlagCode.EVIDENCE_DOUBT not in {f.code for f in trusted.flags}

    for doubt in ("asr", "quality", "roles"):
        t = scripted_transcript(NO_DISCLOSURE, call_id=f"doubt-{doubt}")
        if doubt == "asr":
            t.asr_confidence, expect = 0.3, "mean word probability 0.30 < 0.50"
        elif doubt == "quality":
            t.quality = EvidenceQuality(
                issues=[QualityIssue(code=QualityCode.UNSURE_DECODING, reason="text guessed")]
            )
            expect = "text guessed"
        else:
            t.roles.confidence, expect = 0.2, "roles decided with confidence 0.20"
        score = score_call(t, None, card)
        items = {r.item_id: r for r in score.items}
        assert items["recording_disclosure"].outcome == FAIL  # the evidence is kept as found
        assert not score.auto_fail and score.auto_fail_reasons == []
        assert score.total == 90 and score.passed  # its points lost, the total not zeroed
        (flag,) = [f for f in score.flags if f.code == FlagCode.EVIDENCE_DOUBT]
        assert (
            flag.reason.startswith(
                "critical item 'Call recording disclosure' failed on a transcript marked doubtful"
            )
            and expect in flag.reason
        )


def test_doubtful_transcript_still_auto_fails_on_words_found():
    """Forbidden words that were heard are evidence, not an absence: doubt holds nothing."""
    turns = [
        *NO_DISCLOSURE[:2],
        ScriptedTurn(
            role=Role.AGENT, text="This call is recorded. Calm down, that's not my problem."
        ),
    ]
    t = scripted_transcript(turns, call_id="rude")
    t.asr_confidence = 0.3
    score = score_call(t, None, default_scorecard("en"))
    assert score.auto_fail and score.total == 0
    assert any("No forbidden language" in r for r in score.auto_fail_reasons)
    # the identity item failed by absence only: held, named in the flag
    (flag,) = [f for f in score.flags if f.code == FlagCode.EVIDENCE_DOUBT]
    assert "'Identity verification'" in flag.reason


def test_weighted_scoring_ignores_na_items():
    text = """\
id: weighted
version: "2"
name: Weighted
languages: [en]
pass_mark: 50
scoring: weighted
sections:
  - id: s
    name: S
    items:
      - {id: hello, name: Hello, weight: 3, rule: {type: phrase, phrases: [hello]}}
      - {id: bye, name: Bye, weight: 1, rule: {type: phrase, phrases: [goodbye]}}
      - id: sorry
        name: Sorry
        weight: 4
        applies_when: {queue: [complaints]}
        rule: {type: phrase, phrases: [sorry]}
"""
    card = parse_scorecard(text)
    t = scripted_transcript([ScriptedTurn(role=Role.AGENT, text="Hello there.")])
    score = score_call(t, None, card)
    assert score.total == 75.0 and score.passed
    meta = CallMeta(call_id=t.call_id, queue="complaints")
    assert score_call(t, meta, card).total == 37.5


def test_applies_when_conditions():
    text = """\
id: cond
version: "1"
name: Cond
languages: [en]
pass_mark: 50
sections:
  - id: s
    name: S
    items:
      - id: outbound_only
        name: Outbound only
        points: 50
        applies_when: {direction: outbound, min_duration: 5}
        rule: {type: phrase, phrases: [calling from northwind]}
      - id: zh_only
        name: Chinese only
        points: 50
        applies_when: {language: [zh]}
        rule: {type: phrase, phrases: [您好]}
"""
    card = parse_scorecard(text)
    t = scripted_transcript(
        [ScriptedTurn(role=Role.AGENT, text="I am calling about a bill.", pause_before=5)]
    )
    inbound = score_call(t, None, card)
    assert [r.outcome for r in inbound.items] == [NA, NA] and inbound.total == 100
    outbound = score_call(t, CallMeta(call_id=t.call_id, direction=Direction.OUTBOUND), card)
    assert outbound.items[0].outcome == FAIL and outbound.total == 50


def test_confidence_flags_and_random_sample():
    t = long_call(1.0)
    t.roles.confidence = 0.4
    t.asr_confidence = 0.3
    card = default_scorecard("en")
    codes = {f.code for f in score_call(t, None, card).flags}
    assert {FlagCode.LOW_ROLE_CONFIDENCE, FlagCode.LOW_ASR_CONFIDENCE} <= codes
    picked = [i for i in range(400) if sample_draw(f"call-{i}", 7) < 0.25]
    assert picked == [i for i in range(400) if sample_draw(f"call-{i}", 7) < 0.25]
    assert 60 < len(picked) < 140
    assert picked != [i for i in range(400) if sample_draw(f"call-{i}", 8) < 0.25]
    t.call_id = f"call-{picked[0]}"
    flagged = score_call(t, None, card, sample_rate=0.25, rng_seed=7)
    assert FlagCode.RANDOM_SAMPLE in {f.code for f in flagged.flags}


def test_default_scorecards_and_site_override(settings, tmp_path):
    assert default_scorecard("en").id == "en_customer_service"
    zh = default_scorecard("zh-CN")
    assert zh.id == "zh_customer_service" and zh.languages == ["zh"]
    ids = {i.id for _, i in zh.items}
    assert ids == {i.id for _, i in default_scorecard("en").items}
    site = tmp_path / "site.yaml"
    site.write_text(
        Path(default_scorecard("en").source)
        .read_text(encoding="utf-8")
        .replace("id: en_customer_service", "id: site_card"),
        encoding="utf-8",
    )
    settings.scorecard = str(site)
    assert default_scorecard("en", settings).id == "site_card"


def test_chinese_long_call_is_clean():
    t = long_call(3.0, language="zh")
    score = score_call(t, None, default_scorecard("zh"))
    assert score.total == 100, [(r.item_id, r.reason) for r in score.items if r.outcome == FAIL]


# --------------------------------------------------------------------------- CLI and report


def test_qa_score_cli_text_and_json(tmp_path):
    from qa.cli import app

    t = long_call(1.0, call_id="cli-call")
    path = tmp_path / "t.json"
    path.write_text(t.model_dump_json())
    runner = CliRunner()
    res = runner.invoke(app, ["score", str(path), "--no-models"])
    assert res.exit_code == 0, res.output
    assert "cli-call" in res.output and "score 100/100" in res.output and "Greeting" in res.output
    res = runner.invoke(app, ["score", str(path), "--json", "--no-models"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["call_id"] == "cli-call" and data["scorecard_id"] == "en_customer_service"


def test_qa_scorecard_validate_cli(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        Path(default_scorecard("en").source)
        .read_text(encoding="utf-8")
        .replace("metric: dead_air", "metric: dead_air_time"),
        encoding="utf-8",
    )
    runner = CliRunner()
    from qa.cli import app

    ok = runner.invoke(app, ["scorecard", "validate", default_scorecard("zh").source])
    assert ok.exit_code == 0 and "zh_customer_service" in ok.output
    res = runner.invoke(app, ["scorecard", "validate", str(bad)])
    assert res.exit_code == 1
    line = next(
        i for i, text in enumerate(bad.read_text().splitlines(), 1) if "dead_air_time" in text
    )
    assert res.stdout.startswith(f"{bad}:{line}: ")


def test_report_text_has_items_outcomes_and_times(synth_calls):
    from qa.scoring.report import report_text

    text = report_text(scored(synth_calls["nw_dead_air_interrupts"]), width=160)
    assert "No dead air" in text and "FAIL" in text and "75" in text
    assert "0:46.0" in text  # the dead air starts at 45.98 s


@pytest.fixture(scope="module")
def encoder(settings_module):
    from qa.errors import QAError
    from qa.scoring.encoder import Encoder

    try:
        return Encoder(settings_module)
    except QAError as exc:
        pytest.skip(f"encoder not installed: {exc}")


@pytest.fixture(scope="module")
def settings_module(tmp_path_factory):
    from qa.config import Settings

    return Settings(home=tmp_path_factory.mktemp("home"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "call_id, semantic",
    [
        ("nw_billing_complaint", PASS),
        ("nw_angry_outage_forbidden", FAIL),
        ("bf_zh_billing_clean", PASS),
        ("bf_zh_outage_violations", FAIL),
    ],
)
def test_semantic_empathy_with_the_real_encoder(synth_calls, encoder, call_id, semantic):
    """The bundled encoder tells an apology from "calm down" at the forms' thresholds."""
    from qa.rules.matchers import CallContext
    from qa.scoring.metrics import compute_metrics

    call = synth_calls[call_id]
    card = default_scorecard(call.language)
    transcript = call.to_transcript()
    empathy = next(i for _, i in card.items if i.id == "empathy")
    rule = next(r for r in empathy.rule.rules if r.type == "semantic")
    ctx = CallContext(transcript, card, compute_metrics(transcript), encoder=encoder)
    result = ctx.evaluate(rule)
    assert result.outcome == semantic, result.evidence
    if semantic == PASS:
        assert any(w in result.evidence[0].text.lower() for w in ("sorry", "apologise", "抱歉"))


@pytest.mark.slow
def test_real_models_keep_the_planted_findings(synth_calls, encoder, settings_module):
    """With the encoder and the sentiment model, an angry call still shows exactly its
    planted violations, and the customer's negative ending is flagged, which is true of it."""
    from qa.errors import QAError
    from qa.scoring.sentiment import SentimentModel

    try:
        sentiment = SentimentModel(settings_module)
    except QAError as exc:
        pytest.skip(f"sentiment model not installed: {exc}")
    call = synth_calls["nw_angry_outage_forbidden"]
    score = scored(call, encoder=encoder, sentiment=sentiment)
    failed = {r.item_id for r in score.items if r.outcome == FAIL}
    assert failed == set(call.violations)
    assert FlagCode.NEGATIVE_ENDING in {f.code for f in score.flags}
    assert {s.role for s in score.sentiment} == {Role.AGENT, Role.CUSTOMER}
