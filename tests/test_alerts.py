"""Alerts: each rule fires on the right calls only, delivery through apprise to a local HTTP
receiver (retries after a failure, once-only across evaluations and restarts), rule files
refused with file:line, recipients masked, the pipeline hook, the commands and the page."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from qa.alerts.engine import AlertDispatcher, AlertEngine
from qa.alerts.mask import mask_text, mask_url
from qa.alerts.rules import PACKAGE_RULES, AlertRulesError, check_text, load_rules
from qa.schema import (
    CallMeta,
    CallResult,
    CallScore,
    Flag,
    FlagCode,
    ItemOutcome,
    ItemResult,
    Role,
    SentimentSummary,
    Transcript,
    Utterance,
)
from qa.workflow import UserRole, Workflow
from qa.workflow.alerts import AlertStatus

MONDAY = datetime(2026, 11, 16, 10, tzinfo=UTC)
PASSWORD = "alert-password-1"


# --------------------------------------------------------------------------- receiver


class Receiver:
    """A local webhook: answers each POST with the next status of `statuses` (then 200)
    and keeps the JSON apprise sent."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.received: list[dict] = []
        self.answered: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.answered.append(status)
                if status == 200:
                    receiver.received.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def titles(self) -> list[str]:
        return [m["title"] for m in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


# --------------------------------------------------------------------------- calls


def result(
    call_id: str,
    *,
    team: str = "red",
    queue: str = "billing",
    total: float = 90.0,
    critical_fail: bool = False,
    customer_end: float | None = None,
    flags: tuple[FlagCode, ...] = (),
    said: tuple[tuple[Role, str], ...] = (),
    started: datetime = MONDAY,
) -> CallResult:
    items = [
        ItemResult(
            item_id="verify",
            name="Identity verification",
            outcome=ItemOutcome.FAIL if critical_fail else ItemOutcome.PASS,
            critical=True,
            points_possible=20,
        ),
        ItemResult(item_id="greet", name="Greeting", outcome=ItemOutcome.FAIL, points_possible=10),
    ]
    sentiment = (
        [SentimentSummary(role=Role.CUSTOMER, start=0.0, end=customer_end, mean=0.0, trend=0.0)]
        if customer_end is not None
        else []
    )
    utterances = [
        Utterance(speaker=role.value, role=role, start=float(i), end=i + 0.9, text=text)
        for i, (role, text) in enumerate(said)
    ]
    return CallResult(
        meta=CallMeta(call_id=call_id, agent_id="A1", team=team, queue=queue, started_at=started),
        transcript=Transcript(call_id=call_id, language="en", duration=60.0, utterances=utterances),
        score=CallScore(
            call_id=call_id,
            scorecard_id="card",
            scorecard_version="1",
            total=total,
            pass_mark=70,
            passed=total >= 70,
            items=items,
            flags=[Flag(code=c, reason=f"{c.value} reason") for c in flags],
            sentiment=sentiment,
        ),
        pipeline_version="p1",
        scorecard_version="1",
        created_at=started,
    )


def rules_file(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"""version: 1
recipients:
  "*": ["{url}"]
rules:
  - {{id: critical, type: critical_fail}}
  - {{id: unhappy, type: negative_ending, below: -0.4}}
  - id: legal
    type: phrase
    speaker: customer
    phrases: ["cancel my contract", "lawyer", "投诉"]
  - {{id: low, type: low_score, below: 50}}
  - {{id: spike, type: driver_spike, field: meta.queue, factor: 2, weeks: 2, min_calls: 3}}
{extra}"""
    )
    return path


@pytest.fixture
def wf(tmp_path) -> Workflow:
    return Workflow(
        f"sqlite:///{tmp_path / 'workflow.db'}",
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


def engine(path: Path, wf: Workflow, sleeps: list[float] | None = None) -> AlertEngine:
    return AlertEngine(
        load_rules(path),
        wf,
        attempts=3,
        backoff_seconds=0.5,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
    )


def fired(deliveries) -> set[tuple[str, str]]:
    return {(d.hit.rule_id, d.hit.call_id) for d in deliveries}


# --------------------------------------------------------------------------- rules


def test_each_rule_fires_on_the_right_calls_and_not_on_others(tmp_path, wf, receiver):
    eng = engine(rules_file(tmp_path, receiver.url), wf)
    cases = {
        "crit": result("crit", critical_fail=True),
        "sad": result("sad", customer_end=-0.7),
        "flagged": result("flagged", flags=(FlagCode.NEGATIVE_ENDING,)),
        "mildly": result("mildly", customer_end=-0.2),
        "lawyer": result("lawyer", said=((Role.CUSTOMER, "I will call my Lawyers today"),)),
        "zh": result("zh", said=((Role.CUSTOMER, "我要投诉你们"),)),
        "agent_said": result("agent_said", said=((Role.AGENT, "no need for a lawyer"),)),
        "flawyer": result("flawyer", said=((Role.CUSTOMER, "the flawyer thing"),)),
        "low": result("low", total=40.0),
        "clean": result("clean"),
    }
    got = set()
    for r in cases.values():
        got |= fired(eng.process(r))
    assert got == {
        ("critical", "crit"),
        ("unhappy", "sad"),
        ("unhappy", "flagged"),
        ("legal", "lawyer"),
        ("legal", "zh"),
        ("low", "low"),
    }
    titles = receiver.titles()
    assert len(titles) == 6
    assert any("crit" in t and "Critical" in t for t in titles)
    message = next(m["message"] for m in receiver.received if "lawyer" in m["title"])
    assert "customer said 'lawyer'" in message and "team red" in message


def test_driver_spike_fires_once_per_label_and_week(tmp_path, database_url, receiver):
    eng = engine(rules_file(tmp_path, receiver.url), Workflow(database_url))
    # one billing call a week for the two weeks before: a mean of 1
    for week in (1, 2):
        assert not eng.process(result(f"old{week}", started=MONDAY - timedelta(weeks=week)))
    outs = [eng.process(result(f"now{n}", started=MONDAY + timedelta(hours=n))) for n in range(4)]
    said = [[(d.hit.rule_id, d.hit.call_id, d.status) for d in o] for o in outs]
    # the third call tips it; the fourth is the same label and week: sent once
    assert said == [[], [], [("spike", "now2", "sent")], [("spike", "now3", "skipped")]]
    # another queue in the same week does not count toward billing
    assert not eng.process(result("other", queue="sales", started=MONDAY))
    [message] = receiver.received
    assert "meta.queue 'billing': 3 calls in the week of 2026-11-16" in message["message"]


def test_spike_without_the_label_is_skipped_with_a_note(tmp_path, wf, receiver, caplog):
    path = tmp_path / "a.yaml"
    path.write_text(
        "rules:\n  - {id: drv, type: driver_spike, min_calls: 1}\n"
        f'recipients: {{"*": ["{receiver.url}"]}}\n'
    )
    eng = engine(path, wf)
    with caplog.at_level(logging.INFO, logger="qa.alerts"):
        for n in range(3):
            assert eng.process(result(f"c{n}")) == []
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert notes == ["alert rule drv skipped: calls carry no 'driver' label (call c0)"]
    assert receiver.received == []


# --------------------------------------------------------------------------- delivery


def test_retry_after_a_receiver_failure(tmp_path, wf, receiver):
    receiver.statuses = [500]
    sleeps: list[float] = []
    eng = engine(rules_file(tmp_path, receiver.url), wf, sleeps)
    [d] = eng.process(result("crit", critical_fail=True))
    assert (d.status, d.attempts) == ("sent", 2)
    assert receiver.answered == [500, 200] and len(receiver.received) == 1
    assert sleeps == [0.5]
    manager = wf.add_user(None, "max", PASSWORD, UserRole.MANAGER)
    [row] = wf.alert_log(manager)
    assert row.status is AlertStatus.SENT and row.retried and row.attempts == 2


def test_failed_delivery_is_stored_masked_and_tried_again_later(tmp_path, wf, receiver):
    receiver.statuses = [500, 500, 500]
    url = f"json://qa:s3cretpw@127.0.0.1:{receiver.port}/hook?token=abcdef123456"
    sleeps: list[float] = []
    eng = engine(rules_file(tmp_path, url), wf, sleeps)
    [d] = eng.process(result("crit", critical_fail=True))
    assert (d.status, d.attempts) == ("failed", 3)
    assert sleeps == [0.5, 1.0]  # bounded, doubling
    manager = wf.add_user(None, "max", PASSWORD, UserRole.MANAGER)
    [row] = wf.alert_log(manager)
    assert row.status is AlertStatus.FAILED and row.error
    shown = json.dumps(row.model_dump(mode="json"))
    assert "s3cretpw" not in shown and "abcdef123456" not in shown
    assert row.recipients == [f"json://qa:****@127.0.0.1:{receiver.port}/hook?token=****"]
    # a later evaluation (the receiver is back) sends it, and only then
    [again] = eng.process(result("crit", critical_fail=True))
    assert again.status == "sent"
    [row] = wf.alert_log(manager)
    assert row.status is AlertStatus.SENT and row.attempts == 4
    assert len(receiver.received) == 1


def test_sent_once_across_evaluations_and_restarts(tmp_path, database_url, receiver):
    """On SQLite and Postgres: the claim in the workflow database is what makes it once."""
    wf = Workflow(database_url)
    path = rules_file(tmp_path, receiver.url)
    call = result("crit", critical_fail=True, total=30.0)
    assert fired(engine(path, wf).process(call)) == {("critical", "crit"), ("low", "crit")}
    again = engine(path, wf).process(call)  # a second evaluation, as after a restart
    assert {d.status for d in again} == {"skipped"}
    restarted = Workflow(wf.database_url)  # a new process on the same database
    assert {d.status for d in engine(path, restarted).process(call)} == {"skipped"}
    assert len(receiver.received) == 2


def test_bundled_rules_send_nothing_and_log_only(wf, monkeypatch):
    rules = load_rules(PACKAGE_RULES)
    assert rules.rules and all(not rules.recipients_for(r, "red") for r in rules.rules)

    def no_network(*args: object) -> str:
        raise AssertionError("nothing may be sent without a configured recipient")

    eng = AlertEngine(rules, wf, send=no_network)
    call = result("crit", critical_fail=True, said=((Role.CUSTOMER, "I want a lawyer"),))
    assert {(d.hit.rule_id, d.status) for d in eng.process(call)} == {
        ("critical_fail", "logged"),
        ("escalation_words", "logged"),
        ("recording_disclosure", "logged"),  # a 60 s call without the disclosure
    }


def test_dispatcher_never_fails_the_pipeline(tmp_path, wf, receiver, caplog):
    class Broken:
        def claim_alert(self, claim: object) -> int:
            raise RuntimeError("database gone")

    dispatcher = AlertDispatcher(
        AlertEngine(load_rules(rules_file(tmp_path, receiver.url)), Broken())
    )
    with caplog.at_level(logging.ERROR, logger="qa.alerts"):
        dispatcher.submit(result("crit", critical_fail=True))
        dispatcher.close(timeout=10)
    assert "alerts for call crit not evaluated" in caplog.text

    settings = type(
        "S",
        (),
        {
            "alert_rules": str(tmp_path / "missing.yaml"),
            "alert_attempts": 1,
            "alert_backoff_seconds": 0,
            "dashboard_url": None,
        },
    )()
    with caplog.at_level(logging.ERROR, logger="qa.alerts"):
        off = AlertDispatcher.from_settings(settings, wf)
    assert off.engine is None and "alerts are off" in caplog.text
    off.submit(result("crit", critical_fail=True))  # nothing happens, nothing raises
    off.close()


def test_publisher_hook_sends_after_the_workflow_sync(tmp_path, monkeypatch, receiver):
    from qa.config import Settings
    from workers.batch import Publisher

    settings = Settings(
        home=tmp_path / "home",
        alert_rules=str(rules_file(tmp_path, receiver.url)),
        alert_backoff_seconds=0,
        dashboard_url="http://qa.example:8501",
    )
    publisher = Publisher(settings)
    assert publisher.result(result("crit", critical_fail=True))
    publisher.close()
    assert publisher.workflow.claim_alert  # the same database the call was synced to
    [message] = receiver.received
    assert "http://qa.example:8501/review?call=crit" in message["message"]


# --------------------------------------------------------------------------- rule files


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "rules:\n  - {id: a, type: critical_fail}\n  - {id: b, type: shout}\n",
            3,
            "rules.1.type: unknown rule type 'shout'; use one of critical_fail",
        ),
        (
            "rules:\n  - id: a\n    type: low_score\n    below: 50\n    belo: 3\n",
            5,
            "rules.0.belo: unknown key 'belo'",
        ),
        ("rules:\n  - id: a\n    type: low_score\n", 2, "rules.0.below: Field required"),
        ("rules:\n  - {id: Bad-Id, type: critical_fail}\n", 2, "rules.0.id: String should match"),
        (
            "rules:\n  - {id: a, type: critical_fail}\n  - {id: a, type: low_score, below: 1}\n",
            3,
            "rules.1.id: 'a' is used by rules.0 too",
        ),
        ("rules:\n  - {id: a, type: phrase, phrases: []}\n", 2, "rules.0.phrases: List should"),
        (
            "recipients:\n  red: ['nope://x/y']\nrules: []\n",
            2,
            "recipients.red.0: nope://****/**** is not a recipient URL apprise understands",
        ),
        (
            "rules:\n  - {id: a, type: critical_fail, recipients: {red: ['slak://abc/def']}}\n",
            2,
            "rules.0.recipients.red.0: slak://",
        ),
        ("rules: [\n  {id: a\n", 3, "not valid YAML"),
        ("", 1, "the file is empty"),
        ("- a\n- b\n", 1, "alert rules are a mapping"),
        ("rules: []\nrules: []\n", 2, "duplicate key 'rules'"),
        ("version: 2\nrules: []\n", 1, "version: Input should be 1"),
        ("rules:\n  - {id: s, type: driver_spike, field: 'x y'}\n", 2, "rules.0.field: 'x y' is"),
    ],
)
def test_bad_rule_files_name_file_line_and_reason(text, line, reason):
    rules, problems = check_text(text, "site/alerts.yaml")
    assert rules is None
    assert any(p.line == line and reason in p.reason for p in problems), [str(p) for p in problems]
    assert all(str(p).startswith("site/alerts.yaml") for p in problems)


