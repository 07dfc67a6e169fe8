"""Call metrics from utterance timing and roles: silence, holds, overtalk, interruptions,
talk share, speaking rate and response times.

Everything is computed from the transcript alone (no audio), so metrics can be recomputed
for any stored transcript and agree with what the reviewer sees on the timeline.

`METRICS` is the one list of the metrics a scorecard's `metric` rule may name: the format
refuses any other name, the matcher reads a value and its evidence segments through it, and
the documentation is checked against it, so a new metric is one entry here (plus its field
in `CallMetrics`, filled by `compute_metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qa.rules.text import count_units, is_cjk, normalize, role_of
from qa.schema import CallMetrics, Role, Segment, Transcript, Utterance

# A pause shorter than this is turn-taking, not silence worth listing.
MIN_SILENCE = 2.0
# A silence this long right after the agent says "let me put you on hold" is a hold.
MIN_HOLD = 5.0
# A silence this long is a hold even unannounced (the agent muted or walked away).
UNANNOUNCED_HOLD = 120.0
# How far before the silence the announcement may end.
ANNOUNCE_WINDOW = 20.0
# An interruption: the other party still talks at least this long after it starts.
MIN_INTERRUPTED = 0.3

HOLD_ANNOUNCEMENTS = (
    # English: normalised (lower case, no apostrophes)
    "hold",
    "one moment",
    "just a moment",
    "a moment please",
    "bear with me",
    "one second",
    "just a second",
    "give me a moment",
    "give me a second",
    "let me check",
    "let me look",
    "let me find",
    "let me just",
    "mute",
    "wait a moment",
    # "putting you on hold" heard as "on hole", "on post": the silence that follows makes it one
    "put you on",
    "putting you on",
    "place you on",
    "placing you on",
    # Chinese (Simplified after normalisation)
    "稍等",
    "稍候",
    "等一下",
    "等一等",
    "等一会",
    "请您等",
    "我查一下",
    "查询一下",
    "帮您查",
    "保持",
    "别挂",
)
BACKCHANNELS = frozenset(
    {
        "mm",
        "mhm",
        "hm",
        "hmm",
        "uh",
        "huh",
        "uhhuh",
        "uh huh",
        "mm hmm",
        "yeah",
        "yes",
        "yep",
        "ok",
        "okay",
        "right",
        "sure",
        "alright",
        "i see",
        "got it",
        "oh",
        "嗯",
        "嗯嗯",
        "对",
        "对对",
        "对的",
        "好",
        "好的",
        "是",
        "是的",
        "哦",
        "啊",
        "行",
        "明白",
    }
)


def _none(metrics: CallMetrics, role: str) -> list[Segment]:
    return []


@dataclass(frozen=True)
class Metric:
    """One call metric a scorecard may compare with a threshold, and how it is read.

    `value` and `segments` read a computed `CallMetrics` for a role (`agent` unless the rule
    names one; only `per_role` metrics use it); `segments` are the spans shown as evidence,
    each labelled `kind`. For a `longest` metric the value is its longest segment, so under a
    `<`/`<=` threshold only the segments over it are evidence.
    """

    name: str
    unit: str
    description: str
    value: Callable[[CallMetrics, str], float | None]
    segments: Callable[[CallMetrics, str], list[Segment]] = _none
    kind: str = ""  # evidence label of a segment
    per_role: bool = False
    longest: bool = False

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "longest_silence",
            "s",
            "longest stretch with nobody speaking, holds included",
            lambda m, r: m.longest_silence,
            lambda m, r: m.silences,
            "silence",
            longest=True,
        ),
        Metric(
            "dead_air",
            "s",
            "longest silence outside an announced hold",
            lambda m, r: m.longest_dead_air,
            lambda m, r: m.dead_air,
            "dead air",
            longest=True,
        ),
        Metric(
            "silence_total",
            "s",
            f"silences of {MIN_SILENCE:g} s or more, added up",
            lambda m, r: m.silence_total,
            lambda m, r: m.silences,
            "silence",
        ),
        Metric(
            "hold_total",
            "s",
            "announced (or very long) holds, added up",
            lambda m, r: m.hold_total,
            lambda m, r: m.holds,
            "hold",
        ),
        Metric(
            "hold_count",
            "count",
            "number of holds",
            lambda m, r: float(len(m.holds)),
            lambda m, r: m.holds,
            "hold",
        ),
        Metric(
            "overtalk_total",
            "s",
            "agent and customer speaking at once, added up",
            lambda m, r: m.overtalk_total,
            lambda m, r: m.overtalks,
            "overtalk",
        ),
        Metric(
            "interruptions",
            "count",
            "times the role cut in while the other party spoke",
            lambda m, r: float(m.interruptions.get(r, 0)),
            lambda m, r: m.interruption_spans.get(r, []),
            "interruption",
            per_role=True,
        ),
        Metric(
            "talk_ratio",
            "share",
            "the role's share of talk time (0-1)",
            lambda m, r: m.talk_share.get(r),
            per_role=True,
        ),
        Metric(
            "speaking_rate",
            "per minute",
            "words (Chinese: characters) per minute of speech",
            lambda m, r: m.speaking_rate_wpm.get(r),
            per_role=True,
        ),
        Metric(
            "first_response",
            "s",
            "seconds until the agent first speaks",
            lambda m, r: m.first_agent_response,
        ),
        Metric(
            "response_latency",
            "s",
            "agent's mean gap after the customer stops",
            lambda m, r: m.mean_response_latency,
        ),
    )
}


def _merge(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _intersect(
    a: list[tuple[float, float]], b: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _contains_phrase(norm: str, phrase: str, cjk: bool) -> bool:
    if cjk:
        return phrase in norm
    return f" {phrase} " in f" {norm} "


def is_backchannel(utterance: Utterance, cjk: bool) -> bool:
    """ "mm-hm", "okay", "嗯": listening signals, not taking the floor."""
    return normalize(utterance.text, cjk) in BACKCHANNELS or utterance.end - utterance.start < 0.4


def announced(before: list[tuple[Utterance, Role]], gap_start: float, cjk: bool) -> bool:
    """Did the agent announce a hold just before this silence?"""
    for utt, role in reversed(before[-3:]):
        if gap_start - utt.end > ANNOUNCE_WINDOW:
            break
        if role == Role.AGENT:
            norm = normalize(utt.text, cjk)
            if any(_contains_phrase(norm, p, cjk) for p in HOLD_ANNOUNCEMENTS):
                return True
    return False


def compute_metrics(transcript: Transcript) -> CallMetrics:
    """Timing metrics for one call; see the module docstring and qa.schema.CallMetrics."""
    cjk = is_cjk(transcript.language)
    utts = sorted(
        ((u, role_of(u, transcript)) for u in transcript.utterances if u.end > u.start),
        key=lambda p: (p[0].start, p[0].end),
    )
    duration = max([transcript.duration] + [u.end for u, _ in utts])
    if not utts:
        return CallMetrics(duration=duration)

    by_role: dict[str, list[tuple[float, float]]] = {}
    units: dict[str, int] = {}
    spoken: dict[str, float] = {}
    for u, role in utts:
        by_role.setdefault(role, []).append((u.start, u.end))
        n = count_units(u.text, cjk) if cjk else len(u.text.split())
        units[role] = units.get(role, 0) + n
        spoken[role] = spoken.get(role, 0.0) + (u.end - u.start)
    merged_role = {str(role): _merge(spans) for role, spans in by_role.items()}
    units = {str(r): n for r, n in units.items()}
    spoken = {str(r): t for r, t in spoken.items()}
    talk = {role: sum(e - s for s, e in spans) for role, spans in merged_role.items()}
    total_talk = sum(talk.values())
    talk_time = {r: round(t, 3) for r, t in talk.items()}
    talk_share = {r: round(t / total_talk, 4) for r, t in talk.items()} if total_talk else {}
    rate = {r: round(units[r] / (spoken[r] / 60.0), 1) for r in spoken if spoken[r] > 0}

    # silence between speech (not before the first word or after the last)
    speech = _merge([(u.start, u.end) for u, _ in utts])
    before: list[tuple[Utterance, Role]] = []
    k = 0
    longest = silence_total = hold_total = longest_dead = 0.0
    silences: list[Segment] = []
    holds: list[Segment] = []
    dead_air: list[Segment] = []
    for (_, prev_end), (next_start, _) in zip(speech, speech[1:], strict=False):
        gap = next_start - prev_end
        longest = max(longest, gap)
        if gap < MIN_SILENCE:
            continue
        seg = Segment(start=round(prev_end, 3), end=round(next_start, 3))
        silences.append(seg)
        silence_total += gap
        while k < len(utts) and utts[k][0].start < prev_end:
            before.append(utts[k])
            k += 1
        is_announced = gap >= MIN_HOLD and announced(before, prev_end, cjk)
        if is_announced or gap >= UNANNOUNCED_HOLD:
            holds.append(seg)
            hold_total += gap
        if not is_announced:
            dead_air.append(seg)
            longest_dead = max(longest_dead, gap)

    overtalks: list[Segment] = []
    overtalk_total = 0.0
    for start, end in _intersect(merged_role.get("agent", []), merged_role.get("customer", [])):
        if end - start >= 0.05:
            overtalks.append(Segment(start=round(start, 3), end=round(end, 3)))
            overtalk_total += end - start

    interruptions, spans = _interruptions(utts, cjk)

    first_agent = next((u for u, r in utts if r == Role.AGENT), None)
    latencies = [
        max(0.0, b.start - a.end)
        for (a, ra), (b, rb) in zip(utts, utts[1:], strict=False)
        if ra == Role.CUSTOMER and rb == Role.AGENT
    ]
    return CallMetrics(
        duration=duration,
        talk_time=talk_time,
        talk_share=talk_share,
        silence_total=round(silence_total, 3),
        longest_silence=round(longest, 3),
        silences=silences,
        holds=holds,
        hold_total=round(hold_total, 3),
        overtalk_total=round(overtalk_total, 3),
        overtalks=overtalks,
        interruptions=interruptions,
        speaking_rate_wpm=rate,
        first_agent_response=round(first_agent.start, 3) if first_agent else None,
        mean_response_latency=round(sum(latencies) / len(latencies), 3) if latencies else None,
        dead_air=dead_air,
        longest_dead_air=round(longest_dead, 3),
        interruption_spans=spans,
    )


def _interruptions(
    utts: list[tuple[Utterance, Role]], cjk: bool
) -> tuple[dict[str, int], dict[str, list[Segment]]]:
    """Who started speaking while the other party was mid-utterance (back-channels aside)."""
    parties = (Role.AGENT, Role.CUSTOMER)
    counts: dict[str, int] = {}
    spans: dict[str, list[Segment]] = {}
    active: list[tuple[Utterance, Role]] = []
    for u, role in utts:
        active = [(a, r) for a, r in active if a.end > u.start]
        if role in parties:
            cut = next(
                (
                    a
                    for a, r in active
                    if r in parties
                    and r != role
                    and a.start < u.start
                    and a.end - u.start >= MIN_INTERRUPTED
                ),
                None,
            )
            if cut is not None and not is_backchannel(u, cjk):
                counts[str(role)] = counts.get(str(role), 0) + 1
                spans.setdefault(str(role), []).append(
                    Segment(start=round(u.start, 3), end=round(min(u.end, cut.end), 3))
                )
        active.append((u, role))
    return counts, spans
