"""Holes closed, each tried as the wrong user (SQLite and Postgres): login throttling and
lockout, length limits on what users type and upload, records naming users or calls that
do not exist, and user text shown on the dashboard as typed, never as Markdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from qa.errors import AccessDenied, MetadataError, QAError
from qa.workflow import (
    LIMITS,
    CallFilter,
    InvalidInput,
    LoginPolicy,
    LoginThrottled,
    NotFoundError,
    ReviewItemInput,
    Workflow,
)
from tests.test_workflow import ITEMS, PASSWORD, T0, Clock, sync

LOCKED = "account locked after 5 failed logins; ask an administrator"
IMAGE = "![x](http://example.com/a.png)"


def make_wf(url: str, clock: Clock, **policy: float) -> Workflow:
    return Workflow(
        url,
        session_ttl_minutes=60,
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
        login_policy=LoginPolicy(**policy),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wf(database_url, clock) -> Workflow:
    return make_wf(database_url, clock)


@pytest.fixture
def users(wf):
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    made = {"admin": admin}
    for name, role, agent in [
        ("alice", "agent", "A1"),
        ("bob", "agent", "B1"),
        ("ivy", "inspector", None),
        ("lea", "lead", None),
    ]:
        made[name] = wf.add_user(admin, name, PASSWORD, role, agent_id=agent)
    sync(wf, "c1", "A1", "red", T0, {"empathy": "fail"})
    sync(wf, "c2", "B1", "blue", T0)
    return made


def fail(wf: Workflow, username: str, address: str | None = None) -> AccessDenied:
    with pytest.raises(AccessDenied) as err:
        wf.authenticate(username, "not the password", address)
    return err.value


def lock_out(wf: Workflow, username: str) -> None:
    """Five failures, a minute apart on the service's clock so no wait refuses one."""
    clock = Clock()
    clock.now = datetime.now(UTC)
    wf._clock = clock
    for _ in range(5):
        fail(wf, username)
        clock.now += timedelta(seconds=60)


# --------------------------------------------------------------------------- 1. throttling


def test_failures_lock_the_account_until_an_admin_unlocks_it(wf, users, clock):
    """Waits grow before the lock; locked, even the right password is refused, on every
    process; a lead may not unlock, an admin may (audited), and the lock then lifts."""
    assert "wrong password" in str(fail(wf, "alice"))
    assert "wrong password" in str(fail(wf, "alice"))  # the first failure costs no wait
    with pytest.raises(LoginThrottled, match="wait 1 s"):
        wf.authenticate("alice", PASSWORD)  # refused before the password is checked
    for wait in (1, 2):
        clock.now += timedelta(seconds=wait)
        fail(wf, "alice")
    clock.now += timedelta(seconds=3)
    with pytest.raises(LoginThrottled, match="wait 1 s"):  # 4 s after the 4th failure
        wf.authenticate("alice", PASSWORD)
    clock.now += timedelta(seconds=1)
    assert LOCKED in str(fail(wf, "alice"))  # the 5th failure says it locked
    with pytest.raises(LoginThrottled, match=LOCKED):
        wf.authenticate("alice", PASSWORD)
    other_process = make_wf(wf.database_url, clock)  # kept in the database, not a process
    with pytest.raises(LoginThrottled, match=LOCKED):
        other_process.authenticate("alice", PASSWORD)
    assert wf.authenticate("bob", PASSWORD)[0].username == "bob"  # others are not affected

    with pytest.raises(AccessDenied, match="needs admin"):
        wf.unlock_user(users["lea"], "alice")
    with pytest.raises(AccessDenied):
        wf.unlock_user(users["alice"], "alice")
    with pytest.raises(NotFoundError, match="'ghost'"):
        wf.unlock_user(users["admin"], "ghost")
    wf.unlock_user(users["admin"], "alice")
    entry = wf.audit_trail(users["lea"], "user", "alice")[0]
    assert (entry.actor, entry.action, entry.old_value) == ("admin", "unlock", "5")
    assert wf.authenticate("alice", PASSWORD)[0].username == "alice"


