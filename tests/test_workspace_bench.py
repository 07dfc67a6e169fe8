"""Page timings in headless Chromium with 100,000 calls, for `make bench` (QA_BENCH=1).

The demo's scripted calls plus 100,000 synthetic calls, in the analytics index and in the
workflow database alike (`qa.bench.workflow.load_calls`, from the same summary rows). Each
page is timed from the navigation to its content on screen, through the real `qa serve`
server; an evidence jump from the click to the player at the evidence. Printed, not
asserted: speed is measured in benchmarks. Skipped in the test suite (minutes of loading).
"""

from __future__ import annotations

import os
import statistics
import time

import pytest

from tests.fixtures_demo import Demo, build_demo, demo_settings, synth_cache
from tests.test_dashboard_browser import (  # noqa: F401 - fixtures used by name
    BUDGET_S,
    CALL,
    SERVER_START_S,
    Budget,
    Ui,
    browser,
    server,
)

N = int(os.environ.get("QA_BENCH_CALLS", "100000"))
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(int(BUDGET_S + SERVER_START_S + 900)),
    pytest.mark.skipif(
        os.environ.get("QA_BENCH") != "1", reason="a benchmark: `make bench` runs it"
    ),
]
WS = ".ws"


@pytest.fixture(scope="module")
def demo(tmp_path_factory, request) -> Demo:
    from qa.bench.index import synthetic_table
    from qa.bench.workflow import load_calls
    from qa.index import Index
    from qa.store import open_store
    from qa.workflow import open_workflow

    settings = demo_settings(tmp_path_factory.mktemp("ws-bench") / "home")
    built = build_demo(settings, synth_cache(request, tmp_path_factory), weeks=1)
    rows = synthetic_table(N, seed=5)
    start = time.perf_counter()
    Index(open_store(settings)).append_table(rows)
    load_calls(open_workflow(settings), rows)
    print(
        f"\nloaded {N:,} calls into the index and the database in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return built


def timed(ui: Ui, path: str, ready: str, what: str) -> float:
    """Seconds from navigating to `path` until `ready` is visible and the run has ended."""
    start = time.perf_counter()
    with ui.waiting(f"{what} to load"):
        ui.page.goto(f"{ui.url}/{path}")
    ui.expect(ui.page.locator(ready), what)
    shown = time.perf_counter() - start
    ui.idle(what)
    return shown


def test_page_timings_with_many_calls(browser, server, demo, tmp_path):  # noqa: F811
    shots = tmp_path / "bench-screens"
    shots.mkdir()
    budget = Budget()
    figures: dict[str, list[float]] = {}

    inspector = Ui(browser, server, shots, "inspector", budget)
    inspector.login(demo.users["inspector"])
    for _ in range(3):
        figures.setdefault("review queue", []).append(
            timed(inspector, "queue", '[data-testid="stDataFrame"]', "the queue's table")
        )
        figures.setdefault("review workspace", []).append(
            timed(inspector, f"review?call={CALL}", f"{WS}[data-ready='1']", "the workspace")
        )
    page = inspector.page
    evidence = page.locator(f"{WS} .ev").filter(has_text="▶")
    audio = page.locator(f"{WS} audio").first
    for i in range(min(6, evidence.count())):
        ev = evidence.nth(i)
        target = float(ev.get_attribute("data-start"))
        with inspector.waiting("the player to jump to the evidence"):
            page.evaluate("el => { el.currentTime = 0 }", audio.element_handle())
            start = time.perf_counter()
            ev.click()
            page.wait_for_function(
                "([a, t]) => Math.abs(a.currentTime - t) < 0.3",
                arg=[audio.element_handle(), target],
                polling="raf",
            )
            figures.setdefault("evidence jump", []).append(time.perf_counter() - start)
    inspector.check("workspace-100k")
    inspector.close()

    manager = Ui(browser, server, shots, "manager", budget)
    manager.login(demo.users["manager"])
    for _ in range(3):
        figures.setdefault("trends", []).append(
            timed(manager, "trends", '[data-testid="stMetric"]', "the trends page")
        )
    manager.close()

    print(f"\nbrowser page timings with {N:,} calls (seconds): ", end="")
    print(
        {
            k: {"first": round(v[0], 3), "median": round(statistics.median(v), 3), "n": len(v)}
            for k, v in figures.items()
        }
    )
    assert figures["evidence jump"], "the call has evidence to jump to"
