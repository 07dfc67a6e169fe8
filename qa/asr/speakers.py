"""Words with speakers: one speaker per channel for stereo calls, diarization for mono ones.

Stereo call-centre recordings put each party on its own channel, which is exact and needs
no model, so each channel is transcribed on its own and the streams are merged (overtalk
kept and marked). Mono calls are transcribed once and each word takes the speaker of the
diarization turn it overlaps most.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from qa.asr.quality import assess, temper_roles
from qa.asr.roles import assign_roles
from qa.asr.utterances import (
    apply_roles,
    fit_to_turns,
    group_words,
    mark_overlap,
    merge_speaker_words,
)
from qa.asr.whisper import AsrResult, word_key
from qa.audio import select_channels
from qa.config import Settings
from qa.errors import NoSpeechError
from qa.schema import CallMeta, SpeakerTurn, Transcript, Utterance, Word

if TYPE_CHECKING:
    from qa.asr.diarize import Diarization, Diarizer
    from qa.audio import DecodedAudio

ASR_RATE = 16000
SINGLE_SPEAKER = "S0"
# A word on a channel this much quieter (dB) than another channel talking at the same time is
# that other party leaking across; on the SpokenWOZ calls leaked words sit 24-43 dB below.
CROSSTALK_DB = 15.0
ECHO_REACH = 1.0  # seconds between a word and its leaked copy on the other channel

Transcribe = Callable[[np.ndarray, str | None], AsrResult]


def assign_words(words: list[Word], turns: list[SpeakerTurn]) -> list[Word]:
    """Each word takes the speaker it overlaps most (summed over that speaker's turns, so a
    word straddling a turn boundary goes to the larger share); a word in no turn takes the
    nearest turn's speaker. Without turns every word is one speaker: none is left unlabelled.
    """
    if not words:
        return []
    if not turns:
        return [w.model_copy(update={"speaker": SINGLE_SPEAKER}) for w in words]
    speakers = sorted({t.speaker for t in turns})
    index = {s: i for i, s in enumerate(speakers)}
    starts = np.array([t.start for t in turns])
    ends = np.array([t.end for t in turns])
    owner = np.array([index[t.speaker] for t in turns])
    out = []
    for w in words:
        overlap = np.minimum(ends, w.end) - np.maximum(starts, w.start)
        per_speaker = np.zeros(len(speakers))
        np.add.at(per_speaker, owner, np.clip(overlap, 0.0, None))
        if per_speaker.max() > 0:
            best = int(np.argmax(per_speaker))
        else:
            # distance from the word (a point if it has no duration) to each turn
            mid = (w.start + w.end) / 2
            gap = np.maximum(starts - mid, mid - ends).clip(min=0.0)
            best = int(owner[np.argmin(gap)])
        out.append(w.model_copy(update={"speaker": speakers[best]}))
    return out


def drop_crosstalk(
    streams: list[list[Word]], channels: np.ndarray, rate: int, margin_db: float = CROSSTALK_DB
) -> tuple[list[list[Word]], int]:
    """Words a channel only heard from another: the other party's voice leaking across
    (echo on the line, a headset picking up the speaker), which Whisper writes down too.

    A run of words goes when each is said on another channel at about the same time and,
    at its loudest, its own channel is `margin_db` quieter than that one. Real overtalk is
    loud on both channels, and a word whose aligned span ran into the other party's turn
    (sentence-final words often do) is not the other party's word: both stay. Returns the
    kept streams and how many words went.
    """
    frame = max(1, int(0.05 * rate))

    def level(ch: int, start: float, end: float) -> float:
        """Loudest 50 ms of the span (dB): a word whose aligned span runs into the other
        party's turn is still as loud as itself where it is actually said."""
        piece = channels[ch, int(start * rate) : max(int(end * rate), int(start * rate) + frame)]
        usable = len(piece) // frame * frame or len(piece)
        power = np.square(piece[:usable]).reshape(-1, min(frame, usable)).mean(axis=1)
        return 10.0 * float(np.log10(power.max() + 1e-12))

    # each stream's words by start, to find the other party's words near a word quickly
    starts = [[v.start for v in words] for words in streams]
    longest = max((v.end - v.start for words in streams for v in words), default=0.0)

    def said_there(j: int, w: Word) -> bool:
        lo = bisect_left(starts[j], w.start - ECHO_REACH - longest)
        hi = bisect_right(starts[j], w.end + ECHO_REACH)
        key = word_key(w.text)
        return any(
            word_key(v.text) == key and v.end > w.start - ECHO_REACH for v in streams[j][lo:hi]
        )

    kept: list[list[Word]] = []
    dropped = 0
    for i, words in enumerate(streams):
        echo = [
            any(
                said_there(j, w) and level(j, w.start, w.end) - level(i, w.start, w.end) > margin_db
                for j in range(len(streams))
                if j != i
            )
            for w in words
        ]
        # a leak repeats a run of the other party's words; one matching word alone ("hi",
        # "you") is as likely this party's own, with its time a little off
        run = [
            e and ((k > 0 and echo[k - 1]) or (k + 1 < len(echo) and echo[k + 1]))
            for k, e in enumerate(echo)
        ]
        kept.append([w for w, gone in zip(words, run, strict=True) if not gone])
        dropped += sum(run)
    return kept, dropped


