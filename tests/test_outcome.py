"""One arithmetic for a call's total, pass and auto-fail: the machine, a reviewer who
confirms every automatic outcome, a lead's final score and a dispute decision agree."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from qa.rules.format import parse_scorecard
from qa.rules.scripted import ScriptedTurn, scripted_transcript
from qa.schema import CallMeta, ItemOutcome, Role
from qa.scoring.outcome import Outcome, OutcomeItem, Scoring, outcome
from qa.scoring.scorecard import score_call
from qa.workflow import ReviewItemInput, Workflow

PASS, FAIL, NA = ItemOutcome.PASS, ItemOutcome.FAIL, ItemOutcome.NA
PASSWORD = "correct horse battery"


def card_text(mode: str) -> str:
    """Four items: one passes, one fails, one is N/A outside the complaints queue, one is
    critical (fails when the agent says the forbidden word)."""
    worth = "points" if mode == "deduction" else "weight"
    return f"""\
id: {mode}_card
version: "1"
name: {mode}
languages: [en]
pass_mark: 60
scoring: {mode}
sections:
  - id: s
    name: S
    items:
      - {{id: hello, name: Hello, {worth}: 30, rule: {{type: phrase, phrases: [hello]}}}}
      - {{id: bye, name: Bye, {worth}: 20, rule: {{type: phrase, phrases: [goodbye]}}}}
      - id: sorry
        name: Sorry
        {worth}: 40
        applies_when: {{queue: [complaints]}}
        rule: {{type: phrase, phrases: [sorry]}}
      - id: polite
        name: Polite
        {worth}: 10
        critical: true
        rule: {{type: phrase, phrases: [stupid], mode: absent, fuzzy: false}}
