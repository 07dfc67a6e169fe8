"""In headless Chromium: a lead watches a call on the Live page while it happens.

Runs on the demo, server and browser of tests/test_dashboard_browser.py (built again for
this module). A background thread writes a call into the server's workflow database the
way the live server does (`feed_call`: start, a word every PACE_S seconds, an alert, the
end); the page must show the call, its words and the alert without a click, each within
MAX_DELAY_S of its write. The feeder takes only the database URL, so a real stream into
`qa live serve` can take its place.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from qa.live.models import LiveCallInfo, LiveEvent, LiveLine, LiveStatus
from qa.schema import Role
from tests import test_dashboard_browser as e2e
from tests.test_dashboard_browser import SERVER_START_S, Ui

# the end-to-end module's fixtures, instantiated again for this module
browser, budget, demo, server, shots = e2e.browser, e2e.budget, e2e.demo, e2e.server, e2e.shots

pytestmark = [pytest.mark.browser, pytest.mark.timeout(int(SERVER_START_S + 600))]

PACE_S = 0.5  # one word per update, as the live server commits them
MAX_DELAY_S = 3.0  # from a write to its text on the page
POLL_S = 0.05
CALL_ID = "live-e2e-1"
AGENT_ID = "A-LIVE-7"
OTHER_TEAMS_AGENT = "B-OTHER-3"
ALERT_NAME = "Customer threatens to cancel"
# (role, words): every line's text is unique on the page, so each prefix marks one write
SCRIPT = [
    (Role.AGENT, "thank you for calling northwind savings this is rosa"),
    (Role.CUSTOMER, "hello my debit card was charged twice yesterday"),
    (Role.AGENT, "sorry about that let me look at your account"),
    (Role.CUSTOMER, "fix it today or I will cancel everything"),
    (Role.AGENT, "understood the duplicate payment is refunded now"),
]
ALERT_LINE = 3  # the alert fires when this line is complete


def feed_call(
    database_url: str,
    wrote: Callable[[str, float], None],
    *,
    team: str,
    pace_s: float = PACE_S,
) -> None:
    """Write one call into the workflow database as the live server does: its start, a
    word per update (each line final after its last word), an alert, the end and its
    storage. `wrote(what, when)` is told each write's text after it committed (monotonic
    seconds): "start", a line's text so far, the alert's name, "ended", "stored"."""
    from qa.workflow import Workflow

    wf = Workflow(database_url)
    tracks = {"outbound": Role.AGENT, "inbound": Role.CUSTOMER}
    track_of = {role: track for track, role in tracks.items()}
    wf.live_start(
        LiveCallInfo(
            call_id=CALL_ID,
            source="e2e",
            agent_id=AGENT_ID,
            team=team,
            queue="cards",
            language="en",
            started_at=datetime.now(UTC),
            tracks=tracks,
        )
    )
    wrote("start", time.monotonic())
    elapsed = 0.0
    for index, (role, text) in enumerate(SCRIPT):
        words = text.split()
        start = elapsed
        for n in range(1, len(words) + 1):
            time.sleep(pace_s)
            elapsed += pace_s
            said = " ".join(words[:n])
            line = LiveLine(
                call_id=CALL_ID,
                index=index,
                track=track_of[role],
                role=role,
                start=start,
                end=elapsed,
                text=said,
                final=n == len(words),
            )
            events = []
            if index == ALERT_LINE and n == len(words):
                events.append(
                    LiveEvent(
                        call_id=CALL_ID,
                        kind="alert",
                        rule_id="cancel_threat",
                        name=ALERT_NAME,
                        outcome="alert",
                        reason="the customer said they will cancel",
                        at=elapsed,
                        created_at=datetime.now(UTC),
                    )
                )
            wf.live_update(CALL_ID, elapsed=elapsed, lines=[line], events=events)
            now = time.monotonic()
            wrote(said, now)
            if events:
                wrote(ALERT_NAME, now)
    time.sleep(pace_s)
    wf.live_end(CALL_ID, LiveStatus.ENDED)
    wrote("ended", time.monotonic())
    time.sleep(6 * pace_s)  # storing takes a while: long enough to be seen
    wf.live_end(CALL_ID, LiveStatus.STORED)
    wrote("stored", time.monotonic())
    wf.engine.dispose()


class Writes:
    """What the feeder wrote and when, shared with the test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.at: dict[str, float] = {}

    def __call__(self, what: str, when: float) -> None:
        with self._lock:
            self.at.setdefault(what, when)

    def items(self) -> list[tuple[str, float]]:
        with self._lock:
            return list(self.at.items())


