"""Which speaker is the agent: configured channel mapping first, otherwise scored evidence.

Scoring every item of a scorecard against the wrong party is the worst silent failure of a
QA product, so the decision carries a confidence and the evidence a reviewer can check, and
`swap_roles` lets that reviewer fix it.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass

from qa.schema import CallMeta, Direction, Role, RoleAssignment, Transcript, Utterance


@dataclass(frozen=True)
class Cue:
    """A phrase that one party says and the other rarely does; weight is log-odds-like."""

    name: str
    pattern: re.Pattern[str]
    weight: float  # > 0: agent evidence, < 0: customer evidence


def _en(name: str, pattern: str, weight: float) -> Cue:
    return Cue(name, re.compile(pattern, re.IGNORECASE), weight)


def _zh(name: str, pattern: str, weight: float) -> Cue:
    return Cue(name, re.compile(pattern), weight)


CUES: tuple[Cue, ...] = (
    # agent script: greeting, introduction, offer of help, identity checks, hold, closing
    _en("thank you for calling", r"\bthanks?(?: you)? for (?:calling|contacting)\b", 3.0),
    _en("greeting with company", r"\b(?:welcome to|you(?:'ve| have) reached)\b", 2.5),
    _en(
        "my name is",
        r"\bmy name is\b|\bthis is \w+(?: \w+)? (?:from|at|with)\b|"
        r"\b(?:speaking|calling) from\b",
        1.5,
    ),
    _en(
        "how can I help",
        r"\bhow (?:can|may|could) (?:i|we) (?:help|assist)\b|"
        r"\bwhat can i do for you\b",
        2.5,
    ),
    _en(
        "identity check",
        r"\b(?:date of birth|d\.o\.b|security question|verify (?:your|the) "
        r"(?:identity|account|address)|for (?:security|verification) purposes|"
        r"(?:first|last) line of (?:your|the) address|postcode on the account)\b",
        2.0,
    ),
    _en("can you confirm", r"\b(?:can|could) you (?:please )?(?:confirm|verify|spell)\b", 1.5),
    _en(
        "hold",
        r"\b(?:put|place) you on (?:a (?:brief|short) )?hold\b|"
        r"\bthank you for (?:holding|waiting|your patience)\b|\bbear with me\b",
        1.5,
    ),
    _en("anything else", r"\b(?:is there )?anything else (?:i|we) can (?:help|do|assist)\b", 2.0),
    _en(
        "apology for the inconvenience",
        r"\b(?:sorry|apologi[sz]e) for (?:the|any) "
        r"(?:inconvenience|wait|delay)\b",
        1.0,
    ),
    # customer side: the reason for the call, their own things
    _en(
        "caller's reason",
        r"\bi(?:'m| am) calling (?:about|because|to|regarding|for)\b|"
        r"\bi(?: would|'d) like to (?:cancel|return|complain|know|change|report)\b",
        -2.0,
    ),
    _en(
        "caller's problem",
        r"\b(?:i have|i've got|there's) (?:a|an) (?:problem|issue)\b|"
        r"\bcan you help me\b",
        -1.5,
    ),
    # Chinese agent script
    _zh("您好 (greeting)", r"您好", 1.0),
    _zh("很高兴为您服务", r"很高兴为您服务|为您服务", 3.0),
    _zh("工号 (staff number)", r"工号", 3.0),
    _zh("请问有什么可以帮您", r"(?:请问)?有什么(?:可以|能)(?:帮|为)您", 3.0),
    _zh("感谢来电", r"感谢(?:您的)?来电|欢迎致电", 3.0),
    _zh("核实 (verification)", r"核实|核对|验证一下", 2.0),
    _zh("身份证 (ID check)", r"身份证(?:号)?(?:码)?|出生日期|预留(?:的)?手机", 1.5),
    _zh("请稍等 (hold)", r"请(?:您)?稍等|请稍候", 1.5),
    _zh("还有其他问题吗", r"还有(?:什么|其他)(?:问题|可以帮)", 2.0),
    _zh("问题解决了吗", r"问题(?:已经)?(?:得到)?解?决了吗", 2.0),
    _zh("您的来电 (your call)", r"您的来电", 2.0),
    _zh("为了保护您的 (security preface)", r"为了保护您的", 1.5),
    _zh("给您带来不便 (apology)", r"(?:抱歉|对不起|不好意思).{0,8}不便|给您带来(?:的)?不便", 1.0),
    _zh("不客气 (reply to thanks)", r"不客气|不用客气", 1.0),
    # Chinese customer side
    _zh("我想/我要 (caller's request)", r"我(?:想|要)(?:问|投诉|退|取消|查|办)", -1.5),
    _zh("投诉 (complaint)", r"我要投诉|我投诉", -1.5),
)

FIRST_SPEAKER_WEIGHT = 1.0  # the agent answers inbound calls; the customer answers outbound ones
TALK_SHARE_WEIGHT = 1.0  # agents usually talk more; weak, so it only breaks near-ties
CONFIDENCE_SCALE = 3.0  # margin at which confidence is tanh(1) = 0.76
NO_SCRIPT_MAX_CONFIDENCE = 0.3  # turn order and talk share alone are weak evidence


def _configured(
    meta: CallMeta | None, channel_speakers: dict[int, str] | None
) -> RoleAssignment | None:
    if not meta or not meta.channel_roles or not channel_speakers:
        return None
    roles: dict[str, Role] = {}
    for channel, speaker in channel_speakers.items():
        if channel in meta.channel_roles:
            roles[speaker] = meta.channel_roles[channel]
    if not roles:
        return None
    # two channels with only one configured: the other one is the other party
    missing = [s for s in channel_speakers.values() if s not in roles]
    if len(missing) == 1 and len(roles) == 1:
        (known,) = roles.values()
        other = {Role.AGENT: Role.CUSTOMER, Role.CUSTOMER: Role.AGENT}.get(known, Role.UNKNOWN)
        roles[missing[0]] = other
    mapping = ", ".join(f"{s}={r.value}" for s, r in sorted(roles.items()))
    return RoleAssignment(
        speaker_roles=roles,
        method="configured",
        confidence=1.0,
        evidence=[f"configured channel roles: {mapping}"],
    )


def score_speakers(
    utterances: list[Utterance], meta: CallMeta | None = None
) -> tuple[dict[str, float], dict[str, list[str]], int]:
    """Agent-likeness of each speaker, the evidence behind it, and how many script or
    customer phrases were found (the strong evidence)."""
    scores: dict[str, float] = defaultdict(float)
    evidence: dict[str, list[str]] = defaultdict(list)
    talk: dict[str, float] = defaultdict(float)
    for u in utterances:
        scores[u.speaker] += 0.0
        talk[u.speaker] += max(0.0, u.end - u.start)
    seen: set[tuple[str, str]] = set()
    for u in utterances:
        for cue in CUES:
            if (u.speaker, cue.name) in seen:
                continue  # a phrase counts once per speaker: repetition is not more evidence
            match = cue.pattern.search(u.text)
            if match:
                seen.add((u.speaker, cue.name))
                scores[u.speaker] += cue.weight
                side = "agent script" if cue.weight > 0 else "customer phrase"
                evidence[u.speaker].append(
                    f'{u.speaker} said "{match.group(0)}" at {u.start:.1f} s '
                    f"({side}: {cue.name}, {cue.weight:+.1f})"
                )
    if utterances and len(scores) > 1:
        first = min(utterances, key=lambda u: u.start).speaker
        outbound = meta is not None and meta.direction == Direction.OUTBOUND
        weight = -FIRST_SPEAKER_WEIGHT if outbound else FIRST_SPEAKER_WEIGHT
        scores[first] += weight
        why = "outbound call: the customer answers" if outbound else "inbound: the agent answers"
        evidence[first].append(f"{first} spoke first ({why}, {weight:+.1f})")
        total = sum(talk.values()) or 1.0
        for speaker, seconds in talk.items():
            share = seconds / total
            bonus = TALK_SHARE_WEIGHT * (share - 1 / len(talk)) * 2
            scores[speaker] += bonus
            evidence[speaker].append(f"{speaker} talk share {share:.0%} ({bonus:+.2f})")
    return dict(scores), dict(evidence), len(seen)


def assign_roles(
    utterances: list[Utterance],
    meta: CallMeta | None,
    *,
    channel_speakers: dict[int, str] | None = None,
) -> RoleAssignment:
    """Configured mapping (stereo, `meta.channel_roles`) first; otherwise the best-scoring
    speaker is the agent and everyone else a customer, with confidence from the margin."""
    configured = _configured(meta, channel_speakers)
    if configured:
        return configured
    scores, evidence, phrases = score_speakers(utterances, meta)
    if not scores:
        return RoleAssignment(
            method="default", confidence=0.0, evidence=["no speech: roles undecided"]
        )
    ranked = sorted(scores, key=lambda s: (-scores[s], s))
    best = ranked[0]
    if len(ranked) == 1:
        # One voice only: every call has an agent and the customer may barely speak, so it
        # is the agent unless it talks like a caller; without script phrases the confidence
        # is 0, which flags the call for a person.
        score = scores[best]
        role = Role.AGENT if score >= 0 else Role.UNKNOWN
        lines = evidence.get(best, []) or [
            f"{best} is the only voice found and says no script phrase: taken as the agent"
        ]
        return RoleAssignment(
            speaker_roles={best: role},
            method="scored",
            confidence=round(math.tanh(max(score, 0.0) / CONFIDENCE_SCALE), 3),
            evidence=lines,
        )
    margin = scores[best] - scores[ranked[1]]
    roles = {s: (Role.AGENT if s == best else Role.CUSTOMER) for s in ranked}
    confidence = math.tanh(margin / CONFIDENCE_SCALE)
    lines = [f"agent = {best}: score {scores[best]:+.2f} vs {scores[ranked[1]]:+.2f} ({ranked[1]})"]
    if not phrases:
        confidence = min(confidence, NO_SCRIPT_MAX_CONFIDENCE)
        lines.append("no script phrase from either side: decided on turn order and talk share")
    for speaker in ranked:
        lines.extend(evidence.get(speaker, []))
    return RoleAssignment(
        speaker_roles=roles,
        method="scored",
        confidence=round(confidence, 3),
        margin=round(margin, 3),
        evidence=lines,
    )


SWAP = {Role.AGENT: Role.CUSTOMER, Role.CUSTOMER: Role.AGENT, Role.UNKNOWN: Role.UNKNOWN}


def swap_roles(transcript: Transcript) -> Transcript:
    """A reviewer's correction: agent and customer exchanged everywhere in the transcript."""
    out = transcript.model_copy(deep=True)
    roles = {s: SWAP[r] for s, r in out.roles.speaker_roles.items()}
    out.roles = RoleAssignment(
        speaker_roles=roles,
        method="swapped",
        confidence=1.0,
        evidence=[
            *transcript.roles.evidence,
            f"roles swapped by a reviewer (was {transcript.roles.method}, "
            f"confidence {transcript.roles.confidence:.2f})",
        ],
    )
    for u in out.utterances:
        u.role = roles.get(u.speaker, SWAP[u.role])
    return out