def test_load_rules_raises_with_the_first_problem_and_counts_the_rest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - {id: a, type: nope}\n  - {id: b}\n")
    with pytest.raises(AlertRulesError) as err:
        load_rules(path)
    assert str(err.value).startswith(f"{path}:2: rules.0.type: unknown rule type 'nope'")
    assert "(and 1 more problem;" in str(err.value) and len(err.value.problems) == 2
    path.write_bytes(b"rules: [\xff]\n")
    with pytest.raises(AlertRulesError, match="not UTF-8"):
        load_rules(path)


def test_masking_hides_passwords_and_tokens():
    cases = {
        "mailtos://qa:hunter22@mail.example.com?to=leads@example.com": (
            "mailtos://qa:****@mail.example.com?to=leads@example.com"
        ),
        "json://127.0.0.1:8080/": "json://127.0.0.1:8080/",
        "jsons://hooks.example.com/qa/a1b2c3d4e5f6?token=zz99": (
            "jsons://hooks.example.com/qa/****?token=****"
        ),
        "slack://T1JJ3T3L2/A4BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general": (
            "slack://****/****/****/#general"
        ),
        "dingtalk://0123456789abcdef/": "dingtalk://****/",
        "wecombot://botkey1234567/": "wecombot://****/",
        "workflows://prod-00.westus.logic.azure.com:443/abc123def/sigvalue99": (
            "workflows://****:443/****/****"
        ),
        "jsons://hooks.example.com/${HOOK_TOKEN}": "jsons://hooks.example.com/${HOOK_TOKEN}",
    }
    for url, masked in cases.items():
        assert mask_url(url) == masked, url
    text = "POST to json://u:pw123456@host/x failed; slack://AAA/BBB/CCC refused"
    assert mask_text(text) == "POST to json://u:****@host/x failed; slack://****/****/**** refused"


