"""How far a call's transcript can be trusted: measured signals, and a reason for each doubt.

Everything the scorecard decides rests on who said what and when. Where the signals say
that may be wrong (one voice found in a two-party call, voices too close to tell apart,
speech that produced no words, a party's channel silent, much overtalk, text the recogniser
had to guess), the call gets an issue with a reason; the scorer turns issues into a flag, so
a person looks before anyone acts on the score. Role confidence is capped by the
diarization's own doubt, since roles decided on wrongly split speakers are wrong however
clear the words are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from qa.schema import (
    EvidenceQuality,
    QualityCode,
    QualityIssue,
    RoleAssignment,
    Segment,
    Utterance,
)

if TYPE_CHECKING:
    from qa.asr.diarize import Diarization
    from qa.asr.whisper import AsrResult

# Two voices closer than this (cosine distance of their centroid embeddings) are hard to tell
# apart: on the development calls, clearly different voices sit at 0.35-0.55, the two
# SpokenWOZ speakers that the estimate merged at 0.16 and 0.25, one voice split in two <0.1.
SEPARATION_DOUBT = 0.30
# Role confidence is capped at 0 at this separation and not capped from SEPARATION_CLEAR up.
SEPARATION_NONE = 0.10
SEPARATION_CLEAR = 0.35
LOST_SPEECH_DOUBT = 1.0  # seconds of speech without words in a call
OVERLAP_DOUBT = 0.25  # share of speech time with both parties talking
SILENT_CHANNEL_SPEECH = 0.5  # seconds of voice activity below which a channel is silent
# Share of decoding windows Whisper had to decode again at a higher temperature (its text
# looped or was improbable) from which the words are a guess: 0 of 50 on the real Mandarin
# development sentences and 0-1 of 4-14 on the English sample calls, 2-3 of 5-6 and 7 of 10 on
# the espeak-ng Mandarin calls, whose transcripts are mostly wrong words.
FALLBACK_DOUBT = 0.25
MIN_FALLBACKS = 2


def _fmt(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def overlap_share(spans: Iterable[tuple[str, float, float]]) -> float:
    """Share of speech time in which two different speakers talk at once; `spans` are
    (speaker, start, end) of words (two-track calls) or diarization turns (mono calls):
    utterance spans would count a party's pauses as speech."""
    events = sorted(
        e for speaker, a, b in spans if b > a for e in ((a, 1, speaker), (b, -1, speaker))
    )
    active: dict[str, int] = {}
    last = None
    speech = both = 0.0
    for t, step, speaker in events:
        if last is not None:
            talking = sum(1 for n in active.values() if n > 0)
            if talking:
                speech += t - last
            if talking >= 2:
                both += t - last
        active[speaker] = active.get(speaker, 0) + step
        last = t
    return round(both / speech, 4) if speech else 0.0


def separation_cap(separation: float | None) -> float:
    """The most confidence roles can have when the two voices are this far apart."""
    if separation is None:
        return 1.0
    span = SEPARATION_CLEAR - SEPARATION_NONE
    return min(1.0, max(0.0, (separation - SEPARATION_NONE) / span))


def temper_roles(roles: RoleAssignment, diarization: Diarization | None) -> RoleAssignment:
    """Role confidence no higher than the speaker split it was decided on allows."""
    if diarization is None or roles.method == "configured":
        return roles
    if diarization.speakers_found < 2:
        cap, why = 0.0, "only one voice was found, so the other party's words are in it"
    else:
        cap = separation_cap(diarization.separation)
        why = f"the two voices are {diarization.separation:.2f} apart"
    if roles.confidence <= cap:
        return roles
    cap = round(cap, 3)
    return roles.model_copy(
        update={
            "confidence": cap,
            "evidence": [*roles.evidence, f"confidence capped at {cap:.2f}: {why}"],
        }
    )


