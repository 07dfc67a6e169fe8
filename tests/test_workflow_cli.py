"""`qa users add|list|disable` against an isolated database (SQLite and Postgres)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qa.cli import app
from qa.config import get_settings


@pytest.fixture
def home(tmp_path, monkeypatch, database_url):
    """SQLite: the default database under QA_HOME; Postgres: QA_DATABASE_URL names it."""
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    if database_url.startswith("sqlite"):
        monkeypatch.delenv("QA_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("QA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_users_commands(home, database_url):
    runner = CliRunner()
    added = runner.invoke(
        app,
        [
            "users",
            "add",
            "alice",
            "--role",
            "agent",
            "--team",
            "red",
            "--agent-id",
            "A1",
            "--password-stdin",
        ],
        input="a long password\n",
    )
    assert added.exit_code == 0, added.output
    prompted = runner.invoke(
        app, ["users", "add", "lea", "--role", "lead"], input="another password\nanother password\n"
    )
    assert prompted.exit_code == 0, prompted.output
    bad = runner.invoke(
        app, ["users", "add", "bob", "--role", "boss", "--password-stdin"], input="whatever long\n"
    )
    assert bad.exit_code != 0
    assert runner.invoke(app, ["users", "disable", "alice"]).exit_code == 0
    listed = runner.invoke(app, ["users", "list"])
    assert "alice" in listed.output and "lea" in listed.output
    active = runner.invoke(app, ["users", "list", "--active"])
    assert "alice" not in active.output and "lea" in active.output

    from qa.errors import AccessDenied
    from qa.workflow import open_workflow

    wf = open_workflow(get_settings())
    assert wf.database_url.split(":")[0] == database_url.split(":")[0]
    user, _ = wf.authenticate("lea", "another password")
    assert user.role.value == "lead"
    with pytest.raises(AccessDenied):
        wf.authenticate("alice", "a long password")
