"""Sign-in that survives a reload and reaches a second tab: a signed, expiring cookie.

Streamlit keeps `st.session_state` per browser connection, so a reload or a new tab used to
start signed out. The cookie carries the workflow service's session token with an expiry,
signed with HMAC-SHA256 under a server secret (`QA_SESSION_SECRET`, else a random secret
kept in `$QA_HOME/session_secret`). Each page load reads it from `st.context.cookies`; the
service still validates and expires the token itself, and logging out ends the service
session, so the cookie stops working in every tab at once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

import streamlit as st

from dashboard import data
from qa.errors import AccessDenied, QAError

COOKIE = "qa_session"
SECRET_ENV = "QA_SESSION_SECRET"
SECRET_FILE = "session_secret"
_VALUE = "session_cookie"  # the signed value this browser should hold ("" = none)
_REFUSED = "session_cookie_refused"  # a cookie this connection must not sign in with again

_JS = """
export default function ({ data }) {
  // A cookie set from JavaScript cannot be HttpOnly (only a server response header can
  // make one); SameSite=Strict keeps other sites' requests from carrying it.
  const { name, value, max_age } = data
  const held = document.cookie.split("; ").find((c) => c.startsWith(name + "="))
  const secure = location.protocol === "https:" ? "; Secure" : ""
  if (value && held !== `${name}=${value}`) {
    document.cookie = `${name}=${value}; Max-Age=${max_age}; Path=/; SameSite=Strict${secure}`
  } else if (!value && held) {
    document.cookie = `${name}=; Max-Age=0; Path=/; SameSite=Strict${secure}`
  }
}
"""
_cookie_writer = st.components.v2.component("qa_session_cookie", js=_JS)


@lru_cache(maxsize=8)
def _secret(from_env: str | None, home: str) -> bytes:
    if from_env:
        return from_env.encode()
    path = Path(home) / SECRET_FILE
    with contextlib.suppress(FileNotFoundError):
        kept = path.read_bytes().strip()
        if kept:
            return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(48).encode()
    # create-only, so two servers starting at once agree on the first secret written
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(fresh)
    return fresh


def secret() -> bytes:
    """The signing secret: from the environment, else generated once under QA_HOME."""
    return _secret(os.environ.get(SECRET_ENV), str(data.settings().home.resolve()))


def _mac(payload: str, key: bytes) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(
    token: str, ttl_seconds: int, *, now: float | None = None, key: bytes | None = None
) -> str:
    """`token.expiry.mac`; the token is URL-safe base64, so '.' separates unambiguously."""
    expires = int((time.time() if now is None else now) + ttl_seconds)
    payload = f"{token}.{expires}"
    return f"{payload}.{_mac(payload, key or secret())}"


def verify(value: str, *, now: float | None = None, key: bytes | None = None) -> str | None:
    """The token in a cookie whose signature holds and whose expiry is ahead, else None."""
    token, _, rest = (value or "").partition(".")
    expires, _, mac = rest.partition(".")
    if not token or not expires.isdigit() or not mac:
        return None
    if not hmac.compare_digest(mac, _mac(f"{token}.{expires}", key or secret())):
        return None
    if int(expires) <= (time.time() if now is None else now):
        return None
    return token


# --------------------------------------------------------------------------- in the app


def _ttl_seconds() -> int:
    return int(data.settings().session_ttl_minutes) * 60


def _held() -> str | None:
    """The cookie this connection was opened with (none in in-process page tests)."""
    try:
        held = st.context.cookies.get(COOKIE)
    except Exception:  # no browser connection behind this run
        return None
    return held if isinstance(held, str) else None


def restore() -> None:
    """Before anything reads the session: a page load with a valid cookie is signed in."""
    if st.session_state.get(data.TOKEN):
        return
    held = _held()
    if not held or held == st.session_state.get(_REFUSED):
        return
    token = verify(held)
    if token is not None:
        try:
            data.workflow().user_for_token(token)
        except (AccessDenied, QAError):
            token = None
    if token is None:  # forged, expired or ended elsewhere (logout): drop it
        st.session_state[_REFUSED] = held
        st.session_state[_VALUE] = ""
        return
    st.session_state[data.TOKEN] = token
    st.session_state[_VALUE] = held


def login(username: str, password: str) -> None:
    """Sign in with the service and have the browser keep a signed cookie of the session."""
    data.login(username, password)
    st.session_state[_VALUE] = sign(st.session_state[data.TOKEN], _ttl_seconds())


def logout() -> None:
    """End the service session (every tab's cookie stops working) and drop the cookie."""
    held = _held()
    data.logout()
    st.session_state[_VALUE] = ""
    if held:  # this connection still sees the cookie it was opened with
        st.session_state[_REFUSED] = held


def sync_cookie() -> None:
    """Write or delete the cookie in the browser so it matches this session's sign-in."""
    if not st.session_state.get(data.TOKEN) and st.session_state.get(_VALUE):
        st.session_state[_VALUE] = ""  # the session ended (expired, or a logout elsewhere)
    value = st.session_state.get(_VALUE)
    if value is None:
        return  # nothing to change
    _cookie_writer(
        key="session_cookie_writer",
        data={"name": COOKIE, "value": value, "max_age": _ttl_seconds()},
        height=0,
    )
