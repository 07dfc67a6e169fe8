"""Widgets shared by the pages: audio that jumps to a moment, transcript, item evidence.

They render `qa.schema` records only, so a page that shows a call looks the same whether
the record came from the store, a review or a test; access is decided before they run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import altair as alt
import pandas as pd
import streamlit as st

from qa.schema import (
    CallResult,
    Evidence,
    EvidenceQuality,
    FlagCode,
    ItemOutcome,
    ItemResult,
    QualityCode,
    Role,
    Segment,
    Transcript,
)

ROLE_COLOUR = {Role.AGENT: "blue", Role.CUSTOMER: "green", Role.UNKNOWN: "gray"}
OUTCOME_ICON = {
    ItemOutcome.PASS: ":green[:material/check_circle:]",
    ItemOutcome.FAIL: ":red[:material/cancel:]",
    ItemOutcome.NA: ":gray[:material/remove_circle_outline:]",
}
NOT_PERMITTED = "Call not found or not permitted."
SPEAKER_PASS = {
    "channels": "one per channel",
    "estimated": "estimated from the voices",
    "two_party_split": "two-party split",
    "given": "number given",
    "none": "not separated",
}
LOST_SPANS_SHOWN = 12

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")
_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*)\]")


def fmt_time(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60):d}:{seconds % 60:04.1f}"


def escape_md(text: str) -> str:
    """Transcript text is speech, not markup: a caller saying '*' must not turn bold."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def highlight_redactions(text: str) -> str:
    """Escaped text with redaction placeholders like [CARD_NUMBER] shown as badges."""
    parts = _PLACEHOLDER.split(text)  # text, name, text, name, ..., text
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f":orange-background[**\\[{escape_md(part)}\\]**]")
        else:
            out.append(escape_md(part))
    return "".join(out)


# --------------------------------------------------------------------------- audio


def _seek_key(call_id: str) -> str:
    return f"seek:{call_id}"


def seek(call_id: str, seconds: float) -> None:
    """Button callback: the next render starts the player at this moment."""
    st.session_state[_seek_key(call_id)] = max(0.0, float(seconds))


def audio_player(call_id: str, source: bytes | str | None, fmt: str | None = None) -> None:
    """The call's recording, started where the reviewer last clicked a timestamp.

    Not `st.audio`: that publishes the recording on a `/media/...` address anyone can fetch
    without signing in; the player component gets the bytes inside this render only."""
    from dashboard import workspace

    if source is None:
        st.info("No recording is stored for this call.")
        return
    start = float(st.session_state.get(_seek_key(call_id), 0.0))
    workspace.player(
        call_id, workspace.recording_bytes(source), fmt, start=start, autoplay=start > 0
    )
    if start > 0:
        st.caption(f"Playing from {fmt_time(start)}")


