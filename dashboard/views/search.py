"""Search: find the moments a word or phrase was said, and open the call there.

The service (`qa.search.SearchIndex.search`) takes the signed-in user, so an agent's hits
are on their own calls only whatever the filters say. Transcript text is speech, not markup:
every piece is escaped, and only the matched pieces are wrapped in a badge.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.schema import FlagCode
from qa.search import SearchHit, SearchIndex, SearchQuery, default_root

user = data.current_user()
role = data.role_of(user)


@st.cache_resource(show_spinner=False)
def _search_index(root: str) -> SearchIndex:
    return SearchIndex(root)


def search_index() -> SearchIndex:
    return _search_index(str(default_root(data.settings().home).resolve()))


def said(hit: SearchHit) -> str:
    """The snippet as Markdown: escaped text, the matches as badges around escaped text."""
    out = []
    for part in hit.snippet:
        text = plain.md(" ".join(part.text.splitlines()))
        out.append(f":orange-badge[{text}]" if part.hit and text.strip() else text)
    return "".join(out)


def open_hit(hit: SearchHit) -> None:
    st.session_state["open_call"] = hit.call_id
    st.session_state["open_at"] = hit.start
    st.switch_page("views/review.py")


st.title("Search")
st.caption(
    'Words find utterances that say all of them; put a phrase in quotes ("cancel my order"). '
    "English and Chinese." + (" You find your own calls only." if role == "agent" else "")
)

with st.form("search"):
    text = st.text_input('Words or "a phrase"', key="s_text", max_chars=200)
    with st.expander("Filters"):
        c = st.columns(4)
        agent = None if role == "agent" else (c[0].text_input("Agent id", key="s_agent") or None)
        team = c[1].text_input("Team", key="s_team") or None
        queue = c[2].text_input("Queue", key="s_queue") or None
        who = c[3].selectbox(
            "Said by",
            [None, "agent", "customer"],
            key="s_role",
            format_func=lambda v: "anyone" if v is None else v,
        )
        c = st.columns(4)
        dates = c[0].date_input("Started between", value=(), key="s_dates")
        lo, hi = c[1].slider("Score range", 0.0, 100.0, (0.0, 100.0), step=1.0, key="s_score")
        flag = c[2].selectbox(
            "Flag",
            [None, *[f.value for f in FlagCode]],
            key="s_flag",
            format_func=lambda v: "any" if v is None else v,
        )
        item_failed = c[3].text_input("Item failed (item id)", key="s_item") or None
    submitted = st.form_submit_button("Search", key="s_submit", type="primary")

if submitted:
    date_from = date_to = None
    if isinstance(dates, tuple | list) and len(dates) >= 1:
        date_from = datetime.combine(dates[0], time.min, tzinfo=UTC)
        date_to = datetime.combine(dates[-1], time.min, tzinfo=UTC) + timedelta(days=1)
    st.session_state["s_query"] = SearchQuery(
        text=text,
        agent_id=agent,
        team=team,
        queue=queue,
        since=date_from,
        until=date_to,
        min_score=lo if lo > 0 else None,
        max_score=hi if hi < 100 else None,
        flag=flag,
        item_failed=item_failed,
        role=who,
    )

query: SearchQuery | None = st.session_state.get("s_query")
if query is None or not query.text.strip():
    if submitted:
        st.info("Type a word or a phrase to search for.")
    st.stop()

result = data.guarded(search_index().search, user, query)
if not result.hits:
    st.info("Nothing found. Check the spelling or loosen the filters.")
    st.stop()
st.caption(
    f"{len(result.hits)}{'+' if result.more else ''} moments, newest first"
    + (f" (the first {query.limit})" if result.more else "")
)

widths = [2, 1, 1, 6, 1]
head = st.columns(widths)
for col, name in zip(head, ["call", "time", "said by", "what was said", ""], strict=True):
    col.markdown(f"**{name}**")
for n, hit in enumerate(result.hits):
    row = st.columns(widths, vertical_alignment="center")
    when = f" · {hit.started_at:%Y-%m-%d}" if hit.started_at else ""
    row[0].markdown(f"{plain.md(hit.call_id)}  \n:gray[{plain.md(hit.agent_id or '-')}{when}]")
    row[1].markdown(plain.md(ui.fmt_time(hit.start)))
    row[2].markdown(plain.md(hit.role))
    row[3].markdown(said(hit))
    if row[4].button(
        "Open", key=f"s_open:{n}", help=f"Play the call from {ui.fmt_time(hit.start)}"
    ):
        open_hit(hit)
