"""End to end in headless Chromium: review, calibration, final score, dispute, trends.

The dashboard runs as a real `qa serve` (Streamlit) server on a free localhost port over a temp
store and SQLite database seeded with the scored demo calls (the workflow's Postgres runs are
in the in-process page tests; a second browser run would double the slowest test). Every page
visited is screenshotted into the artefacts folder (QA_TEST_ARTEFACTS, default
.pytest_cache/dashboard-screens) and checked for a Streamlit exception box.

Waits are for events, never for fixed times: the element or text a step needs, or the end of
the script run an action started, which the test reads from the app's own websocket messages
(a run's `script_finished`). On a busy machine a rerun can stall for a long time, so each wait
may take up to WAIT_S, all of them together at most BUDGET_S; a wait that runs out fails with
what it was waiting for and a screenshot.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_demo import DEMO_PASSWORD, Demo, build_demo, demo_settings, synth_cache

WAIT_S = 120.0  # one wait: an element, a text, the end of a run
BUDGET_S = 1200.0  # every wait of the test together
SERVER_START_S = 120.0
# above the waits' budget plus the server start and the demo build (speech synthesis on a
# cold cache), so a stalled step reports what it waited for instead of being killed
pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(BUDGET_S + SERVER_START_S + 480))]

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
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
    proc = subprocess.Popen(
        [str(qa), "serve", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            tail = Path(log.name).read_text()[-2000:]
            why = (
                f"exited with {proc.returncode}"
                if proc.poll() is not None
                else f"gave no healthy answer on {url}/_stcore/health in {SERVER_START_S:.0f} s"
            )
            pytest.fail(f"`qa serve` {why}; its log ({log.name}) ends:\n{tail}")
        time.sleep(0.3)  # polling the health endpoint, not a wait for the test's steps
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


# what a select box shows: its text and its input's value (where the chosen option may be)
SHOWN_JS = "el => [el.innerText, ...[...el.querySelectorAll('input')].map(i => i.value)].join(' ')"


class Budget:
    """What is left of BUDGET_S; each wait gets WAIT_S or what is left, whichever is less."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + BUDGET_S

    def ceiling_s(self, what: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"the test's {BUDGET_S:.0f} s for waiting are spent before {what}")
        return min(WAIT_S, left)


class Runs:
    """Script runs of one tab, counted from the app's websocket: Streamlit sends
    `new_session` when a run starts and `script_finished` when it ends."""

    def __init__(self) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self._msg = ForwardMsg
        self.started = self.finished = 0

    def watch(self, ws: Any) -> None:
        """A new connection (the page was loaded again): runs of the old one never end."""
        self.finished = self.started
        ws.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, str) or len(payload) > 4096:  # run events are small
            return
        try:
            kind = self._msg.FromString(payload).WhichOneof("type")
        except Exception:  # not a message of this kind
            return
        if kind == "new_session":
            self.started += 1
        elif kind == "script_finished":
            self.finished += 1


