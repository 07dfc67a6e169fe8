"""Live: the calls in progress of the supervisor's team (a manager: every team), their
latest words and flags, one call's rolling transcript, and the calls that just ended.

The live server writes each call into the workflow database as it happens; this page
reads it again every REFRESH_S seconds inside a fragment, so only the live part reruns
and a supervisor's choices elsewhere on the page are not disturbed. An opened call asks
only for the lines that changed since its previous read and merges them here. Leads see
their own team's calls, managers every team's; the service refuses everyone else.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from dashboard import components as ui
from dashboard import data, plain
from qa.errors import QAError
from qa.live.models import LiveEvent, LiveLine, LiveStatus
from qa.schema import Role
from qa.workflow.live import LiveCallView

REFRESH_S = 1.0  # the delay a supervisor sees is this plus one page run
ENDED_WITHIN = timedelta(minutes=15)
SILENT_S = 10.0  # a live call without an update for this long is shown as silent
LATEST_SHOWN = 160  # characters of the newest line shown in the list
OPEN = "live_open"  # session key: the call opened
CACHE = "live_lines"  # session key: the opened call's lines, merged across reads
EVENT_ICON = {
    "alert": ":red[:material/notifications_active:]",
    "missed": ":orange[:material/cancel:]",
    "met": ":green[:material/check_circle:]",
}
ENDED_STATUS = {
    LiveStatus.ENDED: "ended · storing the recording",
    LiveStatus.STORED: "stored · queued for scoring",
    LiveStatus.FAILED: "failed",
}

user = data.current_user()
wf = data.workflow()

st.title("Live")
data.guarded(wf.live_calls, user)  # a refused role stops here, before the refresh starts
if OPEN not in st.session_state and st.query_params.get("live"):
    st.session_state[OPEN] = st.query_params["live"]


def open_call(call_id: str | None) -> None:
    """Button callback: the next run shows this call (None: closes it)."""
    st.session_state.pop(CACHE, None)
    if call_id is None:
        st.session_state.pop(OPEN, None)
        st.query_params.pop("live", None)
    else:
        st.session_state[OPEN] = call_id
        st.query_params["live"] = call_id


def said(role: Role | None, text: str) -> str:
    """A line as Markdown: the role in the review page's colours, then the words escaped."""
    speaker = role or Role.UNKNOWN
    colour = ui.ROLE_COLOUR.get(speaker, "gray")
    return f":{colour}[**{speaker.value}**] {ui.highlight_redactions(text)}"


def flags(call: LiveCallView) -> str:
    parts = []
    if call.alerts:
        latest = f": {plain.md(call.latest_alert)}" if call.latest_alert else ""
        many = "s" if call.alerts > 1 else ""
        parts.append(f"{EVENT_ICON['alert']} :red[{call.alerts} alert{many}{latest}]")
    if call.missed:
        parts.append(f"{EVENT_ICON['missed']} :orange[{call.missed} missed]")
    if call.met:
        parts.append(f"{EVENT_ICON['met']} {call.met} met")
    return " · ".join(parts)


def who(call: LiveCallView) -> str:
    agent = plain.md(call.agent_id or "agent unknown")
    queue = f" · {plain.md(call.queue)}" if call.queue else ""
    return f"**{agent}**{queue} · {ui.short_time(call.elapsed)}"


def open_button(where: Any, call_id: str, opened: str | None) -> None:
    """Open a call beside the list; the one shown is marked instead."""
    if call_id == opened:
        where.markdown(":gray[:material/visibility: shown]")
    else:
        where.button("Open", key=f"live_open:{call_id}", on_click=open_call, args=(call_id,))


def live_row(call: LiveCallView, now: datetime, opened: str | None) -> None:
    with st.container(border=True):
        text, button = st.columns([5, 1], vertical_alignment="center")
        head = [who(call)]
        silent = (now - call.last_update).total_seconds()
        if silent > SILENT_S:
            head.append(f":orange[no update for {ui.short_time(silent)}]")
        if mark := flags(call):
            head.append(mark)
        latest = call.latest_text
        if len(latest) > LATEST_SHOWN:
            latest = "…" + latest[-LATEST_SHOWN:]
        words = said(call.latest_role, latest) if latest else ":gray[no words yet]"
        text.markdown(" · ".join(head) + "  \n" + words)
        open_button(button, call.call_id, opened)


