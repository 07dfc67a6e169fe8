"""Live rules: alerts fire once, when the evidence is in (phrases, a missing disclosure at its
deadline, silence, a souring customer); scorecard items are decided as soon as their outcome
is certain and the rest wait for the end; the same alert file gives the same alerts on the
stored call, and a live alert and the post-call evaluation send once in total."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from qa.alerts.engine import AlertEngine, Evaluator, MemoryHistory
from qa.alerts.rules import PACKAGE_RULES, check_text, load_rules
from qa.live.models import LiveCallInfo, LiveLine
from qa.live.rules import LiveChecker
from qa.rules.format import check_text as check_scorecard
from qa.schema import (
    CallMeta,
    CallMetrics,
    CallResult,
    CallScore,
    Role,
    Segment,
    Sentiment,
    Transcript,
    Utterance,
)
from qa.workflow import Workflow

START = datetime(2026, 11, 16, 10, tzinfo=UTC)

ALERTS = """version: 1
recipients:
  "*": ["json://127.0.0.1:9/"]
rules:
  - id: escalation
    type: phrase
    speaker: customer
    phrases: ["cancel", "lawyer", "投诉"]
  - id: forbidden
    type: phrase
    speaker: agent
    phrases: ["not my problem", "calm down"]
  - id: disclosure
    type: missing_phrase
    phrases: ["this call may be recorded", "本次通话可能会被录音"]
    within: 30
  - id: silence
    type: silence
    over: 20
  - id: souring
    type: sentiment_drop
    last: 2
    below: -0.3
    drop: 0.4
  - {id: low, type: low_score, below: 50}
"""

CARD = """id: live_card
version: "1"
name: Live card
languages: [en, zh]
pass_mark: 50
sections:
  - id: main
    name: Main
    items:
      - id: greeting
        name: Greeting
        points: 10
        rule: {type: phrase, speaker: agent, window: {first: 15}, phrases: [thank you for calling]}
      - id: no_blame
        name: No blaming
        points: 10
        rule: {type: phrase, speaker: agent, mode: absent, phrases: [your fault]}
      - id: closing
        name: Closing
        points: 10
        rule: {type: phrase, speaker: agent, window: {last: 30}, phrases: [anything else]}
      - id: empathy
        name: Empathy
        points: 10
        rule: {type: semantic, speaker: agent, examples: [I understand how you feel]}
      - id: talk_over
        name: Interruptions
        points: 10
        rule: {type: metric, metric: interruptions, role: agent, op: "<=", threshold: 1}
      - id: greeting_and_blame
        name: Greeting and no blame
        points: 50
        rule: {type: all, rules: [greeting, no_blame]}
"""


def info(language: str | None = "en", team: str = "red") -> LiveCallInfo:
    return LiveCallInfo(
        call_id="live-1",
        source="acct",
        agent_id="A1",
        team=team,
        language=language,
        started_at=START,
        tracks={"inbound": Role.CUSTOMER, "outbound": Role.AGENT},
    )


def line(
    index: int, role: Role, start: float, end: float, text: str, final: bool = True
) -> LiveLine:
    track = "outbound" if role is Role.AGENT else "inbound"
    return LiveLine(
        call_id="live-1",
        index=index,
        track=track,
        role=role,
        start=start,
        end=end,
        text=text,
        final=final,
    )


def checker(card: bool = False, sentiment: object = None, language: str | None = "en"):
    rules, problems = check_text(ALERTS)
    assert not problems
    scorecard = None
    if card:
        scorecard, problems = check_scorecard(CARD)
        assert not problems
    return LiveChecker(info(language), scorecard=scorecard, alerts=rules, sentiment=sentiment)


def alerts(events) -> list[str]:
    return [e.rule_id for e in events if e.kind == "alert"]


DISCLOSED = line(0, Role.AGENT, 1.0, 4.0, "Hi, this call may be recorded for quality.")


class FakeSentiment:
    """Scores by keyword, so the test says which lines are negative."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score(self, texts: list[str], language: str) -> list[Sentiment]:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            value = -0.8 if "awful" in t else 0.5 if "great" in t else 0.0
            label = "negative" if value < 0 else "positive" if value > 0 else "neutral"
            out.append(Sentiment(score=value, label=label))
        return out


