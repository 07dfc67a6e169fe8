"""Call metrics on scripted transcripts whose timing is known exactly."""

from __future__ import annotations

import pytest

from qa.rules.scripted import ScriptedTurn, scripted_transcript
from qa.schema import Role, Transcript, Utterance
from qa.scoring.metrics import compute_metrics

A, C = Role.AGENT, Role.CUSTOMER


def utt(role: Role, start: float, end: float, text: str = "some words here") -> Utterance:
    return Utterance(speaker=role.value, role=role, start=start, end=end, text=text)


def transcript(utts: list[Utterance], language: str = "en", duration: float = 0.0) -> Transcript:
    return Transcript(
        call_id="m",
        language=language,
        duration=duration or max(u.end for u in utts) + 1,
        utterances=utts,
    )


def test_silence_hold_and_dead_air_are_told_apart():
    t = transcript(
        [
            utt(A, 0.0, 3.0, "Thank you for calling."),
            utt(C, 3.5, 6.0, "Hi, my bill is wrong."),
            utt(A, 6.5, 9.0, "Let me put you on hold while I check."),
            utt(A, 49.0, 52.0, "Thanks for holding."),  # 40 s announced hold
            utt(C, 52.5, 55.0, "Okay."),
            utt(A, 90.0, 93.0, "Right, it is fixed."),  # 35 s unannounced: dead air
            utt(C, 93.5, 94.5, "Thanks."),
        ]
    )
    m = compute_metrics(t)
    assert [(s.start, s.end) for s in m.holds] == [(9.0, 49.0)]
    assert m.hold_total == pytest.approx(40.0)
    assert [(s.start, s.end) for s in m.dead_air] == [(55.0, 90.0)]
    assert m.longest_dead_air == pytest.approx(35.0)
    assert m.longest_silence == pytest.approx(40.0)
    assert m.silence_total == pytest.approx(75.0)  # pauses under 2 s are turn-taking


def test_very_long_unannounced_silence_is_a_hold_and_dead_air():
    m = compute_metrics(transcript([utt(A, 0, 2, "One thing."), utt(A, 140, 142, "Back.")]))
    assert len(m.holds) == 1 and len(m.dead_air) == 1
    assert m.longest_dead_air == pytest.approx(138.0)


def test_hold_announcement_misheard_by_asr_still_makes_a_hold():
    """ "I'm putting you on hold" heard as "on post": with the silence after it, a hold."""
    t = transcript(
        [
            utt(A, 0, 3, "Right, I'm putting you on post now."),
            utt(A, 30, 32, "Okay, I have the plan."),
            utt(A, 32.5, 34.5, "I'll put you on the new plan."),
            utt(C, 35, 36, "Great."),
        ]
    )
    m = compute_metrics(t)
    assert [(s.start, s.end) for s in m.holds] == [(3.0, 30.0)] and m.dead_air == []


def test_chinese_hold_announcement():
    t = transcript(
        [utt(A, 0, 3, "我帮您查一下，请您稍等。"), utt(A, 43, 45, "感谢您的耐心等待。")],
        language="zh",
    )
    m = compute_metrics(t)
    assert len(m.holds) == 1 and m.dead_air == []


def test_overtalk_and_interruptions_by_role():
    t = transcript(
        [
            utt(C, 0.0, 6.0, "I have been trying to explain this problem for ages now"),
            utt(A, 4.0, 8.0, "Yes but you need to restart the router first"),  # agent cuts in
            utt(C, 8.5, 12.0, "I did that already twice"),
            utt(A, 11.0, 11.3, "mm"),  # back-channel: not an interruption
            utt(A, 12.5, 16.0, "Then I will send an engineer"),
            utt(C, 15.0, 18.0, "When will the engineer come"),  # customer cuts in
        ]
    )
    m = compute_metrics(t)
    assert m.interruptions == {"agent": 1, "customer": 1}
    assert [(s.start, s.end) for s in m.interruption_spans["agent"]] == [(4.0, 6.0)]
    assert m.overtalk_total == pytest.approx(2.0 + 0.3 + 1.0)


def test_overlap_at_the_very_end_of_a_turn_is_not_an_interruption():
    t = transcript([utt(C, 0.0, 5.0, "That is everything"), utt(A, 4.9, 8.0, "Great, thanks")])
    assert compute_metrics(t).interruptions == {}


def test_talk_share_rate_first_response_and_latency():
    turns = [
        ScriptedTurn(role=C, text="Hello is anyone there", pause_before=1.0),
        ScriptedTurn(role=A, text="Yes hello thank you for calling", pause_before=2.0),
        ScriptedTurn(role=C, text="I need help", pause_before=0.5),
        ScriptedTurn(role=A, text="Of course", pause_before=1.0),
    ]
    t = scripted_transcript(turns)
    m = compute_metrics(t)
    agent = [u for u in t.utterances if u.role == A]
    assert m.first_agent_response == pytest.approx(agent[0].start)
    assert m.mean_response_latency == pytest.approx(1.5, abs=0.01)
    talk_a = sum(u.end - u.start for u in agent)
    assert m.talk_time["agent"] == pytest.approx(talk_a, abs=0.01)
    assert m.talk_share["agent"] + m.talk_share["customer"] == pytest.approx(1.0)
    assert m.speaking_rate_wpm["agent"] == pytest.approx(8 / (talk_a / 60), rel=0.01)


def test_chinese_rate_counts_characters():
    t = transcript([utt(A, 0, 6, "您好，欢迎致电北风电信。")], language="zh")
    assert compute_metrics(t).speaking_rate_wpm["agent"] == pytest.approx(10 / 0.1)


def test_roles_from_the_assignment_when_utterances_have_none():
    t = transcript(
        [
            Utterance(speaker="S1", start=0, end=2, text="hello"),
            Utterance(speaker="S0", start=3, end=5, text="hi there"),
        ]
    )
    t.roles.speaker_roles = {"S1": A, "S0": C}
    m = compute_metrics(t)
    assert m.first_agent_response == 0 and set(m.talk_time) == {"agent", "customer"}


def test_empty_transcript():
    m = compute_metrics(Transcript(call_id="e", language="en", duration=12.0))
    assert m.duration == 12.0 and m.silences == [] and m.first_agent_response is None
