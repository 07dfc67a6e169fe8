"""Offline transcription with faster-whisper (CTranslate2), word timestamps included.

The default ("accurate") mode decodes exactly as plain faster-whisper does with its own
defaults (beam 5, previous-text conditioning, temperature fallback, no VAD cut): on the real
calls of the development set, every shortcut tried (beam 1, VAD cutting, batching, no
conditioning, word timestamps during decoding) lost words or accuracy (docs/benchmarks.md).
Word times are added afterwards by aligning the decoded text against the window's encoder
output, which `transcribe(word_timestamps=True)` would also do but only while changing where
each 30 s window starts, and that alone cost 6 points of WER.

Voice activity (Silero VAD, bundled with faster-whisper) is not used to cut the audio but to
judge the result: speech that produced no words is decoded again on its own, what is still
without words is reported as lost speech, and text over silence that the decoder itself
doubted is dropped. The "fast" mode (batched, beam 1, VAD cut) is kept for throughput.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from qa.asr.chinese import is_chinese, words_to_script
from qa.config import Settings, get_settings
from qa.errors import ModelNotFoundError, QAError
from qa.models import model_path
from qa.schema import Record, Segment, Word

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MODEL_KEYS = {"en": "asr_model_en", "multi": "asr_model_multi"}

# Whisper's own defaults for dropping a decoded window: likely no speech and low
# confidence, or text that compresses too well (a repetition loop).
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
# Fast mode: skip silent stretches longer than this (s) around a suspected hallucination.
HALLUCINATION_SILENCE_THRESHOLD = 2.0
# An immediate repeat of a word aligned to less audio than this (s) is dropped.
MIN_REPEAT_DURATION = 0.02
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"

# Speech map: Silero VAD regions, padded a little so word edges fall inside. Below the usual
# 0.5: as a judge of what was missed it should hear a short "hello" on a telephone line
# (faster-whisper's ONNX model at 0.5 missed such words that Silero's own release finds).
VAD_THRESHOLD = 0.35
VAD_MIN_SPEECH_MS = 250
VAD_MIN_SILENCE_MS = 300
VAD_PAD_MS = 100
# A word aligned further than this (s) outside its segment's decoded time is misplaced.
MISALIGNED = 2.0
# Speech further than this (s) from any recognised word counts as speech without words;
# closer, it is the word aligner's imprecision.
WORD_REACH = 0.5
# Pieces of speech without words shorter than this (s) are breaths and clicks, not lost speech.
MIN_LOST = 0.3
# A piece at least this long (s) is decoded again on its own, with this much context (s);
# pieces closer than twice the context are read together. Words whose middle lies within
# RETRY_EDGE (s) of the piece are taken.
MIN_RETRY = 0.4
RETRY_CONTEXT = 0.5
RETRY_EDGE = 0.25


class AsrResult(Record):
    """Words of one audio stream, with the language the model used and how well it heard."""

    words: list[Word] = Field(default_factory=list)
    language: str
    language_probability: float = 1.0
    duration: float
    model: str = ""
    speech_seconds: float | None = None  # voice activity; None: not measured (fast mode)
    lost: list[Segment] = Field(default_factory=list)  # speech that produced no words
    recovered_seconds: float = 0.0  # speech without words at first, read on a second pass
    dropped_seconds: float = 0.0  # text over silence that the decoder doubted, dropped
    windows: int = 0  # 30 s decoding windows
    fallbacks: int = 0  # windows decoded again at a higher temperature

    @property
    def text(self) -> str:
        return "".join(w.text for w in self.words).strip()

    @property
    def confidence(self) -> float | None:
        return float(np.mean([w.probability for w in self.words])) if self.words else None

    @property
    def lost_seconds(self) -> float:
        return round(sum(s.duration for s in self.lost), 2)


def select_model_key(language: str | None, settings: Settings | None = None) -> str:
    """English calls use the English-only model (faster, more accurate); others "multi".

    Without a language the multilingual model detects it, unless the site's default
    language is English.
    """
    if language is None:
        language = (settings or get_settings()).default_language
    return "en" if language is not None and base_language(language) == "en" else "multi"


def word_key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def base_language(language: str) -> str:
    """The language without its region: "en" for "en", "en-GB" or "EN_us"."""
    return language.strip().replace("_", "-").split("-")[0].lower()


def cpu_threads(settings: Settings) -> int:
    """CTranslate2 defaults to 4 threads, which oversubscribes a 2-core machine."""
    if settings.asr_threads > 0:
        return settings.asr_threads
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _resolve_device(settings: Settings) -> tuple[str, str]:
    device = settings.asr_device
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = settings.asr_compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    return device, compute


# ------------------------------------------------------------------------ speech map


def speech_regions(audio: np.ndarray) -> list[Segment]:
    """Where someone speaks (Silero VAD from faster-whisper's bundled ONNX model)."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=VAD_THRESHOLD,
        min_speech_duration_ms=VAD_MIN_SPEECH_MS,
        min_silence_duration_ms=VAD_MIN_SILENCE_MS,
        speech_pad_ms=VAD_PAD_MS,
    )
    stamps = get_speech_timestamps(np.asarray(audio, dtype=np.float32), options, SAMPLE_RATE)
    return [
        Segment(start=round(s["start"] / SAMPLE_RATE, 3), end=round(s["end"] / SAMPLE_RATE, 3))
        for s in stamps
    ]


