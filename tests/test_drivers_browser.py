"""In headless Chromium: a lead opens Drivers, renames one, and the manager sees the new name.

Reuses the demo, server and browser of tests/test_dashboard_browser.py; the drivers are
built from the demo's stored calls as `qa drivers build` builds them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_demo import DEMO_PASSWORD, demo_settings
from tests.test_dashboard_browser import (  # noqa: F401  (fixtures)
    BUDGET_S,
    SERVER_START_S,
    Budget,
    Ui,
    browser,
    demo,
    server,
    shots,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(BUDGET_S + SERVER_START_S + 480))]
NEW_NAME = "Bills and charges"


@pytest.fixture(scope="module")
def drivers(demo):  # noqa: F811
    from qa.driver_jobs import build
    from qa.store import open_store
    from qa.workflow import Workflow

    settings = demo_settings(Path(demo.settings_env["QA_HOME"]))
    wf = Workflow(settings.resolved_database_url)
    report = build(settings, wf, open_store(settings))
    assert report.drivers, report
    return wf


def test_lead_renames_a_driver_and_the_manager_sees_it(browser, server, demo, shots, drivers):  # noqa: F811
    budget = Budget()
    lead = Ui(browser, server, shots, "drivers-lead", budget)
    lead.login(demo.users["lead"])
    lead.nav("Drivers")
    lead.check("drivers")
    page = lead.page
    name_box = page.get_by_role("textbox", name="Name")
    lead.expect(name_box, "the driver's name box")
    lead.act("typing the new name", lambda: (name_box.fill(NEW_NAME), name_box.press("Enter")))
    lead.act("renaming the driver", page.get_by_role("button", name="Rename").click)
    lead.expect_text(f"Renamed to {NEW_NAME}.")
    lead.check("drivers-renamed")
    lead.close()

    manager = Ui(browser, server, shots, "drivers-manager", budget)
    manager.login(demo.users["manager"])
    manager.nav("Drivers")
    manager.expect_text(NEW_NAME, "the renamed driver on the manager's page")
    assert manager.page.get_by_role("button", name="Rename").count() == 0
    manager.check("drivers-manager")
    manager.close()
    mgr, _ = drivers.authenticate(demo.users["manager"], DEMO_PASSWORD)
    assert NEW_NAME in {d.name for d in drivers.list_drivers(mgr)}