"""


def call(text: str, call_id: str = "c1") -> tuple:
    t = scripted_transcript(
        [
            ScriptedTurn(role=Role.AGENT, text=text),
            ScriptedTurn(role=Role.CUSTOMER, text="Thanks."),
        ],
        call_id=call_id,
    )
    return t, CallMeta(
        call_id=call_id, agent_id="A1", team="red", queue="billing", duration=t.duration
    )


def item(
    item_id: str,
    outcome_: ItemOutcome,
    possible: float,
    *,
    critical: bool = False,
    awarded: float | None = None,
    doubt: str = "",
) -> OutcomeItem:
    return OutcomeItem(
        item_id=item_id,
        outcome=outcome_,
        points_possible=possible,
        critical=critical,
        points_awarded=awarded,
        doubt=doubt,
    )


# --------------------------------------------------------------------------- the function


def test_deduction_keeps_na_points_and_weighted_leaves_them_out():
    items = [item("a", PASS, 30), item("b", FAIL, 20), item("c", NA, 40), item("d", PASS, 10)]
    deduction = outcome(items, Scoring(mode="deduction", pass_mark=60))
    assert deduction == Outcome(total=80.0, max_total=100.0, passed=True, auto_fail=False)
    weighted = outcome(items, Scoring(mode="weighted", pass_mark=60))
    assert weighted.total == pytest.approx(100 * 40 / 60, abs=0.01) and weighted.passed
    assert outcome([item("c", NA, 40)], Scoring(mode="weighted", pass_mark=60)).total == 100.0


def test_partial_points_and_critical_fail():
    scoring = Scoring(mode="deduction", pass_mark=60)
    assert outcome([item("a", PASS, 30, awarded=20), item("b", PASS, 70)], scoring).total == 90
    failed = [item("a", PASS, 90), item("d", FAIL, 10, critical=True)]
    zeroed = outcome(failed, scoring)
    assert zeroed.auto_fail and not zeroed.passed and zeroed.total == 0
    assert zeroed.reasons == ["d"]
    kept = outcome(failed, scoring.model_copy(update={"auto_fail_zeroes_total": False}))
    assert kept.auto_fail and not kept.passed and kept.total == 90
    # an N/A critical item is not a fail
    assert not outcome([item("d", NA, 10, critical=True)], scoring).auto_fail


def test_a_critical_fail_in_doubt_is_held_for_a_person_not_auto_failed():
    scoring = Scoring(mode="deduction", pass_mark=80)
    doubtful = [item("a", PASS, 90), item("d", FAIL, 10, critical=True, doubt="words guessed")]
    held = outcome(doubtful, scoring)
    assert not held.auto_fail and held.reasons == [] and held.held == ["d"]
    assert held.total == 90 and held.passed  # the item loses its points, the call is not zeroed
    # a person who confirms the fail carries no doubt: the call fails as any critical fail does
    confirmed = outcome([i.model_copy(update={"doubt": ""}) for i in doubtful], scoring)
    assert confirmed.auto_fail and confirmed.total == 0 and confirmed.held == []
    # a doubt on a passed or a non-critical item holds nothing; a trusted critical fail still
    # fails the call beside a held one
    assert outcome([item("d", PASS, 10, critical=True, doubt="x")], scoring).held == []
    assert outcome([item("b", FAIL, 10, doubt="x")], scoring).held == []
    both = outcome([*doubtful, item("e", FAIL, 10, critical=True)], scoring)
    assert both.auto_fail and both.reasons == ["e"] and both.held == ["d"] and both.total == 0


# --------------------------------------------------------------------------- one truth


@pytest.fixture
def wf(database_url) -> Workflow:
    return Workflow(
        database_url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


@pytest.fixture
def people(wf):
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    return {
        name: wf.add_user(admin, name, PASSWORD, role, agent_id=agent)
        for name, role, agent in [
            ("ivy", "inspector", None),
            ("lea", "lead", None),
            ("alice", "agent", "A1"),
        ]
    }


@pytest.mark.parametrize("mode", ["deduction", "weighted"])
@pytest.mark.parametrize(
    "text, auto_fail",
    [
        ("Hello, how can I help?", False),  # bye fails, sorry is N/A
        ("Hello, that is a stupid question.", True),  # the critical item fails too
    ],
)
def test_confirming_every_automatic_outcome_gives_the_machine_total(
    wf, people, mode, text, auto_fail
):
    card = parse_scorecard(card_text(mode))
    transcript, meta = call(text)
    score = score_call(transcript, meta, card)
    outcomes = {r.item_id: r.outcome for r in score.items}
    assert outcomes["sorry"] is NA and outcomes["bye"] is FAIL
    assert score.auto_fail is auto_fail and score.scoring == mode
    expected = {("deduction", False): 80.0, ("weighted", False): 66.67}
    assert score.total == (0.0 if auto_fail else expected[(mode, False)])
    synced = wf.sync_call(meta, score, pipeline_version="p1")
    assert synced.scoring_mode == mode and synced.auto_total == score.total

    confirm = [ReviewItemInput(item_id=i.item_id, outcome=i.auto_outcome) for i in synced.items]
    review = wf.save_review(people["ivy"], "c1", confirm, submit=True)
    assert (review.total, review.passed) == (score.total, score.passed)
    self_review = wf.save_review(people["alice"], "c1", confirm)
    assert (self_review.total, self_review.passed) == (score.total, score.passed)
    final = wf.set_final_score(people["lea"], "c1", confirm)
    assert (final.final_total, final.final_passed) == (score.total, score.passed)
    assert final.failed_critical is auto_fail
    row = wf.final_outcomes(people["lea"])[0]
    assert (row.total, row.passed, row.auto_fail) == (score.total, score.passed, auto_fail)
    assert synced.outcome_of({}).total == score.total


@pytest.mark.parametrize("mode", ["deduction", "weighted"])
def test_overturned_dispute_recomputes_with_the_same_function(wf, people, mode):
    card = parse_scorecard(card_text(mode))
    transcript, meta = call("Hello, that is a stupid question.")
    score = score_call(transcript, meta, card)
    view = wf.sync_call(meta, score, pipeline_version="p1")
    assert view.auto_fail and view.auto_total == 0
    dispute = wf.open_dispute(people["alice"], "c1", "polite", "I quoted the customer")
    wf.resolve_dispute(people["lea"], dispute.id, "overturned", "a quote, not an insult")
    after = wf.get_call(people["lea"], "c1")
    expected = outcome(
        [
            OutcomeItem(
                item_id=r.item_id,
                outcome=PASS if r.item_id == "polite" else r.outcome,
                points_possible=r.points_possible,
                critical=r.critical,
            )
            for r in score.items
        ],
        Scoring.of_card(card),
    )
    assert not expected.auto_fail
    assert (after.final_total, after.final_passed) == (expected.total, expected.passed)
    assert after.final_auto_fail is False and not after.failed_critical
    # the reviewer who agrees with the overturn gets the same total
    agree = [ReviewItemInput(item_id=i.item_id, outcome=i.outcome) for i in after.items]
    assert wf.save_review(people["ivy"], "c1", agree).total == expected.total
    # an N/A item a reviewer finds applicable is scored against the card's points
    sorry = next(i for i in after.items if i.item_id == "sorry")
    assert sorry.auto_outcome is NA and sorry.points_possible == 40