# --------------------------------------------------------------------------- alerts


def test_forbidden_agent_phrase_fires_once_when_said():
    live = checker()
    lines = [DISCLOSED, line(1, Role.AGENT, 5.0, 7.0, "well that is", final=False)]
    assert alerts(live.update(lines, 7.0, 7.0)) == []
    lines[1] = line(1, Role.AGENT, 5.0, 9.0, "well that is not my problem", final=False)
    [event] = live.update(lines, 9.0, 9.0)
    assert (event.rule_id, event.outcome) == ("forbidden", "alert")
    assert "agent said 'not my problem'" in event.reason
    assert 5.0 < event.at <= 9.0 and event.created_at.tzinfo is not None
    lines[1] = line(1, Role.AGENT, 5.0, 10.0, "well that is not my problem sir")
    assert live.update(lines, 10.0, 10.0) == []
    assert live.update(lines, 11.0, 11.0) == []


def test_customer_cancel_fires_and_not_inside_other_words():
    live = checker()
    lines = [DISCLOSED, line(1, Role.CUSTOMER, 5.0, 8.0, "it was precancelled, fine")]
    assert alerts(live.update(lines, 8.0, 8.0)) == []
    lines.append(line(2, Role.CUSTOMER, 9.0, 12.0, "I want to CANCEL my account."))
    assert alerts(live.update(lines, 12.0, 12.0)) == ["escalation"]
    # the agent saying it is not the customer's escalation
    agent = checker()
    said = [DISCLOSED, line(1, Role.AGENT, 5.0, 8.0, "I can cancel that for you")]
    assert alerts(agent.update(said, 8.0, 8.0)) == []


def test_chinese_complaint_fires_on_chinese_lines():
    live = checker(language="zh")
    lines = [
        line(0, Role.AGENT, 0.5, 3.0, "您好，本次通话可能会被录音。"),
        line(1, Role.CUSTOMER, 4.0, 6.0, "我要 投訴 你们"),  # spaced, Traditional
    ]
    assert alerts(live.update(lines, 6.0, 6.0)) == ["escalation"]
    # a call that did not say its language is read as Chinese from its speech
    guessed = checker(language=None)
    assert alerts(guessed.update(lines, 6.0, 6.0)) == ["escalation"]
    assert alerts(guessed.update(lines, 40.0, 40.0)) == []  # disclosed in Chinese


def test_disclosure_said_at_12s_is_met_and_never_alerted():
    live = checker()
    lines = [line(0, Role.AGENT, 12.0, 15.0, "Before we start, this call may be recorded.")]
    assert alerts(live.update(lines, 15.0, 15.0)) == []
    assert alerts(live.update(lines, 45.0, 45.0)) == []
    assert alerts(live.finish(lines, 60.0)) == []


def test_missing_disclosure_alerts_at_30s_not_before():
    live = checker()
    lines = [line(0, Role.AGENT, 1.0, 4.0, "Hello, how can I help?")]
    for t in (5.0, 20.0, 29.9):
        assert alerts(live.update(lines, t, t)) == []
    [event] = live.update(lines, 30.0, 30.0)
    assert (event.rule_id, event.at) == ("disclosure", 30.0)
    assert "in the first 30 s" in event.reason
    assert live.update(lines, 31.0, 31.0) == []


def test_deadline_waits_for_a_line_that_started_in_time():
    live = checker()
    lines = [line(0, Role.AGENT, 27.0, 30.5, "and this call", final=False)]
    assert alerts(live.update(lines, 31.0, 31.0)) == []
    lines = [line(0, Role.AGENT, 27.0, 32.0, "and this call may be recorded")]
    assert alerts(live.update(lines, 32.0, 32.0)) == []


def test_silence_over_the_limit_fires_with_voice_activity():
    live = checker()
    lines = [DISCLOSED, line(1, Role.CUSTOMER, 5.0, 8.0, "my bill is wrong")]
    assert alerts(live.update(lines, 20.0, 8.0)) == []
    # voice without words yet (the decoder is behind): not silence
    assert alerts(live.update(lines, 29.0, 28.0)) == []
    assert alerts(live.update(lines, 40.0, 28.0)) == []
    [event] = live.update(lines, 48.5, 28.0)
    assert event.rule_id == "silence" and event.at == 48.5
    assert "nobody spoke for 20 s from 28 s" in event.reason
    assert live.update(lines, 60.0, 28.0) == []


