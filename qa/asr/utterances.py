"""Words to utterances: the one place that groups timed words into speaker turns.

Used for stereo calls (words carry their channel's speaker), for diarized mono calls
(words carry the speaker assigned by time overlap) and for single-speaker transcripts.
"""

from __future__ import annotations

from collections.abc import Iterable

from qa.schema import Role, SpeakerTurn, Utterance, Word

# A pause longer than this, even by the same speaker, starts a new utterance.
DEFAULT_MAX_GAP = 1.5


def join_text(words: Iterable[Word]) -> str:
    """Whisper words carry their own leading space for space-separated languages."""
    text = "".join(w.text for w in words).strip()
    return " ".join(text.split()) if " " in text else text


def group_words(
    words: list[Word], *, max_gap: float = DEFAULT_MAX_GAP, roles: dict[str, Role] | None = None
) -> list[Utterance]:
    """Consecutive words (in time order) by the same speaker become one utterance.

    Words must already be sorted by start time; speakers interleave freely.
    """
    roles = roles or {}
    out: list[Utterance] = []
    current: list[Word] = []

    def flush() -> None:
        if not current:
            return
        speaker = current[0].speaker or "S0"
        out.append(
            Utterance(
                speaker=speaker,
                role=roles.get(speaker, Role.UNKNOWN),
                start=current[0].start,
                end=max(w.end for w in current),
                text=join_text(current),
                words=list(current),
                channel=current[0].channel,
            )
        )
        current.clear()

    for word in words:
        if current and (
            word.speaker != current[-1].speaker or word.start - current[-1].end > max_gap
        ):
            flush()
        current.append(word)
    flush()
    return out


def merge_speaker_words(per_speaker: list[list[Word]], **kwargs) -> list[Utterance]:
    """Merge independently transcribed streams (one per channel) into one conversation.

    Each stream is grouped on its own first, so a speaker's sentence is not cut in pieces
    by the other party's back-channel ("mm-hm"); the utterances are then ordered by start
    and every utterance that overlaps another speaker's in time is marked `overlap`.
    """
    utterances = [u for words in per_speaker for u in group_words(words, **kwargs)]
    utterances.sort(key=lambda u: (u.start, u.end))
    mark_overlap(utterances)
    return utterances


def fit_to_turns(utterances: list[Utterance], turns: list[SpeakerTurn]) -> None:
    """Times of each utterance of a diarized mono call from the speaker turns it overlaps.

    In overtalk the ASR of one mixed channel writes one voice: the other party's words are
    lost and their utterance seems to end where the interruption starts. The diarization
    turns still show both voices (and their edges are closer than Whisper's word times), so
    utterance times taken from them keep the overtalk, interruptions and silences of the
    call. An utterance never grows over its speaker's neighbouring utterances; word times
    (the evidence) are left as the ASR gave them.
    """
    for speaker in {u.speaker for u in utterances}:
        own = sorted((u for u in utterances if u.speaker == speaker), key=lambda u: u.start)
        spans = [(t.start, t.end) for t in turns if t.speaker == speaker]
        for i, u in enumerate(own):
            hit = [(a, b) for a, b in spans if a < u.end and b > u.start]
            if not hit:
                continue
            floor = own[i - 1].end if i else 0.0
            ceiling = own[i + 1].start if i + 1 < len(own) else float("inf")
            u.start = round(max(floor, min(a for a, _ in hit)), 3)
            u.end = max(u.start, round(min(ceiling, max(b for _, b in hit)), 3))
    utterances.sort(key=lambda u: (u.start, u.end))


def mark_overlap(utterances: list[Utterance]) -> None:
    """Set `overlap` on utterances that share time with another speaker's (sorted input)."""
    for i, u in enumerate(utterances):
        for v in utterances[i + 1 :]:
            if v.start >= u.end:
                break
            if v.speaker != u.speaker and min(u.end, v.end) > v.start:
                u.overlap = v.overlap = True


def apply_roles(utterances: list[Utterance], roles: dict[str, Role]) -> None:
    for u in utterances:
        u.role = roles.get(u.speaker, Role.UNKNOWN)
