"""End to end in headless Chromium: review, calibration, final score, dispute, trends.

The dashboard runs as a real `qa serve` (Streamlit) server on a free localhost port over a temp
store and SQLite database seeded with the scored demo calls. Every page visited is
screenshotted into the artefacts folder (QA_TEST_ARTEFACTS, default
.pytest_cache/dashboard-screens) and checked for a Streamlit exception box.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures_demo import DEMO_PASSWORD, Demo, build_demo, demo_settings, synth_cache

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CALL = "nw_no_disclosure_no_verification"  # auto-failed: no disclosure, no verification
OTHER_AGENTS_CALL = "nw_card_payment"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, request) -> Demo:

    home = tmp_path_factory.mktemp("dash-e2e") / "home"
    return build_demo(demo_settings(home), synth_cache(request, tmp_path_factory), weeks=2)


@pytest.fixture(scope="module")
def server(demo: Demo):
    port = _free_port()
    env = dict(os.environ, **demo.settings_env)
    log = open(Path(demo.settings_env["QA_HOME"]) / "streamlit.log", "w")  # noqa: SIM115
    qa = Path(sys.executable).parent / "qa"  # the `qa serve` command users run
    proc = subprocess.Popen([str(qa), "serve", "--port", str(port)], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"dashboard did not start: {log.name}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    out = Path(os.environ.get("QA_TEST_ARTEFACTS", REPO / ".pytest_cache" / "dashboard-screens"))
    out.mkdir(parents=True, exist_ok=True)
    return out


class Ui:
    """One person's browser tab on the dashboard."""

    def __init__(self, browser, url: str, shots: Path, who: str) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.url, self.shots, self.who = url, shots, who
        self.page.set_default_timeout(20_000)

    def settle(self) -> None:
        """Wait until the script run the last action started has finished."""
        page = self.page
        page.wait_for_timeout(250)
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
            " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText"
            ".includes('Running')", timeout=30_000)
        page.wait_for_timeout(150)

    def check(self, name: str) -> None:
        self.settle()
        self.page.screenshot(path=str(self.shots / f"{self.who}-{name}.png"), full_page=True)
        assert self.page.locator('[data-testid="stException"]').count() == 0, (
            self.page.locator('[data-testid="stException"]').first.inner_text())

    def login(self, username: str, path: str = "") -> None:
        page = self.page
        page.goto(f"{self.url}/{path}")
        page.get_by_role("textbox", name="Username").fill(username)
        page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("button", name="Log out").wait_for()
        self.settle()

    def nav(self, title: str) -> None:
        self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        self.page.get_by_role("heading", name=title).first.wait_for()
        self.settle()

    def text(self) -> str:
        return self.page.locator('[data-testid="stMain"]').inner_text()

    def choose(self, label: str, option: str) -> None:
        box = self.page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
        box.locator("input").click()
        self.page.keyboard.type(option)
        self.page.get_by_role("option").filter(has_text=option).first.click()
        self.settle()

    def metric(self, label: str) -> str:
        m = self.page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        return m.locator('[data-testid="stMetricValue"]').inner_text().strip()

    def close(self) -> None:
        self.context.close()


def review(ui: Ui, decision_for_first_fail: str) -> None:
    """Open the call, play an evidence span, change the first failed item and submit."""
    page = ui.page
    page.get_by_role("heading", name="Call review").wait_for()
    page.locator("audio").wait_for(state="attached")
    ui.check("review")
    assert page.locator("audio").count() == 1
    page.get_by_role("button", name=re.compile(r"^▶ 0:[0-5][1-9]")).first.click()
    ui.settle()
    # the rerun may start late on a busy machine: wait for its result, not a fixed time
    page.get_by_text(re.compile("Playing from")).first.wait_for(timeout=30_000)
    radios = page.locator('[data-testid="stRadio"]').filter(has_text="Your decision")
    first_fail = next(i for i in range(radios.count())
                      if "fail (confirm)" in radios.nth(i).inner_text())
    radios.nth(first_fail).get_by_text(decision_for_first_fail, exact=True).click()
    ui.settle()
    page.get_by_role("button", name="Submit review").click()
    page.get_by_text("Your review is submitted").wait_for()
    ui.check("review-submitted")


