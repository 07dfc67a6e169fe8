"""In headless Chromium: a lead opens the Alerts page and sees their team's alert.

Runs on the demo, server and browser of tests/test_dashboard_browser.py (built again for
this module); the alert is logged the way the pipeline logs it, by the alert engine with
a rule that has no recipients, so nothing leaves the machine.
"""

from __future__ import annotations

import re

import pytest

from tests import test_dashboard_browser as e2e
from tests.fixtures_demo import Demo
from tests.test_dashboard_browser import SERVER_START_S, Ui

# the end-to-end module's fixtures, instantiated again for this module
browser, budget, demo, server, shots = e2e.browser, e2e.budget, e2e.demo, e2e.server, e2e.shots

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(SERVER_START_S + 600))]

RULES = """version: 1
rules:
  - id: review_all
    name: Every customer care call
    type: low_score
    below: 101
    teams: [customer_care]
"""


def _log_alerts(built: Demo, tmp_path) -> list[str]:
    """Alerts on the demo's customer care calls, in the database the server reads."""
    from qa.alerts.engine import AlertEngine
    from qa.alerts.rules import load_rules
    from qa.config import Settings
    from qa.results import latest_result
    from qa.store import open_store
    from qa.workflow import Workflow

    path = tmp_path / "alerts.yaml"
    path.write_text(RULES)
    store = open_store(Settings(store_url=built.settings_env["QA_STORE_URL"]))
    engine = AlertEngine(load_rules(path), Workflow(built.settings_env["QA_DATABASE_URL"]))
    logged = []
    for call_id in sorted(built.calls)[:6]:
        result = latest_result(store, call_id)
        if result is not None:
            logged += [d.hit.call_id for d in engine.process(result) if d.status == "logged"]
    return logged


def test_lead_opens_alerts_and_sees_a_row(browser, server, demo, shots, budget, tmp_path):
    logged = _log_alerts(demo, tmp_path)
    assert logged, "no customer care call among the first demo calls"
    lead = Ui(browser, server, shots, "lead-alerts", budget)
    lead.login(demo.users["lead"])
    lead.nav("Alerts")
    lead.expect_text(
        re.compile(rf"{len(logged)} alerts of team customer_care"), "the lead's alert count"
    )
    assert lead.metric("Log only") == str(len(logged))
    lead.expect_text(re.compile(rf"on call {re.escape(logged[-1])}"), "the newest alert")
    lead.check("alerts")
    lead.act("opening the call", lead.page.get_by_role("button", name="Open the call").click)
    lead.expect(lead.page.get_by_role("heading", name="Call review"), "the Call review page")
    lead.close()
