"""Account management: only admins add, disable, enable, reset, change role and unlock;
every change is audited (a password never as a value), sessions end with a reset, and at
least one active admin always remains (SQLite and Postgres)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from qa.errors import AccessDenied, QAError
from qa.workflow import NotFoundError, UserRole, Workflow
from qa.workflow.inputs import LIMITS, InvalidInput
from qa.workflow.throttle import LoginPolicy

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new secret"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wf(database_url, clock) -> Workflow:
    """A fresh database per test; no wait between failed logins, so a test can lock one."""
    return Workflow(
        database_url,
        session_ttl_minutes=60,
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        login_policy=LoginPolicy(delay_seconds=0.0),
    )


@pytest.fixture
def users(wf):
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    made = {"admin": admin}
    for name, role, team, agent in [
        ("alice", "agent", "red", "A1"),
        ("bob", "agent", "blue", "B1"),
        ("ivy", "inspector", None, None),
        ("lea", "lead", "red", None),
        ("max", "manager", None, None),
    ]:
        made[name] = wf.add_user(admin, name, PASSWORD, role, team=team, agent_id=agent)
    return made


def manage(wf: Workflow, actor, target: str) -> dict:
    """One call of each account action on `target`, as `actor`."""
    return {
        "add_user": lambda: wf.add_user(actor, "new", PASSWORD, "inspector"),
        "list_accounts": lambda: wf.list_accounts(actor),
        "disable_user": lambda: wf.disable_user(actor, target),
        "enable_user": lambda: wf.enable_user(actor, target),
        "reset_password": lambda: wf.reset_password(actor, target, NEW_PASSWORD),
        "change_role": lambda: wf.change_role(actor, target, "lead"),
        "unlock_user": lambda: wf.unlock_user(actor, target),
    }


def user_trail(wf: Workflow, users, username: str) -> list[tuple]:
    """The account's audit entries, oldest first, without the logins."""
    return [
        (a.actor, a.action, a.field, a.old_value, a.new_value)
        for a in reversed(wf.audit_trail(users["admin"], "user", username))
        if a.action not in ("login", "logout", "login_failed")
    ]


@pytest.mark.parametrize("who", ["lea", "max", "ivy", "alice"])
def test_only_admins_manage_accounts(wf, users, who):
    before = wf.list_accounts(users["admin"])
    for attempt in manage(wf, users[who], "bob").values():
        with pytest.raises(AccessDenied, match="needs admin"):
            attempt()
    assert wf.list_accounts(users["admin"]) == before
    assert not [a for a in wf.audit_trail(users["admin"], "user") if a.actor == who]
    assert wf.authenticate("bob", PASSWORD)[0].role is UserRole.AGENT


def test_nobody_signed_in_is_the_command_line_and_a_disabled_admin_is_nobody(wf, users):
    wf.add_user(users["admin"], "ada", PASSWORD, "admin")
    ada = wf.authenticate("ada", PASSWORD)[0]
    wf.disable_user(users["admin"], "ada")
    for attempt in manage(wf, ada, "bob").values():
        with pytest.raises(AccessDenied, match="disabled"):
            attempt()
    wf.change_role(None, "bob", "agent", team="green", agent_id="B1")  # the command line
    assert user_trail(wf, users, "bob")[-1] == ("system", "update", "team", "blue", "green")


def test_add_user_checks_its_input_and_audits_what_it_set(wf, users):
    admin = users["admin"]
    too_long = "x" * (LIMITS["team"] + 1)
    with pytest.raises(InvalidInput, match=f"user team is {len(too_long)} characters long"):
        wf.add_user(admin, "tom", PASSWORD, "inspector", team=too_long)
    with pytest.raises(QAError, match="needs an agent id"):
        wf.add_user(admin, "tom", PASSWORD, "agent")
    with pytest.raises(QAError, match="too short"):
        wf.add_user(admin, "tom", "short", "inspector")
    with pytest.raises(QAError, match="invalid username"):
        wf.add_user(admin, "tom smith", PASSWORD, "inspector")
    with pytest.raises(ValueError):
        wf.add_user(admin, "tom", PASSWORD, "superuser")
    assert "tom" not in {a.username for a in wf.list_accounts(admin)}

    wf.add_user(admin, "tom", PASSWORD, "agent", display_name="Tom T", team="red", agent_id="T1")
    tom = next(a for a in wf.list_accounts(admin) if a.username == "tom")
    assert (tom.display_name, tom.role, tom.team, tom.agent_id, tom.active) == (
        "Tom T",
        UserRole.AGENT,
        "red",
        "T1",
        True,
    )
    assert tom.created_at is not None and (tom.failed_logins, tom.locked) == (0, False)
    assert user_trail(wf, users, "tom") == [
        ("admin", "create", "role", None, "agent"),
        ("admin", "create", "team", None, "red"),
        ("admin", "create", "agent_id", None, "T1"),
    ]
    assert wf.authenticate("tom", PASSWORD)[0].username == "tom"


def test_disable_ends_sessions_and_enable_lets_the_account_back(wf, users):
    admin = users["admin"]
    _, token = wf.authenticate("bob", PASSWORD)
    wf.disable_user(admin, "bob")
    with pytest.raises(AccessDenied):
        wf.user_for_token(token)
    with pytest.raises(AccessDenied, match="disabled"):
        wf.authenticate("bob", PASSWORD)
    assert not next(a for a in wf.list_accounts(admin) if a.username == "bob").active

    wf.enable_user(admin, "bob")
    user, token = wf.authenticate("bob", PASSWORD)  # with the password it had
    assert wf.user_for_token(token).username == "bob"
    assert wf.list_calls(users["bob"]) == []  # a view a page held works again
    assert user_trail(wf, users, "bob")[-2:] == [
        ("admin", "disable", "active", "true", "false"),
        ("admin", "enable", "active", "false", "true"),
    ]
    with pytest.raises(NotFoundError, match="'ghost'"):
        wf.enable_user(admin, "ghost")


