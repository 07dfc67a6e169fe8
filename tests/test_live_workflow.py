"""Calls in progress in the workflow database: the live server's writes (start, growing
lines, events, end, a reconnect, lost calls), the supervisors' scoped reads, and the Live
page run in-process for a lead and refused to an agent."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from qa.errors import AccessDenied
from qa.live.models import LiveCallInfo, LiveEvent, LiveLine, LiveStatus
from qa.schema import Role
from qa.workflow import NotFoundError, UserRole, Workflow
from qa.workflow.live import LOST_REASON
from qa.workflow.models import utcnow

START = datetime(2026, 11, 16, 10, tzinfo=UTC)
PASSWORD = "live-password-1"
APP_VIEWS = Path(__file__).resolve().parent.parent / "dashboard" / "views"


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.at = START

    def __call__(self) -> datetime:
        return self.at

    def tick(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def info(call_id: str, *, team: str | None = "red", agent: str = "A1") -> LiveCallInfo:
    return LiveCallInfo(
        call_id=call_id,
        source="acct-1",
        agent_id=agent,
        team=team,
        queue="billing",
        language="en",
        started_at=START,
        tracks={"inbound": Role.CUSTOMER, "outbound": Role.AGENT},
    )


def line(call_id: str, index: int, text: str, *, final: bool = False, role=Role.AGENT) -> LiveLine:
    track = "outbound" if role is Role.AGENT else "inbound"
    start = 2.0 * index
    return LiveLine(
        call_id=call_id,
        index=index,
        track=track,
        role=role,
        start=start,
        end=start + 0.3 * len(text.split()),
        text=text,
        final=final,
    )


def event(call_id: str, rule_id: str, at: float, *, kind="alert", outcome="alert") -> LiveEvent:
    return LiveEvent(
        call_id=call_id,
        kind=kind,
        rule_id=rule_id,
        name=rule_id.replace("_", " ").title(),
        outcome=outcome,
        reason=f"{rule_id} said at {at:g} s",
        at=at,
        created_at=START,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_users(wf: Workflow) -> dict[str, object]:
    return {
        "lead": wf.add_user(None, "lea", PASSWORD, UserRole.LEAD, team="red"),
        "blue_lead": wf.add_user(None, "bob", PASSWORD, UserRole.LEAD, team="blue"),
        "teamless_lead": wf.add_user(None, "tia", PASSWORD, UserRole.LEAD),
        "manager": wf.add_user(None, "max", PASSWORD, UserRole.MANAGER),
        "agent": wf.add_user(None, "ann", PASSWORD, UserRole.AGENT, team="red", agent_id="A1"),
        "inspector": wf.add_user(None, "ivy", PASSWORD, UserRole.INSPECTOR, team="red"),
        "admin": wf.add_user(None, "ada", PASSWORD, UserRole.ADMIN),
    }


def workflow(url: str, clock: Callable[[], datetime]) -> Workflow:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return Workflow(url, password_hasher=hasher, clock=clock)


@pytest.fixture
def world(tmp_path, clock):
    wf = workflow(f"sqlite:///{tmp_path / 'workflow.db'}", clock)
    return wf, make_users(wf)


def test_a_call_grows_line_by_line_then_ends(database_url, clock):
    """The writer's round trip, on SQLite and Postgres."""
    wf = workflow(database_url, clock)
    manager = make_users(wf)["manager"]
    wf.live_start(info("c1"))
    [call] = wf.live_calls(manager)
    assert call.status is LiveStatus.LIVE and call.team == "red" and call.lines == 0
    assert call.tracks == {"inbound": Role.CUSTOMER, "outbound": Role.AGENT}

    clock.tick(1)
    wf.live_update("c1", elapsed=1.0, lines=[line("c1", 0, "thank you")], events=[])
    first = wf.live_call(manager, "c1")
    assert [x.text for x in first.lines] == ["thank you"] and first.complete
    assert first.line_update == clock.at

    clock.tick(1)
    grown = line("c1", 0, "thank you for calling", final=True)
    said = line("c1", 1, "hello I was charged", role=Role.CUSTOMER)
    wf.live_update("c1", elapsed=2.5, lines=[grown, said], events=[event("c1", "refund", 2.4)])
    clock.tick(1)
    # only the customer's line grows; the agent's line keeps its update time
    more = line("c1", 1, "hello I was charged twice", role=Role.CUSTOMER)
    missed = event("c1", "verify_identity", 3.1, kind="item", outcome="missed")
    wf.live_update("c1", elapsed=3.5, lines=[more, grown], events=[missed])

    detail = wf.live_call(manager, "c1")
    assert [(x.index, x.role, x.text, x.final) for x in detail.lines] == [
        (0, Role.AGENT, "thank you for calling", True),
        (1, Role.CUSTOMER, "hello I was charged twice", False),
    ]
    assert [(e.kind, e.rule_id, e.at) for e in detail.events] == [
        ("alert", "refund", 2.4),
        ("item", "verify_identity", 3.1),
    ]
    changed = wf.live_call(manager, "c1", since_line_update=START + timedelta(seconds=2.5))
    assert [x.index for x in changed.lines] == [1] and not changed.complete
    assert changed.line_update == clock.at

    [call] = wf.live_calls(manager)
    assert (call.elapsed, call.alerts, call.missed, call.lines) == (3.5, 1, 1, 2)
    assert (call.latest_role, call.latest_text) == (Role.CUSTOMER, "hello I was charged twice")
    assert call.last_update == clock.at

    clock.tick(1)
    wf.live_end("c1", LiveStatus.ENDED)
    ended_at = clock.at
    clock.tick(5)
    wf.live_end("c1", LiveStatus.STORED)
    [call] = wf.live_calls(manager)
    assert call.status is LiveStatus.STORED and call.ended_at == ended_at

    clock.tick(16 * 60)  # past the list's 15 minutes: gone from the list, still readable
    assert wf.live_calls(manager) == []
    assert len(wf.live_calls(manager, ended_within=timedelta(hours=1))) == 1
    assert wf.live_call(manager, "c1").call.status is LiveStatus.STORED


