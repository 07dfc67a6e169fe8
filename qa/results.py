"""Publishing and finding pipeline results in the object store.

A call is done for a pipeline version when a result exists for one of the current
scorecards, or when it has an error record (bad input gives the same error every time;
`retry_errors` processes it again). Publishing a result removes an older error record, so
every call ends with exactly one of the two.

A person's correction (agent and customer swapped) writes a revision of a result: the
same call scored again under `<pipeline version>+r<n>`, beside the result it corrects,
which is kept. A revision counts as its pipeline version, so the call is not processed
again, and being the newest it is the call's `latest_result`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from qa.schema import CallMeta, CallResult, ErrorRecord
from qa.store import Keys, ObjectNotFoundError, Store

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
    taken = [revision_number(p[1]) for key in store.list(Keys.results_prefix(call_id))
             if (p := Keys.parse_result(key)) and base_version(p[1]) == base]
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
        if (parsed and base_version(parsed[1]) == pipeline_version
                and f"{parsed[2]}@{parsed[3]}" in wanted):
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