def test_the_lock_lifts_after_its_time_and_success_resets_the_count(wf, users, clock):
    for _ in range(5):
        fail(wf, "ivy")
        clock.now += timedelta(seconds=10)
    with pytest.raises(LoginThrottled, match=LOCKED):
        wf.authenticate("ivy", PASSWORD)
    clock.now += timedelta(seconds=900)
    wf.authenticate("ivy", PASSWORD)
    for _ in range(4):
        fail(wf, "ivy")
        clock.now += timedelta(seconds=10)
    wf.authenticate("ivy", PASSWORD)  # success: the count starts again
    fail(wf, "ivy")
    assert wf.authenticate("ivy", PASSWORD)[0].username == "ivy"


def test_unknown_usernames_lock_alike_and_addresses_are_throttled(database_url, clock):
    wf = make_wf(database_url, clock, max_address_failures=3)
    for name in ("ann", "ben"):
        wf.add_user(None, name, PASSWORD, "inspector")
    for _ in range(5):  # an unknown name answers as a real one would: no user enumeration
        fail(wf, "nobody")
        clock.now += timedelta(seconds=10)
    with pytest.raises(LoginThrottled, match=LOCKED):
        wf.authenticate("nobody", PASSWORD)
    # password spraying from one address: three names, one guess each, then it is refused
    for name in ("ann", "ben", "carl"):
        fail(wf, name, "10.0.0.9")
    with pytest.raises(LoginThrottled, match="from this address"):
        wf.authenticate("ann", PASSWORD, "10.0.0.9")
    assert wf.authenticate("ann", PASSWORD, "10.0.0.7")[0].username == "ann"
    clock.now += timedelta(seconds=900)
    assert wf.authenticate("ben", PASSWORD, "10.0.0.9")[0].username == "ben"


def test_the_limits_come_from_settings(tmp_path, monkeypatch, database_url):
    from qa.config import Settings
    from qa.workflow import open_workflow

    monkeypatch.setenv("QA_LOGIN_MAX_FAILURES", "2")
    monkeypatch.setenv("QA_LOGIN_LOCKOUT_SECONDS", "60")
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    wf = open_workflow(settings)
    assert wf.login_policy == LoginPolicy(max_failures=2, lockout_seconds=60)
    wf.add_user(None, "dora", PASSWORD, "inspector")
    fail(wf, "dora")
    assert "locked after 2 failed logins" in str(fail(wf, "dora"))
    with pytest.raises(LoginThrottled, match="try again in 1 minute"):
        wf.authenticate("dora", PASSWORD)


def test_cli_unlocks_an_account(tmp_path, monkeypatch, database_url):
    from typer.testing import CliRunner

    from qa.cli import app
    from qa.config import get_settings
    from qa.workflow import open_workflow

    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QA_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        wf = open_workflow(get_settings())
        wf.add_user(None, "eve", PASSWORD, "inspector")
        lock_out(wf, "eve")
        runner = CliRunner()
        unknown = runner.invoke(app, ["users", "unlock", "ghost"])
        assert unknown.exit_code != 0
        done = runner.invoke(app, ["users", "unlock", "eve"])
        assert done.exit_code == 0, done.output
        assert "eve unlocked" in done.output
        assert wf.authenticate("eve", PASSWORD)[0].username == "eve"
    finally:
        get_settings.cache_clear()


# --------------------------------------------------------------------------- 2. lengths


# --------------------------------------------------------------------------- blind review


