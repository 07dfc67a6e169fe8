"""Entry of the QA dashboard: log in, then the pages the user's role works with.

Run with `qa serve` (or `streamlit run dashboard/app.py`); settings come from the
environment (QA_HOME, QA_DATABASE_URL, QA_STORE_URL, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import components, data, plain, sessions  # noqa: E402
from dashboard.views import login  # noqa: E402

st.set_page_config(page_title="Call QA", page_icon=":material/headset_mic:", layout="wide")

sessions.restore()  # a reload or a second tab signs in from the signed session cookie
user = data.session_user()
sessions.sync_cookie()
if user is None:
    # Keep a deep link (?call=...) so it opens once the user has logged in.
    if "call" in st.query_params:
        st.session_state["pending_call"] = st.query_params["call"]
    pages = [st.Page(login.render, title="Log in", url_path="login", default=True)]
    pages += [st.Page(login.render, title="Log in", url_path=name) for name in data.PAGE_TITLES]
    nav = st.navigation(pages, position="hidden")
else:
    role = data.role_of(user)
    pages = []
    for name in data.ROLE_PAGES.get(role, []):
        title, icon = data.PAGE_TITLES[name]
        pages.append(st.Page(f"views/{name}.py", title=title, icon=icon, url_path=name))
    with st.sidebar:
        st.markdown(
            f"**{plain.md(user.display_name or user.username)}**  \n{role}"
            + (f" · {plain.md(user.team)}" if user.team else "")
        )
        if st.button("Log out", key="logout", icon=":material/logout:"):
            sessions.logout()
            st.rerun()
    nav = st.navigation(pages)
    pending = st.session_state.pop("pending_call", None)
    if pending and "review" in data.ROLE_PAGES.get(role, []):
        st.session_state["open_call"] = pending
        st.switch_page("views/review.py")
components.show_flash()
nav.run()
