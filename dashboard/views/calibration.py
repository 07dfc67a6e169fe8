"""Calibration: where reviewers of the same call disagree, and the lead's final decision.

Shows, for calls with at least two submitted reviews, each item's outcomes side by side,
the score spread and agreement with the automatic score, Krippendorff's alpha per item and
per reviewer over all reviewed calls, and (for a lead) the form that sets the final score.
"""

from __future__ import annotations

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.schema import ItemOutcome
from qa.workflow.views import CallFilter, ReviewItemInput

OUTCOMES = [o.value for o in ItemOutcome]

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

st.title("Calibration")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


# ---------------------------------------------------------------- agreement over all calls
if role in ("lead", "manager"):
    stats = data.guarded(wf.agreement_stats, user, CallFilter())
    c = st.columns(4)
    c[0].metric("Calls with reviews", stats.calls)
    c[1].metric("Reviews", stats.reviews)
    c[2].metric("Krippendorff α", _num(stats.alpha))
    c[3].metric("Automatic vs human", _pct(stats.auto_human_agreement))
    t1, t2 = st.tabs(["Per item", "Per reviewer"])
    with t1:
        df = data.frame(
            stats.items,
            ["scorecard_id", "item_id", "name", "alpha", "auto_human_agreement", "ratings"],
        )
        st.dataframe(df, hide_index=True, width="stretch")
        ui.csv_download(df, "agreement_items", key="dl_agree_items")
    with t2:
        df = data.frame(
            stats.reviewers,
            [
                "reviewer",
                "reviews",
                "alpha_vs_others",
                "agreement_vs_others",
                "alpha_vs_final",
                "agreement_vs_final",
                "agreement_vs_auto",
            ],
        )
        st.dataframe(df, hide_index=True, width="stretch")
        ui.csv_download(df, "agreement_reviewers", key="dl_agree_reviewers")

# ---------------------------------------------------------------- one call
calls = [
    cv
    for cv in data.guarded(wf.list_calls, user, CallFilter(reviewed=True, limit=1000))
    if cv.submitted_reviews >= 2
]
st.subheader("Calls reviewed by two or more people")
if not calls:
    st.info("No call has two submitted reviews yet.")
    st.stop()
listing = data.frame(
    [
        {
            "call_id": cv.call_id,
            "agent": cv.agent_id,
            "team": cv.team,
            "reviews": cv.submitted_reviews,
            "auto total": cv.auto_total,
            "final total": cv.final_total,
        }
        for cv in calls
    ]
)
st.dataframe(listing, hide_index=True, width="stretch")
ui.csv_download(listing, "calibration_calls", key="dl_cal_calls")

ids = [cv.call_id for cv in calls]
default = st.query_params.get("call")
call_id = st.selectbox(
    "Call", ids, index=ids.index(default) if default in ids else 0, key="cal_call"
)
cal = data.guarded(wf.calibration, user, call_id)
call = data.guarded(wf.get_call, user, call_id)

c = st.columns(4)
c[0].metric("Reviewers", len(cal.reviewers))
c[1].metric("Score spread", f"{cal.score_spread:.1f}")
c[2].metric("Mean item agreement", _pct(cal.agreement))
c[3].metric(
    "Final total",
    "-" if cal.final_total is None else f"{cal.final_total:.1f}",
    help=f"automatic {cal.auto_total:.1f}",
)

totals = data.frame(
    [{"reviewer": r, "total": t} for r, t in cal.totals.items()]
    + [{"reviewer": "automatic", "total": cal.auto_total}]
)
st.bar_chart(totals, x="reviewer", y="total", height=220)

rows = []
for it in cal.items:
    row = {
        "item": it.item_id,
        "name": it.name,
        "critical": it.critical,
        "automatic": it.auto_outcome.value,
        "final": it.final_outcome.value if it.final_outcome else None,
    }
    row.update({r: (it.outcomes[r].value if r in it.outcomes else None) for r in cal.reviewers})
    row.update(
        {
            "majority": "tie" if it.tie else (it.majority.value if it.majority else None),
            "agreement": it.agreement,
            "all agree": it.all_agree,
            "agrees with automatic": it.auto_agreement,
            "points spread": it.points_spread,
        }
    )
    rows.append(row)