def test_inspectors_are_blind_to_the_lead_decision_until_their_own_review(wf, users):
    lea, ivy, alice = users["lea"], users["ivy"], users["alice"]
    ian = wf.add_user(users["admin"], "ian", PASSWORD, "inspector")
    wf.set_final_score(
        lea, "c1", [ReviewItemInput(item_id="greet", outcome="fail")], note="lead's reasons"
    )
    d = wf.open_dispute(alice, "c1", "empathy", "I apologised")
    for seen in (wf.get_call(ivy, "c1"), wf.list_calls(ivy, CallFilter(team="red"))[0]):
        assert (seen.final_total, seen.final_passed, seen.final_note, seen.final_by) == (
            None,
            None,
            None,
            None,
        )
        assert all(i.final_outcome is None and i.final_points is None for i in seen.items)
        assert seen.total == seen.auto_total
    assert wf.list_disputes(ivy) == []
    wf.save_review(
        ivy, "c1", [ReviewItemInput(item_id=i, outcome="pass") for i, _, _ in ITEMS], submit=True
    )
    after = wf.get_call(ivy, "c1")
    assert after.final_note == "lead's reasons" and after.final_total is not None
    assert [x.id for x in wf.list_disputes(ivy)] == [d.id]
    assert wf.get_call(ian, "c1").final_total is None  # still blind: no review of his own
    assert wf.get_call(lea, "c1").final_note == "lead's reasons"


def too_long(limit: str) -> str:
    return "x" * (LIMITS[limit] + 1)


def test_a_200000_character_dispute_is_refused_and_nothing_is_written(wf, users):
    alice, lea = users["alice"], users["lea"]
    with pytest.raises(InvalidInput, match="dispute reason is 200,000 characters long; at most"):
        wf.open_dispute(alice, "c1", "empathy", "x" * 200_000)
    assert wf.list_disputes(lea) == []
    fits = "x" * LIMITS["dispute_reason"]
    assert wf.open_dispute(alice, "c1", "empathy", fits).reason == fits


def test_every_free_text_field_has_a_limit_that_names_it(wf, users):
    admin, lea, ivy = users["admin"], users["lea"], users["ivy"]
    review = [ReviewItemInput(item_id=i, outcome="pass") for i, _, _ in ITEMS]
    coaching = wf.create_coaching(lea, "A1", ["c1"], ["empathy"], "listen").id
    before = len(wf.audit_trail(lea))
    cases = [
        ("user username", lambda: wf.add_user(admin, too_long("username"), PASSWORD, "lead")),
        ("user password", lambda: wf.add_user(admin, "pat", too_long("password"), "lead")),
        (
            "user display name",
            lambda: wf.add_user(
                admin, "pat", PASSWORD, "lead", display_name=too_long("display_name")
            ),
        ),
        ("user team", lambda: wf.add_user(admin, "pat", PASSWORD, "lead", team=too_long("team"))),
        (
            "user agent id",
            lambda: wf.add_user(admin, "pat", PASSWORD, "agent", agent_id=too_long("agent_id")),
        ),
        (
            "review comment",
            lambda: wf.save_review(ivy, "c1", review, comment=too_long("review_comment")),
        ),
        (
            "review item comment",
            lambda: wf.save_review(
                ivy,
                "c1",
                [
                    ReviewItemInput(
                        item_id="greet", outcome="pass", comment=too_long("item_comment")
                    )
                ],
            ),
        ),
        ("change reason", lambda: wf.reopen_review(lea, 1, too_long("reason"))),
        ("final score note", lambda: wf.set_final_score(lea, "c1", note=too_long("final_note"))),
        (
            "dispute resolution",
            lambda: wf.resolve_dispute(lea, 1, "upheld", too_long("resolution")),
        ),
        (
            "coaching notes",
            lambda: wf.create_coaching(lea, "A1", ["c1"], [], too_long("coaching_notes")),
        ),
        ("coaching agent id", lambda: wf.create_coaching(lea, too_long("agent_id"))),
        (
            "coaching item ids",
            lambda: wf.create_coaching(lea, "A1", [], [f"i{n}" for n in range(201)]),
        ),
        (
            "coaching follow up notes",
            lambda: wf.add_follow_up(lea, coaching, too_long("follow_up_notes")),
        ),
        ("cases.title", lambda: wf.add_case(ivy, "c1", "good_example", too_long("case_title"))),
        ("case notes", lambda: wf.add_case(ivy, "c1", "good_example", "t", too_long("case_notes"))),
        ("case tags.0", lambda: wf.add_case(ivy, "c1", "good_example", "t", "", [too_long("tag")])),
        (
            "case tags",
            lambda: wf.add_case(ivy, "c1", "good_example", "t", "", [f"t{n}" for n in range(31)]),
        ),
        ("case search text", lambda: wf.search_cases(ivy, too_long("search"))),
        ("assignment reviewer", lambda: wf.assign(lea, "c1", too_long("username"))),
        ("assignment reviewer", lambda: wf.unassign(lea, "c1", too_long("username"))),
        ("change reason", lambda: wf.swap_roles(ivy, "c1", None, None, too_long("reason"))),
    ]
    for field, attempt in cases:
        with pytest.raises(QAError, match=rf"^{field} (is|has) .*at most"):  # not pydantic's
            attempt()
    assert len(wf.audit_trail(lea)) == before  # nothing of any of them was written
    with pytest.raises(AccessDenied, match="password is 1,025 characters long; at most 1,024"):
        wf.authenticate("alice", too_long("password"))
    with pytest.raises(AccessDenied, match="username is 65 characters"):
        wf.authenticate(too_long("username"), PASSWORD)