def assess(
    utterances: Sequence[Utterance],
    roles: RoleAssignment,
    asr: Sequence[AsrResult],
    *,
    source: str,
    diarization: Diarization | None = None,
    channel_speech: dict[int, AsrResult] | None = None,
    asr_confidence: float | None = None,
    crosstalk_words: int = 0,
) -> EvidenceQuality:
    """The evidence-quality record of one call; `asr` holds every stream's result
    (one per channel, or the one mono stream) and `channel_speech` maps channels to theirs."""
    issues: list[QualityIssue] = []
    speech = [r.speech_seconds for r in asr]
    speech_seconds = round(sum(speech), 2) if speech and None not in speech else None
    lost: list[Segment] = sorted((s for r in asr for s in r.lost), key=lambda s: s.start)
    lost_seconds = round(sum(s.duration for s in lost), 2)
    silent = sorted(
        ch
        for ch, r in (channel_speech or {}).items()
        if not r.words and (r.speech_seconds or 0.0) < SILENT_CHANNEL_SPEECH
    )
    if diarization is not None:
        overlap = overlap_share((t.speaker, t.start, t.end) for t in diarization.turns)
    else:
        overlap = overlap_share((u.speaker, w.start, w.end) for u in utterances for w in u.words)

    if source == "channels":
        found, speaker_pass = len(channel_speech or {}) - len(silent), "channels"
        separation = None
    elif diarization is not None:
        found, speaker_pass = diarization.speakers_found, diarization.speaker_pass
        separation = diarization.separation
    else:
        found, speaker_pass, separation = (1 if utterances else 0), "none", None

    has_speech = bool(utterances)
    if source != "channels" and has_speech and found < 2:
        issues.append(
            QualityIssue(
                code=QualityCode.SPEAKERS_COLLAPSED,
                reason="one voice found in a mono call: every word is given to one party, so "
                "the customer's words may count as the agent's",
            )
        )
    elif speaker_pass == "two_party_split":
        issues.append(
            QualityIssue(
                code=QualityCode.SPEAKERS_UNCERTAIN,
                reason=f"the speaker estimate heard one voice; a second was split off from the "
                f"windows where two talk (voices {separation:.2f} apart): check who said "
                f"what",
            )
        )
    elif separation is not None and separation < SEPARATION_DOUBT:
        issues.append(
            QualityIssue(
                code=QualityCode.SPEAKERS_UNCERTAIN,
                reason=f"the two voices are hard to tell apart ({separation:.2f} < "
                f"{SEPARATION_DOUBT:.2f}): words may be given to the wrong party",
            )
        )
    if lost_seconds > LOST_SPEECH_DOUBT:
        where = ", ".join(_fmt(s.start) for s in lost[:5]) + (" ..." if len(lost) > 5 else "")
        issues.append(
            QualityIssue(
                code=QualityCode.LOST_SPEECH,
                reason=f"{lost_seconds:.1f} s of speech produced no words (at {where})",
            )
        )
    for ch in silent:
        issues.append(
            QualityIssue(
                code=QualityCode.SILENT_CHANNEL,
                reason=f"channel {ch} has no speech: that party's side of the call is missing",
            )
        )
    if overlap > OVERLAP_DOUBT:
        issues.append(
            QualityIssue(
                code=QualityCode.OVERLAP,
                reason=f"both parties talk at once for {overlap:.0%} of the speech: words may be "
                f"lost or given to the wrong party",
            )
        )
    windows, fallbacks = sum(r.windows for r in asr), sum(r.fallbacks for r in asr)
    if fallbacks >= MIN_FALLBACKS and fallbacks > FALLBACK_DOUBT * windows:
        issues.append(
            QualityIssue(
                code=QualityCode.UNSURE_DECODING,
                reason=f"the recogniser could not decode {fallbacks} of {windows} windows "
                f"with confidence and sampled their text: words may be wrong or missing",
            )
        )
    return EvidenceQuality(
        speakers_found=found,
        speaker_pass=speaker_pass,
        speaker_separation=separation,
        speech_seconds=speech_seconds,
        lost_speech_seconds=lost_seconds,
        lost_speech=lost,
        recovered_seconds=round(sum(r.recovered_seconds for r in asr), 2),
        silent_channels=silent,
        asr_confidence=asr_confidence,
        overlap_share=overlap,
        role_margin=roles.margin,
        role_confidence=roles.confidence,
        decode_windows=windows,
        decode_fallbacks=fallbacks,
        crosstalk_words=crosstalk_words,
        issues=issues,
    )