def test_silence_between_lines_fires_when_seen_late():
    live = checker()
    lines = [DISCLOSED, line(1, Role.CUSTOMER, 30.0, 32.0, "hello? anyone?")]
    [event] = live.update(lines, 32.0)
    assert event.rule_id == "silence" and event.at == 30.0


def test_sentiment_drop_with_a_sentiment_model():
    model = FakeSentiment()
    live = checker(sentiment=model)
    lines = [
        DISCLOSED,
        line(1, Role.CUSTOMER, 5.0, 7.0, "great, thanks"),
        line(2, Role.CUSTOMER, 8.0, 9.0, "great service usually"),
        line(3, Role.CUSTOMER, 10.0, 12.0, "but this is awful"),
    ]
    assert alerts(live.update(lines, 12.0, 12.0)) == []
    lines.append(line(4, Role.CUSTOMER, 13.0, 15.0, "truly awful", final=False))
    assert alerts(live.update(lines, 15.0, 15.0)) == []  # growing lines are not scored
    lines[-1] = line(4, Role.CUSTOMER, 13.0, 16.0, "truly awful, really")
    [event] = live.update(lines, 16.0, 16.0)
    assert event.rule_id == "souring" and event.at == 16.0
    assert "-0.80 over their last 2 utterances" in event.reason
    assert sum(len(c) for c in model.calls) == 4  # each final line scored once


def test_sentiment_drop_without_a_model_is_skipped_with_one_note(caplog):
    live = checker()
    lines = [DISCLOSED, line(1, Role.CUSTOMER, 5.0, 7.0, "awful")]
    with caplog.at_level(logging.INFO, logger="qa.live"):
        live.update(lines, 7.0, 7.0)
        lines.append(line(2, Role.CUSTOMER, 8.0, 9.0, "awful again"))
        live.update(lines, 9.0, 9.0)
    notes = [r.getMessage() for r in caplog.records if "no sentiment model" in r.getMessage()]
    assert len(notes) == 1


def test_rules_of_other_teams_are_not_checked():
    rules, _ = check_text(
        "rules:\n  - {id: blue_only, type: phrase, phrases: [cancel], teams: [blue]}\n"
    )
    live = LiveChecker(info(team="red"), scorecard=None, alerts=rules)
    said = [line(0, Role.CUSTOMER, 1.0, 2.0, "cancel it")]
    assert live.update(said, 2.0) == []


# --------------------------------------------------------------------------- scorecard


def items(live: LiveChecker) -> dict[str, str]:
    return {i.item_id: i.state for i in live.items()}


def test_scorecard_items_decided_live_and_the_rest_left_for_the_end():
    live = checker(card=True)
    assert set(items(live).values()) == {"pending"}
    lines = [line(0, Role.AGENT, 1.0, 4.0, "Thank you for calling, this call may be recorded")]
    events = [e for e in live.update(lines, 4.0, 4.0) if e.kind == "item"]
    assert [(e.rule_id, e.outcome) for e in events] == [("greeting", "met")]
    assert 1.0 < events[0].at <= 4.0
    state = items(live)
    assert state["greeting"] == "met"
    assert state["no_blame"] == "pending"  # could still be said
    assert state["closing"] == "at_end" and state["empathy"] == "at_end"
    assert state["talk_over"] == "pending"
    assert state["greeting_and_blame"] == "pending"

    lines.append(line(1, Role.AGENT, 6.0, 9.0, "honestly that was your fault"))
    events = [e for e in live.update(lines, 9.0, 9.0) if e.kind == "item"]
    assert {(e.rule_id, e.outcome) for e in events} == {
        ("no_blame", "missed"),
        ("greeting_and_blame", "missed"),
    }
    assert live.update(lines, 10.0, 10.0) == []  # each item reported once

    events = live.finish(lines, 60.0)
    assert [(e.rule_id, e.outcome) for e in events if e.kind == "item"] == [("talk_over", "met")]
    state = items(live)
    assert state["closing"] == "at_end" and state["empathy"] == "at_end"
    empathy = next(i for i in live.items() if i.item_id == "empathy")
    assert "whole call" in empathy.reason