table = data.frame(rows)


def _mark(row):  # highlight the items reviewers disagree on
    colour = "" if row["all agree"] else "background-color: rgba(255, 165, 0, 0.25)"
    return [colour] * len(row)


notes = [(r, "the review", c) for r, c in cal.comments.items()] + [
    (r, it.name, c) for it in cal.items for r, c in it.comments.items()
]
if notes:
    with st.expander(f"Reviewers' comments ({len(notes)})", expanded=True):
        st.dataframe(
            data.frame([{"reviewer": r, "on": on, "comment": c} for r, on, c in notes]),
            hide_index=True,
            width="stretch",
            key="cal_comments",
        )

st.markdown("**Per item**  ·  rows in orange: reviewers disagree")
st.dataframe(table.style.apply(_mark, axis=1), hide_index=True, width="stretch", key="cal_items")
ui.csv_download(table, f"calibration_{call_id}", key="dl_cal_items")
disagree = [it.item_id for it in cal.items if not it.all_agree]
if disagree:
    st.warning(plain.md("Disagreement on: " + ", ".join(disagree)))
else:
    st.success("All reviewers agree on every item.")

# ---------------------------------------------------------------- the lead's decision
if role == "lead":
    st.subheader("Final decision")
    # no form: each flip reruns, so the card's total below follows the chosen outcomes
    st.caption(
        "The final decision is published to the agent: outcomes, your feedback per item "
        "and the note. Reviewers' own forms stay between the reviewers and you."
    )
    chosen: dict[str, str] = {}
    feedback: dict[str, str] = {}
    for it in cal.items:
        start = (it.final_outcome or it.majority or it.auto_outcome).value
        chosen[it.item_id] = st.radio(
            plain.md(f"{it.name} ({it.item_id})" + (" · reviewers tied" if it.tie else "")),
            OUTCOMES,
            index=OUTCOMES.index(start),
            horizontal=True,
            key=f"final:{call_id}:{it.item_id}",
        )
        feedback[it.item_id] = st.text_input(
            "Feedback to the agent",
            value=it.final_comment or "",
            max_chars=5_000,
            placeholder="; ".join(f"{r}: {c}" for r, c in it.comments.items())[:200],
            key=f"final_comment:{call_id}:{it.item_id}",
        )
    # the card's own arithmetic, the same that scored the call and every review
    suggested = call.outcome_of(chosen)
    st.metric(
        "Total by the card",
        f"{suggested.total:.1f} · {'pass' if suggested.passed else 'fail'}",
        help="The card's arithmetic over the outcomes above, as for the automatic score and "
        "every review"
        + ("; auto-fail: " + "; ".join(suggested.reasons) if suggested.auto_fail else ""),
    )
    override = st.checkbox("Set the total by hand", key=f"final_override:{call_id}")
    total, passed = suggested.total, suggested.passed
    if override:
        total = st.number_input(
            "Final total (by hand)",
            0.0,
            float(call.max_total),
            value=float(round(suggested.total, 1)),
            key=f"final_total:{call_id}",
        )
        passed = st.checkbox(
            "Passed (by hand)", value=suggested.passed, key=f"final_passed:{call_id}"
        )
    note = st.text_area("Note to the agent", max_chars=10_000, key=f"final_note:{call_id}")
    if st.button("Set final score", type="primary", key="final_submit"):
        items = [
            ReviewItemInput(item_id=k, outcome=ItemOutcome(v), comment=feedback[k])
            for k, v in chosen.items()
        ]
        final = data.guarded(
            wf.set_final_score,
            user,
            call_id,
            items,
            float(total) if override else None,
            bool(passed) if override else None,
            note,
        )
        total = final.final_total if final.final_total is not None else total
        plain.done(f"Final score of {call_id} set to {total:.1f}.")
