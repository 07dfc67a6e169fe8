"""Workflow service: access rules, optimistic locking, calibration, disputes, coaching, audit."""

from __future__ import annotations

import multiprocessing
import queue
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher

from qa.errors import AccessDenied, QAError, StaleEditError
from qa.schema import CallMeta, CallScore, Flag, FlagCode, ItemOutcome, ItemResult
from qa.scoring.outcome import Scoring, outcome_items
from qa.scoring.outcome import outcome as score_outcome
from qa.workflow import (
    CallFilter,
    DisputeStatus,
    NotFoundError,
    ReviewItemInput,
    ReviewStatus,
    UserRole,
    UserView,
    Workflow,
    open_workflow,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
ITEMS = [
    ("greet", 10.0, False),
    ("verify", 20.0, True),
    ("empathy", 30.0, False),
    ("close", 40.0, False),
]
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def make_score(call_id: str, outcomes: dict[str, str], flags: list[FlagCode] = ()) -> CallScore:
    """A deduction card's score, totalled as `score_call` totals it."""
    results = []
    for item_id, possible, critical in ITEMS:
        outcome = ItemOutcome(outcomes.get(item_id, "pass"))
        results.append(
            ItemResult(
                item_id=item_id,
                name=item_id.title(),
                outcome=outcome,
                critical=critical,
                points_possible=possible,
                points_awarded=possible if outcome is ItemOutcome.PASS else 0,
            )
        )
    out = score_outcome(outcome_items(results), Scoring(mode="deduction", pass_mark=70))
    return CallScore(
        call_id=call_id,
        scorecard_id="en_cs",
        scorecard_version="1",
        total=out.total,
        pass_mark=70,
        passed=out.passed,
        auto_fail=out.auto_fail,
        auto_fail_reasons=out.reasons,
        items=results,
        flags=[Flag(code=f, reason=f.value) for f in flags],
    )


def sync(
    wf: Workflow,
    call_id: str,
    agent: str,
    team: str,
    when: datetime,
    outcomes: dict[str, str] | None = None,
    flags: list[FlagCode] = (),
) -> None:
    meta = CallMeta(
        call_id=call_id, agent_id=agent, team=team, queue="billing", started_at=when, duration=120.0
    )
    wf.sync_call(meta, make_score(call_id, outcomes or {}, flags), pipeline_version="p1")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wf(database_url, clock) -> Workflow:
    """A fresh database per test, on SQLite and on Postgres (see conftest)."""
    return Workflow(
        database_url,
        session_ttl_minutes=60,
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


@pytest.fixture
def users(wf):
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    made = {"admin": admin}
    for name, role, team, agent in [
        ("alice", "agent", "red", "A1"),
        ("bob", "agent", "blue", "B1"),
        ("ivy", "inspector", None, None),
        ("ian", "inspector", None, None),
        ("lea", "lead", "red", None),
        ("max", "manager", None, None),
    ]:
        made[name] = wf.add_user(admin, name, PASSWORD, role, team=team, agent_id=agent)
    return made


@pytest.fixture
def calls(wf, users):
    sync(wf, "c1", "A1", "red", T0, {"empathy": "fail"}, [FlagCode.BELOW_PASS])
    sync(wf, "c2", "A1", "red", T0 + timedelta(days=1))
    sync(wf, "c3", "B1", "blue", T0 + timedelta(days=2), {"verify": "fail"}, [FlagCode.AUTO_FAIL])
    return ["c1", "c2", "c3"]


def all_pass(**overrides: str) -> list[ReviewItemInput]:
    return [ReviewItemInput(item_id=i, outcome=overrides.get(i, "pass")) for i, _, _ in ITEMS]


# --------------------------------------------------------------------------- auth


def test_login_session_expiry_and_logout(wf, users, clock):
    user, token = wf.authenticate("alice", PASSWORD)
    assert user.role is UserRole.AGENT and user.agent_id == "A1"
    assert wf.user_for_token(token).username == "alice"
    with pytest.raises(AccessDenied):
        wf.authenticate("alice", "wrong password")
    with pytest.raises(AccessDenied):
        wf.authenticate("nobody", PASSWORD)
    clock.now = T0 + timedelta(minutes=61)
    with pytest.raises(AccessDenied, match="expired"):
        wf.user_for_token(token)
    with pytest.raises(AccessDenied):  # an expired session is gone, not revived
        wf.user_for_token(token)
    _, token2 = wf.authenticate("alice", PASSWORD)
    wf.logout(token2)
    with pytest.raises(AccessDenied):
        wf.user_for_token(token2)


def test_failed_logins_are_audited_and_disabled_users_refused(wf, users):
    with pytest.raises(AccessDenied, match="wrong password"):
        wf.authenticate("bob", "not his password")
    trail = wf.audit_trail(users["lea"], "user", "bob")
    assert [a.action for a in trail][:1] == ["login_failed"]
    wf.disable_user(users["admin"], "bob")
    with pytest.raises(AccessDenied, match="disabled"):
        wf.authenticate("bob", PASSWORD)
    with pytest.raises(AccessDenied):
        wf.user_for_token("made-up-token")


def test_user_admin_rules(wf, users):
    with pytest.raises(AccessDenied):
        wf.add_user(users["lea"], "eve", PASSWORD, "admin")
    with pytest.raises(QAError, match="agent id"):
        wf.add_user(users["admin"], "carl", PASSWORD, "agent")
    with pytest.raises(QAError, match="already exists"):
        wf.add_user(users["admin"], "alice", PASSWORD, "agent", agent_id="A9")
    with pytest.raises(QAError, match="too short"):
        wf.add_user(users["admin"], "dora", "short", "inspector")
    _, token = wf.authenticate("bob", PASSWORD)
    wf.disable_user(users["admin"], "bob")
    with pytest.raises(AccessDenied):  # sessions end with the account
        wf.user_for_token(token)
    with pytest.raises(AccessDenied):  # a view object held by a page stops working too
        wf.list_calls(users["bob"])
    with pytest.raises(AccessDenied):
        wf.authenticate("bob", PASSWORD)
    with pytest.raises(AccessDenied):
        wf.list_users(users["alice"])
    names = [u.username for u in wf.list_users(users["lea"], include_inactive=False)]
    assert "bob" not in names and "alice" in names


def test_open_workflow_uses_settings(settings):
    wf = open_workflow(settings)
    assert wf.database_url == settings.resolved_database_url
    assert (settings.home / "workflow.db").exists()


# --------------------------------------------------------------------------- calls


def test_agent_sees_only_own_calls(wf, users, calls):
    assert [c.call_id for c in wf.list_calls(users["alice"])] == ["c2", "c1"]
    assert wf.list_calls(users["alice"], CallFilter(agent_id="B1")) == []
    with pytest.raises(AccessDenied):
        wf.get_call(users["alice"], "c3")
    with pytest.raises(AccessDenied):  # unknown and forbidden look the same to an agent
        wf.get_call(users["alice"], "nope")
    with pytest.raises(AccessDenied):
        wf.reviews_for_call(users["alice"], "c3")
    assert wf.get_call(users["alice"], "c1").items[2].auto_outcome is ItemOutcome.FAIL
    assert len(wf.list_calls(users["ivy"])) == 3


def test_call_filters_and_sampling(wf, users, calls):
    lea = users["lea"]
    assert [c.call_id for c in wf.list_calls(lea, CallFilter(team="blue"))] == ["c3"]
    assert [c.call_id for c in wf.list_calls(lea, CallFilter(flag="auto_fail"))] == ["c3"]
    flagged = {c.call_id for c in wf.list_calls(lea, CallFilter(flagged=True))}
    unflagged = {c.call_id for c in wf.list_calls(lea, CallFilter(flagged=False))}
    assert flagged and unflagged and not flagged & unflagged
    assert all(c.flags for c in wf.list_calls(lea, CallFilter(flagged=True)))
    assert len(wf.list_calls(lea, CallFilter(limit=2))) == 2
    assert wf.list_calls(lea, CallFilter(finalised=True)) == []
    assert {c.call_id for c in wf.list_calls(lea, CallFilter(max_total=80))} == {"c1", "c3"}
    assert {
        c.call_id
        for c in wf.list_calls(
            lea, CallFilter(date_from=T0 + timedelta(hours=1), date_to=T0 + timedelta(days=2))
        )
    } == {"c2"}
    with pytest.raises(AccessDenied):
        wf.assign(users["ivy"], "c1", "ian")
    wf.assign(lea, "c1", "ivy")
    assert [c.call_id for c in wf.list_calls(users["ivy"], CallFilter(assigned_to_me=True))] == [
        "c1"
    ]
    with pytest.raises(QAError):
        wf.assign(lea, "c1", "alice")  # agents do not review others' calls
    first = [c.call_id for c in wf.sample_for_review(lea, 2, seed=7)]
    assert first == [c.call_id for c in wf.sample_for_review(lea, 2, seed=7)]
    assert len(first) == 2
    wf.save_review(users["ivy"], "c1", all_pass(), submit=True)
    assert [c.call_id for c in wf.list_calls(lea, CallFilter(reviewed=True))] == ["c1"]
    assert "c1" not in [c.call_id for c in wf.sample_for_review(lea, 5, seed=1)]
    with pytest.raises(AccessDenied):
        wf.sample_for_review(users["ivy"], 1)


def test_resync_keeps_decisions(wf, users, calls):
    wf.set_final_score(users["lea"], "c1", [ReviewItemInput(item_id="empathy", outcome="pass")])
    sync(wf, "c1", "A1", "red", T0, {"empathy": "fail", "greet": "fail"})
    call = wf.get_call(users["lea"], "c1")
    items = {i.item_id: i for i in call.items}
    assert items["empathy"].final_outcome is ItemOutcome.PASS
    assert items["greet"].auto_outcome is ItemOutcome.FAIL
    assert call.final_total == 100.0
    from qa.schema import CallResult, Transcript

    result = CallResult(
        meta=CallMeta(call_id="c9", agent_id="A1", team="red"),
        transcript=Transcript(call_id="c9", language="en", duration=3.0),
        score=make_score("c9", {"close": "na"}),
        pipeline_version="p2",
        scorecard_version="2",
        created_at=T0,
    )
    synced = wf.sync_result(result)
    assert (synced.pipeline_version, synced.scorecard_version) == ("p2", "2")
    assert synced.auto_total == 100.0  # the na item neither adds nor takes away
    assert "c9" in [c.call_id for c in wf.list_calls(users["alice"])]


# --------------------------------------------------------------------------- reviews


def test_stale_edit_refused_and_submitted_review_frozen(wf, users, calls):
    ivy = users["ivy"]
    draft = wf.save_review(ivy, "c1", all_pass(empathy="fail")[:2])
    assert draft.status is ReviewStatus.DRAFT
    second = wf.save_review(ivy, "c1", all_pass(empathy="fail"), expected_version=draft.version)
    assert second.version > draft.version
    with pytest.raises(StaleEditError):  # a second tab still holding the old version
        wf.save_review(ivy, "c1", all_pass(), expected_version=draft.version)
    with pytest.raises(StaleEditError):  # "first save" when one already exists
        wf.save_review(ivy, "c1", all_pass())
    with pytest.raises(QAError, match="without an outcome"):
        wf.save_review(ivy, "c1", all_pass()[:3], submit=True, expected_version=second.version)
    done = wf.save_review(
        ivy, "c1", all_pass(empathy="fail"), submit=True, expected_version=second.version
    )
    assert done.status is ReviewStatus.SUBMITTED and done.total == 70.0 and done.passed
    with pytest.raises(AccessDenied, match="reopen"):
        wf.save_review(ivy, "c1", all_pass(), expected_version=done.version)
    with pytest.raises(AccessDenied):
        wf.reopen_review(ivy, done.id)
    reopened = wf.reopen_review(users["lea"], done.id, "greeting was late")
    assert reopened.revision == 2 and reopened.status is ReviewStatus.DRAFT
    again = wf.save_review(ivy, "c1", all_pass(), submit=True, expected_version=reopened.version)
    assert again.total == 100.0


def test_every_save_bumps_the_version(wf, users, calls):
    """A save that changes only an item (the total stays, the clock has not moved) still
    moves the version on, so a tab holding the old version cannot overwrite it."""
    ivy = users["ivy"]
    base = wf.save_review(ivy, "c2", all_pass())
    moved = wf.save_review(ivy, "c2", all_pass(close="na"), expected_version=base.version)
    assert moved.total == base.total and moved.version > base.version
    with pytest.raises(StaleEditError):
        wf.save_review(ivy, "c2", all_pass(greet="fail"), expected_version=base.version)


def test_stale_edit_across_two_processes(tmp_path, users, wf, calls):
    other = Workflow(
        wf.database_url,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    ivy = users["ivy"]
    loaded = wf.save_review(ivy, "c2", all_pass())
    other.save_review(ivy, "c2", all_pass(close="fail"), expected_version=loaded.version)
    with pytest.raises(StaleEditError):
        wf.save_review(ivy, "c2", all_pass(greet="fail"), expected_version=loaded.version)
    kept = wf.reviews_for_call(ivy, "c2")[0]
    assert {i.item_id: i.outcome for i in kept.items}["close"] is ItemOutcome.FAIL


def test_concurrent_reviewers_all_kept_and_blind(wf, users, calls):
    ivy, ian, lea, alice = users["ivy"], users["ian"], users["lea"], users["alice"]
    wf.save_review(ivy, "c1", all_pass(empathy="fail"), submit=True)
    ian_draft = wf.save_review(ian, "c1", all_pass())
    # blind: ian sees only his own until he submits
    assert [r.reviewer for r in wf.reviews_for_call(ian, "c1")] == ["ian"]
    with pytest.raises(AccessDenied):
        wf.calibration(ian, "c1")
    wf.save_review(ian, "c1", all_pass(), submit=True, expected_version=ian_draft.version)
    assert sorted(r.reviewer for r in wf.reviews_for_call(ian, "c1")) == ["ian", "ivy"]
    assert sorted(r.reviewer for r in wf.reviews_for_call(lea, "c1")) == ["ian", "ivy"]
    # the agent's self-review is kept too and hidden from other agents
    wf.save_review(alice, "c1", all_pass())
    with pytest.raises(AccessDenied):
        wf.save_review(alice, "c3", all_pass())
    with pytest.raises(AccessDenied):
        wf.save_review(users["max"], "c1", all_pass())
    # graders' raw forms are calibration: the agent sees only the lead's published review
    seen = {r.reviewer: r for r in wf.reviews_for_call(alice, "c1")}
    assert set(seen) == {"alice"} and seen["alice"].self_review
    assert wf.get_call(lea, "c1").submitted_reviews == 2  # self-review not counted
    cal = wf.calibration(lea, "c1")
    empathy = next(i for i in cal.items if i.item_id == "empathy")
    assert empathy.outcomes == {"ivy": ItemOutcome.FAIL, "ian": ItemOutcome.PASS}
    assert empathy.agreement == 0.5 and not empathy.all_agree
    assert empathy.tie and empathy.majority is None  # 1-1 is a tie, not a majority
    assert empathy.auto_outcome is ItemOutcome.FAIL and empathy.auto_agreement == 0.5
    assert empathy.points_spread == 30.0 and cal.score_spread == 30.0
    with pytest.raises(AccessDenied):
        wf.calibration(alice, "c1")


# --------------------------------------------------------------------------- calibration


def test_krippendorff_alpha_known_example(wf, users):
    """Two raters, four units: (p,p) (p,p) (f,f) (p,f) gives nominal alpha 8/15."""
    from qa.workflow.stats import nominal_alpha

    a = {1: "pass", 2: "pass", 3: "fail", 4: "pass"}
    b = {1: "pass", 2: "pass", 3: "fail", 4: "fail"}
    assert nominal_alpha({"a": a, "b": b}) == pytest.approx(8 / 15)
    assert nominal_alpha({"a": a, "b": a}) == pytest.approx(1.0)
    assert nominal_alpha({"a": {1: "pass"}, "b": {1: "pass"}}) is None  # one value only
    assert nominal_alpha({"a": a}) is None

    # the same example through the service: four calls, item "empathy"
    lea, ivy, ian = users["lea"], users["ivy"], users["ian"]
    for n in range(1, 5):
        sync(wf, f"k{n}", "A1", "red", T0 + timedelta(hours=n))
        wf.save_review(ivy, f"k{n}", all_pass(empathy=a[n]), submit=True)
        wf.save_review(ian, f"k{n}", all_pass(empathy=b[n]), submit=True)
    stats = wf.agreement_stats(lea)
    assert stats.calls == 4 and stats.reviews == 8
    items = {i.item_id: i for i in stats.items}
    assert items["empathy"].alpha == pytest.approx(8 / 15)
    assert items["greet"].alpha is None  # everyone passed: alpha undefined, not 1
    # auto said pass everywhere: 15 of 16 ivy item ratings and 14 of 16 ian's agree
    assert stats.auto_human_agreement == pytest.approx(29 / 32)
    per = {r.reviewer: r for r in stats.reviewers}
    assert per["ivy"].agreement_vs_others == pytest.approx(15 / 16)
    assert per["ivy"].agreement_vs_auto == pytest.approx(15 / 16)
    assert per["ian"].agreement_vs_final == pytest.approx(14 / 16)
    with pytest.raises(AccessDenied):
        wf.agreement_stats(ivy)


def test_automatic_vs_human_pass_rates_and_item_agreement(wf, users):
    """Human: a lead's final decision, else the reviewers' majority (a tie is a fail)."""
    lea, ivy, ian, alice = users["lea"], users["ivy"], users["ian"], users["alice"]
    sync(wf, "h1", "A1", "red", T0)  # auto pass; both reviewers agree on everything
    sync(wf, "h2", "A1", "red", T0 + timedelta(hours=1), {"close": "fail"})  # auto fail
    sync(wf, "h3", "B1", "blue", T0 + timedelta(days=7))  # auto pass, the lead fails it
    sync(wf, "h4", "A1", "red", T0 + timedelta(hours=2))  # only the agent's self-review
    sync(wf, "h5", "A1", "red", T0 + timedelta(hours=3))  # only a draft
    for reviewer in (ivy, ian):
        wf.save_review(reviewer, "h1", all_pass(), submit=True)
    wf.save_review(ivy, "h2", all_pass(), submit=True)  # says pass on close
    wf.save_review(ian, "h2", all_pass(close="fail"), submit=True)  # tie: fail, as auto
    wf.save_review(ivy, "h3", all_pass(greet="fail"), submit=True)  # a pass, greet failed
    wf.set_final_score(lea, "h3", [ReviewItemInput(item_id="close", outcome="fail")])
    wf.save_review(alice, "h4", all_pass(close="fail"), submit=True)
    wf.save_review(ian, "h5", all_pass(close="fail"))

    stats = wf.auto_vs_human(users["max"])
    assert stats.calls == 3
    assert stats.auto_pass_rate == pytest.approx(2 / 3)  # h1, h3
    assert stats.human_pass_rate == pytest.approx(1 / 3)  # h1 only
    assert stats.agreement == pytest.approx(2 / 3)
    groups = {(g.group, g.week.isoformat()): g for g in stats.groups}
    assert set(groups) == {("red", "2026-03-02"), ("blue", "2026-03-09")}
    red, blue = groups[("red", "2026-03-02")], groups[("blue", "2026-03-09")]
    assert (red.calls, red.auto_passed, red.human_passed, red.agree) == (2, 1, 1, 2)
    assert (blue.calls, blue.auto_pass_rate, blue.human_pass_rate) == (1, 1.0, 0.0)
    items = {i.item_id: (i.calls, i.agree) for i in stats.items}
    assert items == {"greet": (3, 2), "verify": (3, 3), "empathy": (3, 3), "close": (3, 2)}
    by_item = {i.item_id: i for i in stats.items}
    assert by_item["close"].agreement == pytest.approx(2 / 3)

    red_only = wf.auto_vs_human(lea, CallFilter(team="red"), by="agent_id")
    assert red_only.calls == 2 and [g.group for g in red_only.groups] == ["A1"]
    assert red_only.human_pass_rate == pytest.approx(1 / 2)
    for refused in (alice, ivy):
        with pytest.raises(AccessDenied):
            wf.auto_vs_human(refused)


# --------------------------------------------------------------------------- final, disputes


def test_final_score_and_disputes(wf, users, calls):
    lea, alice, ivy, bob = users["lea"], users["alice"], users["ivy"], users["bob"]
    with pytest.raises(AccessDenied):
        wf.set_final_score(ivy, "c1", [], 90, True)
    with pytest.raises(AccessDenied):
        wf.set_final_score(alice, "c1", [], 90, True)
    call = wf.set_final_score(
        lea, "c1", [ReviewItemInput(item_id="greet", outcome="fail")], note="after calibration"
    )
    assert call.final_total == 60.0 and call.final_passed is False
    with pytest.raises(AccessDenied):
        wf.open_dispute(bob, "c1", "empathy", "not mine but I object")
    with pytest.raises(AccessDenied):
        wf.open_dispute(ivy, "c1", "empathy", "inspectors do not dispute")
    d = wf.open_dispute(alice, "c1", "empathy", "I said sorry at 0:42")
    with pytest.raises(QAError, match="already has an open dispute"):
        wf.open_dispute(alice, "c1", "empathy", "again")
    assert [x.id for x in wf.list_disputes(alice, "open")] == [d.id]
    assert wf.list_disputes(bob) == []
    with pytest.raises(AccessDenied):
        wf.resolve_dispute(ivy, d.id, "overturned", "agreed")
    with pytest.raises(AccessDenied):
        wf.resolve_dispute(alice, d.id, "overturned", "agreed")
    done = wf.resolve_dispute(lea, d.id, "overturned", "apology is at 0:42")
    assert done.status is DisputeStatus.OVERTURNED
    assert (done.outcome_before, done.outcome_after) == (ItemOutcome.FAIL, ItemOutcome.PASS)
    call = wf.get_call(alice, "c1")
    assert {i.item_id: i.outcome for i in call.items}["empathy"] is ItemOutcome.PASS
    assert call.final_total == 90.0 and call.final_passed is True
    with pytest.raises(QAError, match="already overturned"):
        wf.resolve_dispute(lea, d.id, "upheld", "changed my mind")
    with pytest.raises(QAError, match="only a failed item can be disputed"):
        wf.open_dispute(alice, "c2", "close", "it passed but I dispute it anyway")
    sync(wf, "c4", "A1", "red", T0, {"close": "fail"})
    d2 = wf.open_dispute(alice, "c4", "close", "I closed properly")
    kept = wf.resolve_dispute(lea, d2.id, "upheld", "the close was missing")
    assert (kept.outcome_after, kept.resolution) == (ItemOutcome.FAIL, "the close was missing")
    assert wf.get_call(lea, "c4").final_total is None  # upheld changes nothing
    assert [c.call_id for c in wf.list_calls(lea, CallFilter(finalised=True))] == ["c1"]
    assert wf.get_call(lea, "c1").final_by_hand is False
    wf.set_final_score(lea, "c4", [], 72.0, True, note="by hand after calibration")
    assert "c1" not in {c.call_id for c in wf.list_calls(lea, CallFilter(finalised=False))}
    rows = {r.call_id: r for r in wf.final_outcomes(users["max"])}
    assert rows["c1"].total == 90.0 and rows["c1"].finalised
    assert rows["c1"].items["empathy"] is ItemOutcome.PASS and rows["c1"].week == T0.date()
    assert rows["c2"].total == 100.0 and not rows["c2"].finalised
    with pytest.raises(AccessDenied):
        wf.final_outcomes(alice)
    with pytest.raises(AccessDenied):
        wf.acknowledge_score(bob, "c1")
    assert wf.acknowledge_score(alice, "c1").acknowledged_at == T0


def test_a_dispute_decision_rescores_one_item_and_keeps_a_hand_set_total(wf, users, calls):
    lea, alice = users["lea"], users["alice"]
    wf.set_final_score(
        lea,
        "c1",
        [ReviewItemInput(item_id="empathy", outcome="fail", comment="no apology at 0:42")],
        72.0,
        False,
        note="by hand",
    )
    seen = wf.get_call(alice, "c1")
    assert seen.final_by_hand and seen.final_total == 72.0
    assert {i.item_id: i.final_comment for i in seen.items}["empathy"] == "no apology at 0:42"
    d = wf.open_dispute(alice, "c1", "empathy", "I apologised at 0:45")
    with pytest.raises(QAError, match="set by hand"):
        wf.resolve_dispute(lea, d.id, "overturned", "it is at 0:45")
    with pytest.raises(QAError, match="outside"):
        wf.resolve_dispute(lea, d.id, "overturned", "half", points=99.0, keep_total=True)
    half = wf.resolve_dispute(
        lea, d.id, "overturned", "apology late: half marks", "fail", 15.0, keep_total=True
    )
    assert half.outcome_after is ItemOutcome.FAIL
    call = wf.get_call(alice, "c1")
    assert call.final_total == 72.0 and call.final_by_hand  # kept, as the lead said
    assert {i.item_id: i.final_points for i in call.items}["empathy"] == 15.0
    d2 = wf.open_dispute(alice, "c1", "empathy", "the apology was on time")
    wf.resolve_dispute(lea, d2.id, "overturned", "on time after all", keep_total=False)
    call = wf.get_call(alice, "c1")
    # the card's arithmetic over the final outcomes (the one outcome function)
    assert call.final_total == call.outcome_of({}).total == 100.0 and not call.final_by_hand
    assert [x.resolution for x in wf.list_disputes(alice, call_id="c1")] == [
        "on time after all",
        "apology late: half marks",
    ]


def test_audit_log_records_old_and_new_values(wf, users, calls):
    lea, alice = users["lea"], users["alice"]
    d = wf.open_dispute(alice, "c1", "empathy", "I apologised")
    wf.resolve_dispute(lea, d.id, "overturned", "confirmed on the recording")
    trail = wf.audit_trail(lea, "call", "c1")
    by_field = {(a.action, a.field): a for a in trail}
    entry = by_field[("dispute_overturned", "items.empathy.final_outcome")]
    assert (entry.old_value, entry.new_value, entry.actor) == (None, "pass", "lea")
    total = by_field[("dispute_overturned", "final_total")]
    assert total.old_value is None and float(total.new_value) == 100.0
    status = {(a.field, a.old_value, a.new_value) for a in wf.audit_trail(lea, "dispute", d.id)}
    assert ("status", "open", "overturned") in status
    ivy = users["ivy"]
    r1 = wf.save_review(ivy, "c2", all_pass())
    wf.save_review(ivy, "c2", all_pass(close="fail"), expected_version=r1.version)
    changes = {
        (a.field, a.old_value, a.new_value) for a in wf.audit_trail(users["max"], "review", r1.id)
    }
    assert ("items.close.outcome", "pass", "fail") in changes
    assert ("items.close.points", "40.0", "0.0") in changes
    with pytest.raises(AccessDenied):
        wf.audit_trail(ivy)


# --------------------------------------------------------------------------- coaching, cases


def test_coaching_access_and_effect(wf, users, clock):
    lea, alice, bob, ivy = users["lea"], users["alice"], users["bob"], users["ivy"]
    session = T0 + timedelta(days=10)
    # before: empathy fails on 3 of 4 calls; after: 1 of 4
    for n, outcome in enumerate(["fail", "fail", "fail", "pass"]):
        sync(wf, f"b{n}", "A1", "red", session - timedelta(days=n + 1), {"empathy": outcome})
    for n, outcome in enumerate(["pass", "pass", "fail", "pass"]):
        sync(wf, f"a{n}", "A1", "red", session + timedelta(days=n + 1), {"empathy": outcome})
    sync(wf, "z1", "B1", "blue", session + timedelta(days=1), {"empathy": "fail"})
    with pytest.raises(AccessDenied):
        wf.create_coaching(alice, "A1", ["b0"], ["empathy"], "self-coaching")
    with pytest.raises(QAError):
        wf.create_coaching(lea, "A1", ["z1"], ["empathy"], "wrong agent's call")
    c = wf.create_coaching(
        lea,
        "A1",
        ["b0", "b1"],
        ["empathy"],
        "acknowledge feelings",
        due=session.date(),
        session_at=session,
    )
    with pytest.raises(AccessDenied):
        wf.acknowledge_coaching(bob, c.id)
    assert wf.list_coaching(bob) == []
    with pytest.raises(AccessDenied):
        wf.coaching_effect(bob, c.id)
    assert [x.id for x in wf.list_coaching(alice)] == [c.id]
    assert wf.acknowledge_coaching(alice, c.id).status.value == "acknowledged"
    effect = wf.coaching_effect(alice, c.id)
    assert (effect.before_calls, effect.after_calls) == (4, 4)
    assert effect.before_rate == pytest.approx(0.25) and effect.after_rate == pytest.approx(0.75)
    assert effect.change == pytest.approx(0.5)
    # a lead's final decision counts, not the automatic outcome
    wf.set_final_score(lea, "a2", [ReviewItemInput(item_id="empathy", outcome="pass")])
    assert wf.coaching_effect(ivy, c.id).after_rate == pytest.approx(1.0)
    with pytest.raises(AccessDenied):
        wf.add_follow_up(alice, c.id, "done")
    done = wf.add_follow_up(ivy, c.id, "better on empathy", complete=True)
    assert done.status.value == "completed" and done.follow_up_date == T0.date()


def test_case_library(wf, users, calls):
    lea, ivy, alice = users["lea"], users["ivy"], users["alice"]
    wf.add_case(
        ivy,
        "c1",
        "common_mistake",
        "Missed apology",
        "customer waited",
        tags=["Empathy", "billing"],
    )
    wf.add_case(lea, "c2", "good_example", "Clean close", "textbook", tags=["close"])
    assert [c.call_id for c in wf.search_cases(users["max"], "apology")] == ["c1"]
    assert [c.call_id for c in wf.search_cases(ivy, "empathy")] == ["c1"]
    assert [c.call_id for c in wf.search_cases(ivy, kind="good_example")] == ["c2"]
    assert [c.call_id for c in wf.search_cases(ivy, tag="close")] == ["c2"]
    assert wf.search_cases(ivy, "nothing like this") == []
    wf.add_case(ivy, "c3", "good_example", "核实身份", "先核实再办理", tags=["核实"])
    assert [c.call_id for c in wf.search_cases(ivy, "核实")] == ["c3"]
    assert [c.call_id for c in wf.search_cases(ivy, tag="核实")] == ["c3"]
    assert [c.call_id for c in wf.search_cases(ivy, "MISSED customer")] == ["c1"]
    with pytest.raises(AccessDenied):
        wf.add_case(alice, "c1", "good_example", "Me")
    with pytest.raises(AccessDenied):
        wf.search_cases(alice, "apology")


# --------------------------------------------------------------------------- concurrency


def test_simultaneous_writers(wf, users, calls):
    """Reviewers submitting at the same moment are all kept; one reviewer's two tabs are not."""
    from concurrent.futures import ThreadPoolExecutor

    admin = users["admin"]
    inspectors = [wf.add_user(admin, f"insp{n}", PASSWORD, "inspector") for n in range(6)]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda u: wf.save_review(u, "c3", all_pass(), submit=True), inspectors))
    assert len(wf.reviews_for_call(users["lea"], "c3")) == 6
    assert wf.get_call(users["lea"], "c3").submitted_reviews == 6

    ivy = users["ivy"]
    base = wf.save_review(ivy, "c2", all_pass())

    def edit(outcome: str) -> str:
        try:
            wf.save_review(ivy, "c2", all_pass(close=outcome), expected_version=base.version)
            return "saved"
        except StaleEditError:
            return "stale"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(edit, ["fail", "na", "fail", "na"]))
    assert sorted(results) == ["saved", "stale", "stale", "stale"]