def main_text(ui: Ui) -> str:
    return ui.page.locator('[data-testid="stMain"]').inner_text()


def watch(ui: Ui, writes: Writes, seen: dict[str, float], until: Callable[[], bool]) -> None:
    """Read the page every POLL_S until `until()`, noting when each written text first
    shows; the status words stand for the end's writes."""
    shows = {"start": AGENT_ID, "ended": "storing the recording", "stored": "queued for scoring"}
    deadline = time.monotonic() + 120
    while not until():
        assert time.monotonic() < deadline, f"the page stopped changing; seen {sorted(seen)}"
        text = main_text(ui)
        now = time.monotonic()
        for what, _ in writes.items():
            if what not in seen and shows.get(what, what) in text:
                seen[what] = now
        ui.page.wait_for_timeout(POLL_S * 1000)  # lets Playwright deliver the page's frames


def test_lead_watches_a_call_as_it_happens(browser, server, demo, shots, budget):
    from qa.workflow import Workflow

    url = demo.settings_env["QA_DATABASE_URL"]
    lead_team = "customer_care"
    lead = Ui(browser, server, shots, "lead-live", budget)
    lead.login(demo.users["lead"])
    lead.nav("Live")
    lead.expect_text(re.compile(r"qa live serve"), "the empty state naming `qa live serve`")
    lead.check("live-empty")

    # another team's call: never on this lead's page
    Workflow(url).live_start(
        LiveCallInfo(
            call_id="live-e2e-other",
            source="e2e",
            agent_id=OTHER_TEAMS_AGENT,
            team="collections",
            started_at=datetime.now(UTC),
            tracks={"inbound": Role.CUSTOMER},
        )
    )

    writes = Writes()
    feeder = threading.Thread(target=feed_call, args=(url, writes), kwargs={"team": lead_team})
    feeder.start()
    seen: dict[str, float] = {}
    try:
        first_words = SCRIPT[0][1].split()[0]
        # no click: the list refreshes by itself with the call and its latest words
        watch(lead, writes, seen, lambda: first_words in seen)
        lead.check("live-list")
        text = main_text(lead)
        assert AGENT_ID in text and "cards" in text
        assert OTHER_TEAMS_AGENT not in text

        # open the call once; from here on every word must show without another click
        paused_at = time.monotonic()  # writes while the click runs are not timed
        button = lead.page.get_by_role("button", name="Open", exact=True).first
        lead.act("opening the live call", button.click)
        opened_at = time.monotonic()
        watch(lead, writes, seen, lambda: "stored" in seen)
        lead.check("live-opened")
    finally:
        feeder.join(timeout=120)
    assert not feeder.is_alive(), "the feeder did not finish"

    text = main_text(lead)
    assert ALERT_NAME in text and "the customer said they will cancel" in text
    assert "queued for scoring" in text
    for _, line in SCRIPT:
        assert line in text, f"the transcript lacks {line!r}"

    written = dict(writes.items())
    after_open = [w for w, t in written.items() if t >= opened_at]
    timed = [w for w, t in written.items() if t >= opened_at or seen.get(w, 1e18) < paused_at]
    delays = {w: seen[w] - written[w] for w in timed if w in seen}
    missing = [w for w in after_open if w not in seen]
    assert not missing, f"written after the call was opened but never shown: {missing}"
    assert len(after_open) >= 10, f"only {len(after_open)} writes after opening the call"
    worst = max(delays, key=delays.__getitem__)
    mean = sum(delays.values()) / len(delays)
    print(
        f"\nlive update delay over {len(delays)} writes: mean {mean:.2f} s, "
        f"max {delays[worst]:.2f} s ({worst!r})"
    )
    assert delays[worst] < MAX_DELAY_S, f"{worst!r} showed {delays[worst]:.2f} s after its write"
    assert delays[ALERT_NAME] < MAX_DELAY_S and delays["start"] < MAX_DELAY_S
    lead.close()