class Ui:
    """One person's browser tab on the dashboard."""

    def __init__(self, browser, url: str, shots: Path, who: str, budget: Budget) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.url, self.shots, self.who, self.budget = url, shots, who, budget
        self.runs = Runs()
        self.page.on("websocket", self.runs.watch)
        self.page.set_default_timeout(WAIT_S * 1000)

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[float]:
        """Bound the Playwright calls inside by this wait's ceiling; a timeout fails the
        test with `what` it was waiting for, the page's address and a screenshot."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        ceiling = self.budget.ceiling_s(what)
        self.page.set_default_timeout(ceiling * 1000)
        try:
            yield ceiling
        except PlaywrightTimeout as exc:
            shot = self.shots / f"{self.who}-timed-out.png"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=str(shot), full_page=True)
            detail = str(exc).splitlines()[0]
            pytest.fail(
                f"{self.who}: waited {ceiling:.0f} s for {what} on {self.page.url} "
                f"(screenshot {shot}): {detail}"
            )

    def expect(self, locator: Any, what: str, state: str = "visible") -> None:
        """Wait for an element (the first match) the next step needs."""
        with self.waiting(what):
            locator.first.wait_for(state=state)

    def expect_text(self, text: str | re.Pattern[str], what: str | None = None) -> None:
        self.expect(self.page.get_by_text(text), what or f"the text {text!r}")

    def _until(self, done: Callable[[], bool], what: str) -> None:
        """Wait until `done()`; the counters move only while Playwright delivers events."""
        with self.waiting(what) as ceiling:
            deadline = time.monotonic() + ceiling
            while not done():
                if time.monotonic() > deadline:
                    raise_timeout(ceiling)
                self.page.wait_for_timeout(50)  # lets Playwright deliver websocket frames

    def idle(self, what: str) -> None:
        """Wait until no script run is in progress (every started run has finished)."""
        self._until(
            lambda: self.runs.started > 0 and self.runs.finished >= self.runs.started,
            f"the dashboard to finish its script run ({what})",
        )

    def act(self, what: str, action: Callable[[], None]) -> None:
        """Do something that starts a script run and wait until that run has finished."""
        started = self.runs.started
        with self.waiting(what):
            action()
        self._until(lambda: self.runs.started > started, f"a script run to start after {what}")
        self.idle(f"after {what}")

    def check(self, name: str) -> None:
        self.idle(f"before the screenshot {name!r}")
        self.page.screenshot(path=str(self.shots / f"{self.who}-{name}.png"), full_page=True)
        assert self.page.locator('[data-testid="stException"]').count() == 0, self.page.locator(
            '[data-testid="stException"]'
        ).first.inner_text()

    def login(self, username: str, path: str = "") -> None:
        page = self.page
        # a fresh sign-in: without this the session cookie would sign the page in at once
        self.context.clear_cookies()
        with self.waiting(f"the page {self.url}/{path} to load"):
            page.goto(f"{self.url}/{path}")
        self.expect(page.get_by_role("textbox", name="Username"), "the login form")
        with self.waiting("the login form to take the username and password"):
            page.get_by_role("textbox", name="Username").fill(username)
            page.get_by_role("textbox", name="Password").fill(DEMO_PASSWORD)
        self.act(f"logging in as {username}", page.get_by_role("button", name="Log in").click)
        self.expect(
            page.get_by_role("button", name="Log out"),
            f"the signed-in page of {username} (its Log out button)",
        )
        self.idle(f"after logging in as {username}")

    def nav(self, title: str) -> None:
        link = self.page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True)
        self.act(f"opening the page {title!r} from the sidebar", link.click)
        self.expect(self.page.get_by_role("heading", name=title), f"the heading {title!r}")

    def text(self) -> str:
        with self.waiting("the page's main area"):
            return self.page.locator('[data-testid="stMain"]').inner_text()

    def choose(self, label: str, option: str, *, in_form: bool = False) -> None:
        """Pick the option containing `option` (any case, as Playwright's has_text); outside
        a form a changed choice starts a run, waited for."""
        box = self.page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first
        with self.waiting(f"the select box {label!r}"):
            if option.casefold() in box.evaluate(SHOWN_JS).casefold():
                return  # already chosen: no change, no run
            box.locator("input").click()
            self.page.keyboard.type(option)
            choice = self.page.get_by_role("option").filter(has_text=option).first
            choice.wait_for()
        if in_form:
            with self.waiting(f"choosing {option!r} in {label!r}"):
                choice.click()
        else:
            self.act(f"choosing {option!r} in {label!r}", choice.click)
        with self.waiting(f"{label!r} to show {option!r}"):
            shown = box.evaluate(SHOWN_JS)
        assert option.casefold() in shown.casefold(), (
            f"{label!r} shows {shown!r} after choosing {option!r}"
        )

    def metric(self, label: str) -> str:
        m = self.page.locator('[data-testid="stMetric"]').filter(has_text=label).first
        with self.waiting(f"the metric {label!r}"):
            return m.locator('[data-testid="stMetricValue"]').inner_text().strip()

    def close(self) -> None:
        self.context.close()


def raise_timeout(ceiling: float) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    raise PlaywrightTimeout(f"Timeout {ceiling * 1000:.0f}ms exceeded.")


def review(ui: Ui, decision_for_first_fail: str) -> None:
    """Open the call, play an evidence span, change the first failed item and submit."""
    page = ui.page
    ui.expect(page.get_by_role("heading", name="Call review"), "the Call review page")
    ui.expect(page.locator("audio"), "the audio player", state="attached")
    ui.check("review")
    assert page.locator("audio").count() == 1
    # evidence plays in the browser (the review workspace): the player jumps, no rerun
    play = page.locator(".ws .ev").filter(has_text=re.compile(r"▶ 0:0[1-9]")).first
    start = float(play.get_attribute("data-start"))
    with ui.waiting("the player to jump to the evidence"):
        play.click()
        page.wait_for_function(
            "([a, t]) => Math.abs(a.currentTime - t) < 0.3",
            arg=[page.locator(".ws audio").first.element_handle(), start],
        )
    radios = page.locator('[data-testid="stRadio"]').filter(has_text="Your decision")
    ui.expect(radios, "the reviewer's decision per item")
    first_fail = next(
        i for i in range(radios.count()) if "fail (confirm)" in radios.nth(i).inner_text()
    )
    choice = radios.nth(first_fail).get_by_text(decision_for_first_fail, exact=True)
    ui.act(f"deciding {decision_for_first_fail!r} on the first failed item", choice.click)
    ui.act("submitting the review", page.get_by_role("button", name="Submit review").click)
    ui.expect_text("Your review is submitted")
    ui.check("review-submitted")


@pytest.fixture
def budget() -> Budget:
    return Budget()


def test_review_calibrate_dispute_and_trend(browser, server, demo, shots, budget):
    from qa.workflow import CallFilter, Workflow

    wf = Workflow(demo.settings_env["QA_DATABASE_URL"])
    manager, _ = wf.authenticate(demo.users["manager"], DEMO_PASSWORD)
    agent_id = demo.calls[CALL]
    assert demo.calls[OTHER_AGENTS_CALL] != agent_id

    # the manager's trend before anyone reviewed
    mgr = Ui(browser, server, shots, "manager", budget)
    mgr.login(demo.users["manager"])
    mgr.nav("Trends")
    mgr.check("trends-before")
    before = mgr.metric("Average score")

    # two inspectors review the same flagged call differently (deep link through login)
    for key, decision in (("inspector", "pass"), ("inspector2", "na")):
        ui = Ui(browser, server, shots, key, budget)
        ui.login(demo.users[key], f"review?call={CALL}")
        if key == "inspector":
            ui.nav("Review queue")
            ui.act(
                "showing only the calls assigned to me",
                ui.page.get_by_text(re.compile(r"^Assigned to me \(\d+\)$")).click,
            )
            ui.check("queue")
            assert "calls" in ui.text()
            ui.login(demo.users[key], f"review?call={CALL}")
        else:  # blind: the first inspector's review stays hidden until this one is in
            ui.expect_text(
                re.compile("Other reviewers' scores appear after you submit yours"), "blindness"
            )
        review(ui, decision)
        ui.close()

    # the lead sees the disagreement and sets the final score
    lead = Ui(browser, server, shots, "lead", budget)
    lead.login(demo.users["lead"])
    lead.nav("Calibration")
    lead.choose("Call", CALL)
    lead.expect_text(re.compile("Disagreement on"), "the reviewers' disagreement")
    lead.check("calibration")
    lead.expect_text(re.compile("reviewers tied"), "a 1-1 split shown as a tie")
    lead.act("setting the total by hand", lead.page.get_by_text("Set the total by hand").click)
    with lead.waiting("the final score inputs"):
        lead.page.get_by_role("spinbutton", name="Final total (by hand)").fill("70")
        lead.page.get_by_role("textbox", name="Note to the agent").fill(
            "disclosure missing, verified later"
        )
    lead.act(
        "setting the final score", lead.page.get_by_role("button", name="Set final score").click
    )
    lead.expect_text(f"Final score of {CALL} set to 70.0.")
    assert wf.get_call(manager, CALL).final_total == 70.0

    # the agent: own calls only, a foreign call id is refused, disputes an item
    agent = Ui(browser, server, shots, "agent", budget)
    agent.login(demo.agents[agent_id], f"review?call={OTHER_AGENTS_CALL}")
    agent.expect_text(re.compile("not found or not permitted"), "the refusal of a foreign call")
    assert agent.page.locator("audio").count() == 0
    agent.check("foreign-call")
    agent.nav("My calls")
    own = [c for c, a in demo.calls.items() if a == agent_id]
    assert agent.metric("Calls") == str(len(own))
    agent.check("my-calls")
    agent.login(demo.agents[agent_id], f"review?call={CALL}")
    agent.expect(agent.page.get_by_role("heading", name="Call review"), "the Call review page")
    agent.expect_text(re.compile("Published review"), "the lead's published review")
    agent.expect_text("disclosure missing, verified later", "the lead's note to the agent")
    agent.check("published-review")
    agent.choose("Item", "Recording disclosure", in_form=True)
    with agent.waiting("the dispute form"):
        agent.page.get_by_role("textbox", name="Why the score is wrong").fill(
            "I read the disclosure at 0:05"
        )
    agent.act("opening a dispute", agent.page.get_by_role("button", name="Open dispute").click)
    agent.expect_text(re.compile("Dispute opened"))
    agent.check("dispute-opened")

    # the lead re-scores the item; the total set by hand gives way only when told to
    lead.nav("Disputes")
    lead.act("choosing to re-score", lead.page.get_by_text("re-score the item").click)
    lead.act(
        "taking the card's total over the hand-set one",
        lead.page.get_by_text("take the card's total after this decision").click,
    )
    with lead.waiting("the decision's reason"):
        lead.page.get_by_role("textbox", name="Reason (the agent reads it)").fill(
            "Disclosure found at 0:05"
        )
    lead.act("deciding the dispute", lead.page.get_by_role("button", name="Decide").click)
    lead.expect_text(re.compile(r"Dispute \d+ overturned\."))
    lead.check("disputes")
    assert wf.list_disputes(manager, "overturned")
    lead.close()

    # the agent reads the decision and its reason
    agent.login(demo.agents[agent_id], f"review?call={CALL}")
    agent.expect_text("Disclosure found at 0:05", "the lead's reason on the agent's page")
    agent.check("dispute-decided")
    agent.close()

    # the manager's trend now uses the final outcomes
    mgr.login(demo.users["manager"])
    mgr.nav("Trends")
    mgr.check("trends-after")
    after = mgr.metric("Average score")
    rows = wf.final_outcomes(manager, CallFilter())
    assert after == f"{sum(r.total for r in rows) / len(rows):.1f}"
    # the overturn changed an item, so the card's arithmetic decides the final total again
    decided = wf.get_call(manager, CALL)
    assert next(r for r in rows if r.call_id == CALL).finalised
    assert decided.final_total == decided.outcome_of({}).total
    assert before  # the page showed a figure before anyone reviewed
    for title in ("Calibration", "Coaching", "Case library"):
        mgr.nav(title)
        mgr.check(re.sub(r"\W+", "-", title.lower()))
    mgr.close()
