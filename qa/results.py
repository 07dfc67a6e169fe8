"""Publishing and finding pipeline results in the object store.

A call is done for a pipeline version when a result exists for one of the current
scorecards, or when it has an error record (bad input gives the same error every time;
`retry_errors` processes it again). Publishing a result removes an older error record, so
every call ends with exactly one of the two.

A person's correction (agent and customer swapped) writes a revision of a result: the
same call scored again under `<pipeline version>+r<n>`, beside the result it corrects,
which is kept. A revision counts as its pipeline version, so the call is not processed
again, and being the newest it is the call's `latest_result`.

A new scorecard version is applied to stored calls (`qa rescore`) by scoring each call's
newest transcript again; `plan_rescore` chooses the calls without reading transcripts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from qa.schema import CallMeta, CallResult, ErrorRecord
from qa.store import CorruptObjectError, Keys, ObjectNotFoundError, Store

_REVISION_RE = re.compile(r"^(?P<base>.+)\+r(?P<n>[0-9]+)$")


def base_version(pipeline_version: str) -> str:
    """The pipeline version a result or a revision of it was made by."""
    m = _REVISION_RE.match(pipeline_version)
    return m["base"] if m else pipeline_version


def revision_number(pipeline_version: str) -> int:
    """0 for the pipeline's own result, n for its n-th revision."""
    m = _REVISION_RE.match(pipeline_version)
    return int(m["n"]) if m else 0


def next_revision(store: Store, call_id: str, pipeline_version: str) -> str:
    """The version to store the next revision of a call's result under."""
    base = base_version(pipeline_version)
    taken = [
        revision_number(p[1])
        for key in store.list(Keys.results_prefix(call_id))
        if (p := Keys.parse_result(key)) and base_version(p[1]) == base
    ]
    return f"{base}+r{max(taken, default=0) + 1}"


def publish_result(store: Store, result: CallResult) -> str:
    score = result.score
    key = Keys.result(
        result.meta.call_id, result.pipeline_version, score.scorecard_id, score.scorecard_version
    )
    store.put_json(key, result)  # atomic: readers see the old object or the new, never half
    error_key = Keys.error(result.meta.call_id, result.pipeline_version)
    if store.exists(error_key):
        store.delete(error_key)
    return key


def publish_error(store: Store, error: ErrorRecord) -> str:
    key = Keys.error(error.call_id, error.pipeline_version)
    store.put_json(key, error)
    return key


def call_metas(store: Store) -> list[CallMeta]:
    out = []
    for key in store.list(Keys.CALLS):
        call_id = Keys.parse_meta(key)
        if call_id:
            out.append(store.get_json(key, CallMeta))
    return out


def done_calls(store: Store, pipeline_version: str, scorecards: Iterable[str]) -> set[str]:
    """Call ids with a result (or a revision of one) for this pipeline version and one of
    the `id@version` cards."""
    wanted = set(scorecards)
    done = set()
    for key in store.list(Keys.RESULTS):
        parsed = Keys.parse_result(key)
        if (
            parsed
            and base_version(parsed[1]) == pipeline_version
            and f"{parsed[2]}@{parsed[3]}" in wanted
        ):
            done.add(parsed[0])
    return done


def failed_calls(store: Store, pipeline_version: str) -> set[str]:
    out = set()
    for key in store.list(Keys.ERRORS):
        parts = key.split("/")
        if len(parts) == 3 and parts[2] == f"{pipeline_version}.json":
            out.add(parts[1])
    return out


def pending_calls(
    store: Store, pipeline_version: str, scorecards: Iterable[str], *, retry_errors: bool = False
) -> list[CallMeta]:
    """Calls still to process, oldest first so a backlog drains in arrival order."""
    skip = done_calls(store, pipeline_version, scorecards)
    if not retry_errors:
        skip |= failed_calls(store, pipeline_version)
    metas = [m for m in call_metas(store) if m.call_id not in skip]
    return sorted(metas, key=lambda m: (m.started_at is None, m.started_at, m.call_id))