def ended_row(call: LiveCallView, opened: str | None) -> None:
    with st.container(border=True):
        text, button = st.columns([5, 1], vertical_alignment="center")
        status = ENDED_STATUS.get(call.status, call.status.value)
        if call.status is LiveStatus.FAILED and call.reason:
            status += f": {plain.md(call.reason)}"
        ended = f" · ended {call.ended_at:%H:%M:%S} UTC" if call.ended_at else ""
        team = f" · {plain.md(call.team)}" if call.team else ""
        text.markdown(f"{who(call)}{team}{ended}  \n{status}")
        open_button(button, call.call_id, opened)


def transcript_of(call_id: str) -> tuple[LiveCallView, list[LiveLine], list[LiveEvent]] | None:
    """The opened call, reading only lines changed since the previous read; None (with a
    message) when it is unknown or not the user's."""
    cache: dict[str, Any] | None = st.session_state.get(CACHE)
    if cache is None or cache["call_id"] != call_id:
        cache = None
    try:
        detail = wf.live_call(user, call_id, since_line_update=cache["update"] if cache else None)
    except QAError as exc:  # not found, not permitted, or a refusal
        plain.error(f"{call_id}: {exc.reason}")
        return None
    lines = {} if detail.complete or cache is None else dict(cache["lines"])
    lines.update({x.index: x for x in detail.lines})
    st.session_state[CACHE] = {"call_id": call_id, "update": detail.line_update, "lines": lines}
    return detail.call, [lines[i] for i in sorted(lines)], detail.events


def opened_panel(call_id: str) -> None:
    top, close = st.columns([3, 1], vertical_alignment="center")
    top.subheader(f"Call {plain.md(call_id)}")
    close.button("Close", key="live_close", on_click=open_call, args=(None,))
    got = transcript_of(call_id)
    if got is None:
        return
    call, lines, events = got
    status = (
        "live"
        if call.status is LiveStatus.LIVE
        else ENDED_STATUS.get(call.status, call.status.value)
    )
    if call.status is LiveStatus.FAILED and call.reason:
        status += f": {plain.md(call.reason)}"
    team = plain.md(call.team) if call.team else "no team"
    st.caption(f"{who(call)} · {team} · {status}")
    box = st.container(height=420, autoscroll=True)
    if not lines:
        box.caption("No words yet.")
    for x in lines:
        growing = "" if x.final else " :orange[**…**] :gray[*in progress*]"
        box.markdown(f":gray[{ui.short_time(x.start)}] {said(x.role, x.text)}{growing}")
    st.markdown("**Alerts and scorecard items**")
    if not events:
        st.caption("None so far.")
    for e in events:
        kind = "alert" if e.kind == "alert" else f"item {e.outcome}"
        st.markdown(
            f"{EVENT_ICON.get(e.outcome, '')} :gray[{ui.short_time(e.at)}] "
            f"**{plain.md(e.name or e.rule_id)}** · {kind}  \n{plain.md(e.reason)}"
        )


def by_team(calls: list[LiveCallView]) -> list[tuple[str | None, list[LiveCallView]]]:
    groups: dict[str | None, list[LiveCallView]] = defaultdict(list)
    for c in calls:
        groups[c.team].append(c)
    return sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))


@st.fragment(run_every=REFRESH_S)
def live() -> None:
    calls = data.guarded(wf.live_calls, user, ended_within=ENDED_WITHIN)
    now = datetime.now(UTC)
    going = [c for c in calls if c.status is LiveStatus.LIVE]
    ended = sorted(
        (c for c in calls if c.status is not LiveStatus.LIVE),
        key=lambda c: c.ended_at or c.last_update,
        reverse=True,
    )
    opened = st.session_state.get(OPEN)
    listing, detail = st.columns([5, 4]) if opened else (st.container(), None)
    with listing:
        st.caption(
            f"{len(going)} call{'s' if len(going) != 1 else ''} in progress · "
            f"{len(ended)} ended in the last {ENDED_WITHIN.seconds // 60} minutes · "
            f"updated {now:%H:%M:%S} UTC"
        )
        if user.role == "lead" and not user.team:
            st.info("Your account has no team, so no live calls are shown to you.")
        elif not calls:
            st.info(
                "No calls in progress. Calls appear here while they happen: the telephony "
                "platform streams each call to the live server (`qa live serve`), and a "
                "recording can be played as a live call with `qa live replay FILE.wav`."
            )
        for team, group in by_team(going):
            st.subheader(plain.md(team) if team else "No team")
            for c in group:
                live_row(c, now, opened)
        if ended:
            st.subheader("Recently ended")
            for c in ended:
                ended_row(c, opened)
    if detail is not None and opened:
        with detail:
            opened_panel(opened)


live()
