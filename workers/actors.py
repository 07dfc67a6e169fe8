"""Ray actors: each holds its models for its whole life, so a model loads once per process.

A dead actor is not restarted by Ray: the runner replaces it and re-submits its call, so it
can count attempts and give a call that keeps killing workers an error record.

Transcribe actors read the audio from the object store themselves, so recordings never
pass through the driver; the driver publishes results and error records.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import ray

from qa.config import Settings
from qa.schema import CallMeta, CallResult, ErrorRecord, Transcript

if TYPE_CHECKING:
    from qa.results import RescoreTarget


def _settings(values: dict[str, Any], threads: int) -> Settings:
    # One intra-op thread per actor: on a small machine parallelism comes from the actors.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    return Settings(**{**values, "asr_threads": threads})


@ray.remote(max_restarts=0, max_task_retries=0)
class TranscribeActor:
    """Decode + ASR + speakers + roles."""

    def __init__(self, settings: dict[str, Any], threads: int = 1) -> None:
        from qa.pipeline import Models
        from qa.store import open_store

        self.settings = _settings(settings, threads)
        self.models = Models(self.settings)
        self.store = open_store(self.settings)

    def pid(self) -> int:
        return os.getpid()

    def run(self, meta: CallMeta) -> Transcript | ErrorRecord:
        from qa.pipeline import guarded, transcribe_stage
        from qa.playback import source_audio

        def work() -> Transcript:
            return transcribe_stage(source_audio(self.store, meta), meta, self.models)

        return guarded("transcribe", meta, work)  # type: ignore[return-value]


@ray.remote(max_restarts=0, max_task_retries=0)
class ScoreActor:
    """Redaction + metrics + sentiment + scorecard, and the redacted playable audio; also
    scores stored results again (`qa rescore`). Never loads an ASR or diarization model."""

    def __init__(self, settings: dict[str, Any], threads: int = 1) -> None:
        from qa.pipeline import Models
        from qa.store import open_store

        self.settings = _settings(settings, threads)
        self.models = Models(self.settings)
        self.store = open_store(self.settings)

    def pid(self) -> int:
        return os.getpid()

    def run(
        self, transcript: Transcript, meta: CallMeta, timings: dict[str, float]
    ) -> CallResult | ErrorRecord:
        from qa.pipeline import guarded, score_stage
        from qa.playback import publish_playable, source_audio

        def work() -> CallResult:
            result = score_stage(transcript, meta, self.models, timings)
            # written before the driver publishes the result: a result always has its audio
            publish_playable(
                self.store,
                source_audio(self.store, meta),
                result,
                margin=self.settings.redaction_margin,
                max_duration=self.settings.max_duration,
            )
            return result

        return guarded("score", meta, work)  # type: ignore[return-value]

    def rescore(self, target: RescoreTarget) -> CallResult | ErrorRecord:
        """A call's newest stored result scored again with the configured cards, no ASR."""
        from workers.rescore import rescore_one

        return rescore_one(self.store, self.models, target)
