"""Every workflow action declares who may do it, and each role is refused exactly the
actions its role sets in `qa.workflow.auth` leave it out of (SQLite and Postgres)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from argon2 import PasswordHasher

from qa.errors import AccessDenied, QAError
from qa.schema import CallMeta, CallScore, ItemOutcome, ItemResult
from qa.store import LocalStore
from qa.workflow import ReviewItemInput, UserRole, Workflow, auth
from qa.workflow.actions import permission_of
from qa.workflow.alerts import ALERT_READERS
from qa.workflow.live import LIVE_READERS

PASSWORD = "correct horse battery"
ITEMS = [("greet", 40.0), ("close", 60.0)]

# Public methods that are not a signed-in user's action, and why.
NOT_USER_ACTIONS = {
    "authenticate": "signs a user in: there is no acting user yet, only a password",
    "user_for_token": "turns a session token (the credential itself) into its user",
    "logout": "ends the session its token names; an unknown token is ignored",
    "sync_call": "the pipeline's upsert of a scored call, not a person's action",
    "sync_result": "the pipeline's upsert from a published CallResult",
    "sync_summary": "the pipeline's upsert of a call's summary (what sync_call builds)",
    "role_override": "a flag the pipeline reads when it scores a call again",
    "now": "the service clock",
    "claim_alert": "the alert sender claiming an alert so it goes out once",
    "finish_alert": "the alert sender recording how a delivery went",
    "record_label": "the alert rules noting a call's label for spike counts",
    "label_counts": "the alert rules counting a label's calls per week",
    "save_driver_build": "`qa drivers build` saving the groups it found, not a person's action",
    "pinned_drivers": "the pipeline reading pinned centroids to label new calls",
    "drivers_assigned": "the pipeline asking which calls already have a driver",
    "record_call_drivers": "the pipeline's upsert of new calls' drivers",
    "driver_name_of": "the alerts engine reading a call's driver for the spike rule",
    "live_start": "the live server recording that a call's stream started",
    "live_update": "the live server writing a call's growing transcript and events",
    "live_end": "the live server recording how a call's stream ended",
    "live_lost": "the live server closing its own calls that stopped sending",
}

# Who may do what, in the role sets of auth.py (EVERYONE: visibility decided per record).
EXPECTED: dict[str, frozenset[UserRole]] = {
    "add_user": auth.USER_ADMINS,
    "list_users": auth.USER_READERS,
    "list_accounts": auth.USER_ADMINS,
    "disable_user": auth.USER_ADMINS,
    "enable_user": auth.USER_ADMINS,
    "reset_password": auth.USER_ADMINS,
    "change_role": auth.USER_ADMINS,
    "unlock_user": auth.USER_ADMINS,
    "list_calls": auth.EVERYONE,
    "count_calls": auth.EVERYONE,
    "get_call": auth.EVERYONE,
    "assign": auth.LEADS,
    "unassign": auth.LEADS,
    "sample_for_review": auth.LEADS,
    "save_review": auth.REVIEW_WRITERS,
    "reopen_review": auth.LEADS,
    "reviews_for_call": auth.REVIEW_READERS,
    "calibration": auth.CALIBRATORS,
    "agreement_stats": auth.STATS,
    "set_final_score": auth.LEADS,
    "open_dispute": auth.AGENTS,
    "list_disputes": auth.EVERYONE,
    "resolve_dispute": auth.LEADS,
    "acknowledge_score": auth.AGENTS,
    "create_coaching": auth.COACHES,
    "acknowledge_coaching": auth.AGENTS,
    "add_follow_up": auth.COACHES,
    "list_coaching": auth.EVERYONE,
    "coaching_effect": auth.EVERYONE,
    "add_case": auth.CASE_EDITORS,
    "search_cases": auth.CASE_READERS,
    "swap_roles": auth.REVIEWERS,
    "original_audio": auth.ORIGINAL_AUDIO,
    "audit_trail": auth.AUDITORS,
    "final_outcomes": auth.TRENDS,
    "auto_vs_human": auth.TRENDS,
    "alert_log": ALERT_READERS,
    "list_drivers": auth.TRENDS,
    "driver_trends": auth.TRENDS,
    "rename_driver": auth.LEADS,
    "merge_drivers": auth.LEADS,
    "pin_driver": auth.LEADS,
    "live_calls": LIVE_READERS,
    "live_call": LIVE_READERS,
}
# the command line (actor None) owns the database and may manage accounts
SYSTEM_ACTIONS = {
    "add_user",
    "list_users",
    "list_accounts",
    "disable_user",
    "enable_user",
    "reset_password",
    "change_role",
    "unlock_user",
    "list_drivers",  # `qa drivers list`
}


def public_methods() -> dict[str, Any]:
    return {
        name: fn
        for name, fn in inspect.getmembers(Workflow, inspect.isfunction)
        if not name.startswith("_")
    }


def test_every_public_method_declares_its_permission_or_says_why_not():
    methods = public_methods()
    undeclared = sorted(
        n for n, fn in methods.items() if permission_of(fn) is None and n not in NOT_USER_ACTIONS
    )
    assert not undeclared, f"actions without a declared permission: {undeclared}"
    both = sorted(n for n in NOT_USER_ACTIONS if permission_of(methods.get(n)) is not None)
    assert not both, f"exempt but declared: {both}"
    assert set(NOT_USER_ACTIONS) <= set(methods), "an exemption names no method"
    declared = {n: permission_of(fn) for n, fn in methods.items() if permission_of(fn)}
    assert set(declared) == set(EXPECTED)
    for name, perm in declared.items():
        assert perm.roles == EXPECTED[name], name
        assert perm.system == (name in SYSTEM_ACTIONS), name
        assert perm.what, name


def test_actions_keep_their_public_signature():
    for name, fn in public_methods().items():
        if name in NOT_USER_ACTIONS:
            continue
        params = list(inspect.signature(fn).parameters)
        assert params[:2] == ["self", "actor"], name


def _score(call_id: str) -> CallScore:
    results = [
        ItemResult(
            item_id=i, name=i.title(), outcome=ItemOutcome.PASS, points_possible=p, points_awarded=p
        )
        for i, p in ITEMS
    ]
    return CallScore(
        call_id=call_id,
        scorecard_id="card",
        scorecard_version="1",
        total=100.0,
        pass_mark=70,
        passed=True,
        auto_fail=False,
        items=results,
    )


@pytest.fixture
def world(database_url, tmp_path):
    wf = Workflow(
        database_url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    actors = {}
    for name, role, agent in [
        ("ann", UserRole.AGENT, "A1"),
        ("ivy", UserRole.INSPECTOR, None),
        ("leo", UserRole.LEAD, None),
        ("max", UserRole.MANAGER, None),
        ("ada", UserRole.ADMIN, None),
    ]:
        actors[role] = wf.add_user(None, name, PASSWORD, role, agent_id=agent)
    wf.add_user(None, "spare", PASSWORD, UserRole.INSPECTOR)
    meta = CallMeta(
        call_id="c1",
        agent_id="A1",
        team="red",
        queue="billing",
        started_at=datetime(2026, 3, 2, 9, tzinfo=UTC),
        duration=60.0,
    )
    wf.sync_call(meta, _score("c1"), pipeline_version="p1")
    coaching = wf.create_coaching(actors[UserRole.LEAD], "A1", ["c1"], ["greet"]).id
    return wf, actors, coaching, LocalStore(tmp_path / "store")


def _calls(coaching: int, store: LocalStore, role: UserRole) -> list[tuple[str, tuple]]:
    """One harmless call per action, in an order where a permitted one can succeed
    (the reviews are submitted before calibration, which inspectors see only then)."""
    review = [ReviewItemInput(item_id=i, outcome="pass") for i, _ in ITEMS]
    missing = 10**6
    return [
        ("add_user", (f"new-{role.value}", PASSWORD, "inspector")),
        ("list_users", ()),
        ("list_accounts", ()),
        ("disable_user", ("spare",)),
        ("enable_user", ("spare",)),
        ("reset_password", ("spare", PASSWORD)),
        ("change_role", ("spare", "inspector")),
        ("unlock_user", ("spare",)),
        ("list_calls", ()),
        ("count_calls", ()),
        ("get_call", ("c1",)),
        ("assign", ("c1", "ivy")),
        ("unassign", ("c1", "ivy")),
        ("sample_for_review", (0,)),
        ("save_review", ("c1", review)),
        ("reopen_review", (missing,)),
        ("reviews_for_call", ("c1",)),
        ("calibration", ("c1",)),
        ("agreement_stats", ()),
        ("set_final_score", ("c1",)),
        ("open_dispute", ("c1", "greet", "the greeting was there")),
        ("list_disputes", ()),
        ("resolve_dispute", (missing, "upheld", "fine")),
        ("acknowledge_score", ("c1",)),
        ("create_coaching", ("A1", ["c1"])),
        ("acknowledge_coaching", (coaching,)),
        ("add_follow_up", (coaching, "better")),
        ("list_coaching", ()),
        ("coaching_effect", (coaching,)),
        ("add_case", ("c1", "good_example", "A clear greeting")),
        ("search_cases", ()),
        ("swap_roles", ("c1", store, None)),
        ("original_audio", ("c1", store)),
        ("audit_trail", ()),
        ("final_outcomes", ()),
        ("auto_vs_human", ()),
        ("alert_log", ()),
        ("list_drivers", ()),
        ("driver_trends", ()),
        ("rename_driver", (missing, "Billing")),
        ("merge_drivers", (missing, missing + 1)),
        ("pin_driver", (missing,)),
        ("live_calls", ()),
        ("live_call", ("no-such-live-call",)),
    ]


def test_each_role_is_refused_exactly_the_actions_it_lacks(world):
    wf, actors, coaching, store = world
    wrong = []
    for role in UserRole:
        calls = _calls(coaching, store, role)
        assert {name for name, _ in calls} == set(EXPECTED)
        for name, args in calls:
            kwargs = {"submit": True} if name == "save_review" else {}
            try:
                getattr(wf, name)(actors[role], *args, **kwargs)
            except AccessDenied as exc:
                if role in EXPECTED[name]:
                    wrong.append(f"{role.value} refused {name}: {exc}")
                continue
            except QAError:  # permitted, then not found or the like: not a refusal
                if role in EXPECTED[name]:
                    continue
                raise
            if role not in EXPECTED[name]:
                wrong.append(f"{role.value} allowed {name}")
    assert not wrong, "\n".join(wrong)


def test_nobody_signed_in_is_refused_every_user_action(world):
    wf, _, coaching, store = world
    for name, args in _calls(coaching, store, UserRole.ADMIN):
        if name in SYSTEM_ACTIONS:
            continue
        with pytest.raises(AccessDenied):
            getattr(wf, name)(None, *args)


def test_a_disabled_account_is_refused_even_what_everyone_may_do(world):
    wf, actors, _, _ = world
    wf.disable_user(None, "ann")
    for name in ("list_calls", "list_disputes", "list_coaching"):
        with pytest.raises(AccessDenied, match="disabled"):
            getattr(wf, name)(actors[UserRole.AGENT])
