"""What the pages may touch: the workflow service, the object store and the analytics index.

Pages never open a database session or import ORM classes; they call `qa.workflow`
with the logged-in user, and the service decides what that user may see or change.
Connections are opened once per process (`st.cache_resource`) and keyed by their URL,
so a test or a second deployment with other settings gets its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import streamlit as st
from pydantic import BaseModel

from dashboard.components import escape_md
from qa.config import Settings
from qa.errors import AccessDenied, QAError
from qa.playback import PLAYABLE_FORMAT
from qa.schema import CallResult
from qa.workflow.throttle import LoginPolicy
from qa.workflow.views import CallFilter

if TYPE_CHECKING:
    from qa.pipeline import Models
    from qa.workflow import CallView, UserView, Workflow

T = TypeVar("T")

TOKEN = "auth_token"
UNKNOWN_LOGIN = "unknown user or wrong password"  # the service's plain refusal
NOTICE = "login_notice"
PAGES_DIR = Path(__file__).resolve().parent / "views"

# Which pages each role sees; the service still checks every call a page makes. Search is
# for everyone who opens calls (agents find their own only); alerts: leads read their own
# team's, managers every team's; drivers: leads edit them, managers read them.
ROLE_PAGES: dict[str, list[str]] = {
    "agent": ["my_calls", "review", "coaching", "search"],
    "inspector": ["queue", "review", "calibration", "coaching", "cases", "search"],
    "lead": [
        "queue",
        "review",
        "calibration",
        "disputes",
        "coaching",
        "trends",
        "cases",
        "search",
        "drivers",
        "alerts",
        "live",
    ],
    "manager": [
        "trends",
        "calibration",
        "coaching",
        "cases",
        "review",
        "search",
        "drivers",
        "alerts",
        "live",
    ],
    # admins manage accounts and read disputes and the audit trail; they neither review
    # nor assign, so the queue and review pages (which the service refuses them) are not theirs
    "admin": ["accounts", "disputes"],
}
PAGE_TITLES = {
    "queue": ("Review queue", ":material/inbox:"),
    "review": ("Call review", ":material/headphones:"),
    "calibration": ("Calibration", ":material/balance:"),
    "my_calls": ("My calls", ":material/person:"),
    "disputes": ("Disputes", ":material/gavel:"),
    "coaching": ("Coaching", ":material/school:"),
    "trends": ("Trends", ":material/monitoring:"),
    "cases": ("Case library", ":material/menu_book:"),
    "accounts": ("Accounts", ":material/manage_accounts:"),
    "search": ("Search", ":material/search:"),
    "drivers": ("Drivers", ":material/category:"),
    "alerts": ("Alerts", ":material/notifications:"),
    "live": ("Live", ":material/record_voice_over:"),
}


def settings() -> Settings:
    """Read per run, so a changed environment (tests, `qa serve`) is honoured."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _workflow(database_url: str, session_ttl_minutes: int, login_policy: LoginPolicy) -> Workflow:
    from qa.workflow import Workflow

    return Workflow(
        database_url, session_ttl_minutes=session_ttl_minutes, login_policy=login_policy
    )


def workflow() -> Workflow:
    s = settings()
    return _workflow(s.resolved_database_url, s.session_ttl_minutes, LoginPolicy.from_settings(s))


@st.cache_resource(show_spinner=False)
def _store(store_url: str) -> Any:
    from qa.store import open_store

    return open_store(settings())


def store() -> Any:
    return _store(settings().resolved_store_url)


@st.cache_resource(show_spinner=False)
def _index(store_url: str) -> Any:
    from qa.index import Index

    return Index(store())


def index() -> Any:
    return _index(settings().resolved_store_url)


@st.cache_resource(show_spinner=False)
def _models(settings_json: str) -> Models:
    from qa.pipeline import Models

    return Models(Settings.model_validate_json(settings_json))


def models() -> Models:
    """The text models (encoder, sentiment) a re-score needs: loaded on first use and kept
    for the process, like the pipeline's workers keep theirs."""
    return _models(settings().model_dump_json())


# --------------------------------------------------------------------------- session


def client_address() -> str | None:
    """The browser's address as Streamlit sees it (None where unknown), for throttling."""
    try:
        address = st.context.ip_address
    except Exception:  # outside a script run, or a Streamlit without it
        return None
    return address if isinstance(address, str) else None  # a test harness: no client


def login(username: str, password: str) -> UserView:
    """Raises AccessDenied on a wrong name or password; keeps only the token.

    A refusal that says more than "wrong password" (a locked account, a wait before the
    next try) is shown here as well, since the login form names only the common case.
    """
    try:
        user, token = workflow().authenticate(username, password, client_address())
    except AccessDenied as exc:
        if exc.reason != UNKNOWN_LOGIN:
            st.error(escape_md(exc.reason))
        raise
    st.session_state[TOKEN] = token
    st.session_state.pop(NOTICE, None)
    return user


