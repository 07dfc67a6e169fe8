"""Call review: listen, read, check each automatic item against its evidence, and decide.

Inspectors and leads review; the call's agent self-reviews on the same form, acknowledges
the score or disputes an item. Which call a user may open is decided by the service:
a call id in the URL that is not theirs shows "not found or not permitted".
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data
from qa.errors import QAError, StaleEditError
from qa.schema import ItemOutcome, ItemResult
from qa.workflow import auth
from qa.workflow.views import CallFilter, CaseKind, ReviewItemInput, ReviewStatus, UserRole

OUTCOMES = [o.value for o in ItemOutcome]

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

st.title("Call review")

# ---------------------------------------------------------------- which call
opened = st.session_state.pop("open_call", None)
if opened:
    st.query_params["call"] = opened
call_id = st.query_params.get("call")
if not call_id:
    recent = data.guarded(wf.list_calls, user, CallFilter(limit=200))
    if not recent:
        st.info("No calls to review yet.")
        st.stop()
    choice = st.selectbox(
        "Call",
        [c.call_id for c in recent],
        index=None,
        placeholder="Choose a call",
        key="review_pick",
    )
    if not choice:
        st.stop()
    st.query_params["call"] = call_id = choice

try:
    call = wf.get_call(user, call_id)
except QAError:
    st.error(ui.NOT_PERMITTED)
    st.stop()

result = data.load_result(call)
meta_bits = [
    f"**{call.call_id}**",
    f"agent {call.agent_id or '-'}",
    f"team {call.team or '-'}",
    f"queue {call.queue or '-'}",
    call.direction,
]
if call.started_at:
    meta_bits.append(f"{call.started_at:%Y-%m-%d %H:%M}")
if call.duration:
    meta_bits.append(ui.fmt_time(call.duration))
# which card scored it: `qa rescore` adds results for new versions of a card
meta_bits.append(f"scorecard {call.scorecard_id}@{call.scorecard_version}")
st.markdown(" · ".join(meta_bits))

if result is not None:
    ui.score_header(result, call.final_total, call.final_passed)
    ui.quality_panel(call.call_id, result.transcript.quality)
else:
    st.warning(
        "The pipeline's full result for this call is not in the store; showing the "
        "scores the workflow database holds."
    )
    st.metric("Automatic score", f"{call.auto_total:.1f}")
if call.final_note:
    st.info(f"Final decision by {call.final_by}: {call.final_note}")

# ---------------------------------------------------------------- scores side by side
# the machine's, each person's and the final one kept apart; which reviews show is the
# service's blind-review rule (`reviews_for_call`)
reviews = data.guarded(wf.reviews_for_call, user, call.call_id)
score_rows = [("automatic", "pipeline", False, call.auto_total, call.auto_passed)]
score_rows += [
    ("review", r.reviewer_name or r.reviewer, r.self_review, r.total, r.passed)
    for r in reviews
    if r.status == ReviewStatus.SUBMITTED
]
if call.final_total is not None:
    score_rows.append(("final", call.final_by or "", False, call.final_total, call.final_passed))
scores = pd.DataFrame(score_rows, columns=["score", "by", "self-review", "total", "passed"])
with st.expander("Scores", expanded=True):
    st.dataframe(scores, hide_index=True, width="stretch", key="scores")

# ---------------------------------------------------------------- listen and read
left, right = st.columns([5, 6], gap="large")
with left:
    st.subheader("Recording")
    source, fmt = data.audio_source(call, result)
    ui.audio_player(call.call_id, source, fmt)
    if result is not None and result.transcript.redactions:
        st.caption(
            f"{len(result.transcript.redactions)} spans of personal data are silent "
            "in this recording."
        )
    if (
        data.settings().original_audio == "restricted"
        and UserRole(role) in auth.ORIGINAL_AUDIO
        and st.button(
            "Play the original recording",
            key="original_audio",
            help="Unredacted; your access is written to the audit log",
        )
    ):
        try:
            st.audio(wf.original_audio(user, call.call_id, data.store()))
            st.caption("Original recording, unredacted. This access is in the audit log.")
        except QAError as exc:
            st.warning(exc.reason)
    if result is not None:
        transcript = result.transcript
        if transcript.roles.method == "swapped":  # a reviewer's swap, scored again
            st.caption(
                "Agent and customer were swapped by a reviewer; the score above is "
                "from the swapped roles."
                if call.role_swapped
                else "A reviewer set agent and customer back to the automatic decision; "
                "the score above is from these roles."
            )
        elif call.role_swapped:  # recorded before swaps were scored again
            transcript = ui.swapped_transcript(transcript)
            st.caption(
                "Agent and customer were swapped by a reviewer; the score is still "
                "from the automatic roles."
            )
        st.subheader("Transcript")
        ui.transcript_view(call.call_id, transcript)
    if (
        result is not None
        and UserRole(role) in auth.REVIEWERS
        and st.button(
            "Swap agent / customer",
            key="swap_roles",
            help="The speaker detection picked the wrong person as the agent: the call is "
            "scored again with the roles exchanged",
        )
    ):
        with st.spinner("Scoring the call again with the roles swapped..."):
            swapped = data.guarded(wf.swap_roles, user, call.call_id, data.store(), data.models())
        st.session_state["swap_notice"] = (
            f"Roles swapped; automatic score {call.auto_total:.1f} → {swapped.auto_total:.1f}"
        )
        st.rerun()
    if notice := st.session_state.pop("swap_notice", None):
        st.success(notice)

# ---------------------------------------------------------------- items and the form
auto_items: dict[str, ItemResult] = {i.item_id: i for i in result.score.items} if result else {}
mine = next((r for r in reviews if r.reviewer == user.username), None)
mine_items = {i.item_id: i for i in mine.items} if mine else {}

version_key = f"review_version:{call.call_id}"
if version_key not in st.session_state:
    st.session_state[version_key] = mine.version if mine else None
locked = mine is not None and mine.status == ReviewStatus.SUBMITTED
can_review = role in ("inspector", "lead") or (role == "agent" and call.agent_id == user.agent_id)

with right:
    st.subheader("Scorecard")
    if mine is not None:
        st.caption(
            f"Your review: {mine.status.value}, version {mine.version}, total {mine.total:.1f}"
        )
    inputs: list[ReviewItemInput] = []
    for item in call.items:
        auto = auto_items.get(item.item_id)
        icon = ui.OUTCOME_ICON[item.outcome]
        crit = " · :red[critical]" if item.critical else ""
        final = f" · final **{item.final_outcome.value}**" if item.final_outcome is not None else ""
        with st.container(border=True):
            st.markdown(
                f"{icon} **{ui.escape_md(item.name)}** <small>{item.item_id}</small>{crit}"
                f"  \nautomatic **{item.auto_outcome.value}** · "
                f"{item.auto_points:g} / {item.points_possible:g} points{final}",
                unsafe_allow_html=True,
            )
            if auto is not None:
                ui.evidence_lines(call.call_id, auto, key_prefix="item")
            if not can_review:
                continue
            prior = mine_items.get(item.item_id)
            current = prior.outcome if prior else item.auto_outcome
            c1, c2 = st.columns([2, 3])
            outcome = c1.radio(
                "Your decision",
                OUTCOMES,
                index=OUTCOMES.index(current.value),
                horizontal=True,
                key=f"rv:{call.call_id}:{item.item_id}:outcome",
                disabled=locked,
                format_func=lambda v, a=item.auto_outcome.value: f"{v} (confirm)" if v == a else v,
            )
            comment = c2.text_input(
                "Comment",
                value=prior.comment if prior else "",
                key=f"rv:{call.call_id}:{item.item_id}:comment",
                disabled=locked,
            )
            inputs.append(
                ReviewItemInput(item_id=item.item_id, outcome=ItemOutcome(outcome), comment=comment)
            )

    if can_review and not locked:
        b1, b2, _ = st.columns([1, 1, 2])
        save = b1.button("Save draft", key="save_draft", icon=":material/save:")
        submit = b2.button(
            "Submit review", key="submit_review", type="primary", icon=":material/send:"
        )
        if save or submit:
            try:
                saved = wf.save_review(
                    user,
                    call.call_id,
                    inputs,
                    submit=submit,
                    expected_version=st.session_state[version_key],
                )
            except StaleEditError:
                st.error(
                    "This review was changed elsewhere since you opened it, so your edit "
                    "was not saved. Reload to see the latest version, then re-apply it."
                )
                st.button(
                    "Reload",
                    key="reload_review",
                    on_click=st.session_state.pop,
                    args=(version_key, None),
                )
            except QAError as exc:
                st.error(str(exc))
            else:
                st.session_state[version_key] = saved.version
                message = (
                    f"Review {'submitted' if submit else 'saved as draft'} "
                    f"(total {saved.total:.1f})."
                )
                if submit:
                    ui.done(message)
                st.success(message)
    elif locked:
        st.info("Your review is submitted; a lead can reopen it.")

# ---------------------------------------------------------------- other reviews
others = [r for r in reviews if r.reviewer != user.username]
if others:
    st.subheader("Other reviews")
    rows = []
    for r in others:
        row = {
            "reviewer": r.reviewer_name or r.reviewer,
            "role": r.reviewer_role.value,
            "self": r.self_review,
            "status": r.status.value,
            "total": r.total,
            "passed": r.passed,
        }
        row.update({i.item_id: i.outcome.value for i in r.items})
        rows.append(row)
    df = data.frame(rows)
    st.dataframe(df, hide_index=True, width="stretch")
    ui.csv_download(df, f"reviews_{call.call_id}", key="dl_reviews")
    submitted = {r.id: r for r in others if r.status == ReviewStatus.SUBMITTED}
    if role == "lead" and submitted:
        r1, r2, r3 = st.columns([2, 3, 1], vertical_alignment="bottom")
        rid = r1.selectbox(
            "Reopen a submitted review",
            list(submitted),
            key="reopen_pick",
            format_func=lambda k: submitted[k].reviewer_name or submitted[k].reviewer,
        )
        why = r2.text_input("Reason", key="reopen_reason")
        if r3.button("Reopen", key="reopen_btn"):
            data.guarded(wf.reopen_review, user, rid, why)
            st.toast("Review sent back to draft")
            st.rerun()
elif role == "inspector" and (mine is None or mine.status != ReviewStatus.SUBMITTED):
    st.caption("Other reviewers' scores appear after you submit yours (blind calibration).")

# ---------------------------------------------------------------- the agent's own actions
if role == "agent":
    st.subheader("Your response")
    if call.acknowledged_at:
        st.success(f"You acknowledged this score on {call.acknowledged_at:%Y-%m-%d %H:%M}.")
    elif st.button("Acknowledge score", key="ack_score", icon=":material/done:"):
        data.guarded(wf.acknowledge_score, user, call.call_id)
        st.rerun()
    disputes = [d for d in data.guarded(wf.list_disputes, user, None) if d.call_id == call.call_id]
    if disputes:
        st.dataframe(
            data.frame(
                disputes, ["item_id", "reason", "status", "resolution", "created_at", "resolved_at"]
            ),
            hide_index=True,
            width="stretch",
        )
    with st.form("dispute", clear_on_submit=True):
        st.markdown("**Dispute an item**")
        failed_first = sorted(call.items, key=lambda i: i.outcome != ItemOutcome.FAIL)
        names = {i.item_id: f"{i.name} ({i.outcome.value})" for i in failed_first}
        item_id = st.selectbox("Item", list(names), format_func=names.get, key="dispute_item")
        reason = st.text_area("Why the score is wrong", key="dispute_reason")
        if st.form_submit_button("Open dispute", key="dispute_submit"):
            if not reason.strip():
                st.error("Say why the item was scored wrongly.")
            else:
                data.guarded(wf.open_dispute, user, call.call_id, item_id, reason.strip())
                ui.done("Dispute opened; a lead will resolve it.")

# ---------------------------------------------------------------- case library
if role in ("inspector", "lead"):
    with st.expander("Add to the case library"), st.form("add_case", clear_on_submit=True):
        kind = st.radio(
            "Kind",
            [k.value for k in CaseKind],
            horizontal=True,
            format_func=lambda v: v.replace("_", " "),
            key="case_kind",
        )
        title = st.text_input("Title", key="case_title")
        notes = st.text_area("Notes", key="case_notes")
        tags = st.text_input("Tags (comma separated)", key="case_tags")
        if st.form_submit_button("Add case", key="case_submit"):
            if not title.strip():
                st.error("A case needs a title.")
            else:
                data.guarded(
                    wf.add_case,
                    user,
                    call.call_id,
                    CaseKind(kind),
                    title.strip(),
                    notes,
                    [t.strip() for t in tags.split(",") if t.strip()],
                )
                st.success("Added to the case library.")
