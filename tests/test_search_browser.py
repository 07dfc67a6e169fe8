"""In headless Chromium: search a phrase said in a demo call, open the hit, and the review
workspace's player stands at that moment (inspector, then the call's agent).

Reuses the demo, `qa serve` server and browser of tests/test_dashboard_browser.py.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests.test_dashboard_browser import (  # noqa: F401 - fixtures used by name
    BUDGET_S,
    SERVER_START_S,
    Ui,
    browser,
    budget,
    demo,
    server,
    shots,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(BUDGET_S + SERVER_START_S + 480))]
CALL = "nw_no_disclosure_no_verification"  # "Does the Plus plan include roaming in Europe?"


def search_and_open(ui: Ui, username: str) -> None:
    page = ui.page
    ui.login(username)
    ui.nav("Search")
    with ui.waiting("the search box"):
        page.get_by_role("textbox", name=re.compile("Words or")).fill('"roaming in Europe"')
    ui.act("searching", page.get_by_role("button", name="Search", exact=True).click)
    ui.expect_text(re.compile(r"moments, newest first"), "the search results")
    ui.check("search")
    hits = page.get_by_role("button", name="Open", exact=True)
    assert hits.count() == 2  # the call and its earlier week's copy
    ui.act("opening the hit", hits.last.click)
    ui.expect(page.get_by_role("heading", name="Call review"), "the Call review page")
    ui.expect(page.locator(".ws audio"), "the workspace's player", state="attached")
    query = parse_qs(urlparse(page.url).query)
    assert query["call"] == [CALL]
    start = float(query["t"][0])
    assert start > 0
    with ui.waiting("the player to stand at the hit"):
        page.wait_for_function(
            "([a, t]) => Math.abs(a.currentTime - t) < 0.3",
            arg=[page.locator(".ws audio").first.element_handle(), start],
        )
    ui.expect(
        page.locator(".ws .current").filter(has_text="roaming in Europe"),
        "the transcript line of the hit, followed",
    )
    ui.check("search-opened")


def test_search_opens_the_call_at_the_moment(browser, server, demo, shots, budget):  # noqa: F811
    inspector = Ui(browser, server, shots, "search-inspector", budget)
    search_and_open(inspector, demo.users["inspector"])
    inspector.close()
    agent = Ui(browser, server, shots, "search-agent", budget)
    search_and_open(agent, demo.agents[demo.calls[CALL]])
    agent.close()