def test_an_event_sent_again_is_kept_once(world):
    wf, users = world
    wf.live_start(info("c1"))
    alert = event("c1", "refund", 2.4)
    wf.live_update("c1", elapsed=3, lines=[], events=[alert])
    wf.live_update("c1", elapsed=4, lines=[], events=[alert, event("c1", "refund", 9.0)])
    detail = wf.live_call(users["manager"], "c1")
    assert [e.at for e in detail.events] == [2.4, 9.0] and detail.call.alerts == 2


def test_a_reconnect_resumes_the_same_call(world, clock):
    wf, users = world
    wf.live_start(info("c1", agent="A1"))
    wf.live_update("c1", elapsed=4, lines=[line("c1", 0, "good morning")], events=[])
    wf.live_end("c1", LiveStatus.FAILED, "the platform closed the socket")
    clock.tick(3)
    again = info("c1", agent="A1").model_copy(update={"started_at": START + timedelta(seconds=3)})
    wf.live_start(again)
    wf.live_update("c1", elapsed=6, lines=[line("c1", 1, "are you there")], events=[])
    [call] = wf.live_calls(users["manager"])
    assert call.status is LiveStatus.LIVE and call.ended_at is None and call.reason == ""
    assert call.started_at == START and call.elapsed == 6 and call.lines == 2
    texts = [x.text for x in wf.live_call(users["manager"], "c1").lines]
    assert texts == ["good morning", "are you there"]


def test_calls_left_live_by_a_stopped_server_are_marked_failed(world, clock):
    wf, users = world
    wf.live_start(info("old"))
    clock.tick(60)
    wf.live_start(info("recent"))
    wf.live_start(info("done"))
    wf.live_end("done", LiveStatus.STORED)
    clock.tick(30)
    assert wf.live_lost(timedelta(seconds=45)) == 1
    by_id = {c.call_id: c for c in wf.live_calls(users["manager"])}
    assert by_id["old"].status is LiveStatus.FAILED and by_id["old"].reason == LOST_REASON
    assert by_id["old"].ended_at == clock.at
    assert by_id["recent"].status is LiveStatus.LIVE
    assert by_id["done"].status is LiveStatus.STORED
    assert wf.live_lost(timedelta(seconds=45)) == 0