def _save_in_own_process(
    url: str, actor: UserView, outcome: str, expected: int | None, start: Any, results: Any
) -> None:
    """One reviewer's save, in a process of its own with its own engine and connections."""
    wf = Workflow(url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    wf.get_call(actor, "c2")  # connected and warm before the start line
    start.wait(timeout=120)
    try:
        saved = wf.save_review(actor, "c2", all_pass(close=outcome), expected_version=expected)
        results.put((outcome, "saved", saved.version))
    except StaleEditError as exc:
        results.put((outcome, "stale", str(exc)))
    except Exception as exc:  # any other end is a failure the test reports
        results.put((outcome, "error", repr(exc)))


def _race(url: str, actor: UserView, expected: int | None) -> dict[str, tuple[str, Any]]:
    """Two processes save the same review at the same moment; their outcomes by edit."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_save_in_own_process, args=(url, actor, outcome, expected, start, results)
        )
        for outcome in ("fail", "na")
    ]
    for proc in procs:
        proc.start()
    try:
        got = {}
        for _ in procs:
            try:
                outcome, result, detail = results.get(timeout=180)
            except queue.Empty:
                pytest.fail("a saving process gave no answer within 180 s")
            got[outcome] = (result, detail)
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    return got


def test_two_processes_saving_one_review_at_once(wf, users, calls):
    """Optimistic locking across processes: on a first save and on an edit of one loaded
    version, exactly one save wins, the other is told it is stale, and nothing of the
    loser's is kept (neither its items nor its audit entries)."""
    ivy, lea = users["ivy"], users["lea"]
    for first_save in (True, False):
        version = None
        if not first_save:  # both start from the same loaded review, close = pass
            loaded = wf.reviews_for_call(ivy, "c2")[0]
            version = wf.save_review(ivy, "c2", all_pass(), expected_version=loaded.version).version
        seen = max(a.id for a in wf.audit_trail(lea, limit=1))
        got = _race(wf.database_url, ivy, version)
        assert sorted(r for r, _ in got.values()) == ["saved", "stale"], got
        winner = next(o for o, (r, _) in got.items() if r == "saved")
        loser = next(o for o in got if o != winner)
        assert "reload" in got[loser][1]
        kept = wf.reviews_for_call(ivy, "c2")
        assert len(kept) == 1 and kept[0].version == got[winner][1]
        assert version is None or kept[0].version > version
        assert {i.item_id: i.outcome for i in kept[0].items}["close"] is ItemOutcome(winner)
        close = [
            a.new_value
            for a in wf.audit_trail(lea, "review", kept[0].id)
            if a.id > seen and a.field == "items.close.outcome"
        ]
        assert close == [winner], close


def test_text_longer_than_its_column_is_refused_alike_on_every_database(wf, users, calls):
    """SQLite keeps any length, Postgres refuses past the column's: both now refuse with
    the field and its limit, and write nothing."""
    lea = users["lea"]
    with pytest.raises(QAError, match=r"cases\.title.*301.*300"):
        wf.add_case(lea, "c1", "good_example", "x" * 301)
    assert wf.search_cases(lea) == []
    meta = CallMeta(call_id="c9", agent_id="A" * 101, team="red", started_at=T0)
    with pytest.raises(QAError, match=r"calls\.agent_id.*101.*100"):
        wf.sync_call(meta, make_score("c9", {}))
    with pytest.raises(NotFoundError):
        wf.get_call(lea, "c9")
    assert wf.add_case(lea, "c1", "good_example", "x" * 300).title == "x" * 300


# --------------------------------------------------------------------------- role swap

SWAP_CARD = """\
id: swap
version: "1"
name: Swap
languages: [en]
pass_mark: 60
sections:
  - id: s
    name: S
    items:
      - {id: greet, name: Greet, points: 50, rule: {type: phrase, phrases: [thank you for calling]}}
      - {id: name, name: Name, points: 50, rule: {type: phrase, phrases: [my name is]}}
"""


class Neutral:
    """A sentiment model that finds every utterance neutral."""

    def score(self, texts: list[str], language: str) -> list[Any]:
        from qa.schema import Sentiment

        return [Sentiment(score=0.0, label="neutral") for _ in texts]

    def annotate(self, transcript: Any) -> None:
        for u, s in zip(
            transcript.utterances,
            self.score([u.text for u in transcript.utterances], "en"),
            strict=True,
        ):
            u.sentiment = s


class FakeModels:
    """What a re-score needs of `qa.pipeline.Models`, without loading any."""

    def __init__(self, card: Any) -> None:
        from types import SimpleNamespace

        self.settings = SimpleNamespace(review_sample_rate=0.0)
        self.encoder, self.sentiment, self._card = None, Neutral(), card

    def scorecard(self, language: str) -> Any:
        return self._card


def test_swap_roles_scores_again_and_keeps_the_old_result(wf, users, tmp_path):
    from qa.results import done_calls, latest_result, publish_result
    from qa.rules.format import parse_scorecard
    from qa.rules.scripted import ScriptedTurn, scripted_transcript
    from qa.schema import CallResult, Role
    from qa.scoring.scorecard import score_call
    from qa.store import LocalStore

    store, card = LocalStore(tmp_path / "store"), parse_scorecard(SWAP_CARD)
    models = FakeModels(card)
    transcript = scripted_transcript(
        [
            ScriptedTurn(role=Role.AGENT, text="Thank you for calling, my name is Sam."),
            ScriptedTurn(role=Role.CUSTOMER, text="My bill is wrong."),
        ],
        call_id="s1",
    )
    meta = CallMeta(call_id="s1", agent_id="A1", team="red", started_at=T0)
    score = score_call(transcript, meta, card)
    first = CallResult(
        meta=meta,
        transcript=transcript,
        score=score,
        pipeline_version="p1",
        scorecard_version="1",
        created_at=T0,
    )
    old_key = publish_result(store, first)
    wf.sync_result(first)
    assert score.total == 100.0 and score.passed
    for who in ("admin", "alice", "max"):  # only reviewers swap
        with pytest.raises(AccessDenied):
            wf.swap_roles(users[who], "s1", store, models)

    view = wf.swap_roles(users["ivy"], "s1", store, models, reason="the customer spoke first")
    assert view.role_swapped and wf.role_override("s1")
    assert view.pipeline_version == "p1+r1" and view.auto_total == 0.0 and not view.auto_passed
    assert store.get_json(old_key, CallResult).score.total == 100.0  # the old result is kept
    new = latest_result(store, "s1")
    assert new.pipeline_version == "p1+r1" and new.score.total == 0.0
    assert [u.role for u in new.transcript.utterances] == [Role.CUSTOMER, Role.AGENT]
    assert new.transcript.utterances[0].text == transcript.utterances[0].text  # no ASR
    assert done_calls(store, "p1", {"swap@1"}) == {"s1"}  # not processed again
    trail = {
        a.field: a for a in wf.audit_trail(users["lea"], "call", "s1") if a.action == "swap_roles"
    }
    assert (trail["role_override"].old_value, trail["role_override"].new_value) == ("false", "true")
    assert trail["result"].new_value.startswith("results/s1/p1+r1/")
    assert float(trail["auto_total"].old_value) == 100.0
    assert trail["reason"].new_value == "the customer spoke first"

    back = wf.swap_roles(users["lea"], "s1", store, models)  # a second swap sets them back
    assert not back.role_swapped and back.pipeline_version == "p1+r2"
    assert back.auto_total == 100.0
    assert len(list(store.list("results/s1/"))) == 3


def test_a_database_from_before_the_scoring_columns_is_upgraded(wf, users, calls):
    """create_all makes no columns in existing tables: the service adds them, with the
    bundled cards' settings for the rows already there."""
    from sqlalchemy import text

    with wf.engine.begin() as conn:
        for column in ("scoring_mode", "auto_fail_zeroes_total", "final_auto_fail"):
            conn.execute(text(f"ALTER TABLE calls DROP COLUMN {column}"))
    wf.engine.dispose()
    again = Workflow(
        wf.database_url,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    call = again.get_call(users["lea"], "c3")
    assert (call.scoring_mode, call.auto_fail_zeroes_total, call.final_auto_fail) == (
        "deduction",
        True,
        None,
    )
    review = again.save_review(users["ivy"], "c3", all_pass(verify="fail"))
    assert (review.total, review.passed) == (call.auto_total, call.auto_passed) == (0.0, False)
    Workflow(wf.database_url)  # a second start finds nothing to add
