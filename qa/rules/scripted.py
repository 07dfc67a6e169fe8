"""Transcripts from scripted turns, for scoring checks and the scoring benchmark.

Timing follows the turns exactly (speech length from the text, a pause or a hold before
each turn, negative pauses for talking over), so a rule's evidence time can be checked
against the script without audio or ASR in between.
"""

from __future__ import annotations

import random

from pydantic import BaseModel

from qa.rules.text import is_cjk
from qa.schema import Role, RoleAssignment, Transcript, Utterance, Word

CHARS_PER_SECOND = {False: 14.0, True: 4.5}  # English ~170 wpm; Mandarin ~270 characters/min


class ScriptedTurn(BaseModel):
    role: Role
    text: str
    pause_before: float = 0.4  # negative: starts before the previous turn ends (overtalk)
    hold: float = 0.0  # a silence before this turn (a hold or dead air)


def _words(text: str, start: float, end: float, speaker: str, cjk: bool) -> list[Word]:
    if cjk:
        pieces: list[str] = []
        for ch in text:
            if ch.isspace():
                continue
            if pieces and not ch.isalnum():
                pieces[-1] += ch
            else:
                pieces.append(ch)
    else:
        pieces = [" " + w for w in text.split()]
    total = sum(len(p) for p in pieces) or 1
    words, t = [], start
    for p in pieces:
        d = (end - start) * len(p) / total
        words.append(Word(start=round(t, 3), end=round(t + d, 3), text=p, speaker=speaker))
        t += d
    return words


def scripted_transcript(
    turns: list[ScriptedTurn], *, call_id: str = "scripted", language: str = "en"
) -> Transcript:
    """Lay turns out in time: agent on channel 0, customer on channel 1, roles known."""
    cjk = is_cjk(language)
    utterances: list[Utterance] = []
    t = 0.5
    for turn in turns:
        start = max(0.0, t + turn.hold + turn.pause_before)
        end = start + max(0.4, len(turn.text) / CHARS_PER_SECOND[cjk])
        speaker = turn.role.value
        utterances.append(
            Utterance(
                speaker=speaker,
                role=turn.role,
                start=round(start, 3),
                end=round(end, 3),
                text=turn.text,
                words=_words(turn.text, start, end, speaker, cjk),
                channel=0 if turn.role == Role.AGENT else 1,
            )
        )
        t = max(t, end)
    utterances.sort(key=lambda u: u.start)
    for i, u in enumerate(utterances):
        for v in utterances[i + 1 :]:
            if v.start >= u.end:
                break
            if v.speaker != u.speaker:
                u.overlap = v.overlap = True
    return Transcript(
        call_id=call_id,
        language=language,
        duration=round(t + 1.0, 3),
        channels=2,
        speaker_source="channels",
        utterances=utterances,
        roles=RoleAssignment(
            speaker_roles={"agent": Role.AGENT, "customer": Role.CUSTOMER},
            method="configured",
            confidence=1.0,
        ),
        asr_model="script",
        asr_confidence=1.0,
    )


