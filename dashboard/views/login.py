"""Log in with a username and password; the service returns a session token, which the
browser keeps in a signed cookie so a reload or a second tab stays signed in."""

from __future__ import annotations

import streamlit as st

from dashboard import data, sessions
from qa.errors import AccessDenied


def render() -> None:
    """Shown for every address while logged out, so a deep link survives the login."""
    st.title("Call QA — log in")
    notice = st.session_state.get(data.NOTICE)
    if notice:
        st.warning(notice)

    with st.form("login"):
        username = st.text_input("Username", max_chars=64, key="login_username")
        password = st.text_input("Password", type="password", max_chars=1024, key="login_password")
        submitted = st.form_submit_button("Log in", key="login_submit")

    if submitted:
        try:
            sessions.login(username.strip(), password)
        except AccessDenied:
            st.error("Wrong username or password, or the account is disabled.")
        else:
            st.rerun()