def test_an_agent_has_no_live_page(browser, server, demo, shots, budget):
    agent = Ui(browser, server, shots, "agent-live", budget)
    agent.login(sorted(demo.agents.values())[0])
    with agent.waiting("the sidebar's pages"):
        nav = agent.page.get_by_test_id("stSidebarNav").inner_text()
    assert "My calls" in nav and "Live" not in nav.splitlines()
    agent.close()


REAL_CALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "calls"


@pytest.mark.skipif(not REAL_CALL.is_dir(), reason="needs the real calls in ../shared/data/calls")
def test_the_page_follows_a_real_replay(browser, server, demo, shots, budget, tmp_path):
    """The live server (tiny.en) and the replay client, not a feeder: a lead opens the call
    while its first 30 s stream in real time and sees its transcript grow, then stored."""
    import asyncio

    from qa.audio import load_audio, write_wav
    from qa.config import Settings
    from qa.live.replay import replay
    from qa.live.server import LiveServer, ServerThread
    from qa.store import open_store
    from qa.workflow import open_workflow

    audio = load_audio(REAL_CALL / "auto_repairs_40_stereo.wav").resampled(8000)
    clip = write_wav(tmp_path / "repairs.wav", audio.samples[:, : 30 * 8000], 8000)
    env = demo.settings_env
    tokens = {"e2e": "e2e-live-token"}
    settings = Settings(
        home=tmp_path / "live",
        store_url=env["QA_STORE_URL"],
        database_url=env["QA_DATABASE_URL"],
        live_tokens=tokens,
    )
    live = LiveServer(
        settings, workflow=open_workflow(settings), store=open_store(settings), tokens=tokens
    )
    running = ServerThread(live).start()
    lead = Ui(browser, server, shots, "lead-replay", budget)
    lead.login(demo.users["lead"])
    lead.nav("Live")
    agent_id = "A-REPLAY-1"
    done = threading.Event()

    def stream() -> None:
        params = {"agent_id": agent_id, "team": "customer_care", "queue": "repairs"}
        try:
            call = replay(
                clip, running.url, token=tokens["e2e"], call_id="live-e2e-replay", params=params
            )
            asyncio.run(call)
        finally:
            done.set()

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        lead.expect_text(re.compile(agent_id), "the replayed call in the list")
        button = lead.page.get_by_role("button", name="Open", exact=True).first
        lead.act("opening the replayed call", button.click)
        snapshots: list[tuple[float, int]] = []  # (when, words on the page) while streaming
        while not done.is_set():
            words = len(main_text(lead).split())
            if not snapshots or words != snapshots[-1][1]:
                snapshots.append((time.monotonic(), words))
            lead.page.wait_for_timeout(250)
        lead.expect_text(re.compile("queued for scoring"), "the call stored for `qa run`")
        lead.check("live-replay")
    finally:
        streamer.join(timeout=120)
        running.stop()
    grew = [b for (_, a), (_, b) in zip(snapshots, snapshots[1:], strict=False) if b > a]
    assert len(grew) >= 5, f"the transcript grew only {len(grew)} times during the replay"
    text = main_text(lead).lower()
    assert "motors" in text or "michelle" in text, text[:2000]
    lead.close()
