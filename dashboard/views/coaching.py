"""Coaching: sessions built from a call's failed items, their follow-up, and whether they worked.

The effect compares the agent's pass rate on the coached items over calls before and
after the session (final outcomes where a lead decided, automatic otherwise).
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.workflow.views import CallFilter, CoachingStatus

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

st.title("Coaching")

# ---------------------------------------------------------------- create from a call
if role in ("inspector", "lead"):
    with st.expander("New coaching session from a call", expanded=False):
        agent_id = st.text_input("Agent id", key="co_agent")
        if agent_id.strip():
            calls = data.guarded(
                wf.list_calls, user, CallFilter(agent_id=agent_id.strip(), limit=200)
            )
            if not calls:
                st.info("No calls for this agent.")
            else:
                by_id = {cv.call_id: cv for cv in calls}
                call_id = st.selectbox(
                    "Call",
                    list(by_id),
                    key="co_call",
                    format_func=lambda k: (
                        f"{k} · {by_id[k].total:.0f} · "
                        f"{sum(i.outcome.value == 'fail' for i in by_id[k].items)} failed items"
                    ),
                )
                call = by_id[call_id]
                failed = [i.item_id for i in call.items if i.outcome.value == "fail"]
                names = {i.item_id: i.name for i in call.items}
                with st.form("new_coaching"):
                    items = st.multiselect(
                        "Items to coach",
                        list(names),
                        default=failed,
                        format_func=lambda k: names[k],
                        key=f"co_items:{call_id}",
                    )
                    notes = st.text_area("Notes for the agent", key="co_notes")
                    due = st.date_input(
                        "Follow up by", value=date.today() + timedelta(days=14), key="co_due"
                    )
                    if st.form_submit_button("Create session", type="primary", key="co_create"):
                        if not items:
                            st.error("Choose at least one item to coach.")
                        else:
                            made = data.guarded(
                                wf.create_coaching,
                                user,
                                agent_id.strip(),
                                [call_id],
                                items,
                                notes,
                                due,
                            )
                            st.success(
                                plain.md(f"Coaching session {made.id} created for {made.agent_id}.")
                            )

# ---------------------------------------------------------------- sessions
sessions = data.guarded(wf.list_coaching, user)
if not sessions:
    st.info("No coaching sessions.")
    st.stop()
done = sum(s.status != CoachingStatus.OPEN for s in sessions)
c = st.columns(3)
c[0].metric("Sessions", len(sessions))
c[1].metric("Acknowledged", f"{done / len(sessions):.0%}")
c[2].metric("With follow-up", sum(bool(s.follow_up_notes) for s in sessions))
df = data.frame(
    [
        {
            **s.model_dump(mode="json"),
            "items": ", ".join(s.item_names.get(i, i) for i in s.item_ids),
        }
        for s in sessions
    ],
    [
        "id",
        "agent_id",
        "created_by",
        "session_at",
        "status",
        "items",
        "call_ids",
        "due",
        "acknowledged_at",
        "follow_up_date",
        "follow_up_notes",
    ],
)
st.dataframe(df, hide_index=True, width="stretch", key="co_table")
ui.csv_download(df, "coaching", key="dl_coaching")

by_id = {s.id: s for s in sessions}
sid = st.selectbox(
    "Session",
    list(by_id),
    key="co_pick",
    format_func=lambda k: (
        f"{k} · {by_id[k].agent_id} · {by_id[k].session_at:%Y-%m-%d} · {by_id[k].status.value}"
    ),
)
s = by_id[sid]
st.markdown(
    f"**Items:** {plain.md(', '.join(s.item_names.get(i, i) for i in s.item_ids))} · "
    f"**calls:** {plain.md(', '.join(s.call_ids))}"
)
if s.notes:
    plain.text(s.notes)
if (
    role == "agent"
    and s.status == CoachingStatus.OPEN
    and st.button("Acknowledge", key=f"co_ack:{s.id}", icon=":material/done:")
):
    data.guarded(wf.acknowledge_coaching, user, s.id)
    st.rerun()

effect = data.guarded(wf.coaching_effect, user, s.id)
c = st.columns(3)
c[0].metric(
    "Pass rate before",
    "-" if effect.before_rate is None else f"{effect.before_rate:.0%}",
    help=f"{effect.before_calls} calls",
)
c[1].metric(
    "Pass rate after",
    "-" if effect.after_rate is None else f"{effect.after_rate:.0%}",
    delta=None if effect.change is None else f"{effect.change:+.0%}",
    help=f"{effect.after_calls} calls",
)
c[2].metric("Calls before / after", f"{effect.before_calls} / {effect.after_calls}")
if effect.items:
    edf = data.frame(
        effect.items, ["name", "item_id", "before_rate", "after_rate", "before_n", "after_n"]
    )
    long = pd.melt(
        edf,
        id_vars=["name"],
        value_vars=["before_rate", "after_rate"],
        var_name="period",
        value_name="pass rate",
    ).dropna()
    if not long.empty:
        st.bar_chart(long, x="name", y="pass rate", color="period", stack=False, height=240)
    st.dataframe(edf, hide_index=True, width="stretch")
    ui.csv_download(edf, f"coaching_effect_{s.id}", key="dl_effect")

if role in ("inspector", "lead"):
    with st.form(f"follow_up:{s.id}"):
        st.markdown("**Follow-up**")
        notes = st.text_area("Notes", value=s.follow_up_notes or "", key=f"fu_notes:{s.id}")
        when = st.date_input("Date", value=s.follow_up_date or date.today(), key=f"fu_date:{s.id}")
        if st.form_submit_button("Save follow-up", key=f"fu_save:{s.id}"):
            data.guarded(wf.add_follow_up, user, s.id, notes, when)
            ui.done("Follow-up saved.")
