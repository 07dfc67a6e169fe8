"""Review queue: the calls the pipeline flagged for a person, narrowed by filters.

Leads assign calls to reviewers and draw a random sample. An inspector's queue opens on
what they can act on: the calls assigned to them, or, when none are, the flagged calls
nobody is assigned to, with the count of each. "Next call" or a click on a row opens the
call review page.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.schema import FlagCode
from qa.workflow.views import CallFilter

PAGE_LIMIT = 500

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

st.title("Review queue")

with st.expander("Filters", expanded=False):
    c = st.columns(4)
    team = c[0].text_input("Team", key="q_team") or None
    agent = c[1].text_input("Agent id", key="q_agent") or None
    queue = c[2].text_input("Queue", key="q_queue") or None
    flag = c[3].selectbox(
        "Flag",
        [None, *[f.value for f in FlagCode]],
        key="q_flag",
        format_func=lambda v: "any flag" if v is None else v,
    )
    c = st.columns(4)
    dates = c[0].date_input("Started between", value=(), key="q_dates")
    lo, hi = c[1].slider("Score range", 0.0, 100.0, (0.0, 100.0), step=1.0, key="q_score")
    status = c[2].selectbox("Review status", ["unreviewed", "reviewed", "all"], key="q_status")
    only_flagged = c[3].toggle("Flagged only", value=True, key="q_flagged")

date_from = date_to = None
if isinstance(dates, tuple | list) and len(dates) >= 1:
    date_from = datetime.combine(dates[0], time.min, tzinfo=UTC)
    date_to = datetime.combine(dates[-1], time.min, tzinfo=UTC) + timedelta(days=1)

filters = CallFilter(
    team=team,
    agent_id=agent,
    queue=queue,
    flag=flag,
    flagged=True if only_flagged and flag is None else None,
    date_from=date_from,
    date_to=date_to,
    min_total=lo if lo > 0 else None,
    max_total=hi if hi < 100 else None,
    reviewed={"unreviewed": False, "reviewed": True}.get(status),
    limit=PAGE_LIMIT,
)
# what a reviewer can act on: assigned to them, else the flagged calls nobody has
# (counted in SQL; only the scope shown is loaded, at most PAGE_LIMIT calls)
scope_filters = {
    "mine": filters.model_copy(update={"assigned_to_me": True}),
    "pool": filters.model_copy(
        update={"flagged": True if flag is None else None, "unassigned": True}
    ),
    "all": filters,
}
counts = {k: data.guarded(wf.count_calls, user, f) for k, f in scope_filters.items()}
labels = {
    "mine": f"Assigned to me ({counts['mine']})",
    "pool": f"Unassigned flagged ({counts['pool']})",
    "all": f"All matching the filters ({counts['all']})",
}
if "q_scope" not in st.session_state:  # first visit: what this person can act on
    inspector = role == "inspector"
    st.session_state["q_scope"] = ("mine" if counts["mine"] else "pool") if inspector else "all"
scope = st.radio(
    "Show", list(labels), index=None, key="q_scope", horizontal=True, format_func=labels.get
)
if not counts["mine"] and scope == "mine":
    st.info(
        "Nothing is assigned to you. Leads assign calls on this page; meanwhile the "
        f"flagged calls nobody is assigned to ({counts['pool']}) are yours to take."
    )
elif not counts["mine"] and scope == "pool" and role == "inspector":
    st.info("Nothing is assigned to you, so these are the flagged calls nobody is assigned to.")
calls = data.guarded(wf.list_calls, user, scope_filters[scope or "all"])

rows = [
    {
        "call_id": cv.call_id,
        "started_at": cv.started_at,
        "agent": cv.agent_id,
        "team": cv.team,
        "queue": cv.queue,
        "total": round(cv.total, 1),
        "passed": cv.passed,
        "auto_fail": cv.auto_fail,
        "flags": ", ".join(cv.flags),
        "flag reasons": "; ".join(cv.flag_reasons),
        "assigned": ", ".join(cv.assigned_reviewers),
        "reviews": cv.submitted_reviews,
    }
    for cv in calls
]
columns = [
    "call_id",
    "started_at",
    "agent",
    "team",
    "queue",
    "total",
    "passed",
    "auto_fail",
    "flags",
    "flag reasons",
    "assigned",
    "reviews",
]
df = data.frame(rows, columns)


def open_call(call_id: str) -> None:
    st.session_state["open_call"] = call_id
    # a fresh table next time, so coming back to the queue does not open the row again
    st.session_state["q_table_n"] = st.session_state.get("q_table_n", 0) + 1
    st.switch_page("views/review.py")


top = st.columns([2, 5], vertical_alignment="center")
if top[0].button(
    "Next call",
    key="q_next",
    type="primary",
    icon=":material/skip_next:",
    disabled=df.empty,
    help="Open the first call of this list",
):
    open_call(str(df["call_id"].iloc[0]))
top[1].caption(
    f"{len(df)} calls"
    + (f" (first {PAGE_LIMIT})" if len(df) >= PAGE_LIMIT else "")
    + (" · click a row to open the call" if len(df) else "")
)
event = st.dataframe(
    df,
    hide_index=True,
    width="stretch",
    on_select="rerun",
    selection_mode="single-row",
    key=f"queue_table:{st.session_state.get('q_table_n', 0)}",
    column_config={
        "total": st.column_config.ProgressColumn("total", min_value=0, max_value=100, format="%.1f")
    },
)
ui.csv_download(df, "review_queue", key="dl_queue")
selected = event.selection.rows if event is not None else []
if selected:
    open_call(str(df.iloc[selected[0]]["call_id"]))

if role in ("lead", "admin"):
    st.subheader("Assign and sample")
    a, b = st.columns(2)
    with a, st.form("assign"):
        st.markdown("**Assign a call to a reviewer**")
        target = st.selectbox("Call", df["call_id"].tolist(), key="assign_call")
        reviewer = st.text_input("Reviewer username", key="assign_reviewer")
        if st.form_submit_button("Assign", key="assign_submit") and target and reviewer.strip():
            data.guarded(wf.assign, user, target, reviewer.strip())
            plain.done(f"{target} assigned to {reviewer.strip()}")
    with b, st.form("sample"):
        st.markdown("**Random sample for review** (uses the filters above)")
        n = st.number_input("Calls", min_value=1, max_value=200, value=5, key="sample_n")
        seed = st.number_input("Seed", min_value=0, value=0, key="sample_seed")
        if st.form_submit_button("Draw sample", key="sample_submit"):
            drawn = data.guarded(
                wf.sample_for_review,
                user,
                int(n),
                filters.model_copy(update={"limit": None, "flagged": None}),
                int(seed),
            )
            st.session_state["sampled_calls"] = [cv.call_id for cv in drawn]
    if st.session_state.get("sampled_calls"):
        plain.text("Sampled: " + ", ".join(st.session_state["sampled_calls"]))
