"""The whole transcription path on real calls with a reference, beside the plain anchor.

Every development call in `../shared/data/calls` that has a reference goes through what the
pipeline does to a call (`qa.asr.speakers.transcribe_call`): a two-track call once as its
two channels and once as its mono mixdown (the diarization path), a mono call once. Each row
holds the error rate, the speakers found, the roles, the share of words given the right role,
the seconds of speech that produced no words, and whether the call is flagged for a person
and why; the anchor columns are plain faster-whisper with its default options and pyannote
with the speaker count given, on the same audio in the same run. Synthetic calls
(`qa synth`) can be added as a second table; Mandarin sentences (`zh_dev/`) have their own.

References, and how exact they are (see the data README): voice activity of each channel of
a two-track call (Silero VAD) is the speech reference of both paths; SpokenWOZ words carry
the party, with times partly spread over a turn; sample.wav has an STM transcript and an RTTM;
azure_test_call's transcript and turns are a commercial service's output (silver).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from qa.asr.chinese import is_chinese
from qa.asr.diarize import Diarization, Diarizer
from qa.asr.speakers import assign_words, transcribe_call
from qa.asr.whisper import Transcriber, uncovered
from qa.audio import DecodedAudio, load_audio, resample
from qa.config import Settings
from qa.errors import QAError
from qa.evaluation.asr import error_rate, normalize_text, read_stm
from qa.evaluation.diarization import der, read_rttm, vad_turns
from qa.schema import (
    CallMeta,
    FlagCode,
    Record,
    Role,
    Segment,
    SpeakerTurn,
    Transcript,
    Word,
)

if TYPE_CHECKING:
    from rich.console import Console

# Flags that doubt the evidence (not the agent's performance).
EVIDENCE_FLAGS = (
    FlagCode.EVIDENCE_DOUBT,
    FlagCode.LOW_ROLE_CONFIDENCE,
    FlagCode.LOW_ASR_CONFIDENCE,
)
ASR_RATE = 16000


class RefWord(Record):
    start: float
    end: float
    text: str
    speaker: str  # a role ("agent" / "customer") where the reference knows it


class DevCall(Record):
    """One recording of the development set and its references."""

    name: str
    audio: str
    language: str = "en"
    channel_roles: dict[int, Role] | None = None  # two-track calls: which party is where
    words: list[RefWord] = Field(default_factory=list)  # empty: no text reference
    text_reference: Literal["exact", "approximate", "silver", "none"] = "none"
    turns: list[SpeakerTurn] = Field(default_factory=list)  # mono calls: speaker turns
    roles_known: bool = True  # reference speakers are "agent" / "customer"


class CallRow(Record):
    """One path of one call: the product's figures and the anchor's."""

    call: str
    path: Literal["two-track", "mono"]
    audio_seconds: float
    reference: str
    error_rate: float | None = None  # WER (CER for Chinese); two-track: pooled over channels
    anchor_error_rate: float | None = None
    channel_error_rates: dict[str, float] = Field(default_factory=dict)  # role -> WER
    anchor_channel_error_rates: dict[str, float] = Field(default_factory=dict)
    der: float | None = None
    anchor_der: float | None = None
    speakers_found: int = 0
    anchor_speakers_found: int | None = None
    speaker_pass: str = ""
    separation: float | None = None
    roles_right: bool | None = None
    role_confidence: float = 0.0
    word_role_accuracy: float | None = None
    lost_seconds: float = 0.0  # reference speech with no word within reach
    anchor_lost_seconds: float | None = None  # ... no segment: plain gives no word times
    flagged: bool = False
    reasons: list[str] = Field(default_factory=list)
    seconds: float = 0.0  # wall time of the product's path
    anchor_seconds: float = 0.0

    @property
    def wrong(self) -> bool:
        """Roles wrong, or speakers badly split: what must never go unflagged."""
        return self.roles_right is False or (self.der is not None and self.der > 0.20)


class ZhRow(Record):
    """Mandarin sentences at one sample rate: CER of the product and the anchor."""

    rate: int
    sentences: int
    audio_seconds: float
    cer: float
    anchor_cer: float
    seconds: float
    anchor_seconds: float
    windows: int
    fallbacks: int
    per_domain: dict[str, tuple[float, float]] = Field(default_factory=dict)


# --------------------------------------------------------------------------- references


def _rttm_role(turns: list[SpeakerTurn]) -> list[SpeakerTurn]:
    return [t for t in turns if t.speaker in (Role.AGENT.value, Role.CUSTOMER.value)]


def dev_calls(data: Path) -> list[DevCall]:
    """The development calls present in `data` (the shared data folder or its calls/)."""
    calls_dir = data / "calls" if (data / "calls").is_dir() else data
    out: list[DevCall] = []
    for flac in sorted(calls_dir.glob("swoz_*_stereo.flac")):
        cid = flac.name.removesuffix("_stereo.flac")
        words_file = calls_dir / f"{cid}.words.json"
        if not words_file.is_file():
            continue
        parties = {"A": Role.CUSTOMER.value, "B": Role.AGENT.value}
        words = [
            RefWord(
                start=w["start"],
                end=w["end"],
                text=w["word"],
                speaker=parties.get(w["speaker"], w["speaker"]),
            )
            for w in json.loads(words_file.read_text(encoding="utf-8"))
        ]
        out.append(
            DevCall(
                name=cid,
                audio=str(flac),
                words=words,
                text_reference="approximate",
                channel_roles={0: Role.CUSTOMER, 1: Role.AGENT},
            )
        )
    auto = calls_dir / "auto_repairs_40_stereo.wav"
    if auto.is_file():
        out.append(
            DevCall(
                name="auto_repairs_40",
                audio=str(auto),
                channel_roles={0: Role.AGENT, 1: Role.CUSTOMER},
            )
        )
    sample, stm = calls_dir / "sample.wav", calls_dir / "sample.stm"
    if sample.is_file() and stm.is_file():
        words = [
            RefWord(start=s.start, end=s.end, text=s.text, speaker=s.speaker) for s in read_stm(stm)
        ]
        out.append(
            DevCall(
                name="sample",
                audio=str(sample),
                words=words,
                text_reference="exact",
                roles_known=False,
                turns=read_rttm(calls_dir / "sample.rttm"),
            )
        )
    azure = calls_dir / "azure_test_call.flac"
    service = calls_dir / "azure_test_call.service_output.json"
    if azure.is_file() and service.is_file():
        turns = _rttm_role(read_rttm(calls_dir / "azure_test_call.rttm"))
        phrases = json.loads(service.read_text(encoding="utf-8"))["phrases"]
        raw = [
            RefWord(
                start=w["offset"] / 1000,
                end=(w["offset"] + w["duration"]) / 1000,
                text=w["text"],
                speaker=str(p.get("speaker", "")),
            )
            for p in phrases
            for w in p.get("words", [])
        ]
        # each service speaker takes the role of the reference turns its words fall in
        labels = assign_words([Word(start=w.start, end=w.end, text=w.text) for w in raw], turns)
        votes = Counter((w.speaker, lab.speaker) for w, lab in zip(raw, labels, strict=True))
        role_of: dict[str, str | None] = {}
        for (speaker, role), _ in votes.most_common():
            role_of.setdefault(speaker, role)
        words = [w.model_copy(update={"speaker": role_of[w.speaker] or ""}) for w in raw]
        out.append(
            DevCall(
                name="azure_test_call",
                audio=str(azure),
                words=words,
                text_reference="silver",
                turns=turns,
            )
        )
    return out


def synth_calls(folder: Path) -> list[DevCall]:
    """Calls rendered by `qa synth` (8 kHz two-track): exact words, turns and roles."""
    from qa.synth import SynthCall, SynthError

    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            call = SynthCall.load(path)
        except SynthError:
            continue
        if "stereo_8k" not in call.files or not call.meta.channel_roles:
            continue
        words = [
            RefWord(start=t.start, end=t.end, text=t.text, speaker=t.role.value) for t in call.turns
        ]
        out.append(
            DevCall(
                name=f"synth {call.call_id}",
                audio=call.files["stereo_8k"],
                language=call.language,
                channel_roles=call.meta.channel_roles,
                words=words,
                text_reference="exact",
                turns=[
                    SpeakerTurn(start=t.start, end=t.end, speaker=t.role.value) for t in call.turns
                ],
            )
        )
    return out


def joined_text(words: Iterable[Any]) -> str:
    return " ".join(w.text.strip() for w in sorted(words, key=lambda w: w.start))


# --------------------------------------------------------------------------- running


class _Recording:
    """The configured diarizer, keeping what it found for the row."""

    def __init__(self, diarizer: Diarizer) -> None:
        self.inner = diarizer
        self.default_num_speakers = diarizer.default_num_speakers
        self.last: Diarization | None = None

    def diarize(self, *args: Any, **kwargs: Any) -> Diarization:
        self.last = self.inner.diarize(*args, **kwargs)
        return self.last


class Evaluator:
    """Models loaded once; `run` evaluates one call on every path it has."""

    def __init__(
        self,
        settings: Settings,
        model: str = "en",
        *,
        anchors: bool = True,
        anchor_diarization: bool = True,
    ) -> None:
        self.settings = settings
        self.model_key = model
        self.transcribers: dict[str, Transcriber] = {}
        self.diarizer = Diarizer(settings)
        self.anchors = anchors
        self.anchor_diarization = anchors and anchor_diarization
        self._vad_cache: dict[tuple[str, int], list[SpeakerTurn]] = {}

    def transcriber(self, language: str) -> Transcriber:
        key = self.model_key if language.startswith("en") else "multi"
        if key not in self.transcribers:
            self.transcribers[key] = Transcriber(self.settings, key)
        return self.transcribers[key]

    def anchor(self, samples: np.ndarray, language: str) -> tuple[list[RefWord], float]:
        """Plain faster-whisper with its defaults (the same weights): its segments (it gives
        no word times by default), and the seconds it took."""
        model = self.transcriber(language).model
        start = time.perf_counter()
        segments = [
            RefWord(start=s.start, end=s.end, text=s.text.strip(), speaker="")
            for s in model.transcribe(samples, language=language)[0]
        ]
        return segments, time.perf_counter() - start

    # ------------------------------------------------------------------ one call

    def run(self, call: DevCall) -> list[CallRow]:
        audio = load_audio(Path(call.audio), max_duration=self.settings.max_duration)
        if call.channel_roles and audio.channels == 2:
            speech = self._channel_speech(call, audio)
            return [
                self._two_track(call, audio, speech),
                self._mono(call, audio, [t for ts in speech.values() for t in ts]),
            ]
        reference = call.turns
        return [self._mono(call, audio, reference)]

    def _channel_speech(self, call: DevCall, audio: DecodedAudio) -> dict[int, list[SpeakerTurn]]:
        """Voice activity of each track, labelled with the party on it."""
        assert call.channel_roles is not None
        out = {}
        for ch, role in call.channel_roles.items():
            key = (call.audio, ch)
            if key not in self._vad_cache:
                self._vad_cache[key] = vad_turns(
                    audio.channel(ch), audio.sample_rate, role.value, self.settings
                )
            out[ch] = self._vad_cache[key]
        return out

    def _flags(self, transcript: Transcript) -> list[str]:
        """Why a person is asked to look at the evidence: the scorer's own flags, with each
        evidence-quality issue on its own line."""
        from qa.scoring.scorecard import default_scorecard, score_call

        score = score_call(transcript, None, default_scorecard(transcript.language))
        out = [
            f"{f.code.value}: {f.reason}"
            for f in score.flags
            if f.code in EVIDENCE_FLAGS and f.code != FlagCode.EVIDENCE_DOUBT
        ]
        if transcript.quality is not None:
            out += [f"{i.code.value}: {i.reason}" for i in transcript.quality.issues]
        return out

    def _two_track(
        self, call: DevCall, audio: DecodedAudio, speech: dict[int, list[SpeakerTurn]]
    ) -> CallRow:
        assert call.channel_roles is not None
        transcriber = self.transcriber(call.language)
        meta = CallMeta(call_id="eval", language=call.language)
        start = time.perf_counter()
        transcript = transcribe_call(audio, meta, transcriber.transcribe, None, self.settings)
        seconds = time.perf_counter() - start
        audio16 = audio.resampled(ASR_RATE)
        row = CallRow(
            call=call.name,
            path="two-track",
            audio_seconds=round(audio.duration, 1),
            reference=call.text_reference,
            speakers_found=len({u.speaker for u in transcript.utterances}),
            speaker_pass="channels",
            role_confidence=transcript.roles.confidence,
            seconds=round(seconds, 2),
        )
        agent_ch = next(ch for ch, r in call.channel_roles.items() if r == Role.AGENT)
        row.roles_right = transcript.roles.speaker_roles.get(f"ch{agent_ch}") == Role.AGENT
        lost = anchor_lost = 0.0
        for ch, role in call.channel_roles.items():
            words = [w for w in transcript.words if w.channel == ch]
            lost += _seconds(uncovered(timeline(speech[ch]), _spans(words)))
            ref = [w for w in call.words if w.speaker == role.value]
            if ref:
                row.channel_error_rates[role.value] = round(
                    error_rate(joined_text(ref), joined_text(words), call.language), 4
                )
            if self.anchors:
                found, secs = self.anchor(audio16.channel(ch), call.language)
                row.anchor_seconds = round(row.anchor_seconds + secs, 2)
                anchor_lost += _seconds(uncovered(timeline(speech[ch]), _spans(found)))
                if ref:
                    row.anchor_channel_error_rates[role.value] = round(
                        error_rate(joined_text(ref), joined_text(found), call.language), 4
                    )
        row.lost_seconds = round(lost, 2)
        if self.anchors:
            row.anchor_lost_seconds = round(anchor_lost, 2)
        row.error_rate = _pooled(row.channel_error_rates, call)
        if self.anchors:
            row.anchor_error_rate = _pooled(row.anchor_channel_error_rates, call)
        row.reasons = self._flags(transcript)
        row.flagged = bool(row.reasons)
        return row

    def _mono(self, call: DevCall, audio: DecodedAudio, reference: list[SpeakerTurn]) -> CallRow:
        transcriber = self.transcriber(call.language)
        mono = DecodedAudio(
            samples=audio.mono()[None],
            sample_rate=audio.sample_rate,
            source=audio.source,
            format=audio.format,
            duration=audio.duration,
        )
        recording = _Recording(self.diarizer)
        meta = CallMeta(call_id="eval", language=call.language)
        start = time.perf_counter()
        transcript = transcribe_call(mono, meta, transcriber.transcribe, recording, self.settings)
        seconds = time.perf_counter() - start
        found = recording.last or Diarization()
        words = transcript.words
        row = CallRow(
            call=call.name,
            path="mono",
            audio_seconds=round(audio.duration, 1),
            reference=call.text_reference,
            speakers_found=found.speakers_found,
            speaker_pass=found.speaker_pass,
            separation=found.separation,
            role_confidence=transcript.roles.confidence,
            seconds=round(seconds, 2),
        )
        if reference:
            row.der = round(der(reference, found.turns)["der"], 4)
            row.lost_seconds = _seconds(uncovered(timeline(reference), _spans(words)))
        if call.words:
            row.error_rate = round(
                error_rate(joined_text(call.words), joined_text(words), call.language), 4
            )
        if call.roles_known and reference and words:
            truth = assign_words(words, reference)
            said = [u.role.value for u in transcript.utterances for _ in u.words]
            row.word_role_accuracy = round(
                sum(t.speaker == r for t, r in zip(truth, said, strict=True)) / len(words), 4
            )
            agent_speakers = {
                s for s, r in transcript.roles.speaker_roles.items() if r == Role.AGENT
            }
            agent_words = [
                w.speaker
                for w, t in zip(words, truth, strict=True)
                if t.speaker == Role.AGENT.value
            ]
            majority = max(set(agent_words), key=agent_words.count) if agent_words else None
            row.roles_right = (
                majority in agent_speakers
                and len(agent_speakers) == 1
                and (found.speakers_found >= 2)
            )
        if self.anchors:
            samples = mono.resampled(ASR_RATE).mono()
            found, secs = self.anchor(samples, call.language)
            row.anchor_seconds = round(secs, 2)
            if call.words:
                row.anchor_error_rate = round(
                    error_rate(joined_text(call.words), joined_text(found), call.language), 4
                )
            if reference:
                row.anchor_lost_seconds = _seconds(uncovered(timeline(reference), _spans(found)))
        if self.anchor_diarization and reference:
            start = time.perf_counter()
            given = self.diarizer.diarize(mono.mono(), mono.sample_rate, num_speakers=2)
            row.anchor_seconds = round(row.anchor_seconds + time.perf_counter() - start, 2)
            row.anchor_der = round(der(reference, given.turns)["der"], 4)
            row.anchor_speakers_found = given.speakers_found
        row.reasons = self._flags(transcript)
        row.flagged = bool(row.reasons)
        return row


def timeline(turns: Iterable[SpeakerTurn]) -> list[Segment]:
    """Reference speech as one timeline (overlapping turns joined)."""
    out: list[Segment] = []
    for t in sorted(turns, key=lambda t: t.start):
        if out and t.start <= out[-1].end:
            out[-1] = Segment(start=out[-1].start, end=max(out[-1].end, t.end))
        else:
            out.append(Segment(start=t.start, end=t.end))
    return out


def _pooled(per_channel: dict[str, float], call: DevCall) -> float | None:
    """Errors of every channel over all reference words: a two-track call's error rate
    without interleaving the channels' texts (plain faster-whisper has no word times)."""

    def size(text: str) -> int:  # reference words, or characters for Chinese
        norm = normalize_text(text)
        return len(norm.replace(" ", "")) if is_chinese(call.language) else len(norm.split())

    words = {
        role: size(joined_text(w for w in call.words if w.speaker == role)) for role in per_channel
    }
    total = sum(words.values())
    if not total:
        return None
    return round(sum(rate * words[role] for role, rate in per_channel.items()) / total, 4)


