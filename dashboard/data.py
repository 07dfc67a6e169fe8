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

from qa.config import Settings
from qa.errors import AccessDenied, QAError
from qa.schema import CallResult
from qa.workflow.views import CallFilter

if TYPE_CHECKING:
    from qa.workflow import CallView, UserView, Workflow

T = TypeVar("T")

TOKEN = "auth_token"
NOTICE = "login_notice"
PAGES_DIR = Path(__file__).resolve().parent / "views"

# Which pages each role sees; the service still checks every call a page makes.
ROLE_PAGES: dict[str, list[str]] = {
    "agent": ["my_calls", "review", "coaching"],
    "inspector": ["queue", "review", "calibration", "coaching", "cases"],
    "lead": ["queue", "review", "calibration", "disputes", "coaching", "trends", "cases"],
    "manager": ["trends", "calibration", "coaching", "cases", "review"],
    "admin": ["queue", "review", "disputes"],
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
}


def settings() -> Settings:
    """Read per run, so a changed environment (tests, `qa serve`) is honoured."""
    return Settings()


@st.cache_resource(show_spinner=False)
def _workflow(database_url: str, session_ttl_minutes: int) -> Workflow:
    from qa.workflow import Workflow

    return Workflow(database_url, session_ttl_minutes=session_ttl_minutes)


def workflow() -> Workflow:
    s = settings()
    return _workflow(s.resolved_database_url, s.session_ttl_minutes)


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


# --------------------------------------------------------------------------- session


def login(username: str, password: str) -> UserView:
    """Raises AccessDenied on a wrong name or password; keeps only the token."""
    user, token = workflow().authenticate(username, password)
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
    except AccessDenied as exc:
        st.error(f"Not permitted: {exc.reason}")
        st.stop()
    except QAError as exc:
        st.error(str(exc))
        st.stop()
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- calls


def result_key(call: CallView) -> str:
    from qa.store import keys

    return keys.result(call.call_id, call.pipeline_version, call.scorecard_id,
                       call.scorecard_version)


@st.cache_data(show_spinner=False, max_entries=256)
def _load_result(store_url: str, key: str) -> CallResult:
    return store().get_json(key, model=CallResult)


def load_result(call: CallView) -> CallResult | None:
    """The pipeline's full record of a call the service already let this user see."""
    try:
        return _load_result(settings().resolved_store_url, result_key(call))
    except QAError:
        return None


def audio_source(call: CallView, result: CallResult | None
                 ) -> tuple[bytes | str | None, str | None]:
    """Bytes for a local store; a presigned URL when the store is remote (S3)."""
    meta = result.meta if result else None
    key = meta.audio_key if meta and meta.audio_key else None
    from qa.store import keys

    s = store()
    if key is None:
        for ext in ("wav", "mp3", "flac", "ogg", "m4a", "opus"):
            candidate = keys.audio(call.call_id, ext)
            if s.exists(candidate):
                key = candidate
                break
    if key is None:
        return None, None
    fmt = key.rsplit(".", 1)[-1].lower()
    fmt = {"mp3": "mpeg", "m4a": "mp4"}.get(fmt, fmt)
    try:
        url = s.url(key)
    except QAError:
        url = None
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return url, fmt
    return _audio_bytes(settings().resolved_store_url, key), fmt


@st.cache_data(show_spinner=False, max_entries=16)
def _audio_bytes(store_url: str, key: str) -> bytes:
    return store().get_bytes(key)


# --------------------------------------------------------------------------- tables


def frame(rows: Iterable[BaseModel | dict[str, Any]], columns: Sequence[str] | None = None
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
    """Per-call rows (outcomes that count) and item failure counts for the trend page."""

    calls: pd.DataFrame
    items: pd.DataFrame


TREND_COLUMNS = ["call_id", "team", "agent_id", "queue", "week", "total", "passed", "auto_fail",
                 "customer_sentiment", "finalised"]


def trend_data(user: UserView, filters: CallFilter) -> TrendData:
    """Final outcomes from the workflow (access checked there) with the index's analytics.

    The service's `final_outcomes` refuses users who may not see trends; the analytics
    index adds what only the pipeline knows (customer sentiment) per call.
    """
    rows = workflow().final_outcomes(user, filters)
    critical = _critical_items(user)
    records = []
    item_counts: dict[str, list[int]] = {}
    for r in rows:
        failed = [k for k, v in r.items.items() if v.value == "fail"]
        records.append({
            "call_id": r.call_id, "team": r.team, "agent_id": r.agent_id, "queue": r.queue,
            "week": r.week, "total": r.total, "passed": r.passed,
            "auto_fail": any(k in critical.get(r.scorecard_id, ()) for k in failed),
            "customer_sentiment": None, "finalised": r.finalised,
        })
        for k, v in r.items.items():
            counts = item_counts.setdefault(k, [0, 0])
            if v.value != "na":
                counts[1] += 1
                counts[0] += v.value == "fail"
    calls = pd.DataFrame.from_records(records, columns=TREND_COLUMNS)
    calls["customer_sentiment"] = calls["customer_sentiment"].astype(float)
    sentiment = _index_sentiment()
    if sentiment is not None and not calls.empty:
        calls["customer_sentiment"] = calls["call_id"].map(sentiment).astype(float)
    items = pd.DataFrame([{"item_id": k, "fails": f, "applicable": n,
                           "fail_rate": f / n if n else None}
                          for k, (f, n) in item_counts.items() if f],
                         columns=["item_id", "fails", "applicable", "fail_rate"])
    return TrendData(calls=calls, items=items)


def _critical_items(user: UserView) -> dict[str, set[str]]:
    """Critical item ids per scorecard: a failed one makes the call an auto-fail."""
    out: dict[str, set[str]] = {}
    for call in workflow().list_calls(user, CallFilter(limit=200)):
        out.setdefault(call.scorecard_id, set()).update(
            i.item_id for i in call.items if i.critical)
    return out


def _index_sentiment() -> dict[str, float] | None:
    return None