def test_windowed_phrase_missed_once_its_window_passed():
    live = checker(card=True)
    lines = [line(0, Role.AGENT, 2.0, 5.0, "Hello, this call may be recorded")]
    assert [e.rule_id for e in live.update(lines, 10.0, 10.0) if e.kind == "item"] == []
    events = [e for e in live.update(lines, 15.0, 15.0) if e.kind == "item"]
    assert [(e.rule_id, e.outcome, e.at) for e in events] == [
        ("greeting", "missed", 15.0),
        ("greeting_and_blame", "missed", 15.0),  # one part missed: the whole is
    ]


def test_growing_metric_decided_as_soon_as_it_crosses():
    live = checker(card=True)
    lines = [DISCLOSED]
    for k in range(2):  # the agent cuts in twice while the customer talks
        t = 10.0 + 10 * k
        lines += [
            line(2 * k + 1, Role.CUSTOMER, t, t + 6.0, "so the thing is that my bill went up"),
            line(2 * k + 2, Role.AGENT, t + 2.0, t + 4.0, "no no listen to me please"),
        ]
    events = live.update(lines, 30.0, 30.0)
    assert ("talk_over", "missed") in [(e.rule_id, e.outcome) for e in events]


def test_update_is_fast_when_nothing_changed():
    live = checker(card=True, sentiment=FakeSentiment())
    lines = []
    for k in range(300):  # ten minutes of turns
        role = Role.AGENT if k % 2 else Role.CUSTOMER
        lines.append(line(k, role, 2.0 * k, 2.0 * k + 1.8, f"turn {k} about the bill and plan"))
    live.update(lines, 600.0, 600.0)
    best = min(_timed(live, lines, 600.0 + n) for n in range(5))
    assert best < 0.05


def _timed(live: LiveChecker, lines: list[LiveLine], elapsed: float) -> float:
    start = time.perf_counter()
    live.update(lines, elapsed, elapsed)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- post-call


def stored(lines: list[LiveLine], duration: float, model: FakeSentiment) -> CallResult:
    utterances = [
        Utterance(
            speaker=ln.track,
            role=ln.role,
            start=ln.start,
            end=ln.end,
            text=ln.text,
            sentiment=model.score([ln.text], "en")[0],
        )
        for ln in lines
    ]
    transcript = Transcript(
        call_id="live-1", language="en", duration=duration, utterances=utterances
    )
    from qa.scoring.metrics import compute_metrics

    return CallResult(
        meta=CallMeta(call_id="live-1", agent_id="A1", team="red", started_at=START),
        transcript=transcript,
        score=CallScore(
            call_id="live-1",
            scorecard_id="card",
            scorecard_version="1",
            total=90.0,
            pass_mark=70,
            passed=True,
            metrics=compute_metrics(transcript),
        ),
        pipeline_version="p1",
        scorecard_version="1",
        created_at=START,
    )


CALLS = {
    "quiet_then_angry": [
        line(0, Role.AGENT, 1.0, 3.0, "Hello, how can I help?"),
        line(1, Role.CUSTOMER, 4.0, 6.0, "great, thanks, my bill"),
        line(2, Role.CUSTOMER, 30.0, 33.0, "this is awful, I will cancel"),
        line(3, Role.CUSTOMER, 34.0, 36.0, "awful, get me a lawyer"),
        line(4, Role.AGENT, 37.0, 40.0, "calm down please"),
    ],
    "clean": [
        line(0, Role.AGENT, 1.0, 4.0, "Hello, this call may be recorded."),
        line(1, Role.CUSTOMER, 5.0, 7.0, "great, I have a question about my plan"),
        line(2, Role.AGENT, 8.0, 12.0, "sure, happy to help with your plan"),
        line(3, Role.CUSTOMER, 13.0, 40.0, "thanks, it was precancelled by mistake"),
    ],
    "zh": [
        line(0, Role.AGENT, 1.0, 4.0, "您好，请问有什么可以帮您？"),
        line(1, Role.CUSTOMER, 5.0, 8.0, "我要投诉你们的服务"),
        line(2, Role.AGENT, 9.0, 40.0, "好的，我帮您记录一下"),
    ],
}