def uncovered(
    speech: list[Segment],
    spans: Iterable[tuple[float, float]],
    reach: float = WORD_REACH,
    min_piece: float = MIN_LOST,
) -> list[Segment]:
    """The parts of `speech` further than `reach` seconds from every span (a word, or a
    segment): speech the recogniser wrote nothing for. Pieces under `min_piece` are dropped."""
    covers = sorted((a - reach, b + reach) for a, b in spans)
    out: list[Segment] = []
    k = 0
    for region in speech:
        pos = region.start
        while k < len(covers) and covers[k][1] <= region.start:
            k += 1
        j = k
        while j < len(covers) and covers[j][0] < region.end:
            a, b = covers[j]
            if a > pos and a - pos >= min_piece:
                out.append(Segment(start=round(pos, 3), end=round(min(a, region.end), 3)))
            pos = max(pos, b)
            j += 1
        if region.end - pos >= min_piece:
            out.append(Segment(start=round(pos, 3), end=round(region.end, 3)))
    return out


def joined(pieces: list[Segment], gap: float) -> list[Segment]:
    """Pieces closer than `gap` seconds made one, so a sentence is read in one go."""
    out: list[Segment] = []
    for p in pieces:
        if out and p.start - out[-1].end < gap:
            out[-1] = Segment(start=out[-1].start, end=p.end)
        else:
            out.append(p)
    return out


def _overlaps(start: float, end: float, regions: list[Segment], reach: float) -> bool:
    return any(r.start - reach < end and r.end + reach > start for r in regions)


# ------------------------------------------------------------------------ the model


def _whisper_class() -> type:
    """WhisperModel that keeps the encoder output of the window it is decoding, so the
    window's words can be aligned without encoding the audio a second time."""
    from faster_whisper import WhisperModel

    class KeepingWhisperModel(WhisperModel):
        last_encoder_output: Any = None

        def encode(self, features: np.ndarray) -> Any:
            self.last_encoder_output = super().encode(features)
            return self.last_encoder_output

    return KeepingWhisperModel