def test_secrets_from_the_environment_are_never_stored(tmp_path, wf, receiver, monkeypatch):
    monkeypatch.setenv("QA_TEST_HOOK_PATH", "tokenvalue42")
    path = rules_file(tmp_path, f"json://127.0.0.1:{receiver.port}/${{QA_TEST_HOOK_PATH}}")
    [d] = engine(path, wf).process(result("crit", critical_fail=True))
    assert d.status == "sent"
    manager = wf.add_user(None, "max", PASSWORD, UserRole.MANAGER)
    [row] = wf.alert_log(manager)
    assert row.recipients == [f"json://127.0.0.1:{receiver.port}/${{QA_TEST_HOOK_PATH}}"]
    monkeypatch.delenv("QA_TEST_HOOK_PATH")
    [d] = engine(path, wf).process(result("low", total=10.0))
    assert d.status == "failed" and d.error.endswith(
        "environment variable QA_TEST_HOOK_PATH is not set"
    )


# --------------------------------------------------------------------------- commands


@pytest.fixture
def home(tmp_path, monkeypatch):
    from qa.config import get_settings

    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("QA_DATABASE_URL", raising=False)
    monkeypatch.delenv("QA_STORE_URL", raising=False)
    monkeypatch.setenv("QA_ALERT_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_commands_test_and_run_on_stored_results(home, tmp_path, receiver):
    from qa.cli import app
    from qa.config import get_settings
    from qa.results import publish_result
    from qa.store import open_store

    store = open_store(get_settings())
    for r in (result("crit", critical_fail=True), result("clean"), result("low", total=10.0)):
        publish_result(store, r)
    path = rules_file(tmp_path, receiver.url)
    runner = CliRunner()
    tested = runner.invoke(app, ["alerts", "test", str(path)])
    assert tested.exit_code == 0, tested.output
    assert "2 alert(s) would fire: critical 1, low 1" in tested.output
    assert receiver.received == []  # a dry run sends nothing

    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: a, type: nope}\n")
    refused = runner.invoke(app, ["alerts", "test", str(bad)])
    assert refused.exit_code == 1 and f"{bad}:2: rules.0.type" in refused.output

    ran = runner.invoke(app, ["alerts", "run", "--rules", str(path), "--since", "2026-11-01"])
    assert ran.exit_code == 0, ran.output
    assert "alerts: 2 sent" in ran.output and len(receiver.received) == 2
    again = runner.invoke(app, ["alerts", "run", "--rules", str(path)])
    assert "alerts: 2 skipped" in again.output and len(receiver.received) == 2
    later = runner.invoke(app, ["alerts", "run", "--rules", str(path), "--since", "2027-01-01"])
    assert "nothing fired" in later.output