def test_writes_for_an_unknown_call_are_ignored_not_raised(world, caplog):
    wf, users = world
    with caplog.at_level(logging.WARNING, logger="qa.workflow.live"):
        wf.live_update("ghost", elapsed=1, lines=[line("ghost", 0, "hi")], events=[])
        wf.live_end("ghost", LiveStatus.STORED)
    assert "ghost" in caplog.text
    assert wf.live_calls(users["manager"]) == []


def test_leads_see_their_team_managers_all_others_are_refused(world):
    wf, users = world
    wf.live_start(info("red1", team="red"))
    wf.live_start(info("blue1", team="blue", agent="B1"))
    wf.live_start(info("none1", team=None, agent="C1"))
    assert [c.call_id for c in wf.live_calls(users["lead"])] == ["red1"]
    assert [c.call_id for c in wf.live_calls(users["blue_lead"])] == ["blue1"]
    assert wf.live_calls(users["teamless_lead"]) == []
    assert {c.call_id for c in wf.live_calls(users["manager"])} == {"red1", "blue1", "none1"}
    assert wf.live_call(users["lead"], "red1").call.call_id == "red1"
    assert wf.live_call(users["manager"], "none1").call.team is None
    for who, call_id in [("lead", "blue1"), ("teamless_lead", "none1"), ("manager", "nope")]:
        with pytest.raises(NotFoundError):
            wf.live_call(users[who], call_id)
    for who in ("agent", "inspector", "admin"):
        with pytest.raises(AccessDenied, match="may not watch live calls"):
            wf.live_calls(users[who])
        with pytest.raises(AccessDenied, match="may not watch live calls"):
            wf.live_call(users[who], "red1")


# --------------------------------------------------------------------------- page


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A workflow database the dashboard is pointed at, with users of two teams, on the
    real clock the page's own workflow keeps (sessions expire by it)."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'workflow.db'}"
    monkeypatch.setenv("QA_HOME", str(home))
    monkeypatch.setenv("QA_DATABASE_URL", url)
    monkeypatch.setenv("QA_STORE_URL", f"file://{home / 'store'}")
    wf = workflow(url, utcnow)
    make_users(wf)
    return wf


def page(wf: Workflow, username: str, **state: object):
    from streamlit.testing.v1 import AppTest

    _, token = wf.authenticate(username, PASSWORD)
    at = AppTest.from_file(str(APP_VIEWS / "live.py"), default_timeout=60)
    at.session_state["auth_token"] = token
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def shown(at) -> str:
    parts = [
        str(e.value)
        for kind in ("markdown", "caption", "info", "error", "subheader")
        for e in getattr(at, kind)
    ]
    return "\n".join(parts)


def test_live_page_lists_the_leads_team_and_opens_a_call(served):
    from dashboard.data import ROLE_PAGES

    assert [r for r, pages in ROLE_PAGES.items() if "live" in pages] == ["lead", "manager"]
    wf = served
    empty = page(wf, "lea")
    assert not empty.exception, [e.value for e in empty.exception]
    assert "qa live serve" in shown(empty) and "qa live replay" in shown(empty)

    wf.live_start(info("red1", team="red"))
    wf.live_start(info("blue1", team="blue", agent="B1"))
    said = line("red1", 0, "my card *was* [charged] twice", role=Role.CUSTOMER)
    wf.live_update("red1", elapsed=65, lines=[said], events=[event("red1", "refund", 4.0)])
    at = page(wf, "lea")
    assert not at.exception, [e.value for e in at.exception]
    text = shown(at)
    assert "A1" in text and "B1" not in text and "1:05" in text
    assert "\\*was\\* \\[charged\\] twice" in text  # the caller's words, escaped

    at = page(wf, "lea", live_open="red1")
    assert not at.exception, [e.value for e in at.exception]
    text = shown(at)
    assert "Refund" in text and "0:04" in text and "in progress" in text

    wf.live_end("red1", LiveStatus.STORED)
    wf.live_end("blue1", LiveStatus.FAILED, "the platform closed the socket")
    at = page(wf, "max")
    assert not at.exception, [e.value for e in at.exception]
    text = shown(at)
    assert "queued for scoring" in text and "the platform closed the socket" in text


def test_live_page_refused_to_an_agent_by_the_service(served):
    at = page(served, "ann")
    assert not at.exception, [e.value for e in at.exception]
    assert "Not permitted" in shown(at)