def _mean_probability(utterances: list[Utterance]) -> float | None:
    probs = [w.probability for u in utterances for w in u.words]
    return round(float(np.mean(probs)), 4) if probs else None


def transcribe_call(
    audio: DecodedAudio,
    meta: CallMeta,
    transcribe: Transcribe,
    diarizer: Diarizer | None,
    settings: Settings,
) -> Transcript:
    """Transcript of one call with speakers, roles, ASR confidence and evidence quality.

    `transcribe(samples_16k_mono, language)` is the ASR; `diarizer` is only needed for mono
    (or fake-stereo) audio — without it a mono call is one speaker. A call in which nobody
    speaks is refused with `NoSpeechError`: scoring it would fail the agent for silence.
    A recording with more than two different channels is cut down to the agent's and the
    customer's by `meta.channel_roles`, or refused without it (`select_channels`).
    """
    audio, channel_roles = select_channels(audio, meta.channel_roles)
    if channel_roles != meta.channel_roles:  # numbered as the channels the ASR hears
        meta = meta.model_copy(update={"channel_roles": channel_roles})
    audio16 = audio.resampled(ASR_RATE)
    language = meta.language or settings.default_language
    channel_speakers: dict[int, str] | None = None
    source: Literal["channels", "diarization", "single"]
    results: list[AsrResult] = []
    per_channel: dict[int, AsrResult] = {}
    diarization: Diarization | None = None
    crosstalk = 0

    if audio.channels >= 2 and not audio.fake_stereo:
        source = "channels"
        channel_speakers = {i: f"ch{i}" for i in range(audio.channels)}
        streams: list[list[Word]] = []
        for i, speaker in channel_speakers.items():
            result = transcribe(audio16.channel(i), language)
            if language is None and result.words:  # one call, one language
                language = result.language
            results.append(result)
            per_channel[i] = result
            streams.append(
                [w.model_copy(update={"speaker": speaker, "channel": i}) for w in result.words]
            )
        _refuse_silence(audio, results)
        streams, crosstalk = drop_crosstalk(streams, audio16.samples, ASR_RATE)
        utterances = merge_speaker_words(streams)
    else:
        samples = audio16.mono()
        result = transcribe(samples, language)
        results.append(result)
        _refuse_silence(audio, results)
        if diarizer is not None:
            source = "diarization"
            diarization = diarizer.diarize(
                samples, ASR_RATE, num_speakers=diarizer.default_num_speakers
            )
            utterances = group_words(assign_words(result.words, diarization.turns))
            fit_to_turns(utterances, diarization.turns)
        else:
            source = "single"
            utterances = group_words(
                [w.model_copy(update={"speaker": SINGLE_SPEAKER}) for w in result.words]
            )
        mark_overlap(utterances)

    roles = temper_roles(
        assign_roles(utterances, meta, channel_speakers=channel_speakers), diarization
    )
    apply_roles(utterances, roles.speaker_roles)
    confidence = _mean_probability(utterances)
    # the language of the stream with the most words (a silent channel's guess is noise)
    detected = (
        max((len(r.words), r.language) for r in results)[1] if results else (language or "en")
    )
    return Transcript(
        call_id=meta.call_id,
        language=detected,
        duration=audio.duration,
        channels=audio.channels,
        speaker_source=source,
        utterances=utterances,
        roles=roles,
        asr_model=next((r.model for r in results if r.model), ""),
        asr_confidence=confidence,
        quality=assess(
            utterances,
            roles,
            results,
            source=source,
            diarization=diarization,
            channel_speech=per_channel or None,
            asr_confidence=confidence,
            crosstalk_words=crosstalk,
        ),
    )


def _refuse_silence(audio: DecodedAudio, results: list[AsrResult]) -> None:
    """No words anywhere and (where measured) no voice activity: nothing to score."""
    if any(r.words for r in results):
        return
    speech = sum(r.speech_seconds or 0.0 for r in results)
    heard = (
        f"voice activity {speech:.1f} s"
        if all(r.speech_seconds is not None for r in results)
        else ""
    )
    raise NoSpeechError(
        f"no speech: {audio.duration:.1f} s of audio gave no words"
        + (f" ({heard})" if heard else "")
        + "; nothing to score, check the recording"
    )