def test_uploads_over_their_size_are_refused_with_the_limit(tmp_path):
    from qa.config import Settings
    from qa.ingest import ingest
    from qa.store import LocalStore

    settings = Settings(home=tmp_path / "home", max_audio_mb=0.01, max_metadata_mb=0.01)
    store = LocalStore(tmp_path / "store")
    big = tmp_path / "big.wav"
    big.write_bytes(b"RIFF" + b"\0" * 20_000)
    report = ingest(store, [big], None, settings)
    assert not report.ingested
    assert "recording is 0.0 MB; at most 0.0 MB" in report.rejected[0].reason
    assert "QA_MAX_AUDIO_MB" in report.rejected[0].reason
    meta = tmp_path / "meta.csv"
    meta.write_text("file,call_id\n" + "big.wav,c1\n" * 2_000)
    with pytest.raises(MetadataError, match="metadata file is .* at most .*QA_MAX_METADATA_MB"):
        ingest(store, [big], meta, settings)


# --------------------------------------------------------------------------- 3. existence


def test_records_naming_missing_users_or_calls_are_refused(wf, users):
    admin, alice, lea, ivy = users["admin"], users["alice"], users["lea"], users["ivy"]
    review = [ReviewItemInput(item_id=i, outcome="pass") for i, _, _ in ITEMS]
    attempts = [
        ("'Z9'", lambda: wf.create_coaching(lea, "Z9", [], [], "no such agent")),
        ("'Z9'", lambda: wf.create_coaching(ivy, "Z9")),
        ("'nope'", lambda: wf.create_coaching(lea, "A1", ["c1"], ["nope"], "no such item")),
        ("'nope'", lambda: wf.create_coaching(lea, "A1", [], ["nope"])),
        ("'c404'", lambda: wf.create_coaching(lea, "A1", ["c404"])),
        ("'ghost'", lambda: wf.assign(lea, "c1", "ghost")),
        ("'ghost'", lambda: wf.unassign(lea, "c1", "ghost")),
        ("'ghost'", lambda: wf.sample_for_review(lea, 1, assign_to="ghost")),
        ("'c404'", lambda: wf.assign(lea, "c404", "ivy")),
        ("'c404'", lambda: wf.save_review(ivy, "c404", review)),
        ("'c404'", lambda: wf.set_final_score(lea, "c404")),
        ("'c404'", lambda: wf.open_dispute(alice, "c404", "greet", "why")),
        ("'nope'", lambda: wf.open_dispute(alice, "c1", "nope", "why")),
        ("'c404'", lambda: wf.add_case(ivy, "c404", "good_example", "title")),
        ("'c404'", lambda: wf.swap_roles(ivy, "c404", None, None)),
        ("'c404'", lambda: wf.calibration(lea, "c404")),
        ("'c404'", lambda: wf.reviews_for_call(lea, "c404")),
        ("'c404'", lambda: wf.acknowledge_score(alice, "c404")),
        ("404", lambda: wf.reopen_review(lea, 404)),
        ("404", lambda: wf.resolve_dispute(lea, 404, "upheld", "fine")),
        ("404", lambda: wf.add_follow_up(lea, 404, "fine")),
        ("404", lambda: wf.coaching_effect(lea, 404)),
        ("'ghost'", lambda: wf.disable_user(admin, "ghost")),
        ("'ghost'", lambda: wf.unlock_user(admin, "ghost")),
    ]
    for name, attempt in attempts:
        with pytest.raises(QAError, match=name):
            attempt()
    assert wf.list_coaching(lea) == []
    assert wf.search_cases(ivy) == []
    assert wf.list_disputes(lea) == []
    assert wf.get_call(lea, "c1").assigned_reviewers == []
    assert not [a for a in wf.audit_trail(lea) if a.action == "sample"]
    # an agent id of a non-agent account does not make an agent
    wf.add_user(admin, "insp", PASSWORD, "inspector", agent_id="Q1")
    with pytest.raises(NotFoundError, match="no agent account has agent id 'Q1'"):
        wf.create_coaching(lea, "Q1")
    assert wf.create_coaching(lea, "A1", [], ["empathy"]).item_ids == ["empathy"]