def short_time(seconds: float) -> str:
    seconds = int(max(0.0, float(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def play_button(call_id: str, seconds: float, key: str, label: str | None = None) -> None:
    st.button(
        label or f"▶ {short_time(seconds)}",
        key=key,
        on_click=seek,
        args=(call_id, seconds),
        help=f"Play the recording from {fmt_time(seconds)}",
    )


# --------------------------------------------------------------------------- transcript


def transcript_view(call_id: str, transcript: Transcript, *, height: int = 420) -> None:
    """Utterances with speaker role, time and redactions; each time plays the audio there."""
    roles = transcript.roles
    st.caption(
        f"{len(transcript.utterances)} utterances · {transcript.language} · "
        f"speakers from {transcript.speaker_source} · roles {roles.method} "
        f"(confidence {roles.confidence:.2f}) · {len(transcript.redactions)} redactions"
    )
    box = st.container(height=height)
    for i, utt in enumerate(transcript.utterances):
        left, right = box.columns([1, 4], vertical_alignment="top")
        with left:
            play_button(call_id, utt.start, key=f"utt:{call_id}:{i}")
        colour = ROLE_COLOUR.get(utt.role, "gray")
        overlap = " ⟂ overlap" if utt.overlap else ""
        mood = f" · {utt.sentiment.label}" if utt.sentiment else ""
        right.markdown(
            f":{colour}[**{utt.role.value}**] <small>{escape_md(utt.speaker)}{overlap}{mood}"
            f"</small>  \n{highlight_redactions(utt.text)}",
            unsafe_allow_html=True,
        )


def swapped_transcript(transcript: Transcript) -> Transcript:
    """Agent and customer exchanged, as a reviewer corrected a wrong role decision."""
    try:
        from qa.asr.roles import swap_roles
    except ImportError:  # the role module is optional for display
        swap_roles = None
    if swap_roles is not None:
        return swap_roles(transcript)
    flip = {Role.AGENT: Role.CUSTOMER, Role.CUSTOMER: Role.AGENT, Role.UNKNOWN: Role.UNKNOWN}
    utts = [u.model_copy(update={"role": flip[u.role]}) for u in transcript.utterances]
    speaker_roles = {s: flip[r] for s, r in transcript.roles.speaker_roles.items()}
    roles = transcript.roles.model_copy(
        update={"speaker_roles": speaker_roles, "method": "swapped"}
    )
    return transcript.model_copy(update={"utterances": utts, "roles": roles})


# --------------------------------------------------------------------------- items


def evidence_lines(call_id: str, item: ItemResult, key_prefix: str) -> None:
    """Each evidence span with a button that plays the recording there."""
    if not item.evidence:
        st.caption(item.reason or "no evidence recorded")
        return
    if item.reason:
        st.caption(item.reason)
    for j, ev in enumerate(item.evidence):
        left, right = st.columns([1, 4], vertical_alignment="top")
        with left:
            play_button(call_id, ev.start, key=f"{key_prefix}:ev:{item.item_id}:{j}")
        right.markdown(_evidence_text(ev))


def _evidence_text(ev: Evidence) -> str:
    who = ev.role.value if ev.role else (ev.speaker or "")
    parts = [f"{fmt_time(ev.start)}–{fmt_time(ev.end)}"]
    if who:
        parts.append(f"**{escape_md(who)}**")
    if ev.text:
        parts.append(f"“{highlight_redactions(ev.text)}”")
    if ev.matched:
        parts.append(f"matched *{escape_md(ev.matched)}*")
    if ev.similarity is not None:
        parts.append(f"similarity {ev.similarity:.2f}")
    if ev.note:
        parts.append(escape_md(ev.note))
    return " · ".join(parts)


def items_frame(items: Iterable[ItemResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "item": i.item_id,
                "name": i.name,
                "section": i.section,
                "outcome": i.outcome.value,
                "critical": i.critical,
                "points": i.points_awarded,
                "of": i.points_possible,
                "rule": i.rule_type,
                "evidence": len(i.evidence),
            }
            for i in items
        ]
    )


def score_header(
    result: CallResult, final_total: float | None = None, final_passed: bool | None = None
) -> None:
    score = result.score
    cols = st.columns(5)
    cols[0].metric("Automatic score", f"{score.total:.1f} / {score.max_total:.0f}")
    cols[1].metric("Pass mark", f"{score.pass_mark:.0f}")
    cols[2].metric("Result", "pass" if score.passed else "fail")
    cols[3].metric("Auto-fail", "yes" if score.auto_fail else "no")
    if final_total is not None:
        cols[4].metric(
            "Final score",
            f"{final_total:.1f}",
            delta="pass" if final_passed else "fail",
            delta_color="normal" if final_passed else "inverse",
        )
    else:
        cols[4].metric("Final score", "automatic")
    if score.auto_fail_reasons:
        st.error("Auto-fail: " + "; ".join(escape_md(r) for r in score.auto_fail_reasons))
    if score.flags:
        # the evidence-quality panel lists the doubts one per line; do not repeat them here
        paneled = result.transcript.quality is not None and result.transcript.quality.doubtful
        st.warning(
            "Flags: "
            + "; ".join(
                f"{f.code.value} — "
                + (
                    "see Evidence quality below"
                    if paneled and f.code == FlagCode.EVIDENCE_DOUBT
                    else escape_md(f.reason)
                )
                for f in score.flags
            )
        )


# --------------------------------------------------------------------------- evidence quality


def quality_panel(call_id: str, quality: EvidenceQuality | None, *, playable: bool = True) -> None:
    """How far the transcript can be trusted, shown before the items: every item's evidence
    rests on who said what, so a reviewer must know where that may be wrong. `playable=False`
    where a player elsewhere on the page (the review workspace) already offers the spans."""
    if quality is None:
        st.caption("No evidence-quality record (result made before it existed).")
        return
    if quality.issues:
        reasons = "\n".join(f"- {escape_md(i.reason)}" for i in quality.issues)
        st.warning(
            f"**Evidence in doubt**: check who said what before acting on the score.\n\n{reasons}",
            icon=":material/report:",
        )
        lost = any(i.code == QualityCode.LOST_SPEECH for i in quality.issues)
        if playable and quality.lost_speech and lost:
            lost_speech_buttons(call_id, quality.lost_speech)
    st.caption(quality_signals(quality))


def lost_speech_buttons(call_id: str, spans: list[Segment]) -> None:
    """Speech that produced no words, each span playable like an evidence span."""
    row = st.container(horizontal=True, vertical_alignment="center")
    row.caption("Speech without words:", width="content")
    with row:
        for j, span in enumerate(spans[:LOST_SPANS_SHOWN]):
            play_button(
                call_id,
                span.start,
                key=f"lost:{call_id}:{j}",
                label=f"▶ {short_time(span.start)}–{short_time(span.end)}",
            )
    if len(spans) > LOST_SPANS_SHOWN:
        rest = spans[LOST_SPANS_SHOWN:]
        row.caption(
            f"and {len(rest)} more ({sum(s.duration for s in rest):.1f} s)", width="content"
        )


def quality_signals(q: EvidenceQuality) -> str:
    """The measured signals in one line, whether or not they raised an issue."""
    how = SPEAKER_PASS.get(q.speaker_pass, q.speaker_pass)
    if q.speaker_separation is not None:
        how += f", voices {q.speaker_separation:.2f} apart"
    parts = [
        f"speakers {q.speakers_found} of {q.speakers_expected} ({how})",
        f"role confidence {q.role_confidence:.2f}",
    ]
    if q.asr_confidence is not None:
        parts.append(f"ASR confidence {q.asr_confidence:.2f}")
    speech = (
        "speech not measured" if q.speech_seconds is None else (f"speech {q.speech_seconds:.1f} s")
    )
    speech += f", {q.lost_speech_seconds:.1f} s lost"
    if q.recovered_seconds:
        speech += f", {q.recovered_seconds:.1f} s recovered"
    parts.append(speech)
    parts.append(f"overlap {q.overlap_share:.0%}")
    if q.crosstalk_words:
        parts.append(
            f"{q.crosstalk_words} words heard only as crosstalk from the other channel left out"
        )
    return "Evidence quality: " + " · ".join(parts)


def done(message: str) -> None:
    """Confirm an action and rerun: the message survives the rerun that shows its effect."""
    st.session_state["flash"] = message
    st.rerun()


def show_flash() -> None:
    message = st.session_state.pop("flash", None)
    if message:
        st.success(message)


def csv_download(df: pd.DataFrame, name: str, key: str) -> None:
    """Every table on the dashboard can be taken to a spreadsheet."""
    st.download_button(
        f"Download {name}.csv",
        df.to_csv(index=False).encode(),
        f"{name}.csv",
        mime="text/csv",
        key=key,
    )


def weekly_chart(
    weekly: pd.DataFrame, col: str, title: str, colour: str, colour_title: str, tooltip: list[str]
) -> None:
    """A line per `colour` group over the weeks, of one column."""
    chart = (
        alt.Chart(weekly.dropna(subset=[col]))
        .mark_line(point=True)
        .encode(
            x=alt.X("week:T", title="week"),
            y=alt.Y(f"{col}:Q", title=title),
            color=alt.Color(f"{colour}:N", title=colour_title),
            tooltip=tooltip,
        )
        .properties(height=280)
    )
    st.altair_chart(chart, width="stretch")
