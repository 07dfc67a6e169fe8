"""Score a stored call again without transcribing it: after a reviewer corrected who is the
agent and who the customer, or with a new version of the scorecard (`qa rescore`).

Nothing is transcribed again: the stored (already redacted) transcript is scored as it is
stored, or with its roles exchanged. For a role swap the scorecard is the one that scored
the call, so the new result differs from the old one only by the roles; talk ratio,
interruptions and every agent-side rule depend on them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from qa.errors import QAError
from qa.rules.format import Scorecard
from qa.schema import CallResult, Transcript
from qa.scoring.metrics import compute_metrics
from qa.scoring.scorecard import default_scorecard, score_call

if TYPE_CHECKING:
    from qa.pipeline import Models


def scorecard_of(result: CallResult, models: Models) -> Scorecard:
    """The scorecard, by id and version, that produced `result`; refused when this site no
    longer has it, since another card would change more than the roles."""
    score = result.score
    language = result.transcript.language or result.meta.language or "en"
    for card in (models.scorecard(language), default_scorecard(language)):
        if (card.id, card.version) == (score.scorecard_id, score.scorecard_version):
            return card
    raise QAError(
        f"call {result.meta.call_id!r} was scored with scorecard "
        f"{score.scorecard_id}@{score.scorecard_version}, which is no longer "
        "configured; it cannot be scored again with the roles swapped"
    )


def swap_and_rescore(result: CallResult, models: Models, pipeline_version: str) -> CallResult:
    """A new result of the same call with agent and customer exchanged and scored again.

    `pipeline_version` is the version the new result is stored under (see
    `qa.results.next_revision`), so the old result stays readable beside it.
    """
    from qa.asr.roles import swap_roles

    card = scorecard_of(result, models)
    return score_stored(result, swap_roles(result.transcript), card, models, pipeline_version)


def rescore_with_configured(result: CallResult, models: Models) -> CallResult:
    """The stored transcript scored with the scorecard `models` has for the call's language
    (as `qa.pipeline.score_stage` picks it), under the stored result's pipeline version: the
    transcript, and a reviewer's role swap in it, are what that version produced."""
    card = models.scorecard(result.transcript.language or result.meta.language or "en")
    return score_stored(result, result.transcript, card, models, result.pipeline_version)


def score_stored(
    result: CallResult,
    transcript: Transcript,
    card: Scorecard,
    models: Models,
    pipeline_version: str,
) -> CallResult:
    """Metrics, sentiment summaries and every item of `card` from a stored transcript.

    The sentiment stored on each utterance is kept (it is per utterance, from the same
    model, and recomputing it is the costliest part); only utterances without it are
    annotated. Redaction is not run again: the stored transcript is the redacted one.
    """
    t0 = time.perf_counter()
    if any(u.sentiment is None for u in transcript.utterances):
        models.sentiment.annotate(transcript)
    score = score_call(
        transcript,
        result.meta,
        card,
        metrics=compute_metrics(transcript),
        encoder=models.encoder,
        sentiment=models.sentiment,
        sample_rate=models.settings.review_sample_rate,
    )
    return CallResult(
        meta=result.meta,
        transcript=transcript,
        score=score,
        pipeline_version=pipeline_version,
        scorecard_version=card.version,
        created_at=datetime.now(UTC),
        timings={"score": time.perf_counter() - t0},
    )
