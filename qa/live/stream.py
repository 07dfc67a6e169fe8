"""Incremental transcription of one live track.

Whisper decodes whole windows, not streams, so a track is decoded again every `step_s` of new
audio over the window of audio not yet committed, and a word is committed once two
consecutive decodes agree on it (LocalAgreement-2, as in whisper_streaming): what one decode
says and the next repeats no longer changes. When the speaker falls silent the rest of the
hypothesis is committed and the utterance closed, and the buffer is trimmed there, so
windows stay short.

Most of the time only one side of a call speaks, so a silent track must cost nothing: a
20 ms energy gate in `feed` (the server's event-loop thread) says whether a decode is worth
it at all, and Silero VAD (bundled with faster-whisper) on the window decides what is speech:
a window without speech is not decoded, and words outside speech or that the decoder itself
barely believed are dropped, which keeps Whisper's "Thank you." over line noise out of the
transcript. The buffer is bounded: a track the decoders cannot keep up with loses its oldest
audio (counted in `lost_seconds`) instead of growing without end.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field

from qa.asr.chinese import is_chinese, words_to_script
from qa.asr.whisper import SAMPLE_RATE, word_key
from qa.audio import resample
from qa.live.models import Commit, LiveWord
from qa.schema import Record


class StreamOptions(Record):
    """How often a track is decoded and when its words are committed.

    `step_s`, `settle_s` and the token cap were chosen on the real 8 kHz calls with tiny.en
    on 2 cores (`qa bench live`, docs/benchmarks.md, "Live transcription"), and the energy
    gate from their silent frames; the other values are not tuned yet.
    """

    step_s: float = Field(1.0, gt=0, description="new audio (s) between decodes")
    max_window_s: float = Field(12.0, gt=1, description="uncommitted audio (s) one decode sees")
    silence_s: float = Field(0.6, gt=0, description="trailing silence (s) that ends an utterance")
    max_backlog_s: float = Field(30.0, gt=0, description="buffered audio (s) kept at most")
    beam_size: int = Field(1, ge=1)
    voice_dbfs: float = Field(-50.0, description="a 20 ms frame louder than this may be voice")
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Silero speech probability")
    word_reach_s: float = Field(0.3, ge=0, description="a word this far (s) from speech is kept")
    min_probability: float = Field(0.05, ge=0, le=1, description="words below are dropped")
    prompt_chars: int = Field(120, ge=0, description="recent committed text given as prompt")
    settle_s: float = Field(
        1.0, ge=0, description="a word this far (s) before the window's end commits unagreed"
    )


MAX_TOKENS = 224  # Whisper's limit is 448 with the prompt
TOKENS_PER_S = 8  # fast speech is about 4 tokens a second in English, 6 in Chinese


@dataclass(frozen=True)
class _Word:
    start: float  # absolute seconds of the track
    end: float
    text: str
    probability: float
    key: str  # normalised text that agreement compares


# Speech regions: Silero's minimum speech and silence kept short so an utterance's end is
# found within a step; a little padding keeps word edges inside.
_VAD_MIN_SPEECH_MS = 200
_VAD_MIN_SILENCE_MS = 300
_VAD_PAD_MS = 100
# Audio kept before the next voice when silence is skipped or a buffer trimmed (s): Whisper
# needs the onset of the first word.
_KEEP_S = 0.3
# A repeat of the committed tail at the start of a new hypothesis within this (s) of the
# committed end is the same words decoded again (the audio before the trim point).
_REPEAT_REACH_S = 1.0
_REPEAT_NGRAM = 5


class TrackTranscriber:
    """One track of a live call: `feed` audio as it arrives, `step` when `due`, `flush` at
    the end. `feed` may run in another thread than `step`; one `step` runs at a time."""

    def __init__(
        self,
        model: Any,
        *,
        language: str | None,
        rate: int = 8000,
        options: StreamOptions | None = None,
        prompt: str | None = None,
    ) -> None:
        self.model = model
        self.language = language
        self.rate = rate
        self.options = options or StreamOptions()
        self._chinese = is_chinese(language)
        self._lock = threading.Lock()
        self._step_lock = threading.Lock()
        self._frame = max(1, int(round(rate * 0.02)))
        self._gate = 10.0 ** (self.options.voice_dbfs / 10.0)  # mean square of a loud frame
        self._buf = np.zeros(0, dtype=np.float32)  # audio from sample `_base` on
        self._base = 0
        self._received = 0
        self._decoded_to = 0  # end of the last window handed to the decoder
        self._voiced_to = 0  # end of the last frame louder than the gate
        self._arrivals: list[int] = []  # end sample of each chunk still buffered...
        self._heard: list[float] = []  # ...and when it arrived
        self._hypothesis: list[_Word] = []  # the last decode's words not yet committed
        self._committed_end = 0.0  # seconds
        self._committed_keys: list[str] = []
        self._context = prompt or ""
        self._open = False  # words committed since the last final commit
        self._last_voice: float | None = None
        self._lost = 0
        self.decodes = 0
        self.decode_seconds = 0.0  # wall time inside the model
        self.vad_seconds = 0.0

    # ------------------------------------------------------------------ properties

    @property
    def audio_seconds(self) -> float:
        return self._received / self.rate

    @property
    def last_voice(self) -> float | None:
        """Where voice last ended on this track (audio seconds); None before any."""
        return self._last_voice

    @property
    def lost_seconds(self) -> float:
        return self._lost / self.rate

    @property
    def backlog_seconds(self) -> float:
        """Audio received but not yet given to a decode."""
        with self._lock:
            return (self._received - self._decoded_to) / self.rate

    # ------------------------------------------------------------------ feeding

    def feed(self, samples: np.ndarray, heard_at: float) -> None:
        """Append audio that arrived at `heard_at` (epoch seconds); cheap, never decodes."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(x):
            return
        n = len(x) // self._frame * self._frame
        loud = -1
        if n:
            energy = np.mean(x[:n].reshape(-1, self._frame) ** 2, axis=1)
            hits = np.flatnonzero(energy > self._gate)
            if len(hits):
                loud = (int(hits[-1]) + 1) * self._frame
        if n < len(x) and float(np.mean(x[n:] ** 2)) > self._gate:
            loud = len(x)
        with self._lock:
            if loud >= 0:
                self._voiced_to = self._received + loud
            self._buf = np.concatenate([self._buf, x])
            self._received += len(x)
            self._arrivals.append(self._received)
            self._heard.append(heard_at)
            if not self._pending_locked():
                self._skip_silence_locked()
            excess = len(self._buf) - int(self.options.max_backlog_s * self.rate)
            if excess > 0:
                new_base = self._base + excess
                self._lost += max(0, new_base - max(self._decoded_to, self._base))
                self._trim_locked(new_base)
                self._decoded_to = max(self._decoded_to, self._base)

    def _pending_locked(self) -> bool:
        """Voice arrived since the last decode, or words wait for agreement or a final."""
        return self._voiced_to > self._decoded_to or bool(self._hypothesis) or self._open

    def _skip_silence_locked(self) -> None:
        """Nothing to say and nothing new: forget the silence (keeping an onset's worth)."""
        if self._received - self._decoded_to >= self.options.step_s * self.rate:
            self._trim_locked(self._received - int(_KEEP_S * self.rate))
            self._decoded_to = self._received

    def _trim_locked(self, sample: int) -> None:
        sample = min(sample, self._received)
        if sample <= self._base:
            return
        self._buf = self._buf[sample - self._base :].copy()
        self._base = sample
        k = bisect.bisect_right(self._arrivals, sample)
        if k > 1:  # keep the chunk holding `sample`
            del self._arrivals[: k - 1]
            del self._heard[: k - 1]

    def _heard_at_locked(self, seconds: float) -> float:
        sample = min(max(int(seconds * self.rate), 0), self._received - 1)
        k = bisect.bisect_right(self._arrivals, sample)
        return self._heard[min(k, len(self._heard) - 1)] if self._heard else 0.0

    # ------------------------------------------------------------------ decoding

    def due(self) -> bool:
        """Worth a decode now: a step of new audio, and voice in it or words pending."""
        with self._lock:
            if self._received - self._decoded_to < self.options.step_s * self.rate:
                return False
            if self._pending_locked():
                return True
            self._skip_silence_locked()
            return False

    def step(self, now: Callable[[], float] = time.time) -> list[Commit]:
        """Decode the window once; commit what two decodes agree on, or all of it at the
        end of an utterance."""
        with self._step_lock:
            window = self._take_window()
            if window is None:
                return []
            audio, start = window
            return self._advance(audio, start, now, flush=False)

    def flush(self, now: Callable[[], float] = time.time) -> list[Commit]:
        """End of stream: decode what is left and commit all of it, closing the utterance."""
        commits: list[Commit] = []
        with self._step_lock:
            while True:
                with self._lock:
                    if self._received <= self._base:
                        break
                window = self._take_window()
                if window is None:
                    break
                audio, start = window
                commits += self._advance(audio, start, now, flush=True)
            with self._lock:
                rest = self._commit_locked(self._hypothesis, now())
                if rest.words or self._open:
                    commits.append(Commit(words=rest.words, final=True))
                    self._open = False
                self._hypothesis = []
        return _merged(commits)

    def _take_window(self) -> tuple[np.ndarray, int] | None:
        with self._lock:
            end = min(self._received, self._base + int(self.options.max_window_s * self.rate))
            if end <= self._base:
                return None
            self._decoded_to = max(self._decoded_to, end)
            return self._buf[: end - self._base].copy(), self._base

    def _advance(
        self, audio: np.ndarray, start: int, now: Callable[[], float], *, flush: bool
    ) -> list[Commit]:
        """One decode of `audio` (which starts at sample `start`) and what it commits."""
        o = self.options
        t0 = start / self.rate
        t_end = t0 + len(audio) / self.rate
        audio16 = resample(audio, self.rate, SAMPLE_RATE)
        speech = self._speech(audio16, t0)
        words: list[_Word] = []
        if speech:
            words = self._decode(audio16, t0, speech)
        with self._lock:
            if speech:
                self._last_voice = max(self._last_voice or 0.0, min(speech[-1][1], t_end))
            words = self._new_words_locked(words)
            full = len(audio) >= int(o.max_window_s * self.rate)
            stamp = now()
            if flush or not speech or t_end - speech[-1][1] >= o.silence_s:
                # The speaker fell silent (or the stream ended): the utterance is complete.
                commit = self._commit_locked(words if speech else self._hypothesis, stamp)
                self._hypothesis = []
                end = start + len(audio)
                if flush:
                    self._trim_locked(end)
                else:
                    cut = speech[-1][1] + _KEEP_S if speech else t_end - _KEEP_S
                    self._trim_locked(min(round(cut * self.rate), end))
                if commit.words or self._open:
                    self._open = False
                    return [Commit(words=commit.words, final=True)]
                return []
            stable = _agreed(self._hypothesis, words)
            # a word already followed by settle_s of decoded audio is as good as agreed: when
            # the workers fall behind, waiting for a second decode would double the delay
            while o.settle_s and stable < len(words) and words[stable].end <= t_end - o.settle_s:
                stable += 1
            commit = self._commit_locked(words[:stable], stamp)
            self._hypothesis = words[stable:]
            if full:
                # No pause in a whole window: slide on. If nothing agreed, the first half of
                # the hypothesis is taken as it stands rather than holding the window.
                if self._committed_end - t0 < o.max_window_s / 2 and self._hypothesis:
                    half = t0 + o.max_window_s / 2
                    forced = [w for w in self._hypothesis if w.end <= half] or self._hypothesis[:1]
                    more = self._commit_locked(forced, stamp)
                    commit = Commit(words=commit.words + more.words)
                    self._hypothesis = self._hypothesis[len(forced) :]
                self._trim_locked(round(max(self._committed_end, t0 + 1.0) * self.rate))
            return [commit] if commit.words else []

    def _speech(self, audio16: np.ndarray, t0: float) -> list[tuple[float, float]]:
        """Speech regions (absolute seconds) by Silero VAD."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        t = time.perf_counter()
        options = VadOptions(
            threshold=self.options.vad_threshold,
            min_speech_duration_ms=_VAD_MIN_SPEECH_MS,
            min_silence_duration_ms=_VAD_MIN_SILENCE_MS,
            speech_pad_ms=_VAD_PAD_MS,
        )
        stamps = get_speech_timestamps(audio16, options, SAMPLE_RATE)
        self.vad_seconds += time.perf_counter() - t
        return [(t0 + s["start"] / SAMPLE_RATE, t0 + s["end"] / SAMPLE_RATE) for s in stamps]

    def _decode(
        self, audio16: np.ndarray, t0: float, speech: list[tuple[float, float]]
    ) -> list[_Word]:
        """Greedy decode with word times; words over silence or barely believed dropped."""
        o = self.options
        with self._lock:
            prompt = self._context[-o.prompt_chars :].strip() if o.prompt_chars else ""
        t = time.perf_counter()
        segments, _info = self.model.transcribe(
            audio16,
            language=self.language,
            beam_size=o.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            word_timestamps=True,
            initial_prompt=prompt or None,
            vad_filter=False,
            # a greedy decode that loops would hold a worker for seconds: a window cannot
            # hold more than about this many tokens of real speech
            max_new_tokens=min(MAX_TOKENS, int(len(audio16) / SAMPLE_RATE * TOKENS_PER_S) + 8),
        )
        raw = [w for s in segments for w in (s.words or [])]
        self.decode_seconds += time.perf_counter() - t
        self.decodes += 1
        texts = [w.word for w in raw]
        if self._chinese:
            texts = words_to_script(texts, "simplified")
        reach = o.word_reach_s
        out: list[_Word] = []
        for w, text in zip(raw, texts, strict=True):
            start, end = t0 + float(w.start), t0 + float(w.end)
            key = word_key(text)
            if not key or float(w.probability) < o.min_probability:
                continue
            if not any(a - reach < end and b + reach > start for a, b in speech):
                continue
            out.append(_Word(start, end, text, float(w.probability), key))
        return out

    def _new_words_locked(self, words: list[_Word]) -> list[_Word]:
        """The words after the committed point, less a repeat of the committed tail."""
        words = [w for w in words if (w.start + w.end) / 2 > self._committed_end]
        if words and words[0].start - self._committed_end < _REPEAT_REACH_S:
            tail = self._committed_keys
            for n in range(min(_REPEAT_NGRAM, len(tail), len(words)), 0, -1):
                if tail[-n:] == [w.key for w in words[:n]]:
                    return words[n:]
        return words

    def _commit_locked(self, words: list[_Word], stamp: float) -> Commit:
        out: list[LiveWord] = []
        for w in words:
            start = max(w.start, self._committed_end)
            end = max(w.end, start)
            out.append(
                LiveWord(
                    start=round(start, 3),
                    end=round(end, 3),
                    text=w.text,
                    probability=round(w.probability, 4),
                    heard_at=self._heard_at_locked(end),
                    committed_at=stamp,
                )
            )
            self._committed_end = end
            self._committed_keys.append(w.key)
            self._context += w.text
        del self._committed_keys[:-_REPEAT_NGRAM]
        self._context = self._context[-max(self.options.prompt_chars, 1) * 2 :]
        if out:
            self._open = True
        return Commit(words=out)


def _agreed(previous: list[_Word], current: list[_Word]) -> int:
    """Length of the prefix two consecutive hypotheses share (normalised text)."""
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a.key != b.key:
            break
        n += 1
    return n


def _merged(commits: list[Commit]) -> list[Commit]:
    """Consecutive non-final commits joined; empty non-final ones dropped."""
    out: list[Commit] = []
    for c in commits:
        if not c.words and not c.final:
            continue
        if out and not out[-1].final:
            out[-1] = Commit(words=out[-1].words + c.words, final=c.final)
        else:
            out.append(c)
    return out