def _spans(items: Iterable[Any]) -> list[tuple[float, float]]:
    return [(x.start, x.end) for x in items]


def _seconds(segments: Iterable[Segment]) -> float:
    return round(sum(s.duration for s in segments), 2)


def evaluate_calls(
    evaluator: Evaluator, calls: list[DevCall], report: Callable[[CallRow], None] | None = None
) -> list[CallRow]:
    rows = []
    for call in calls:
        for row in evaluator.run(call):
            rows.append(row)
            if report is not None:
                report(row)
    return rows


# --------------------------------------------------------------------------- Mandarin


def zh_sentences(data: Path) -> list[tuple[Path, str]]:
    folder = data / "zh_dev" if (data / "zh_dev").is_dir() else data
    refs = folder / "refs.tsv"
    if not refs.is_file():
        return []
    out = []
    for line in refs.read_text(encoding="utf-8").splitlines():
        name, _, text = line.partition("\t")
        if name and (folder / name).is_file():
            out.append((folder / name, text))
    return out


def evaluate_zh(
    settings: Settings,
    sentences: list[tuple[Path, str]],
    rate: int,
    transcriber: Transcriber | None = None,
    progress: Callable[[int], None] | None = None,
) -> ZhRow:
    """CER of `qa transcribe --language zh` and of plain faster-whisper (same base model,
    default options) on each sentence; `rate` 8000 simulates the telephone band (down to
    8 kHz and back up, as the pipeline hears such a call)."""
    transcriber = transcriber or Transcriber(settings, "multi")
    refs, hyps, anchors = [], [], []
    seconds = anchor_seconds = audio_seconds = 0.0
    windows = fallbacks = 0
    domains: dict[str, list[tuple[str, str, str]]] = {}
    for n, (path, reference) in enumerate(sentences, 1):
        audio = load_audio(path).resampled(ASR_RATE).mono()
        if rate != ASR_RATE:
            audio = resample(resample(audio, ASR_RATE, rate), rate, ASR_RATE)
        audio_seconds += len(audio) / ASR_RATE
        start = time.perf_counter()
        result = transcriber.transcribe(audio, "zh")
        seconds += time.perf_counter() - start
        windows += result.windows
        fallbacks += result.fallbacks
        start = time.perf_counter()
        segments, _ = transcriber.model.transcribe(audio, language="zh")
        plain = "".join(s.text for s in segments)
        anchor_seconds += time.perf_counter() - start
        refs.append(reference)
        hyps.append(result.text)
        anchors.append(plain)
        domains.setdefault(path.name.split("_")[0], []).append((reference, result.text, plain))
        if progress is not None:
            progress(n)
    return ZhRow(
        rate=rate,
        sentences=len(sentences),
        audio_seconds=round(audio_seconds, 1),
        cer=round(_pooled_cer(refs, hyps), 4),
        anchor_cer=round(_pooled_cer(refs, anchors), 4),
        seconds=round(seconds, 2),
        anchor_seconds=round(anchor_seconds, 2),
        windows=windows,
        fallbacks=fallbacks,
        per_domain={
            d: (
                round(_pooled_cer([r for r, _, _ in v], [h for _, h, _ in v]), 4),
                round(_pooled_cer([r for r, _, _ in v], [a for _, _, a in v]), 4),
            )
            for d, v in sorted(domains.items())
        },
    )