_EN_BODY = [
    ("customer", "I have a question about the charges on my last bill, there is an extra fee."),
    ("agent", "I can see a roaming charge of twelve dollars from the fourteenth of March."),
    ("customer", "I was not travelling then, this is really frustrating, where does it come from?"),
    ("agent", "Let me look at the usage records for that day to see what happened."),
    ("customer", "Also my internet has been slow in the evenings for about two weeks."),
    ("agent", "I understand, slow evenings are frustrating, let me run a line test."),
    ("customer", "Okay, I can wait while you check it."),
    ("agent", "The line test shows some noise, I will book an engineer visit for Thursday."),
    ("customer", "Thursday morning works for me, is there a cost for the visit?"),
    ("agent", "No, the visit is free because the fault is on our side of the network."),
    ("customer", "Good, and what about the roaming charge then?"),
    ("agent", "I have removed the roaming charge and you will see the credit on your next bill."),
]
_ZH_BODY = [
    ("customer", "我想问一下我上个月的账单，多了一笔费用。"),
    ("agent", "我看到有一笔十二元的漫游费，是三月十四号产生的。"),
    ("customer", "那天我没有出门，不知道这笔钱是怎么来的，我很生气。"),
    ("agent", "我帮您查一下那天的使用记录，看看是什么情况。"),
    ("customer", "还有最近两个星期晚上网速特别慢。"),
    ("agent", "理解您的心情，晚上网速慢确实影响使用，我给您做一个线路检测。"),
    ("customer", "好的，我等一下。"),
    ("agent", "检测显示线路有干扰，我给您预约周四上门维修。"),
    ("customer", "周四上午可以，上门要收费吗？"),
    ("agent", "不收费，因为是我们网络这边的问题。"),
    ("customer", "那漫游费怎么处理呢？"),
    ("agent", "漫游费已经给您退了，下个月账单里会看到这笔退款。"),
]
_EN_OPEN = [
    ("agent", "Thank you for calling Northwind Telecom, my name is Sarah, how can I help you?"),
    ("agent", "Please note this call may be recorded for quality and training purposes."),
    ("customer", "Hi, I need help with my account please."),
    ("agent", "Of course, can I have your date of birth and postcode to verify your identity?"),
    ("customer", "Sure, it is the fifth of May nineteen eighty, postcode N W one."),
    ("agent", "Thank you, you have been verified."),
]
_EN_CLOSE = [
    ("agent", "May I put you on hold for a moment while I confirm the engineer booking?"),
    ("customer", "Yes, that is fine."),
    ("agent", "Thank you for holding, the engineer is booked for Thursday morning."),
    ("agent", "Has that resolved everything for you? Is there anything else I can help with?"),
    ("customer", "No, that is all, thanks."),
    ("agent", "Thank you for calling Northwind Telecom, have a nice day."),
]
_ZH_OPEN = [
    ("agent", "您好，欢迎致电北风电信，我是客服小王，工号一零二四，请问有什么可以帮您？"),
    ("agent", "为了保证服务质量，本次通话将会被录音。"),
    ("customer", "你好，我想咨询一下我的账户。"),
    ("agent", "好的，请您提供一下身份证后四位和机主姓名，我帮您核实身份。"),
    ("customer", "后四位是三三一八，机主叫李明。"),
    ("agent", "好的，身份核实通过，谢谢您。"),
]
_ZH_CLOSE = [
    ("agent", "我需要帮您确认一下预约，请您稍等，可以吗？"),
    ("customer", "可以。"),
    ("agent", "感谢您的耐心等待，周四上午的维修已经预约好了。"),
    ("agent", "请问问题解决了吗？还有其他可以帮您的吗？"),
    ("customer", "没有了，谢谢。"),
    ("agent", "感谢您致电北风电信，祝您生活愉快，再见。"),
]


def long_call(
    minutes: float = 5.0, *, language: str = "en", seed: int = 0, call_id: str | None = None
) -> Transcript:
    """A clean call of about `minutes`: the usual opening, a body repeated to length, a hold,
    the resolution and closing. The benchmark's input; deterministic for a seed."""
    rng = random.Random(seed)
    cjk = is_cjk(language)
    opening, body, closing = (
        (_ZH_OPEN, _ZH_BODY, _ZH_CLOSE) if cjk else (_EN_OPEN, _EN_BODY, _EN_CLOSE)
    )
    turns = [
        ScriptedTurn(role=Role(r), text=t, pause_before=rng.uniform(0.3, 1.2)) for r, t in opening
    ]
    seconds = sum(len(t.text) / CHARS_PER_SECOND[cjk] + t.pause_before for t in turns)
    target = minutes * 60.0 - 45.0  # the hold and the closing
    while seconds < target:
        for r, t in body:
            turn = ScriptedTurn(role=Role(r), text=t, pause_before=rng.uniform(0.2, 1.5))
            turns.append(turn)
            seconds += len(t) / CHARS_PER_SECOND[cjk] + turn.pause_before
            if seconds >= target:
                break
    for i, (r, t) in enumerate(closing):
        turns.append(
            ScriptedTurn(
                role=Role(r),
                text=t,
                pause_before=rng.uniform(0.3, 1.0),
                hold=25.0 if i == 2 else 0.0,
            )
        )
    return scripted_transcript(
        turns, call_id=call_id or f"bench-{language}-{seed}", language=language
    )
