"""The admin's accounts page, run in-process with streamlit.testing on SQLite and Postgres:
an admin adds a user, resets a password, changes a role and disables the account, and the
admin's menu holds only the pages the service lets an admin use."""

from __future__ import annotations

from pathlib import Path

import pytest
from argon2 import PasswordHasher
from streamlit.testing.v1 import AppTest

from dashboard import data
from qa.errors import AccessDenied
from qa.workflow import UserRole, Workflow

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PASSWORD = "correct horse battery"
RUN_S = 120  # ceiling of one script run on a busy machine


@pytest.fixture
def site(database_url, tmp_path, monkeypatch) -> Workflow:
    """A dashboard over a database with an admin and a lead, and nothing else."""
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QA_DATABASE_URL", database_url)
    wf = Workflow(
        database_url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    admin = wf.add_user(None, "admin", PASSWORD, "admin", display_name="Site Admin")
    wf.add_user(admin, "lea", PASSWORD, "lead", team="red")
    return wf


def signed_in(username: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_S).run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def account(wf: Workflow, username: str):
    return next(a for a in wf.list_accounts(None) if a.username == username)


def test_admin_pages_are_accounts_and_disputes_not_review_or_queue(site):
    assert data.ROLE_PAGES["admin"] == ["accounts", "disputes"]
    at = ok(signed_in("admin"))
    assert [t.value for t in at.title] == ["Accounts"]  # the admin's first page
    at.switch_page("views/disputes.py").run()
    ok(at)
    assert "Audit trail" in [s.value for s in at.subheader]  # admins read the audit trail
    for page in ("review", "queue"):  # not in the admin's navigation at all
        with pytest.raises(ValueError, match="Could not find a navigation page") as refused:
            at.switch_page(f"views/{page}.py")
        known = str(refused.value).split("Known pages: ", 1)[1]
        assert [Path(p.strip(" '[].")).stem for p in known.split(",")] == ["accounts", "disputes"]


def test_admin_adds_resets_changes_role_and_disables_through_the_page(site):
    at = ok(signed_in("admin"))
    table = at.dataframe[0].value
    assert list(table["username"]) == ["admin", "lea"]
    assert {"display_name", "role", "team", "agent_id", "active", "locked", "created_at"} <= set(
        table.columns
    )

    at.text_input(key="acc_new_username").input("nora")
    at.text_input(key="acc_new_display").input("Nora *N* ![x](http://host/a.png)")
    at.selectbox(key="acc_new_role").set_value("agent")
    at.text_input(key="acc_new_team").input("blue")
    at.text_input(key="acc_new_agent").input("N1")
    at.text_input(key="acc_new_password").input("initial-pass-1")
    at.button(key="acc_add").click().run()
    ok(at)
    assert any(s.value.startswith("Added nora") for s in at.success)
    nora = account(site, "nora")
    assert (nora.role, nora.team, nora.agent_id, nora.active) == (
        UserRole.AGENT,
        "blue",
        "N1",
        True,
    )
    assert "nora" in set(at.dataframe[0].value["username"])

    _, token = site.authenticate("nora", "initial-pass-1")
    at.selectbox(key="acc_pick").set_value("nora").run()
    ok(at)
    shown = next(m.value for m in at.markdown if "nora" in m.value)
    assert "\\!\\[x\\]\\(http" in shown and "\\*N\\*" in shown  # the name, not Markdown
    at.text_input(key="acc_pw:nora").input("second-pass-2")
    at.button(key="acc_pw_btn:nora").click().run()
    ok(at)
    with pytest.raises(AccessDenied):  # her session ended with the reset
        site.user_for_token(token)
    assert site.authenticate("nora", "second-pass-2")[0].username == "nora"

    at.selectbox(key="acc_role:nora").set_value("inspector")
    at.text_input(key="acc_agent:nora").input("")
    at.button(key="acc_role_btn:nora").click().run()
    ok(at)
    nora = account(site, "nora")
    assert (nora.role, nora.team, nora.agent_id) == (UserRole.INSPECTOR, "blue", None)

    at.button(key="acc_disable:nora").click().run()
    ok(at)
    assert not account(site, "nora").active
    assert "acc_enable:nora" in [b.key for b in at.button]
    with pytest.raises(AccessDenied, match="disabled"):
        site.authenticate("nora", "second-pass-2")

    admin = next(u for u in site.list_users(None) if u.username == "admin")
    actions = [(a.action, a.field) for a in site.audit_trail(admin, "user", "nora")]
    assert ("password_reset", None) in actions and ("disable", "active") in actions
    assert ("update", "role") in actions and ("create", "agent_id") in actions

    at.selectbox(key="acc_pick").set_value("admin").run()
    ok(at)
    assert "acc_disable:admin" not in [b.key for b in at.button]  # not their own account


def test_a_refused_change_is_a_message_not_a_traceback(site):
    at = ok(signed_in("admin"))
    at.text_input(key="acc_new_username").input("tom")
    at.selectbox(key="acc_new_role").set_value("agent")
    at.text_input(key="acc_new_password").input("initial-pass-1")
    at.button(key="acc_add").click().run()
    assert not at.exception
    assert any("needs an agent id" in e.value for e in at.error)
    assert "tom" not in {a.username for a in site.list_accounts(None)}
    at = ok(signed_in("admin"))
    at.selectbox(key="acc_role:admin").set_value("lead")
    at.button(key="acc_role_btn:admin").click().run()
    assert any("your own account" in e.value for e in at.error)
    assert account(site, "admin").role is UserRole.ADMIN