# --------------------------------------------------------------------------- page

APP_VIEWS = Path(__file__).resolve().parent.parent / "dashboard" / "views"


@pytest.fixture
def logged(tmp_path, monkeypatch, receiver):
    """Alerts of two teams in a workflow database the dashboard is pointed at."""
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'workflow.db'}"
    monkeypatch.setenv("QA_HOME", str(home))
    monkeypatch.setenv("QA_DATABASE_URL", url)
    monkeypatch.setenv("QA_STORE_URL", f"file://{home / 'store'}")
    wf = Workflow(url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    receiver.statuses = [500]
    path = rules_file(tmp_path, f"json://qa:pw9secret@127.0.0.1:{receiver.port}/")
    eng = engine(path, wf)
    eng.process(result("red1", team="red", critical_fail=True))
    eng.process(result("blue1", team="blue", total=20.0))
    users = {
        "lead": wf.add_user(None, "lea", PASSWORD, UserRole.LEAD, team="red"),
        "manager": wf.add_user(None, "max", PASSWORD, UserRole.MANAGER),
        "agent": wf.add_user(None, "ann", PASSWORD, UserRole.AGENT, team="red", agent_id="A1"),
    }
    return wf, users


def page(wf: Workflow, username: str):
    from streamlit.testing.v1 import AppTest

    _, token = wf.authenticate(username, PASSWORD)
    at = AppTest.from_file(str(APP_VIEWS / "alerts.py"), default_timeout=60)
    at.session_state["auth_token"] = token
    return at.run()


def test_alerts_page_for_lead_and_manager_and_refused_to_agents(logged):
    from dashboard.data import ROLE_PAGES

    assert [r for r, pages in ROLE_PAGES.items() if "alerts" in pages] == ["lead", "manager"]
    wf, users = logged
    with pytest.raises(Exception, match="may not read the alert log"):
        wf.alert_log(users["agent"])

    at = page(wf, "lea")
    assert not at.exception, [e.value for e in at.exception]
    [df] = [d.value for d in at.dataframe]
    assert list(df["call"]) == ["red1"] and list(df["team"]) == ["red"]
    row = df.iloc[0]
    assert row["status"] == "sent" and row["attempts"] == 2 and row["retried"]
    assert row["recipients"].startswith("json://qa:****@127.0.0.1:")
    assert "pw9secret" not in df.to_csv()
    assert row["review"] == "review?call=red1"
    at.button(key="alert_open").click().run()
    assert at.session_state["open_call"] == "red1"

    at = page(wf, "max")
    [df] = [d.value for d in at.dataframe]
    assert set(df["call"]) == {"red1", "blue1"}
    at.selectbox(key="alert_status").set_value("retried").run()
    [df] = [d.value for d in at.dataframe]
    assert list(df["call"]) == ["red1"]

    at = page(wf, "ann")
    assert not at.exception
    assert any("Not permitted" in e.value for e in at.error)
    assert not at.dataframe
