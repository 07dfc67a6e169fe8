"""Building drivers from the stored calls, and labelling new calls with the pinned ones.

`build` reads every call's latest result from the store, embeds the openings once and
hands the groups to the workflow database. `DriverAssigner` is what the pipeline keeps: it
buffers openings as results are published and, at each flush, embeds them in one batch and
takes the nearest pinned driver, so a call costs one encoder row; with no pinned driver it
does nothing and loads no model.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, Field

from qa.config import Settings
from qa.drivers import (
    ASSIGN_THRESHOLD,
    CLUSTER_DISTANCE,
    MAX_CLUSTER_CALLS,
    Method,
    Opening,
    PinnedCentroid,
    build_drivers,
    nearest_pinned,
    opening_text,
)
from qa.errors import QAError
from qa.schema import CallResult, Role
from qa.store import CorruptObjectError, ObjectNotFoundError, Store, keys

if TYPE_CHECKING:
    from qa.scoring.encoder import Encoder
    from qa.workflow import Workflow

ProgressFn = Callable[[int, int], None]
log = logging.getLogger(__name__)


class BuildReport(BaseModel):
    calls: int = 0
    drivers: list[int] = Field(default_factory=list)
    other: int = 0
    pinned_hits: int = 0
    skipped: dict[str, str] = Field(default_factory=dict)


def opening_of(result: CallResult) -> Opening:
    """A result's opening and the figures driver trends need."""
    sentiment = {s.role: s for s in result.score.sentiment}
    customer = sentiment.get(Role.CUSTOMER)
    return Opening(
        call_id=result.meta.call_id,
        text=opening_text(result.transcript),
        language=result.transcript.language or result.meta.language,
        customer_id=result.meta.customer_id,
        started_at=result.meta.started_at or result.created_at,
        auto_passed=result.score.passed,
        customer_sentiment=customer.mean if customer else None,
    )


def stored_openings(
    store: Store, *, progress: ProgressFn | None = None, skipped: dict[str, str] | None = None
) -> list[Opening]:
    """Openings of every call with a result, from its newest result."""
    per_call: dict[str, list[str]] = defaultdict(list)
    for key in store.list(keys.RESULTS):
        parsed = keys.parse_result(key)
        if parsed:
            per_call[parsed[0]].append(key)
    out = []
    for i, (_, found) in enumerate(sorted(per_call.items()), 1):
        results = []
        for key in found:
            try:
                results.append(store.get_json(key, model=CallResult))
            except (CorruptObjectError, ObjectNotFoundError) as exc:
                if skipped is not None:
                    skipped[key] = exc.reason
        if results:
            out.append(opening_of(max(results, key=lambda r: r.created_at)))
        if progress:
            progress(i, len(per_call))
    return out


def pinned_hits(
    openings: Sequence[Opening],
    embeddings: np.ndarray,
    pinned: Sequence[PinnedCentroid],
    threshold: float = ASSIGN_THRESHOLD,
) -> dict[str, tuple[int, float]]:
    hits = {}
    for o, e in zip(openings, embeddings, strict=True):
        driver_id, sim = nearest_pinned(e, pinned, threshold)
        if driver_id is not None:
            hits[o.call_id] = (driver_id, round(sim, 4))
    return hits


def build(
    settings: Settings,
    workflow: Workflow,
    store: Store,
    *,
    encoder: Encoder | None = None,
    method: Method = "agglomerative",
    distance: float = CLUSTER_DISTANCE,
    threshold: float = ASSIGN_THRESHOLD,
    max_calls: int = MAX_CLUSTER_CALLS,
    progress: ProgressFn | None = None,
) -> BuildReport:
    """Cluster the stored calls' openings into drivers and label every call."""
    report = BuildReport()
    openings = stored_openings(store, progress=progress, skipped=report.skipped)
    report.calls = len(openings)
    if not openings:
        return report
    if encoder is None:
        from qa.scoring.encoder import Encoder

        encoder = Encoder(settings)
    embeddings = encoder.encode([o.text for o in openings])
    found = build_drivers(
        openings,
        embeddings,
        method=method,
        distance=distance,
        max_calls=max_calls,
        encoder=encoder.name,
    )
    hits = pinned_hits(openings, embeddings, workflow.pinned_drivers(), threshold)
    report.pinned_hits = len(hits)
    report.drivers = workflow.save_driver_build(found, openings, hits)
    report.other = sum(1 for c, v in found.assignments.items() if v is None and c not in hits)
    return report


class DriverAssigner:
    """The pipeline's labeller: openings buffered per result, embedded per flush."""

    REFRESH_S = 60.0

    def __init__(
        self,
        settings: Settings,
        workflow: Workflow,
        *,
        encoder: Encoder | None = None,
        threshold: float = ASSIGN_THRESHOLD,
    ) -> None:
        self.settings = settings
        self.workflow = workflow
        self.threshold = threshold
        self._encoder = encoder
        self._pinned: list[PinnedCentroid] = []
        self._read_at = -1e9
        self.pending: list[Opening] = []

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            from qa.scoring.encoder import Encoder

            self._encoder = Encoder(self.settings)
        return self._encoder

    def pinned(self) -> list[PinnedCentroid]:
        if time.monotonic() - self._read_at > self.REFRESH_S:
            self._pinned = self.workflow.pinned_drivers()
            self._read_at = time.monotonic()
        return self._pinned

    def add(self, result: CallResult) -> None:
        self.pending.append(opening_of(result))

    def flush(self) -> int:
        """Label the buffered calls; returns how many got a row (0 with nothing pinned).

        A failure here (no encoder, database busy) never fails the pipeline: the calls
        stay unlabelled and `qa drivers assign` labels them later.
        """
        openings, self.pending = self.pending, []
        try:
            return self.assign(openings)
        except QAError as exc:
            log.warning("call drivers not assigned to %d call(s): %s", len(openings), exc)
            return 0

    def assign(self, openings: Sequence[Opening]) -> int:
        from qa.workflow.drivers import CallDriverRow

        pinned = self.pinned()
        if not openings or not pinned:
            return 0
        embeddings = self.encoder.encode([o.text for o in openings])
        rows = []
        for o, e in zip(openings, embeddings, strict=True):
            driver_id, sim = nearest_pinned(e, pinned, self.threshold)
            rows.append(
                CallDriverRow(
                    opening=o, driver_id=driver_id, similarity=round(sim, 4), how="assign"
                )
            )
        self.workflow.record_call_drivers(rows)
        return len(rows)


def assign_stored(
    settings: Settings,
    workflow: Workflow,
    store: Store,
    *,
    encoder: Encoder | None = None,
    threshold: float = ASSIGN_THRESHOLD,
    every: bool = False,
) -> int:
    """Label the stored calls no build or earlier assignment labelled (`every`: all of them)."""
    assigner = DriverAssigner(settings, workflow, encoder=encoder, threshold=threshold)
    if not assigner.pinned():
        return 0
    openings = stored_openings(store)
    if not every:
        done = workflow.drivers_assigned()
        openings = [o for o in openings if o.call_id not in done]
    return assigner.assign(openings)
