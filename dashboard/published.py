"""The published review: what an agent is told about a call once a lead has decided.

Graders' own forms are calibration between reviewers and the lead; the agent gets one
review, the lead's final decision, with the feedback written for them. All of it is user
text, shown as typed.
"""

from __future__ import annotations

import streamlit as st

from dashboard import data, plain
from qa.workflow.views import CallView


def render(call: CallView) -> None:
    if call.final_at is None:
        st.info(
            "No review has been published for this call yet; the score shown is the automatic one."
        )
        return
    st.markdown(
        f"**Published review** by {plain.md(call.final_by or '-')} on "
        f"{call.final_at:%Y-%m-%d %H:%M} · total **{call.total:.1f}** · "
        f"{'pass' if call.passed else 'fail'}"
        + (" · critical item failed" if call.failed_critical else "")
    )
    if call.final_note:
        plain.text(call.final_note)
    st.dataframe(
        data.frame(
            [
                {
                    "item": i.name,
                    "outcome": i.outcome.value,
                    "points": f"{i.points:g} / {i.points_possible:g}",
                    "changed from automatic": i.final_outcome not in (None, i.auto_outcome),
                    "feedback": i.final_comment or "",
                }
                for i in call.items
            ]
        ),
        hide_index=True,
        width="stretch",
        key="published_review",
    )