def logout() -> None:
    token = st.session_state.pop(TOKEN, None)
    if token:
        with contextlib.suppress(QAError):  # an expired token is already gone
            workflow().logout(token)
    for key in list(st.session_state.keys()):
        del st.session_state[key]


def session_user() -> UserView | None:
    """The user behind the stored token, or None; an expired session sends back to login."""
    token = st.session_state.get(TOKEN)
    if not token:
        return None
    try:
        return workflow().user_for_token(token)
    except AccessDenied:
        st.session_state.pop(TOKEN, None)
        st.session_state[NOTICE] = "Your session has expired. Please log in again."
        return None


def current_user() -> UserView:
    """For pages: the logged-in user, or stop the page (the entry script shows the login)."""
    user = session_user()
    if user is None:
        st.warning(st.session_state.get(NOTICE, "Please log in."))
        st.stop()
    return user


def role_of(user: UserView) -> str:
    role = user.role
    return getattr(role, "value", role)


def guarded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the service; a refusal or a user mistake becomes a message, not a traceback."""
    try:
        return fn(*args, **kwargs)
    except AccessDenied as exc:  # messages quote what users typed: shown as plain text
        st.error(f"Not permitted: {escape_md(exc.reason)}")
        st.stop()
    except QAError as exc:
        st.error(escape_md(str(exc)))
        st.stop()
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- calls


def result_key(call: CallView) -> str:
    from qa.store import keys

    return keys.result(
        call.call_id, call.pipeline_version, call.scorecard_id, call.scorecard_version
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _load_result(store_url: str, key: str) -> CallResult:
    return store().get_json(key, model=CallResult)


def load_result(call: CallView) -> CallResult | None:
    """The pipeline's full record of a call the service already let this user see."""
    try:
        return _load_result(settings().resolved_store_url, result_key(call))
    except QAError:
        return None


def audio_source(
    call: CallView, result: CallResult | None
) -> tuple[bytes | str | None, str | None]:
    """The redacted playable copy (never the original): bytes for a local store, a presigned
    URL when the store is remote (S3). The copy made from the shown result's pipeline version
    when there is one, else the newest."""
    from qa.results import base_version
    from qa.store import keys

    s = store()
    # a revision (roles swapped) re-scores the transcript, not the audio: same copy
    key = keys.playable(call.call_id, base_version(result.pipeline_version)) if result else None
    if key is None or not s.exists(key):
        copies = sorted(s.list(keys.playable_prefix(call.call_id)), key=lambda k: (len(k), k))
        key = copies[-1] if copies else None
    if key is None:
        return None, None
    try:
        url = s.url(key)
    except QAError:
        url = None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url, PLAYABLE_FORMAT
    return _audio_bytes(settings().resolved_store_url, key), PLAYABLE_FORMAT


@st.cache_data(show_spinner=False, max_entries=16)
def _audio_bytes(store_url: str, key: str) -> bytes:
    return store().get_bytes(key)


# --------------------------------------------------------------------------- tables