def latest_result(store: Store, call_id: str) -> CallResult | None:
    """The newest result of a call across pipeline and scorecard versions, or None."""
    results = []
    for key in store.list(Keys.results_prefix(call_id)):
        try:
            results.append(store.get_json(key, CallResult))
        except ObjectNotFoundError:  # deleted between listing and reading
            continue
    return max(results, key=lambda r: r.created_at, default=None)


# --------------------------------------------------------------------------- re-scoring


class _TranscriptHead(BaseModel):
    language: str | None = None


class _ResultHead(BaseModel):
    """What choosing calls to re-score reads of a stored result: the big transcript and
    score are skipped over, not validated (unknown fields are ignored here)."""

    meta: CallMeta
    transcript: _TranscriptHead
    pipeline_version: str
    created_at: datetime


class RescoreTarget(BaseModel):
    """A call to score again: the newest result, whose transcript is read where it is scored."""

    call_id: str
    key: str
    meta: CallMeta
    scorecard: str  # id@version it gets


class RescorePlan(BaseModel):
    targets: list[RescoreTarget] = Field(default_factory=list)
    already: int = 0  # selected calls that have a result for their scorecard version
    problems: dict[str, str] = Field(default_factory=dict)  # call id -> why it is left out


class RescoreFilter(BaseModel):
    """Which calls, by their newest result's metadata; None matches every call."""

    call_ids: list[str] | None = None
    team: str | None = None
    queue: str | None = None
    since: datetime | None = None  # started at or after
    until: datetime | None = None  # started before

    def matches(self, meta: CallMeta) -> bool:
        if self.team is not None and meta.team != self.team:
            return False
        if self.queue is not None and meta.queue != self.queue:
            return False
        if self.since is None and self.until is None:
            return True
        started = _utc(meta.started_at)
        return (
            started is not None
            and (self.since is None or started >= _utc(self.since))
            and (self.until is None or started < _utc(self.until))
        )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def plan_rescore(
    store: Store, card_for: Callable[[str | None], str], selection: RescoreFilter | None = None
) -> RescorePlan:
    """The calls to score again with the card `card_for(language)` gives (`id@version`).

    A call is chosen by its newest result (which holds a reviewer's role swap) and left out
    when a result of the same pipeline version already has that card, so running again
    does nothing. The store is listed once; only each call's result heads are read. A call
    whose results are all unreadable is reported in `problems`, not raised.
    """
    selection = selection or RescoreFilter()
    by_call: dict[str, list[tuple[str, str, str]]] = {}
    for key in store.list(Keys.RESULTS):
        parsed = Keys.parse_result(key)
        if parsed:
            by_call.setdefault(parsed[0], []).append((key, parsed[1], f"{parsed[2]}@{parsed[3]}"))
    plan = RescorePlan()
    wanted = selection.call_ids if selection.call_ids is not None else sorted(by_call)
    for call_id in dict.fromkeys(wanted):
        keys = by_call.get(call_id)
        if not keys:
            plan.problems[call_id] = "no stored result"
            continue
        heads, why = [], ""
        for key, _, _ in keys:
            try:
                heads.append((store.get_json(key, _ResultHead), key))
            except (CorruptObjectError, ObjectNotFoundError) as exc:  # or deleted since listed
                why = f"stored result unreadable: {exc}"
        if not heads:
            plan.problems[call_id] = why or "no stored result"
            continue
        head, key = max(heads, key=lambda h: h[0].created_at)
        if not selection.matches(head.meta):
            continue
        card = card_for(head.transcript.language or head.meta.language)
        base = base_version(head.pipeline_version)
        if any(tag == card and base_version(pv) == base for _, pv, tag in keys):
            plan.already += 1
            continue
        plan.targets.append(RescoreTarget(call_id=call_id, key=key, meta=head.meta, scorecard=card))
    plan.targets.sort(key=lambda t: (t.meta.started_at is None, _utc(t.meta.started_at), t.call_id))
    return plan
