"""Agent / customer decision: configured mapping, scored evidence, confidence, swap."""

from __future__ import annotations

from qa.asr.roles import assign_roles, swap_roles
from qa.schema import CallMeta, Direction, Role, Transcript, Utterance


def utt(speaker, start, end, text):
    return Utterance(speaker=speaker, start=start, end=end, text=text)


EN_CALL = [
    utt("A", 0.0, 1.0, "Hello?"),
    utt("B", 1.2, 5.0, "Thank you for calling Northwind, my name is Sam, how can I help?"),
    utt("A", 5.5, 9.0, "Hi, I'm calling about a charge on my bill."),
    utt("B", 9.5, 12.0, "Sure. Can you confirm your date of birth for me?"),
    utt("A", 12.5, 13.5, "March third, eighty-four."),
]

ZH_CALL = [
    utt("S1", 0.0, 3.0, "您好，很高兴为您服务，我的工号是1234，请问有什么可以帮您？"),
    utt("S2", 3.2, 6.0, "我想查一下我的话费。"),
    utt("S1", 6.5, 9.0, "好的，请先核实一下您的身份证号码。"),
    utt("S2", 9.2, 10.0, "好的。"),
]


def test_english_agent_found_from_script_even_when_customer_speaks_first():
    roles = assign_roles(EN_CALL, CallMeta(call_id="x"))
    assert roles.method == "scored"
    assert roles.speaker_roles == {"B": Role.AGENT, "A": Role.CUSTOMER}
    assert roles.confidence > 0.9
    text = "\n".join(roles.evidence)
    assert "thank you for calling" in text.lower() and "date of birth" in text
    assert "A spoke first" in text


def test_chinese_agent_found_from_script():
    roles = assign_roles(ZH_CALL, None)
    assert roles.speaker_roles == {"S1": Role.AGENT, "S2": Role.CUSTOMER}
    assert roles.confidence > 0.9
    assert any("工号" in e for e in roles.evidence)


def test_chinese_agent_found_from_phrases_that_survive_asr_errors():
    """Mandarin ASR on telephone audio garbles most of the script; the apology, the
    security preface, "不客气" and "您的来电" come through and still mark the agent."""
    heard = [
        utt("S1", 0.0, 9.0, "您抱, 万元之天被分天心, 或是可负小玩"),
        utt("S2", 9.5, 14.0, "或是个月化, 被便知多疑贷多愉快"),
        utt("S1", 14.5, 25.0, "最长抱歉被您太爱不便, 为了保护您的长护"),
        utt("S2", 25.5, 27.0, "好,就好,谢谢您"),
        utt("S1", 27.5, 30.0, "不客气,千万您的问题决了吗?"),
        utt("S1", 30.5, 33.0, "当先您的来电,祝您神负虐快,再见"),
    ]
    roles = assign_roles(heard, None)
    assert roles.speaker_roles == {"S1": Role.AGENT, "S2": Role.CUSTOMER}
    assert roles.confidence > 0.9
    assert "no script phrase" not in "\n".join(roles.evidence)


def test_no_script_evidence_gives_low_confidence():
    chat = [
        utt("A", 0, 2, "Hey, how are things?"),
        utt("B", 2.5, 5, "Not bad, and you?"),
        utt("A", 5.5, 7, "Fine, thanks."),
    ]
    roles = assign_roles(chat, CallMeta(call_id="x"))
    assert roles.confidence < 0.4
    assert roles.speaker_roles["A"] is Role.AGENT  # first speaker on an inbound call


def test_outbound_call_first_speaker_is_the_customer():
    chat = [utt("A", 0, 1, "Hello?"), utt("B", 1.5, 3, "Hi there."), utt("A", 3.5, 4, "Yes?")]
    roles = assign_roles(chat, CallMeta(call_id="x", direction=Direction.OUTBOUND))
    assert roles.speaker_roles == {"A": Role.CUSTOMER, "B": Role.AGENT}
    assert roles.confidence < 0.4


def test_configured_channel_mapping_wins_over_evidence():
    calls = [
        utt("ch0", 0, 3, "I'm calling about my order."),
        utt("ch1", 3, 6, "Thank you for calling, how can I help?"),
    ]
    meta = CallMeta(call_id="x", channel_roles={0: Role.AGENT, 1: Role.CUSTOMER})
    roles = assign_roles(calls, meta, channel_speakers={0: "ch0", 1: "ch1"})
    assert roles.method == "configured" and roles.confidence == 1.0
    assert roles.speaker_roles == {"ch0": Role.AGENT, "ch1": Role.CUSTOMER}
    # one channel configured: the other one is the other party
    meta = CallMeta(call_id="x", channel_roles={1: Role.AGENT})
    roles = assign_roles(calls, meta, channel_speakers={0: "ch0", 1: "ch1"})
    assert roles.speaker_roles == {"ch0": Role.CUSTOMER, "ch1": Role.AGENT}
    # a mapping without channels (mono call) is not applicable: evidence decides
    roles = assign_roles(calls, CallMeta(call_id="x", channel_roles={0: Role.CUSTOMER}))
    assert roles.method == "scored" and roles.speaker_roles["ch1"] is Role.AGENT


def test_empty_and_single_speaker():
    assert assign_roles([], None).speaker_roles == {}
    assert assign_roles([], None).confidence == 0.0
    solo = assign_roles([utt("S0", 0, 2, "Thank you for calling, how may I help?")], None)
    assert solo.speaker_roles == {"S0": Role.AGENT}
    # one voice and no script either way: the agent (every call has one), confidence 0
    bare = assign_roles([utt("S0", 0, 2, "Hello, is anyone there?")], None)
    assert bare.speaker_roles == {"S0": Role.AGENT} and bare.confidence == 0.0
    assert "only voice" in bare.evidence[0]
    caller = assign_roles([utt("S0", 0, 2, "Hi, I'm calling about my bill.")], None)
    assert caller.speaker_roles == {"S0": Role.UNKNOWN} and caller.confidence == 0.0


def test_swap_roles_for_a_reviewer():
    utts = [u.model_copy() for u in EN_CALL]
    roles = assign_roles(utts, None)
    for u in utts:
        u.role = roles.speaker_roles[u.speaker]
    t = Transcript(call_id="x", language="en", duration=14.0, utterances=utts, roles=roles)
    swapped = swap_roles(t)
    assert swapped.roles.method == "swapped" and swapped.roles.confidence == 1.0
    assert swapped.roles.speaker_roles == {"A": Role.AGENT, "B": Role.CUSTOMER}
    assert [u.role for u in swapped.utterances] == [Role.AGENT, Role.CUSTOMER] * 2 + [Role.AGENT]
    assert t.roles.speaker_roles["B"] is Role.AGENT  # the original is untouched
    assert swap_roles(swapped).roles.speaker_roles == roles.speaker_roles
