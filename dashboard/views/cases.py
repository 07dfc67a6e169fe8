"""Case library: calls kept as good examples or common mistakes, for training and calibration."""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.workflow.views import CaseKind

user = data.current_user()
wf = data.workflow()

st.title("Case library")

c1, c2 = st.columns([3, 1])
text = c1.text_input("Search titles, notes and tags", key="case_search")
kind = c2.selectbox(
    "Kind",
    [None, *[k.value for k in CaseKind]],
    key="case_kind_filter",
    format_func=lambda v: "all" if v is None else v.replace("_", " "),
)
cases = data.guarded(wf.search_cases, user, text.strip() or None, CaseKind(kind) if kind else None)

df = data.frame(
    cases, ["id", "kind", "title", "call_id", "tags", "notes", "created_by", "created_at"]
)
st.caption(f"{len(df)} cases")
st.dataframe(df, hide_index=True, width="stretch", key="cases_table")
ui.csv_download(df, "case_library", key="dl_cases")

if cases:
    by_id = {c.id: c for c in cases}
    cid = st.selectbox(
        "Case",
        list(by_id),
        key="case_pick",
        format_func=lambda k: f"{by_id[k].title} ({by_id[k].kind.value})",
    )
    case = by_id[cid]
    st.markdown(
        f"**{plain.md(case.title)}** · {case.kind.value.replace('_', ' ')} · "
        f"call {plain.md(case.call_id)} · tags {plain.md(', '.join(case.tags) or '-')}"
    )
    if case.notes:
        plain.text(case.notes)
    if st.button("Open the call", key="case_open", icon=":material/headphones:"):
        st.session_state["open_call"] = case.call_id
        st.switch_page("views/review.py")
