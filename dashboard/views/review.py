"""Call review: listen, read, check each automatic item against its evidence, and decide.

Inspectors and leads review; the call's agent self-reviews on the same form, acknowledges
the score or disputes an item. Which call a user may open is decided by the service:
a call id in the URL that is not theirs shows "not found or not permitted".

The player, the transcript and the scorecard share one screen (`dashboard.workspace`):
jumping to evidence or to a transcript line happens in the browser, without a rerun; a
decision made there (button or key) reruns only the fragment that holds the review form.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import components as ui
from dashboard import data, plain, published
from dashboard import workspace as ws
from qa.errors import QAError, StaleEditError
from qa.schema import ItemOutcome, ItemResult, QualityCode
from qa.workflow import auth
from qa.workflow.views import (
    CallFilter,
    CaseKind,
    DisputeStatus,
    ReviewItemInput,
    ReviewStatus,
    UserRole,
)

OUTCOMES = [o.value for o in ItemOutcome]

user = data.current_user()
role = data.role_of(user)
wf = data.workflow()

# one screen for the workspace: less empty space above the title than Streamlit's default
st.html(
    "<style>[data-testid='stMainBlockContainer']{padding-top:2.2rem;}"
    "[data-testid='stMainBlockContainer'] h1{padding-top:0;}</style>"
)
st.title("Call review")

# ---------------------------------------------------------------- which call
opened = st.session_state.pop("open_call", None)
opened_at = st.session_state.pop("open_at", None)  # a search hit: the moment it was said
if opened:
    st.query_params["call"] = opened
    if opened_at is not None:
        st.query_params["t"] = f"{float(opened_at):g}"
    else:
        st.query_params.pop("t", None)
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
try:  # `t` (seconds): where the player starts, e.g. a search hit
    start_at = max(0.0, float(st.query_params.get("t") or 0.0))
except ValueError:
    start_at = 0.0
if not start_at < 1e7:  # nan or absurd: from the start
    start_at = 0.0

result = data.load_result(call)
meta_bits = [
    f"**{ui.escape_md(call.call_id)}**",
    f"agent {ui.escape_md(call.agent_id or '-')}",
    f"team {ui.escape_md(call.team or '-')}",
    f"queue {ui.escape_md(call.queue or '-')}",
    ui.escape_md(str(call.direction)),
]
if call.started_at:
    meta_bits.append(f"{call.started_at:%Y-%m-%d %H:%M}")
if call.duration:
    meta_bits.append(ui.escape_md(ui.fmt_time(call.duration)))
# which card scored it: `qa rescore` adds results for new versions of a card
meta_bits.append(f"scorecard {ui.escape_md(f'{call.scorecard_id}@{call.scorecard_version}')}")
st.markdown(" · ".join(meta_bits))

# ---------------------------------------------------------------- the transcript shown
transcript = result.transcript if result is not None else None
roles_note = None
if transcript is not None:
    if transcript.roles.method == "swapped":  # a reviewer's swap, scored again
        roles_note = (
            "Agent and customer were swapped by a reviewer; the score is from the swapped roles."
            if call.role_swapped
            else "A reviewer set agent and customer back to the automatic decision; "
            "the score is from these roles."
        )
    elif call.role_swapped:  # recorded before swaps were scored again
        transcript = ui.swapped_transcript(transcript)
        roles_note = (
            "Agent and customer were swapped by a reviewer; the score is still "
            "from the automatic roles."
        )

# ---------------------------------------------------------------- items and the form
reviews = data.guarded(wf.reviews_for_call, user, call.call_id)
auto_items: dict[str, ItemResult] = {i.item_id: i for i in result.score.items} if result else {}
mine = next((r for r in reviews if r.reviewer == user.username), None)
mine_items = {i.item_id: i for i in mine.items} if mine else {}

version_key = f"review_version:{call.call_id}"
if version_key not in st.session_state:
    st.session_state[version_key] = mine.version if mine else None
locked = mine is not None and mine.status == ReviewStatus.SUBMITTED
can_review = role in ("inspector", "lead") or (role == "agent" and call.agent_id == user.agent_id)


def outcome_key(item_id: str) -> str:
    return f"rv:{call.call_id}:{item_id}:outcome"


def decided(item_id: str, auto: ItemOutcome) -> str:
    """This reviewer's current choice: the form's value, else the saved review's, else the
    automatic outcome (which the reviewer confirms by leaving it)."""
    if outcome_key(item_id) in st.session_state:
        return str(st.session_state[outcome_key(item_id)])
    prior = mine_items.get(item_id)
    return (prior.outcome if prior else auto).value


def take_decision() -> None:
    """A decision made in the workspace (button or key) becomes the form's value, before
    the fragment renders the form again."""
    state = st.session_state.get(f"workspace:{call.call_id}") or {}
    chosen = state.get("decide") if hasattr(state, "get") else None
    if not chosen or locked or not can_review:
        return
    item_id, outcome = chosen.get("item_id"), chosen.get("outcome")
    if item_id in {i.item_id for i in call.items} and outcome in OUTCOMES:
        st.session_state[outcome_key(item_id)] = outcome


def score_summary() -> tuple[str, str | None]:
    if result is None:
        return f"automatic {call.auto_total:.1f}", None
    score = result.score
    text = (
        f"automatic {score.total:.1f} / {score.max_total:.0f} · pass mark {score.pass_mark:.0f} "
        f"· {'pass' if score.passed else 'fail'}"
    )
    if call.final_total is not None:
        text += f" · final {call.final_total:.1f} ({'pass' if call.final_passed else 'fail'})"
    alert = "Auto-fail: " + "; ".join(score.auto_fail_reasons) if score.auto_fail else None
    return text, alert


def transcript_caption() -> str:
    if transcript is None:
        return ""
    roles = transcript.roles
    return (
        f"{len(transcript.utterances)} utterances · {transcript.language} · speakers from "
        f"{transcript.speaker_source} · roles {roles.method} (confidence {roles.confidence:.2f})"
        f" · {len(transcript.redactions)} redactions"
    )


@st.fragment
def review_workspace() -> None:
    """The workspace and the review form: a decision reruns this fragment, not the page."""
    source, fmt = data.audio_source(call, result)
    audio = ws.recording_bytes(source)
    quality = transcript.quality if transcript is not None else None
    lost = (
        quality.lost_speech
        if quality is not None and any(i.code == QualityCode.LOST_SPEECH for i in quality.issues)
        else None
    )
    notes = []
    if result is not None and result.transcript.redactions:
        notes.append(
            f"{len(result.transcript.redactions)} spans of personal data are silent "
            "in this recording."
        )
    if roles_note:
        notes.append(roles_note)
    summary, alert = score_summary()
    ws.review_workspace(
        call_id=call.call_id,
        audio=audio,
        fmt=fmt,
        transcript=transcript,
        transcript_caption=transcript_caption(),
        items=ws.item_rows(call.items, auto_items),
        summary=summary,
        alert=alert,
        decisions={i.item_id: decided(i.item_id, i.auto_outcome) for i in call.items},
        can_decide=can_review,
        locked=locked,
        lost_speech=lost,
        note=" ".join(notes) or None,
        on_decide=take_decision,
        start=start_at,
    )
    for line in notes:
        st.caption(line)
    st.caption(ws.SHORTCUTS)
    if not can_review:
        return

    with st.expander("Your review: decisions and comments", expanded=True):
        if mine is not None:
            st.caption(
                f"Your review: {mine.status.value}, version {mine.version}, total {mine.total:.1f}"
            )
        inputs: list[ReviewItemInput] = []
        for item in call.items:
            prior = mine_items.get(item.item_id)
            key = outcome_key(item.item_id)
            c0, c1, c2 = st.columns([3, 3, 4], vertical_alignment="center")
            c0.text(f"{item.name} ({item.item_id})")
            current = decided(item.item_id, item.auto_outcome)
            outcome = c1.radio(
                "Your decision",
                OUTCOMES,
                # the form's own value when the workspace set it (no second default)
                index=None if key in st.session_state else OUTCOMES.index(current),
                horizontal=True,
                key=key,
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
                ReviewItemInput(
                    item_id=item.item_id,
                    outcome=ItemOutcome(outcome or current),
                    comment=comment,
                )
            )

        if not locked:
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
                    plain.error(str(exc))
                else:
                    st.session_state[version_key] = saved.version
                    message = (
                        f"Review {'submitted' if submit else 'saved as draft'} "
                        f"(total {saved.total:.1f})."
                    )
                    if submit:
                        ui.done(message)
                    st.success(message)
        else:
            st.info("Your review is submitted; a lead can reopen it.")


review_workspace()

# ---------------------------------------------------------------- scores and evidence quality
if result is not None:
    ui.score_header(result, call.final_total, call.final_passed)
    ui.quality_panel(call.call_id, result.transcript.quality, playable=False)
else:
    st.warning(
        "The pipeline's full result for this call is not in the store; showing the "
        "scores the workflow database holds."
    )
    st.metric("Automatic score", f"{call.auto_total:.1f}")
if call.final_note:
    st.info(
        f"Final decision by {ui.escape_md(call.final_by or '')}: {ui.escape_md(call.final_note)}"
    )

# the machine's, each person's and the final one kept apart; which reviews show is the
# service's blind-review rule (`reviews_for_call`)
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

# ---------------------------------------------------------------- roles and the original
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
        original = wf.original_audio(user, call.call_id, data.store())
    except QAError as exc:
        st.warning(plain.md(exc.reason))
    else:
        # inside this render only, like the redacted copy: no address serves it
        ws.player(f"original:{call.call_id}", original, None, label="Original recording")
        st.caption("Original recording, unredacted. This access is in the audit log.")
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
elif role == "inspector" and not locked:
    st.caption("Other reviewers' scores appear after you submit yours (blind calibration).")

# ---------------------------------------------------------------- the agent's own actions
if role == "agent":
    st.subheader("Your review")
    published.render(call)
    st.subheader("Your response")
    if call.acknowledged_at:
        st.success(f"You acknowledged this score on {call.acknowledged_at:%Y-%m-%d %H:%M}.")
    elif st.button("Acknowledge score", key="ack_score", icon=":material/done:"):
        data.guarded(wf.acknowledge_score, user, call.call_id)
        st.rerun()
    disputes = data.guarded(wf.list_disputes, user, None, call_id=call.call_id)
    item_names = {i.item_id: i.name for i in call.items}
    if disputes:
        st.markdown("**Your disputes and the lead's decisions**")
        st.dataframe(
            data.frame(
                [
                    {
                        "item": item_names.get(d.item_id, d.item_id),
                        "your reason": d.reason,
                        "decision": d.status.value,
                        "outcome now": d.outcome_after.value if d.outcome_after else None,
                        "the lead's reason": d.resolution,
                        "decided by": d.resolved_by,
                        "opened": d.created_at,
                        "decided": d.resolved_at,
                    }
                    for d in disputes
                ]
            ),
            hide_index=True,
            width="stretch",
            key="agent_disputes",
        )
        for d in disputes:
            if d.status is not DisputeStatus.OPEN:
                st.markdown(
                    f"**{plain.md(item_names.get(d.item_id, d.item_id))}**: {d.status.value} "
                    f"by {plain.md(d.resolved_by or '-')}"
                    + (f" · now {d.outcome_after.value}" if d.outcome_after else "")
                )
                plain.text(d.resolution or "")
    failed = {i.item_id: i.name for i in call.items if i.outcome is ItemOutcome.FAIL}
    if not failed:
        st.caption("No item of this call failed, so there is nothing to dispute.")
    else:
        with st.form("dispute", clear_on_submit=True):
            st.markdown("**Dispute a failed item**")
            item_id = st.selectbox("Item", list(failed), format_func=failed.get, key="dispute_item")
            reason = st.text_area("Why the score is wrong", key="dispute_reason")
            if st.form_submit_button("Open dispute", key="dispute_submit"):
                if not reason.strip():
                    st.error("Say why the item was scored wrongly.")
                else:
                    data.guarded(wf.open_dispute, user, call.call_id, item_id, reason.strip())
                    ui.done("Dispute opened; a lead will decide on it.")

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