def frame(
    rows: Iterable[BaseModel | dict[str, Any]], columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Views to a table; nested values are shown as text so every table exports as CSV."""
    records = [r.model_dump(mode="json") if isinstance(r, BaseModel) else dict(r) for r in rows]
    df = pd.DataFrame.from_records(records)
    if columns is not None:
        for col in columns:
            if col not in df.columns:
                df[col] = None
        df = df[list(columns)]
    for col in df.columns:
        if df[col].map(lambda v: isinstance(v, list | dict)).any():
            df[col] = df[col].map(_as_text)
    return df


def _as_text(value: Any) -> Any:
    if isinstance(value, list):
        return ", ".join(str(v.get("code", v) if isinstance(v, dict) else v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


# --------------------------------------------------------------------------- trends


@dataclass
class TrendData:
    """Sums per (week, group) so means stay exact after final outcomes replace automatic ones,
    and item failure counts for the Pareto chart."""

    weekly: pd.DataFrame  # week, group, calls, total_sum, passed_sum, auto_fail_sum, ...
    items: pd.DataFrame  # item_id, fails, applicable, fail_rate


GROUP_COLUMNS = {
    "team": "team",
    "agent_id": "agent_id",
    "queue": "queue",
    "scorecard": "scorecard_id || '@' || scorecard_version",
}
# by scorecard version, a call re-scored with a new card (`qa rescore`) counts once per card,
# so versions compare on the same calls; otherwise once, with its newest result
PER_CARD = (
    "(SELECT * FROM calls_all QUALIFY row_number() OVER (PARTITION BY call_id, "
    "scorecard_id, scorecard_version ORDER BY processed_at DESC, "
    "pipeline_version DESC) = 1)"
)
SUM_COLUMNS = [
    "calls",
    "total_sum",
    "passed_sum",
    "auto_fail_sum",
    "sentiment_sum",
    "sentiment_n",
    "finalised",
]
PARETO_COLUMNS = ["item_id", "fails", "applicable", "fail_rate"]


def finalised_calls(user: UserView, filters: CallFilter) -> list[CallView]:
    """Calls whose outcome a person changed: a lead's final score or an overturned dispute.

    Both go through the service, which refuses users who may not see trends
    (`final_outcomes`) and decides what each may read.
    """
    wf = workflow()
    changed = filters.model_copy(update={"finalised": True, "limit": None})
    wf.final_outcomes(user, changed.model_copy(update={"limit": 1}))  # refuses non-managers
    return wf.list_calls(user, changed)


def trend_data(user: UserView, filters: CallFilter, by: str = "team") -> TrendData:
    """Quality per week and group from the analytics index, corrected by final outcomes.

    The index aggregates every call's automatic score and the pipeline's analytics in
    DuckDB; the few calls a lead decided or a dispute changed come from the workflow
    service and replace their automatic contribution to the sums.
    """
    if by not in GROUP_COLUMNS:
        raise QAError(f"cannot group trends by {by!r}; use one of {', '.join(GROUP_COLUMNS)}")
    finals = finalised_calls(user, filters)  # first: the service refuses non-managers here
    idx = index()
    where, params = _where_sql(filters)
    col = GROUP_COLUMNS[by]
    calls = PER_CARD if by == "scorecard" else "calls"
    weekly = idx.query(
        f"SELECT week, {col} AS grp, count(*) AS calls, sum(auto_total) AS total_sum, "
        "sum(auto_passed::INT) AS passed_sum, sum(auto_fail::INT) AS auto_fail_sum, "
        "sum(customer_sentiment_mean) AS sentiment_sum, "
        "count(customer_sentiment_mean) AS sentiment_n, 0 AS finalised "
        f"FROM {calls} WHERE {where} GROUP BY ALL",
        params,
    )
    items = idx.query(
        "SELECT i.item_id AS item_id, count(*) FILTER (WHERE i.auto_outcome = 'fail') AS fails, "
        "count(*) FILTER (WHERE i.auto_outcome <> 'na') AS applicable "
        f"FROM (SELECT unnest(items) AS i FROM {calls} WHERE {where}) GROUP BY 1",
        params,
    )
    weekly = weekly.astype({c: float for c in SUM_COLUMNS}).set_index(["week", "grp"])
    items = items.astype({"fails": float, "applicable": float}).set_index("item_id")
    if finals:
        ids = [c.call_id for c in finals]
        auto = idx.query(
            f"SELECT call_id, week, {col} AS grp, auto_total, auto_passed, auto_fail, items "
            f"FROM {calls} "
            f"WHERE {where} AND call_id IN (SELECT unnest(?::VARCHAR[]))",
            [*params, ids],
        )
        by_id = {c.call_id: c for c in finals}
        for row in auto.itertuples(index=False):
            final = by_id[row.call_id]
            if by == "scorecard" and row.grp != f"{final.scorecard_id}@{final.scorecard_version}":
                continue  # a person decided on the call as its current card scored it
            key = (row.week, row.grp)
            weekly.loc[key, "total_sum"] += final.total - row.auto_total
            weekly.loc[key, "passed_sum"] += int(final.passed) - int(row.auto_passed)
            weekly.loc[key, "auto_fail_sum"] += int(final.failed_critical) - int(row.auto_fail)
            weekly.loc[key, "finalised"] += 1
            for it in row.items:  # move each item from its automatic to its final outcome
                _count(items, it["item_id"], str(it["auto_outcome"]), -1)
            for it in final.items:
                _count(items, it.item_id, it.outcome.value, +1)
    weekly = weekly.reset_index().rename(columns={"grp": "group"})
    items = items.reset_index()
    items = items[items["fails"] > 0].copy()
    items["fail_rate"] = items["fails"] / items["applicable"].where(items["applicable"] > 0)
    return TrendData(weekly=weekly, items=items[PARETO_COLUMNS])


def _where_sql(filters: CallFilter) -> tuple[str, list[Any]]:
    clauses, params = ["TRUE"], []
    for column in ("team", "queue", "agent_id"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if filters.date_from is not None:
        clauses.append("coalesce(started_at, processed_at) >= ?")
        params.append(filters.date_from)
    if filters.date_to is not None:
        clauses.append("coalesce(started_at, processed_at) < ?")
        params.append(filters.date_to)
    return " AND ".join(clauses), params


def _count(items: pd.DataFrame, item_id: str, outcome: str, step: int) -> None:
    if item_id not in items.index:
        items.loc[item_id] = [0.0, 0.0]
    if outcome == "fail":
        items.loc[item_id, "fails"] += step
    if outcome != "na":
        items.loc[item_id, "applicable"] += step
