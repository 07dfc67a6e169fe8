"""My calls: an agent's own scored calls and coaching, the start of self-review and disputes.

The list comes from the service, which returns only the agent's own calls; opening one
leads to the same review form inspectors use.
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.workflow.views import CallFilter, CoachingStatus

user = data.current_user()
wf = data.workflow()

st.title("My calls")

calls = data.guarded(wf.list_calls, user, CallFilter(limit=1000))
if not calls:
    st.info("No scored calls yet.")
else:
    passed = sum(cv.passed for cv in calls)
    c = st.columns(4)
    c[0].metric("Calls", len(calls))
    c[1].metric("Average score", f"{sum(cv.total for cv in calls) / len(calls):.1f}")
    c[2].metric("Pass rate", f"{passed / len(calls):.0%}")
    c[3].metric("To acknowledge", sum(cv.acknowledged_at is None for cv in calls))
    df = data.frame(
        [
            {
                "call_id": cv.call_id,
                "started_at": cv.started_at,
                "queue": cv.queue,
                "score": round(cv.total, 1),
                "passed": cv.passed,
                "auto_fail": cv.auto_fail,
                "failed items": ", ".join(i.item_id for i in cv.items if i.outcome.value == "fail"),
                "final": cv.final_total is not None,
                "acknowledged": cv.acknowledged_at is not None,
            }
            for cv in calls
        ]
    )
    st.dataframe(df, hide_index=True, width="stretch", key="my_calls_table")
    ui.csv_download(df, "my_calls", key="dl_my_calls")
    open_id = st.selectbox(
        "Open a call to see its evidence, score yourself, acknowledge or dispute",
        df["call_id"].tolist(),
        key="my_open",
    )
    if st.button("Open call", key="my_open_btn", type="primary", icon=":material/headphones:"):
        st.session_state["open_call"] = open_id
        st.switch_page("views/review.py")

st.subheader("My disputes")
disputes = data.guarded(wf.list_disputes, user, None)
if disputes:
    ddf = data.frame(
        disputes,
        ["id", "call_id", "item_id", "reason", "status", "resolution", "created_at", "resolved_at"],
    )
    st.dataframe(ddf, hide_index=True, width="stretch")
    ui.csv_download(ddf, "my_disputes", key="dl_my_disputes")
else:
    st.caption("No disputes.")

st.subheader("My coaching")
sessions = data.guarded(wf.list_coaching, user)
if not sessions:
    st.caption("No coaching sessions.")
for s in sessions:
    with st.container(border=True):
        st.markdown(
            f"**Session {s.id}** with {plain.md(s.created_by)} on {s.session_at:%Y-%m-%d} · "
            f"status **{s.status.value}**" + (f" · due {s.due}" if s.due else "")
        )
        st.markdown(
            f"Items: {plain.md(', '.join(s.item_ids) or '-')} · "
            f"calls: {plain.md(', '.join(s.call_ids))}"
        )
        if s.notes:
            plain.text(s.notes)
        if s.follow_up_notes:
            st.caption(f"Follow-up {s.follow_up_date or ''}:")
            plain.text(s.follow_up_notes)
        if s.status == CoachingStatus.OPEN and st.button(
            "Acknowledge", key=f"ack_coaching:{s.id}", icon=":material/done:"
        ):
            data.guarded(wf.acknowledge_coaching, user, s.id)
            st.rerun()