# --------------------------------------------------------------------------- 4. dashboard

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
MARKUP = ("markdown", "caption", "error", "warning", "info", "success", "title", "subheader")


@pytest.fixture
def site(database_url, tmp_path, monkeypatch):
    """A dashboard over a small database whose users wrote Markdown everywhere they could."""
    home = tmp_path / "home"
    monkeypatch.setenv("QA_HOME", str(home))
    monkeypatch.setenv("QA_DATABASE_URL", database_url)
    wf = Workflow(database_url)
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    alice = wf.add_user(admin, "alice", PASSWORD, "agent", agent_id="A1")
    lea = wf.add_user(admin, "lea", PASSWORD, "lead")
    sync(wf, "c1", "A1", "red", T0, {"empathy": "fail"})
    coaching = wf.create_coaching(lea, "A1", ["c1"], ["empathy"], f"notes {IMAGE}")
    wf.add_follow_up(lea, coaching.id, f"follow-up {IMAGE}")
    wf.open_dispute(alice, "c1", "empathy", f"reason {IMAGE}")
    wf.add_case(lea, "c1", "good_example", f"title {IMAGE}", f"case notes {IMAGE}", ["tag![y]"])
    return wf


def signed_in(username: str, page: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def assert_plain(at, *expected: str) -> None:
    """No Markdown element carries the image syntax; the text is shown literally."""
    for kind in MARKUP:
        for element in getattr(at, kind):
            assert "![" not in str(element.value), (kind, element.value)
            assert "](http" not in str(element.value), (kind, element.value)
    shown = [str(t.value) for t in at.text]
    for text in expected:
        assert text in shown, (text, shown)


def test_user_text_renders_as_literal_text_not_markdown(site):
    assert_plain(signed_in("alice", "my_calls"), f"notes {IMAGE}", f"follow-up {IMAGE}")
    assert_plain(signed_in("alice", "coaching"), f"notes {IMAGE}")
    lead = signed_in("lea", "disputes")
    assert_plain(lead, f"reason {IMAGE}")
    lead.switch_page("views/cases.py").run()
    assert_plain(lead, f"case notes {IMAGE}")
    title = next(m.value for m in lead.markdown if "title" in m.value)
    assert "tag\\!\\[y\\]" in title and "\\!\\[x\\]\\(http" in title


def test_login_page_says_the_account_is_locked(site):
    from streamlit.testing.v1 import AppTest

    lock_out(site, "lea")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.text_input(key="login_username").input("lea")
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert not at.exception
    assert any(LOCKED in e.value for e in at.error), [e.value for e in at.error]
