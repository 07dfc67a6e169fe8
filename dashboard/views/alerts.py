"""Alert log: what the alert rules sent, to whom, how many tries it took and what failed.

Leads see their own team's alerts, managers every team's; the service refuses anyone
else. Recipients are shown masked, as they are stored.
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.workflow.alerts import AlertStatus

user = data.current_user()
wf = data.workflow()

st.title("Alerts")

STATUSES = ["all", "sent", "retried", "failed", "logged", "sending"]
c1, c2 = st.columns([2, 3])
status = c1.selectbox("Status", STATUSES, key="alert_status")
alerts = data.guarded(wf.alert_log, user)
rules = sorted({a.rule_name or a.rule_id for a in alerts})
rule = c2.selectbox("Rule", ["all", *rules], key="alert_rule")

m1, m2, m3, m4 = st.columns(4)
m1.metric("Sent", sum(a.status is AlertStatus.SENT for a in alerts))
m2.metric("Retried", sum(a.retried for a in alerts))
m3.metric("Failed", sum(a.status is AlertStatus.FAILED for a in alerts))
m4.metric("Log only", sum(a.status is AlertStatus.LOGGED for a in alerts))

shown = [
    a
    for a in alerts
    if (
        status == "all"
        or (status == "retried" and a.retried)
        or (status != "retried" and a.status.value == status)
    )
    and (rule == "all" or (a.rule_name or a.rule_id) == rule)
]
df = data.frame(
    [
        {
            "time": a.updated_at,
            "status": a.status.value,
            "rule": a.rule_name or a.rule_id,
            "call": a.call_id,
            "review": f"review?call={a.call_id}",
            "team": a.team,
            "agent": a.agent_id,
            "recipients": ", ".join(a.recipients) or "(log only)",
            "attempts": a.attempts,
            "retried": a.retried,
            "reason": a.reason,
            "error": a.error or "",
        }
        for a in shown
    ],
    [
        "time",
        "status",
        "rule",
        "call",
        "review",
        "team",
        "agent",
        "recipients",
        "attempts",
        "retried",
        "reason",
        "error",
    ],
)
if user.role == "lead":
    st.caption(f"{len(df)} alerts of team {plain.md(user.team or '-')}")
else:
    st.caption(f"{len(df)} alerts")
st.dataframe(
    df,
    hide_index=True,
    width="stretch",
    key="alerts_table",
    column_config={
        "review": st.column_config.LinkColumn("review", display_text="open"),
        "time": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
    },
)
ui.csv_download(df, "alerts", key="dl_alerts")

if shown:
    by_id = {a.id: a for a in shown}
    pick = st.selectbox(
        "Alert",
        list(by_id),
        key="alert_pick",
        format_func=lambda k: f"{by_id[k].rule_name or by_id[k].rule_id} · {by_id[k].call_id}",
    )
    alert = by_id[pick]
    how = (
        "written to the log only (no recipients for this team)"
        if alert.status is AlertStatus.LOGGED
        else f"{alert.status.value} after {alert.attempts} attempt(s)"
    )
    st.markdown(
        f"**{plain.md(alert.rule_name or alert.rule_id)}** on call "
        f"{plain.md(alert.call_id)} · {how}"
    )
    plain.text(alert.reason)
    if alert.error:
        plain.error(alert.error)
    if st.button("Open the call", key="alert_open", icon=":material/headphones:"):
        st.session_state["open_call"] = alert.call_id
        st.switch_page("views/review.py")
