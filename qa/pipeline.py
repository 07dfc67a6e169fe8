"""One call end to end, as pure functions of (audio, metadata, models, settings).

The Ray workers and the sequential baseline both call these, so a result does not depend on
how it was scheduled. The work is split in two stages, `transcribe_stage` (audio models) and
`score_stage` (text models), so a cluster can run them on different actors.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from qa.config import Settings
from qa.errors import QAError
from qa.schema import CallMeta, CallResult, ErrorRecord, Transcript

if TYPE_CHECKING:
    from qa.asr.diarize import Diarizer
    from qa.asr.whisper import Transcriber
    from qa.rules.format import Scorecard
    from qa.scoring.encoder import Encoder
    from qa.scoring.sentiment import SentimentModel

# Bump when a stage changes what it produces: results are keyed by it, so a new version
# re-processes every call while old results stay readable.
PIPELINE_VERSION = "5"  # 5: unsure_decoding quality issue, held critical items


class Models:
    """Every model a process needs, each loaded on first use and then kept for the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._transcribers: dict[str, Transcriber] = {}
        self._scorecards: dict[str, Scorecard] = {}

    def transcriber(self, key: str) -> Transcriber:
        if key not in self._transcribers:
            from qa.asr.whisper import Transcriber

            self._transcribers[key] = Transcriber(self.settings, model=key)
        return self._transcribers[key]

    @cached_property
    def diarizer(self) -> Diarizer:
        from qa.asr.diarize import Diarizer

        return Diarizer(self.settings)

    @cached_property
    def encoder(self) -> Encoder:
        from qa.scoring.encoder import Encoder

        return Encoder(self.settings)

    @cached_property
    def sentiment(self) -> SentimentModel:
        from qa.scoring.sentiment import SentimentModel

        encoder = self.encoder if self.settings.sentiment_backend == "default" else None
        return SentimentModel(self.settings, encoder=encoder)

    def scorecard(self, language: str) -> Scorecard:
        """The configured scorecard for the call's language (Chinese has its own)."""
        lang = "zh" if language.startswith("zh") else "en"
        if lang not in self._scorecards:
            from qa.rules.format import load_scorecard
            from qa.scoring.scorecard import default_scorecard

            path = self.settings.scorecard_zh if lang == "zh" else self.settings.scorecard
            self._scorecards[lang] = load_scorecard(Path(path)) if path else default_scorecard(lang)
        return self._scorecards[lang]


def scorecard_tag(models: Models, language: str | None) -> str:
    card = models.scorecard(language or "en")
    return f"{card.id}@{card.version}"


def transcribe_stage(audio: bytes | Path, meta: CallMeta, models: Models) -> Transcript:
    """Decode, transcribe, split speakers and decide roles."""
    from qa.asr.speakers import transcribe_call
    from qa.asr.whisper import select_model_key
    from qa.audio import load_audio, select_channels

    settings = models.settings
    decoded = load_audio(
        audio,
        name=meta.audio_key or meta.call_id,
        max_duration=settings.max_duration,
        silence_dbfs=settings.silence_dbfs,
    )
    # an unmapped many-channel call is refused here, before any model loads
    select_channels(decoded, meta.channel_roles)
    language = meta.language or settings.default_language
    transcriber = models.transcriber(select_model_key(language, settings))
    needs_diarizer = decoded.channels == 1 or decoded.fake_stereo
    transcript = transcribe_call(
        decoded,
        meta,
        transcriber.transcribe,
        models.diarizer if needs_diarizer else None,
        settings,
    )
    transcript.call_id = meta.call_id
    return transcript


def score_stage(
    transcript: Transcript, meta: CallMeta, models: Models, timings: dict[str, float] | None = None
) -> CallResult:
    """Redact, measure, add sentiment and score against the call's scorecard."""
    from qa.scoring.metrics import compute_metrics
    from qa.scoring.redact import redact_transcript
    from qa.scoring.scorecard import score_call

    settings = models.settings
    timings = dict(timings or {})
    t0 = time.perf_counter()
    if settings.redact:
        transcript = redact_transcript(transcript)
    models.sentiment.annotate(transcript)
    metrics = compute_metrics(transcript)
    card = models.scorecard(transcript.language)
    score = score_call(
        transcript,
        meta,
        card,
        metrics=metrics,
        encoder=models.encoder,
        sentiment=models.sentiment,
        sample_rate=settings.review_sample_rate,
    )
    timings["score"] = time.perf_counter() - t0
    return CallResult(
        meta=meta,
        transcript=transcript,
        score=score,
        pipeline_version=PIPELINE_VERSION,
        scorecard_version=card.version,
        created_at=datetime.now(UTC),
        timings=timings,
    )


def process_call(audio: bytes | Path, meta: CallMeta, models: Models) -> CallResult:
    t0 = time.perf_counter()
    transcript = transcribe_stage(audio, meta, models)
    return score_stage(transcript, meta, models, {"transcribe": time.perf_counter() - t0})


def error_record(meta: CallMeta, stage: str, exc: BaseException) -> ErrorRecord:
    """A failed call becomes data: a user error keeps its message, a bug keeps its origin."""
    if isinstance(exc, QAError):
        message = exc.reason
    else:
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        message = f"{exc}{where}"
    return ErrorRecord(
        call_id=meta.call_id,
        stage=stage,
        error_type=type(exc).__name__,
        message=message,
        file=getattr(exc, "file", None) or meta.audio_key,
        pipeline_version=PIPELINE_VERSION,
        at=datetime.now(UTC),
    )


def guarded(stage: str, meta: CallMeta, fn: Callable[[], object]) -> object:
    """Run one stage; any failure becomes an ErrorRecord instead of stopping the batch."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - bad input is data, not a crash
        return error_record(meta, stage, exc)