class Transcriber:
    """One loaded Whisper model; `transcribe` is safe to call for every call in a batch."""

    def __init__(self, settings: Settings, model: str = "en") -> None:
        from faster_whisper import BatchedInferencePipeline

        self.settings = settings
        if model in MODEL_KEYS:
            path = model_path(MODEL_KEYS[model], settings)
        else:
            path = Path(model)
            if not (path / "model.bin").is_file():
                raise ModelNotFoundError(
                    "not a CTranslate2 Whisper model directory (no model.bin)", file=str(path)
                )
        self.path = path
        self.device, self.compute_type = _resolve_device(settings)
        try:
            self.model = _whisper_class()(
                str(path),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=cpu_threads(settings),
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelNotFoundError(f"cannot load Whisper model: {exc}", file=str(path)) from exc
        self.multilingual = bool(self.model.model.is_multilingual)
        self.name = self._model_name(model)
        self.mode = settings.asr_mode
        self.batch_size = settings.asr_batch_size
        self.batched = (
            BatchedInferencePipeline(self.model)
            if self.mode == "fast" and self.batch_size > 0
            else None
        )

    def _model_name(self, key: str) -> str:
        if key == "en":
            return "whisper-tiny.en"
        if key == "multi":
            return "whisper-base"
        return self.path.name

    # ------------------------------------------------------------------ options

    def _accurate_options(self) -> dict:
        """faster-whisper's own defaults, spelled out, with the site's settings on top; only
        the temperature fallback has three steps instead of six (`Settings.asr_temperatures`)."""
        return {
            "beam_size": self.settings.asr_beam_size,
            "temperature": list(self.settings.asr_temperatures),
            "condition_on_previous_text": True,
            "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "vad_filter": False,
            "word_timestamps": False,  # aligned afterwards, see the module docstring
            "hotwords": self.settings.asr_hotwords,
            "initial_prompt": self.settings.asr_prompt,
        }

    def _retry_options(self) -> dict:
        """A short piece of speech on its own: no context to condition on."""
        return {
            **self._accurate_options(),
            "condition_on_previous_text": False,
            "word_timestamps": True,
            "initial_prompt": None,
        }

    def _fast_options(self) -> dict:
        return {
            "beam_size": 1,
            "word_timestamps": True,
            # Silero VAD drops silence and hold music before decoding; it also drops quiet or
            # unusual voices, which is why this is not the default.
            "vad_filter": True,
            "compression_ratio_threshold": COMPRESSION_RATIO_THRESHOLD,
            "log_prob_threshold": LOG_PROB_THRESHOLD,
            "no_speech_threshold": NO_SPEECH_THRESHOLD,
            "hotwords": self.settings.asr_hotwords,
        }

    def _fast_plain_options(self) -> dict:
        return {
            **self._fast_options(),
            "condition_on_previous_text": False,
            "hallucination_silence_threshold": HALLUCINATION_SILENCE_THRESHOLD,
            "temperature": list(self.settings.asr_temperatures),
        }

    # ------------------------------------------------------------------ transcription

    def check_language(self, language: str | None) -> str | None:
        """The language code the model will be asked for; a clear error if it cannot."""
        if language is None:
            return None
        lang = base_language(language)
        if not self.multilingual and lang != "en":
            raise QAError(
                f"model {self.name} is English-only and cannot transcribe language "
                f"{language!r}; use the multilingual model (--model multi)",
                file=str(self.path),
            )
        if self.multilingual and lang not in self.model.supported_languages:
            raise QAError(f"language {language!r} is not supported by {self.name}")
        return lang

    def transcribe(
        self,
        samples: np.ndarray,
        language: str | None = None,
        *,
        progress: Callable[[float], None] | None = None,
    ) -> AsrResult:
        """Words of mono 16 kHz float32 samples; `progress` gets audio seconds done."""
        lang = self.check_language(language)
        audio = np.asarray(samples, dtype=np.float32)
        if audio.ndim == 2 and audio.shape[0] == 1:
            audio = audio[0]
        if audio.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {audio.shape}")
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            return AsrResult(language=lang or "en", duration=0.0, model=self.name)
        if self.mode == "fast":
            result = self._transcribe_fast(audio, lang, progress)
        else:
            result = self._transcribe_accurate(audio, lang, progress)
        if is_chinese(result.language):
            texts = words_to_script([w.text for w in result.words], self.settings.chinese_script)
            result.words = [
                w.model_copy(update={"text": t}) for w, t in zip(result.words, texts, strict=True)
            ]
        if progress is not None:
            progress(duration)
        return result

    def _transcribe_accurate(
        self, audio: np.ndarray, lang: str | None, progress: Callable[[float], None] | None
    ) -> AsrResult:
        segments, info = self.model.transcribe(audio, language=lang, **self._accurate_options())
        counts = {"windows": 0, "fallbacks": 0}
        dropped = [0.0]
        speech = speech_regions(audio)
        aligned = self._aligned(segments, audio, info.language, counts)
        words = list(self._words(self._judged(aligned, speech, dropped), progress))
        lost = uncovered(speech, ((w.start, w.end) for w in words))
        recovered: list[Word] = []
        for piece in joined(lost, 2 * RETRY_CONTEXT):
            if piece.duration >= MIN_RETRY:
                recovered += self._retry(audio, piece, info.language, counts)
        if recovered:
            words = sorted(words + recovered, key=lambda w: (w.start, w.end))
            still = uncovered(speech, ((w.start, w.end) for w in words))
        else:
            still = lost
        return AsrResult(
            words=words,
            language=info.language,
            language_probability=float(info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            model=self.name,
            speech_seconds=round(sum(s.duration for s in speech), 2),
            lost=still,
            recovered_seconds=round(
                sum(p.duration for p in lost) - sum(p.duration for p in still), 2
            ),
            dropped_seconds=round(dropped[0], 2),
            **counts,
        )

    def _aligned(
        self, segments: Iterable, audio: np.ndarray, language: str, counts: dict[str, int]
    ) -> Iterator:
        """Segments with word times, aligned one decoding window at a time against the
        encoder output the decoder just used (the same alignment faster-whisper does)."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import Word as FwWord

        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
        )
        frames = len(audio) // self.model.feature_extractor.hop_length
        window: list = []
        encoder_output: Any = None
        last_speech = 0.0

        def flush() -> Iterator:
            nonlocal last_speech
            if not window:
                return
            seek = window[0].seek
            size = min(self.model.feature_extractor.nb_max_frames, frames - seek)
            dicts = [
                {"seek": seek, "start": s.start, "end": s.end, "tokens": s.tokens} for s in window
            ]
            counts["windows"] += 1
            counts["fallbacks"] += int(window[0].temperature > 0)
            last_speech = (
                self.model.add_word_timestamps(
                    [dicts],
                    tokenizer,
                    encoder_output,
                    size,
                    PREPEND_PUNCTUATION,
                    APPEND_PUNCTUATION,
                    last_speech,
                )
                or last_speech
            )
            for s, d in zip(window, dicts, strict=True):
                yield replace(s, words=[FwWord(**w) for w in d["words"]])
            window.clear()

        for segment in segments:
            if window and segment.seek != window[0].seek:
                yield from flush()
            if not window:
                encoder_output = self.model.last_encoder_output
            window.append(segment)
        yield from flush()

    @staticmethod
    def _judged(segments: Iterable, speech: list[Segment], dropped: list[float]) -> Iterator:
        """Drops text written over silence that the decoder itself doubted (Whisper's
        hallucinations on hold music, line noise and long pauses); a confident segment is
        kept even where the voice activity detector heard nothing. A segment whose words the
        aligner placed mostly outside the segment's own time is dropped too (seen when the
        decoder wrote one short sentence for a whole window of speech). `dropped[0]` adds up
        the seconds dropped."""
        for s in segments:
            spans = [(w.start, w.end) for w in s.words or ()] or [(s.start, s.end)]
            heard = any(_overlaps(a, b, speech, WORD_REACH) for a, b in spans)
            doubtful = (
                s.no_speech_prob > 0.5
                or s.avg_logprob < LOG_PROB_THRESHOLD
                or s.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            )
            # words the aligner put outside the time the decoder gave their segment: the
            # alignment failed, and the speech they belong to is read again on its own
            astray = sum(
                not (s.start - MISALIGNED <= (a + b) / 2 <= s.end + MISALIGNED) for a, b in spans
            )
            if (not heard and doubtful) or astray * 2 > len(spans):
                dropped[0] += s.end - s.start
                continue
            yield s

    def _retry(
        self, audio: np.ndarray, piece: Segment, language: str, counts: dict[str, int]
    ) -> list[Word]:
        """Speech the full pass wrote nothing for, decoded on its own; what the decoder
        itself takes for no speech is not taken."""
        start = max(0.0, piece.start - RETRY_CONTEXT)
        end = min(len(audio) / SAMPLE_RATE, piece.end + RETRY_CONTEXT)
        clip = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        segments, _ = self.model.transcribe(clip, language=language, **self._retry_options())
        found, windows = [], set()
        for s in segments:
            if s.seek not in windows:
                windows.add(s.seek)
                counts["fallbacks"] += int(s.temperature > 0)
            if s.no_speech_prob > NO_SPEECH_THRESHOLD and s.avg_logprob < LOG_PROB_THRESHOLD:
                continue  # Whisper's own test for a window without speech
            shifted = replace(
                s,
                words=[replace(w, start=w.start + start, end=w.end + start) for w in s.words or ()],
            )
            # words of the context around the piece belong to the first pass
            found += [
                w
                for w in self._words([shifted], None)
                if piece.start - RETRY_EDGE <= (w.start + w.end) / 2 <= piece.end + RETRY_EDGE
            ]
        counts["windows"] += len(windows)
        return found

    def _transcribe_fast(
        self, audio: np.ndarray, lang: str | None, progress: Callable[[float], None] | None
    ) -> AsrResult:
        if self.batched is not None:
            segments, info = self.batched.transcribe(
                audio, language=lang, batch_size=self.batch_size, **self._fast_options()
            )
            segments = self._checked(segments, audio, lang)
        else:
            segments, info = self.model.transcribe(
                audio, language=lang, **self._fast_plain_options()
            )
        return AsrResult(
            words=list(self._words(segments, progress)),
            language=info.language,
            language_probability=float(info.language_probability),
            duration=len(audio) / SAMPLE_RATE,
            model=self.name,
        )

    def _checked(self, segments: Iterable, audio: np.ndarray, lang: str | None) -> Iterable:
        """Batched segments through the guards the batched pipeline does not apply.

        A window whose text loops (compression ratio too high) is decoded again on its own
        with the temperature fallback, as the sequential decoder would, rather than dropped:
        dropping it loses up to 30 s of the call. Silence that decoded to text is dropped.
        """
        for segment in segments:
            if segment.compression_ratio > COMPRESSION_RATIO_THRESHOLD:
                lo, hi = int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
                again, _ = self.model.transcribe(
                    audio[lo:hi], language=lang, **self._fast_plain_options()
                )
                for s in again:
                    yield replace(
                        s,
                        start=s.start + segment.start,
                        end=s.end + segment.start,
                        words=[
                            replace(w, start=w.start + segment.start, end=w.end + segment.start)
                            for w in s.words or ()
                        ],
                    )
            elif not (
                segment.no_speech_prob > NO_SPEECH_THRESHOLD
                and segment.avg_logprob < LOG_PROB_THRESHOLD
            ):
                yield segment

    @staticmethod
    def _words(segments: Iterable, progress: Callable[[float], None] | None) -> Iterable[Word]:
        previous = ""
        for segment in segments:
            for w in segment.words or ():
                key = word_key(w.word)
                if not key:
                    continue
                # A repeat the aligner gives no audio to ("Hello. Hello. Hello." stacked
                # at one instant) is a decoding loop, not speech.
                if key == previous and w.end - w.start < MIN_REPEAT_DURATION:
                    continue
                previous = key
                yield Word(
                    start=round(float(w.start), 3),
                    end=round(float(max(w.end, w.start)), 3),
                    text=w.word,
                    probability=round(float(w.probability), 4),
                )
            if progress is not None:
                progress(float(segment.end))