@pytest.mark.parametrize("name", list(CALLS))
def test_same_alerts_live_and_on_the_stored_call(name):
    lines = CALLS[name]
    model = FakeSentiment()
    language = "zh" if name == "zh" else "en"
    live = checker(sentiment=model, language=language)
    fired: list[str] = []
    end = max(ln.end for ln in lines)
    t = 0.0
    while t <= end:  # once a second, with the lines heard so far
        heard = [ln for ln in lines if ln.start <= t]
        shown = [
            ln if ln.end <= t else ln.model_copy(update={"end": t, "final": False}) for ln in heard
        ]
        fired += alerts(live.update(shown, t))
        t += 1.0
    fired += alerts(live.finish(lines, end))
    assert len(fired) == len(set(fired))  # each at most once

    result = stored(lines, end, FakeSentiment())
    if language == "zh":
        result.transcript.language = "zh"
    rules, _ = check_text(ALERTS)
    post = {h.rule_id for h in Evaluator(rules, MemoryHistory()).evaluate(result)}
    assert set(fired) == post - {"low"}
    if name == "quiet_then_angry":
        assert post == {"escalation", "forbidden", "disclosure", "silence", "souring"}
    if name == "clean":
        assert post == set()


def test_bundled_rules_include_the_live_examples():
    rules = load_rules(PACKAGE_RULES)
    types = {r.id: r.type for r in rules.rules}
    assert types["agent_forbidden_phrase"] == "phrase"
    assert types["recording_disclosure"] == "missing_phrase"
    assert types["long_silence"] == "silence"
    assert types["customer_souring"] == "sentiment_drop"
    escalation = next(r for r in rules.rules if r.id == "escalation_words")
    assert "cancel" in escalation.phrases  # type: ignore[union-attr]


def test_silence_on_a_stored_call_needs_metrics(caplog):
    rules, _ = check_text("rules:\n  - {id: quiet, type: silence, over: 10}\n")
    result = stored(CALLS["quiet_then_angry"], 40.0, FakeSentiment())
    evaluator = Evaluator(rules, MemoryHistory())
    assert [h.rule_id for h in evaluator.evaluate(result)] == ["quiet"]
    result.score.metrics = None
    with caplog.at_level(logging.INFO, logger="qa.alerts"):
        assert evaluator.evaluate(result) == []
        assert evaluator.evaluate(result) == []
    assert sum("no call metrics" in r.getMessage() for r in caplog.records) == 1
    hold = CallMetrics(
        duration=40.0, silences=[Segment(start=6.0, end=30.0)], holds=[Segment(start=6, end=30)]
    )
    result.score.metrics = hold
    dead_air_only, _ = check_text("rules:\n  - {id: q, type: silence, over: 10, holds: false}\n")
    assert Evaluator(dead_air_only, MemoryHistory()).evaluate(result) == []


# --------------------------------------------------------------------------- delivery


def test_live_alert_and_post_call_evaluation_send_once_in_total(tmp_path: Path):
    wf = Workflow(
        f"sqlite:///{tmp_path / 'workflow.db'}",
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    sent: list[tuple[str, str]] = []

    def send(url: str, title: str, body: str) -> None:
        sent.append((url, title))

    rules, _ = check_text(ALERTS)
    engine = AlertEngine(rules, wf, send=send, sleep=lambda s: None)
    live = checker()
    lines = [
        DISCLOSED,
        line(1, Role.CUSTOMER, 5.0, 8.0, "I will cancel today"),
        line(2, Role.CUSTOMER, 9.0, 40.0, "and that is all I have to say about it"),
    ]
    hits = live.hits(live.update(lines, 40.0, 40.0))
    assert [(h.rule_id, h.key, h.recipients) for h in hits] == [
        ("escalation", "live-1", ["json://127.0.0.1:9/"])
    ]
    assert [d.status for d in engine.deliver(hits)] == ["sent"]

    after = engine.process(stored(lines, 40.0, FakeSentiment()))
    assert [(d.hit.rule_id, d.status) for d in after] == [("escalation", "skipped")]
    assert len(sent) == 1