def _pooled_cer(refs: list[str], hyps: list[str]) -> float:
    """Character errors over all sentences / reference characters (not a mean of rates)."""
    total = errors = 0.0
    for ref, hyp in zip(refs, hyps, strict=True):
        n = len(normalize_text(ref).replace(" ", ""))
        total += n
        errors += error_rate(ref, hyp, "zh") * n
    if not total:
        raise QAError("no reference characters to score")
    return errors / total


# --------------------------------------------------------------------------- report


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def markdown(rows: list[CallRow]) -> str:
    """The rows as a Markdown table, for docs/benchmarks.md."""
    lines = [
        "| call | path | ref | WER qa | WER plain | DER qa | DER given 2 | speakers "
        "(how, separation) | roles (confidence) | words right role | lost s qa | "
        "lost s plain (segments) | flagged |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        wer, plain = _pct(r.error_rate), _pct(r.anchor_error_rate)
        if r.channel_error_rates:
            wer += " (" + " / ".join(f"{v:.1%}" for v in r.channel_error_rates.values()) + ")"
            plain += (
                " (" + " / ".join(f"{v:.1%}" for v in r.anchor_channel_error_rates.values()) + ")"
            )
        how = r.speaker_pass.replace("_", " ") + (
            f", {r.separation:.2f}" if r.separation is not None else ""
        )
        roles = "-" if r.roles_right is None else ("right" if r.roles_right else "**wrong**")
        flags = ", ".join(dict.fromkeys(x.split(":")[0] for x in r.reasons)) or "no"
        lines.append(
            f"| {r.call} | {r.path} | {r.reference} | {wer} | {plain} | {_pct(r.der)} | "
            f"{_pct(r.anchor_der)} | {r.speakers_found} ({how}) | {roles} "
            f"({r.role_confidence:.2f}) | {_pct(r.word_role_accuracy)} | {r.lost_seconds:.1f} | "
            + ("-" if r.anchor_lost_seconds is None else f"{r.anchor_lost_seconds:.1f}")
            + f" | {flags} |"
        )
    return "\n".join(lines) + "\n"


def rich_table(title: str, rows: list[CallRow]) -> Any:
    """The rows as a rich table for the terminal; flags by code (reasons listed apart)."""
    from rich.table import Table

    table = Table(
        "call",
        "path",
        "ref",
        "WER qa",
        "WER plain",
        "DER qa",
        "DER given 2",
        "speakers",
        "roles",
        "words right role",
        "lost s qa",
        "lost s plain (segments)",
        "flagged",
        title=title,
    )
    for r in rows:
        wer = _pct(r.error_rate)
        plain = _pct(r.anchor_error_rate)
        if r.channel_error_rates:
            wer += (
                " (" + ", ".join(f"{k[:2]} {v:.0%}" for k, v in r.channel_error_rates.items()) + ")"
            )
            plain += (
                " ("
                + ", ".join(f"{k[:2]} {v:.0%}" for k, v in r.anchor_channel_error_rates.items())
                + ")"
            )
        speakers = str(r.speakers_found) + (
            f" ({r.speaker_pass}, {r.separation:.2f})" if r.separation is not None else ""
        )
        roles = "-" if r.roles_right is None else ("right" if r.roles_right else "WRONG")
        table.add_row(
            r.call,
            r.path,
            r.reference,
            wer,
            plain,
            _pct(r.der),
            _pct(r.anchor_der),
            speakers,
            f"{roles} {r.role_confidence:.2f}",
            _pct(r.word_role_accuracy),
            f"{r.lost_seconds:.1f}",
            "-" if r.anchor_lost_seconds is None else f"{r.anchor_lost_seconds:.1f}",
            ", ".join(x.split(":")[0] for x in r.reasons) if r.flagged else "no",
        )
    return table


def zh_table(rows: list[ZhRow]) -> Any:
    """The Mandarin rows, one per sample rate, with the error rate per domain."""
    from rich.table import Table

    table = Table(
        "rate",
        "sentences",
        "audio s",
        "CER qa",
        "CER plain",
        "x RT qa",
        "x RT plain",
        "fallback windows",
        *sorted(rows[0].per_domain),
        title="Mandarin customer-service sentences (zh_dev), base; per domain: qa / plain",
    )
    for z in rows:
        table.add_row(
            f"{z.rate // 1000} kHz" + (" (simulated)" if z.rate == 8000 else ""),
            str(z.sentences),
            f"{z.audio_seconds:.0f}",
            f"{z.cer:.1%}",
            f"{z.anchor_cer:.1%}",
            f"{z.audio_seconds / z.seconds:.1f}",
            f"{z.audio_seconds / z.anchor_seconds:.1f}",
            f"{z.fallbacks} of {z.windows}",
            *(f"{a:.1%} / {b:.1%}" for a, b in z.per_domain.values()),
        )
    return table


def to_json(rows: list[CallRow], zh_rows: list[ZhRow]) -> str:
    """Every row, for `qa eval calls --json`."""
    return json.dumps(
        {"calls": [r.model_dump() for r in rows], "zh": [z.model_dump() for z in zh_rows]},
        indent=1,
    )


def run(
    settings: Settings,
    root: Path,
    model: str = "en",
    only: list[str] | None = None,
    synth: Path | None = None,
    zh: bool = True,
    anchors: bool = True,
    *,
    console: Console,
    progress: Console,
) -> tuple[list[CallRow], list[ZhRow], str]:
    """`qa eval calls`: each table is printed on `console` as soon as it is measured (a run
    takes many minutes), with progress bars on `progress`; returns the call rows, the
    Mandarin rows and the call tables as Markdown."""
    from rich.console import Console

    from qa.progress import progress_bar

    calls = dev_calls(root)
    if only:
        calls = [c for c in calls if c.name in only]
    if not calls and synth is None and not zh:
        raise QAError("no development calls found (give --data)", file=str(root))
    evaluator = Evaluator(settings, model, anchors=anchors)
    rows: list[CallRow] = []
    pages: list[str] = []
    tables = [("real calls", calls)]
    if synth is not None:
        tables.append(("synthetic calls (espeak-ng, a second table)", synth_calls(synth)))
    for title, group in tables:
        if not group:
            continue
        with progress_bar("calls", console=progress) as bar:
            task = bar.add_task(title, total=len(group))
            found = []
            for call in group:
                found += evaluate_calls(evaluator, [call])
                bar.advance(task)
        rows += found
        pages.append(f"{title}\n\n{markdown(found)}")
        wide = Console(width=max(console.width, 200))
        wide.print(rich_table(title, found))
        for r in found:
            for reason in r.reasons:
                wide.print(f"  {r.call} ({r.path}) {reason}", soft_wrap=True)
    zh_rows = []
    sentences = zh_sentences(root) if zh else []
    if sentences:
        transcriber = evaluator.transcriber("zh")
        for rate in (16000, 8000):
            with progress_bar("sentences", console=progress) as bar:
                task = bar.add_task(f"zh_dev at {rate // 1000} kHz", total=len(sentences))
                zh_rows.append(
                    evaluate_zh(
                        settings,
                        sentences,
                        rate,
                        transcriber,
                        progress=lambda n, t=task: bar.update(t, completed=n),
                    )
                )
        Console(width=max(console.width, 200)).print(zh_table(zh_rows))
    return rows, zh_rows, "\n".join(pages)