def test_reset_password_ends_sessions_and_is_audited_without_a_value(wf, users):
    admin = users["admin"]
    _, token = wf.authenticate("alice", PASSWORD)
    _, other_tab = wf.authenticate("alice", PASSWORD)
    _, bobs = wf.authenticate("bob", PASSWORD)
    with pytest.raises(QAError, match="too short"):
        wf.reset_password(admin, "alice", "short")
    with pytest.raises(InvalidInput, match="user password is"):
        wf.reset_password(admin, "alice", "x" * (LIMITS["password"] + 1))
    with pytest.raises(NotFoundError, match="'ghost'"):
        wf.reset_password(admin, "ghost", NEW_PASSWORD)
    assert wf.user_for_token(token).username == "alice"  # refusals changed nothing

    wf.reset_password(admin, "alice", NEW_PASSWORD)
    for ended in (token, other_tab):
        with pytest.raises(AccessDenied, match="sign in again"):
            wf.user_for_token(ended)
    assert wf.user_for_token(bobs).username == "bob"  # other accounts keep theirs
    with pytest.raises(AccessDenied, match="wrong password"):
        wf.authenticate("alice", PASSWORD)
    assert wf.authenticate("alice", NEW_PASSWORD)[0].username == "alice"

    assert ("admin", "password_reset", None, None, None) in user_trail(wf, users, "alice")
    for entry in wf.audit_trail(admin):
        for value in (entry.old_value, entry.new_value):
            assert not value or (NEW_PASSWORD not in value and "argon2" not in value)


def test_change_role_audits_old_and_new_and_holds_at_once(wf, users):
    admin, alice = users["admin"], users["alice"]
    with pytest.raises(QAError, match="needs an agent id"):
        wf.change_role(admin, "ivy", "agent")
    with pytest.raises(InvalidInput, match="user agent id is"):
        wf.change_role(admin, "ivy", "agent", agent_id="x" * (LIMITS["agent_id"] + 1))
    with pytest.raises(NotFoundError, match="'ghost'"):
        wf.change_role(admin, "ghost", "lead")
    with pytest.raises(AccessDenied):
        wf.list_users(alice)

    wf.change_role(admin, "alice", "lead", team="blue")
    assert {u.username for u in wf.list_users(alice)} >= {"bob"}  # the held view: now a lead
    assert user_trail(wf, users, "alice")[-3:] == [
        ("admin", "update", "role", "agent", "lead"),
        ("admin", "update", "team", "red", "blue"),
        ("admin", "update", "agent_id", "A1", None),
    ]
    wf.change_role(admin, "ivy", "agent", team="red", agent_id="I1")
    ivy = next(a for a in wf.list_accounts(admin) if a.username == "ivy")
    assert (ivy.role, ivy.team, ivy.agent_id) == (UserRole.AGENT, "red", "I1")
    n = len(user_trail(wf, users, "ivy"))
    wf.change_role(admin, "ivy", "agent", team="red", agent_id="I1")  # nothing changed
    assert len(user_trail(wf, users, "ivy")) == n


def test_an_active_admin_always_remains(wf, users):
    admin = users["admin"]
    with pytest.raises(QAError, match="your own account"):
        wf.disable_user(admin, "admin")
    with pytest.raises(QAError, match="your own account"):
        wf.change_role(admin, "admin", "lead")
    for attempt in (
        lambda: wf.disable_user(None, "admin"),
        lambda: wf.change_role(None, "admin", "manager"),
    ):
        with pytest.raises(QAError, match="last active admin"):
            attempt()

    ada = wf.add_user(admin, "ada", PASSWORD, "admin")
    wf.disable_user(admin, "ada")  # a disabled admin does not count
    with pytest.raises(QAError, match="last active admin"):
        wf.change_role(None, "admin", "manager")
    wf.enable_user(admin, "ada")
    wf.change_role(ada, "admin", "lead", team="red")  # another admin may demote
    with pytest.raises(AccessDenied, match="needs admin"):
        wf.enable_user(admin, "admin")  # at once: no longer an admin
    with pytest.raises(QAError, match="last active admin"):
        wf.disable_user(None, "ada")
    wf.change_role(None, "admin", "admin")
    wf.disable_user(admin, "ada")
    assert [
        a.username for a in wf.list_accounts(None) if a.role is UserRole.ADMIN and a.active
    ] == ["admin"]
    assert ("admin", "disable", "active", "true", "false") in user_trail(wf, users, "ada")


def test_list_accounts_shows_locked_accounts_and_unlock_clears_them(wf, users, clock):
    admin = users["admin"]
    policy = wf.login_policy
    for _ in range(policy.max_failures):
        clock.now += timedelta(seconds=1)
        with pytest.raises(AccessDenied):
            wf.authenticate("ivy", "not her password")
    ivy = next(a for a in wf.list_accounts(admin) if a.username == "ivy")
    assert (ivy.failed_logins, ivy.locked) == (policy.max_failures, True)
    wf.unlock_user(admin, "ivy")
    ivy = next(a for a in wf.list_accounts(admin) if a.username == "ivy")
    assert (ivy.failed_logins, ivy.locked) == (0, False)
    with pytest.raises(AccessDenied):
        wf.authenticate("ivy", "wrong again")
    clock.now += timedelta(seconds=policy.lockout_seconds)  # a quiet spell forgets it
    assert next(a for a in wf.list_accounts(admin) if a.username == "ivy").failed_logins == 0
