"""The call review workspace in headless Chromium at 1440x900, and sign-in that survives.

Player, transcript and scorecard share the first screen; a click on evidence or on a
transcript line seeks the player in the browser without a script run (counted from the
app's websocket, as in test_dashboard_browser); the recording is never on a `/media/`
address; a reload and a second tab stay signed in through the signed cookie, and a logout
ends that everywhere. Screenshots go to the folder the test prints; the page timings are
printed as well.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import pytest

from tests.test_dashboard_browser import (  # noqa: F401 - fixtures used by name
    BUDGET_S,
    CALL,
    SERVER_START_S,
    Budget,
    Ui,
    browser,
    demo,
    server,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(BUDGET_S + SERVER_START_S + 480))]

WIDTH, HEIGHT = 1440, 900
WS = ".ws"  # the workspace's root inside the component (Playwright reads open shadow roots)


def wait_for_time(ui: Ui, seconds: float, what: str) -> None:
    with ui.waiting(what):
        ui.page.locator(f"{WS} audio").first.wait_for(state="attached")
        ui.page.wait_for_function(
            "([el, t]) => Math.abs(el.currentTime - t) < 0.3",
            arg=[ui.page.locator(f"{WS} audio").first.element_handle(), seconds],
        )


def inside_viewport(ui: Ui, selector: str) -> dict:
    box = ui.page.locator(selector).first.bounding_box()
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0 and box["y"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= WIDTH + 1, (selector, box)
    assert box["y"] + box["height"] <= HEIGHT + 1, (selector, box)
    return box


def test_workspace_on_one_screen_seeks_without_a_rerun_and_sign_in_survives(
    browser,  # noqa: F811
    server,  # noqa: F811
    demo,  # noqa: F811
    tmp_path,
):
    shots = tmp_path / "workspace-screens"
    shots.mkdir()
    print(f"\nscreenshots: {shots}")
    budget = Budget()
    ui = Ui(browser, server, shots, "inspector", budget)
    ui.page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    media: list[str] = []
    ui.context.on(  # Streamlit's media endpoint (st.audio, st.download_button), not its fonts
        "request",
        lambda r: media.append(r.url) if urlsplit(r.url).path.startswith("/media/") else None,
    )
    page = ui.page

    ui.login(demo.users["inspector"], f"review?call={CALL}")
    ui.expect(page.locator(f"{WS}[data-ready='1']"), "the review workspace")

    # a reload keeps the user signed in (the signed cookie), and times the first render
    start = time.monotonic()
    with ui.waiting("the page to load again"):
        page.reload()
    ui.expect(page.locator(f"{WS}[data-ready='1']"), "the workspace after a reload")
    first_render_s = time.monotonic() - start
    ui.expect(page.get_by_role("button", name="Log out"), "still signed in after a reload")
    ui.idle("after the reload")
    page.mouse.move(WIDTH / 2, 10)
    page.screenshot(path=str(shots / "workspace-1440x900.png"))
    ui.check("workspace-full-page")

    # player, transcript and scorecard in the first screen, with a line and an item shown
    for selector in (f"{WS} audio", f"{WS} .tx", f"{WS} .sc", f"{WS} .utt", f"{WS} .item"):
        inside_viewport(ui, selector)
    src = page.locator(f"{WS} audio").first.get_attribute("src") or ""
    assert src.startswith("blob:"), f"the recording should play from a blob: URL, not {src!r}"
    said = page.locator(f"{WS} .tx").first.inner_text()
    assert "agent" in said.lower() and "customer" in said.lower()

    # an evidence click seeks the player in the browser: no script run starts
    runs = ui.runs.started
    evidence = page.locator(f"{WS} .ev").filter(has_text="▶")
    target = next(
        (
            i
            for i in range(evidence.count())
            if float(evidence.nth(i).get_attribute("data-start")) > 2
        ),
        0,
    )
    ev = evidence.nth(target)
    ev_start = float(ev.get_attribute("data-start"))
    started = time.monotonic()
    with ui.waiting("an evidence span to be clicked"):
        ev.click()
    wait_for_time(ui, ev_start, f"the player to jump to the evidence at {ev_start:.1f} s")
    jump_s = time.monotonic() - started
    inside_viewport(ui, f"{WS} audio")  # the player is still in view
    ui.expect(page.locator(f"{WS} .utt.current"), "the utterance at the evidence highlighted")
    page.screenshot(path=str(shots / "evidence-jump.png"))

    # a click on a transcript line plays from that line
    line = page.locator(f"{WS} .utt").nth(4)
    line_start = float(line.get_attribute("data-start"))
    with ui.waiting("a transcript line to be clicked"):
        line.click()
    wait_for_time(ui, line_start, f"the player to jump to the line at {line_start:.1f} s")
    assert "current" in (line.get_attribute("class") or "")
    page.wait_for_timeout(500)  # a run, had one been started, would have begun by now
    assert ui.runs.started == runs, "a seek started a script run"

    # keyboard: next item, then fail it; only the fragment with the review form reruns
    with ui.waiting("the keyboard"):
        page.locator("h1").first.click()  # the focus on the page, not in a text box
    page.keyboard.press("j")
    ui.expect(page.locator(f"{WS} .item.selected"), "the first item selected by J")
    item_id = page.locator(f"{WS} .item.selected").first.get_attribute("data-item")
    ui.act("failing the selected item with the key 2", lambda: page.keyboard.press("2"))
    chosen = page.locator(f"{WS} .item[data-item='{item_id}'] .dec.chosen").first
    ui.expect(chosen, "the decision shown on the item")
    assert chosen.inner_text().startswith("fail")
    form_radio = page.locator(f".st-key-rv-{CALL}-{item_id}-outcome")
    with ui.waiting("the review form's decision for the item"):
        assert form_radio.get_by_role("radio", name=re.compile("^fail")).is_checked(), (
            "the review form follows the key"
        )
    page.screenshot(path=str(shots / "keyboard-decision.png"))

    # a second tab in the same browser is signed in
    second = ui.context.new_page()
    second.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    with ui.waiting("a second tab to open the call"):
        second.goto(f"{server}/review?call={CALL}")
        second.get_by_role("button", name="Log out").wait_for()
        second.locator(f"{WS}[data-ready='1']").wait_for()
    second.screenshot(path=str(shots / "second-tab.png"))

    # no recording was fetched from a /media/ address; any such address refuses strangers
    assert media == [], f"the recording went through open media URLs: {media}"
    for url in media:
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url, timeout=10)
    stranger = browser.new_context()
    try:
        other = stranger.new_page()
        other.goto(server)
        fetched = other.evaluate("u => fetch(u).then(() => true, () => false)", src)
        assert fetched is False, "the blob: recording is readable outside the signed-in tab"
    finally:
        stranger.close()

    # logging out ends the session in every tab: reloads show the login form
    ui.act("logging out", page.get_by_role("button", name="Log out").click)
    ui.expect(page.get_by_role("textbox", name="Username"), "the login form after logging out")
    with ui.waiting("the page to load after logging out"):
        page.reload()
    ui.expect(page.get_by_role("textbox", name="Username"), "the login form after a reload")
    with ui.waiting("the second tab to load again"):
        second.reload()
        second.get_by_role("textbox", name="Username").wait_for()
    assert "qa_session" not in {c["name"] for c in ui.context.cookies()}
    page.screenshot(path=str(shots / "after-logout.png"))
    ui.close()
    print(
        f"workspace timings: first render after a reload {first_render_s:.2f} s, "
        f"evidence jump {jump_s * 1000:.0f} ms (no script run)"
    )
