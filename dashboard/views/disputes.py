"""Disputes: an agent says a failed item was scored wrongly; a lead upholds or re-scores it.

Each open dispute is shown with the item's evidence from the call, so the lead decides
on what was said, not on the summary. The audit trail records every change.
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.errors import QAError
from qa.workflow.views import CallItemView, CallView, DisputeStatus, DisputeView

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

st.title("Disputes")

status_filter = st.segmented_control(
    "Status", ["open", "upheld", "overturned", "all"], default="open", key="disp_status"
)
status = None if status_filter in (None, "all") else DisputeStatus(status_filter)
disputes = data.guarded(wf.list_disputes, user, status)

df = data.frame(
    disputes,
    [
        "id",
        "call_id",
        "item_id",
        "agent_id",
        "opened_by",
        "reason",
        "status",
        "outcome_before",
        "outcome_after",
        "resolution",
        "resolved_by",
        "created_at",
        "resolved_at",
    ],
)
st.dataframe(df, hide_index=True, width="stretch", key="disp_table")
ui.csv_download(df, "disputes", key="dl_disputes")


def _decide(d: DisputeView, call: CallView, item: CallItemView) -> None:
    """Uphold, or re-score the item; a hand-set final total is kept or replaced only
    as the lead says. No form: the choices shown depend on the ones made."""
    decision = st.radio(
        "Decision",
        [DisputeStatus.UPHELD.value, DisputeStatus.OVERTURNED.value],
        horizontal=True,
        key=f"decision:{d.id}",
        format_func=lambda v: {
            "upheld": "uphold (the item stays failed)",
            "overturned": "re-score the item",
        }[v],
    )
    outcome, points, keep_total = None, None, None
    if decision == DisputeStatus.OVERTURNED.value:
        rescore = st.radio(
            "New score",
            ["pass", "partial", "na"],
            horizontal=True,
            key=f"rescore:{d.id}",
            format_func=lambda v: {
                "pass": f"pass ({item.points_possible:g} points)",
                "partial": "partial points",
                "na": "not applicable",
            }[v],
        )
        outcome = "fail" if rescore == "partial" else rescore
        if rescore == "partial":
            points = st.number_input(
                "Points", 0.0, float(item.points_possible), key=f"points:{d.id}"
            )
        if call.final_by_hand:
            keep_total = (
                st.radio(
                    f"The final total {call.final_total:.1f} was set by hand",
                    ["keep", "card"],
                    key=f"keep_total:{d.id}",
                    format_func=lambda v: {
                        "keep": "keep it",
                        "card": "take the card's total after this decision",
                    }[v],
                )
                == "keep"
            )
    resolution = st.text_area("Reason (the agent reads it)", key=f"resolution:{d.id}")
    if st.button("Decide", type="primary", key=f"resolve_btn:{d.id}"):
        if not resolution.strip():
            st.error("Write the reason the agent will read.")
            return
        data.guarded(
            wf.resolve_dispute,
            user,
            d.id,
            DisputeStatus(decision),
            resolution.strip(),
            outcome,
            points,
            keep_total,
        )
        ui.done(f"Dispute {d.id} {decision}.")


for d in disputes:
    if d.status != DisputeStatus.OPEN:
        continue
    with st.container(border=True):
        st.markdown(
            f"**Dispute {d.id}** · call {plain.md(d.call_id)} · item {plain.md(d.item_id)} · "
            f"agent {plain.md(d.agent_id or '-')} · opened by {plain.md(d.opened_by)} "
            f"{d.created_at:%Y-%m-%d %H:%M}"
        )
        plain.text(d.reason)
        try:
            call = wf.get_call(user, d.call_id)
        except QAError:
            st.error(ui.NOT_PERMITTED)
            continue
        result = data.load_result(call)
        item = next((i for i in call.items if i.item_id == d.item_id), None)
        if item is not None:
            st.markdown(
                f"**{plain.md(item.name)}** · automatic **{item.auto_outcome.value}** · "
                f"now **{item.outcome.value}** "
                f"· {item.points:g} / {item.points_possible:g} points"
            )
        auto = (
            next((i for i in result.score.items if i.item_id == d.item_id), None)
            if result
            else None
        )
        if auto is not None:
            source, fmt = data.audio_source(call, result)
            with st.expander("Evidence and recording"):
                ui.audio_player(call.call_id, source, fmt)
                ui.evidence_lines(call.call_id, auto, key_prefix=f"disp{d.id}")
        if role == "lead" and item is not None:
            _decide(d, call, item)

if role in ("lead", "manager", "admin"):
    st.subheader("Audit trail")
    entity = st.selectbox(
        "Entity",
        [None, "dispute", "call", "review", "coaching", "case", "user"],
        key="audit_entity",
        format_func=lambda v: "everything" if v is None else v,
    )
    entity_id = st.text_input("Entity id", key="audit_entity_id") or None
    trail = data.guarded(wf.audit_trail, user, entity, entity_id)
    adf = data.frame(
        trail, ["at", "actor", "entity", "entity_id", "action", "field", "old_value", "new_value"]
    )
    st.dataframe(adf, hide_index=True, width="stretch", key="audit_table")
    ui.csv_download(adf, "audit_trail", key="dl_audit")
