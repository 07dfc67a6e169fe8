"""Transcripts as subtitles (SRT, WebVTT) and JSON, for players and other tools.

One cue per utterance, prefixed with the role when known and the speaker otherwise, so
a reviewer playing the call in any media player sees who said what.
"""

from __future__ import annotations

from qa.schema import Role, Transcript, Utterance

FORMATS = ("json", "srt", "vtt")


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _label(u: Utterance) -> str:
    return u.role.value if u.role != Role.UNKNOWN else u.speaker


def _cue_text(u: Utterance) -> str:
    # A blank line ends a cue in both formats; "-->" would be read as a timing line.
    text = " ".join(u.text.split()).replace("-->", "->")
    return f"{_label(u)}: {text}"


def _end(u: Utterance) -> float:
    return u.end if u.end > u.start else u.start + 0.001


def to_srt(transcript: Transcript) -> str:
    cues = [
        f"{i}\n{_timestamp(u.start, ',')} --> {_timestamp(_end(u), ',')}\n{_cue_text(u)}\n"
        for i, u in enumerate(transcript.utterances, start=1)
    ]
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    cues = [
        f"{_timestamp(u.start, '.')} --> {_timestamp(_end(u), '.')}\n{_cue_text(u)}\n"
        for u in transcript.utterances
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_json(transcript: Transcript, *, indent: int | None = 2) -> str:
    """The `Transcript` record itself; `Transcript.model_validate_json` reads it back."""
    return transcript.model_dump_json(indent=indent)


def render(transcript: Transcript, fmt: str) -> str:
    if fmt == "json":
        return to_json(transcript)
    if fmt == "srt":
        return to_srt(transcript)
    if fmt == "vtt":
        return to_vtt(transcript)
    raise ValueError(f"unknown transcript format {fmt!r}; use one of {', '.join(FORMATS)}")