def test_review_calibrate_dispute_and_trend(browser, server, demo, shots):
    from qa.workflow import CallFilter, Workflow

    wf = Workflow(demo.settings_env["QA_DATABASE_URL"])
    manager, _ = wf.authenticate(demo.users["manager"], DEMO_PASSWORD)
    agent_id = demo.calls[CALL]
    assert demo.calls[OTHER_AGENTS_CALL] != agent_id

    # the manager's trend before anyone reviewed
    mgr = Ui(browser, server, shots, "manager")
    mgr.login(demo.users["manager"])
    mgr.nav("Trends")
    mgr.check("trends-before")
    before = mgr.metric("Average score")

    # two inspectors review the same flagged call differently (deep link through login)
    for key, decision in (("inspector", "pass"), ("inspector2", "na")):
        ui = Ui(browser, server, shots, key)
        ui.login(demo.users[key], f"review?call={CALL}")
        if key == "inspector":
            ui.nav("Review queue")
            ui.page.get_by_text("Assigned to me", exact=True).click()
            ui.check("queue")
            assert "calls" in ui.text()
            ui.login(demo.users[key], f"review?call={CALL}")
        review(ui, decision)
        ui.close()

    # the lead sees the disagreement and sets the final score
    lead = Ui(browser, server, shots, "lead")
    lead.login(demo.users["lead"])
    lead.nav("Calibration")
    lead.choose("Call", CALL)
    assert "Disagreement on" in lead.text()
    lead.check("calibration")
    final_form = lead.page.locator('[data-testid="stForm"]')
    final_form.get_by_role("spinbutton", name="Final total").fill("70")
    final_form.get_by_role("textbox", name="Note").fill("disclosure missing, verified later")
    lead.page.get_by_role("button", name="Set final score").click()
    lead.settle()
    assert wf.get_call(manager, CALL).final_total == 70.0

    # the agent: own calls only, a foreign call id is refused, disputes an item
    agent = Ui(browser, server, shots, "agent")
    agent.login(demo.agents[agent_id], f"review?call={OTHER_AGENTS_CALL}")
    assert "not found or not permitted" in agent.text()
    assert agent.page.locator("audio").count() == 0
    agent.check("foreign-call")
    agent.nav("My calls")
    own = [c for c, a in demo.calls.items() if a == agent_id]
    assert agent.metric("Calls") == str(len(own))
    agent.check("my-calls")
    agent.login(demo.agents[agent_id], f"review?call={CALL}")
    agent.page.get_by_role("heading", name="Call review").wait_for()
    agent.choose("Item", "Recording disclosure")
    agent.page.get_by_role("textbox", name="Why the score is wrong").fill(
        "I read the disclosure at 0:05")
    agent.page.get_by_role("button", name="Open dispute").click()
    agent.page.get_by_text("Dispute opened").wait_for()
    agent.check("dispute-opened")
    agent.close()

    # the lead overturns it
    lead.nav("Disputes")
    lead.page.get_by_text("overturn (change the item)").click()
    lead.page.get_by_role("textbox", name="Resolution").fill("Disclosure found at 0:05")
    lead.page.get_by_role("button", name="Resolve").click()
    lead.settle()
    lead.check("disputes")
    assert wf.list_disputes(manager, "overturned")
    lead.close()

    # the manager's trend now uses the final outcomes
    mgr.page.reload()
    mgr.login(demo.users["manager"])
    mgr.nav("Trends")
    mgr.check("trends-after")
    after = mgr.metric("Average score")
    rows = wf.final_outcomes(manager, CallFilter())
    assert after == f"{sum(r.total for r in rows) / len(rows):.1f}"
    assert after != before
    for title in ("Calibration", "Coaching", "Case library"):
        mgr.nav(title)
        mgr.check(re.sub(r"\W+", "-", title.lower()))
    mgr.close()
