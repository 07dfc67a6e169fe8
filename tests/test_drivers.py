"""Call drivers: grouping openings, keywords, leads' edits with their permissions and audit,
pinned labels on new calls, repeat callers and weekly trends, and the Drivers page.

The encoder embeds a handful of short texts (a second or two); everything else runs on
hand-made builds, so the module stays fast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from argon2 import PasswordHasher
from streamlit.testing.v1 import AppTest

from qa.config import Settings
from qa.driver_jobs import DriverAssigner
from qa.drivers import (
    DriverBuild,
    DriverGroup,
    Opening,
    build_drivers,
    class_keywords,
    opening_text,
    repeated_calls,
)
from qa.errors import AccessDenied, QAError
from qa.schema import Role, Transcript, Utterance
from qa.workflow import UserRole, Workflow

PASSWORD = "correct horse battery"
MONDAY = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")

BILLING = [
    "My bill this month is twice what it normally is, I think I was overcharged.",
    "I was charged too much on my latest invoice, the bill is wrong.",
    "There is an extra charge on my bill that I don't recognise.",
]
OUTAGE = [
    "My internet has been down since yesterday, the broadband is not working at all.",
    "The broadband connection keeps dropping, no internet in the house since this morning.",
    "There's an outage, my internet stopped working and the router light is red.",
]


@pytest.fixture(scope="module")
def encoder():
    from qa.scoring.encoder import Encoder

    return Encoder(Settings())


def _openings(texts: list[str], prefix: str, **kw) -> list[Opening]:
    return [Opening(call_id=f"{prefix}{i}", text=t, **kw) for i, t in enumerate(texts)]


# --------------------------------------------------------------------------- library


def test_opening_is_the_customers_first_minute():
    utt = [
        Utterance(speaker="A", role=Role.AGENT, start=0, end=5, text="Northwind, how can I help?"),
        Utterance(speaker="B", role=Role.CUSTOMER, start=5, end=40, text="My bill is wrong."),
        Utterance(speaker="B", role=Role.CUSTOMER, start=41, end=70, text="It doubled."),
        Utterance(speaker="B", role=Role.CUSTOMER, start=80, end=90, text="Later words."),
    ]
    tr = Transcript(call_id="c", language="en", duration=90, utterances=utt)
    assert opening_text(tr) == "My bill is wrong. It doubled."
    assert opening_text(tr, swapped=True) == "Northwind, how can I help?"


def test_clustering_groups_obviously_different_openings_apart(encoder):
    openings = _openings(BILLING, "b") + _openings(OUTAGE, "o")
    build = build_drivers(openings, encoder.encode([o.text for o in openings]))
    labels = build.assignments
    assert len({labels[f"b{i}"] for i in range(3)}) == 1
    assert len({labels[f"o{i}"] for i in range(3)}) == 1
    assert labels["b0"] != labels["o0"] and labels["b0"] is not None
    words = {g.key: g.keywords for g in build.groups}
    assert "bill" in words[labels["b0"]]
    assert "internet" in words[labels["o0"]] or "broadband" in words[labels["o0"]]


def test_keywords_are_class_based_in_english_and_chinese():
    words = class_keywords(
        {
            0: ["my bill is wrong", "the bill doubled", "bill charge"],
            1: ["internet down", "no internet today"],
            2: ["我的账单多扣了钱", "账单不对"],
            3: ["网络断了", "宽带网络上不了"],
        }
    )
    assert words[0][0] == "bill" and words[1][0] == "internet"
    assert "账单" in words[2] and "网络" in words[3]
    assert "my" not in words[0]  # a stop word is never a keyword


def test_repeat_callers_within_the_window():
    calls = [
        ("a1", "cust-1", MONDAY),
        ("a2", "cust-1", MONDAY + timedelta(days=3)),  # a1 was not settled
        ("a3", "cust-1", MONDAY + timedelta(days=20)),  # a2's next call is too late
        ("b1", "cust-2", MONDAY),
        ("c1", None, MONDAY),  # no customer id: not counted
    ]
    assert repeated_calls(calls) == {"a1": True, "a2": False, "a3": False, "b1": False}
    assert repeated_calls(calls, days=30)["a2"] is True


# --------------------------------------------------------------------------- workflow


@pytest.fixture
def world(database_url):
    """On SQLite and on Postgres (conftest's `database_url`)."""
    wf = Workflow(
        database_url,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    users = {}
    for name, role, agent in [
        ("ann", UserRole.AGENT, "A1"),
        ("ivy", UserRole.INSPECTOR, None),
        ("leo", UserRole.LEAD, None),
        ("max", UserRole.MANAGER, None),
        ("ada", UserRole.ADMIN, None),
    ]:
        users[role] = wf.add_user(None, name, PASSWORD, role, agent_id=agent)
    return wf, users


def _hand_build(dim: int = 4) -> tuple[DriverBuild, list[Opening]]:
    """Two groups on unit axes, so assignment by similarity is exact."""
    center = [0.0] * dim
    e0, e1 = [1.0, 0, 0, 0], [0, 1.0, 0, 0]
    ob = [
        Opening(
            call_id=f"b{i}",
            text=t,
            customer_id=f"cust-{i}",
            started_at=MONDAY + timedelta(days=i),
            auto_passed=i != 0,
            customer_sentiment=-0.5,
        )
        for i, t in enumerate(BILLING)
    ]
    ob.append(  # the same customer as b0 calls again within the week
        Opening(
            call_id="b3",
            text=BILLING[0],
            customer_id="cust-0",
            started_at=MONDAY + timedelta(days=8),
            auto_passed=True,
            customer_sentiment=0.0,
        )
    )
    oo = _openings(OUTAGE, "o", started_at=MONDAY, auto_passed=True, customer_sentiment=0.5)
    build = DriverBuild(
        method="agglomerative",
        distance=0.9,
        calls=len(ob) + len(oo),
        groups=[
            DriverGroup(
                key=0,
                name="bill / charged",
                keywords=["bill", "charged"],
                call_ids=[o.call_id for o in ob],
                examples=["b0", "b1"],
                centroid=e0,
                center=center,
            ),
            DriverGroup(
                key=1,
                name="internet / broadband",
                keywords=["internet", "broadband"],
                call_ids=[o.call_id for o in oo],
                examples=["o0"],
                centroid=e1,
                center=center,
            ),
        ],
        assignments={**{o.call_id: 0 for o in ob}, **{o.call_id: 1 for o in oo}},
    )
    return build, ob + oo


def test_leads_rename_merge_and_pin_with_audit_others_are_refused(world):
    wf, users = world
    build, openings = _hand_build()
    ids = wf.save_driver_build(build, openings, {})
    billing, outage = ids
    lead, manager = users[UserRole.LEAD], users[UserRole.MANAGER]

    for role in (UserRole.AGENT, UserRole.INSPECTOR, UserRole.ADMIN):
        with pytest.raises(AccessDenied):
            wf.list_drivers(users[role])
        with pytest.raises(AccessDenied):
            wf.driver_trends(users[role])
    for role in (UserRole.AGENT, UserRole.INSPECTOR, UserRole.MANAGER, UserRole.ADMIN):
        with pytest.raises(AccessDenied):
            wf.rename_driver(users[role], billing, "Billing")
        with pytest.raises(AccessDenied):
            wf.pin_driver(users[role], billing)
        with pytest.raises(AccessDenied):
            wf.merge_drivers(users[role], outage, billing)

    seen = {d.id: d for d in wf.list_drivers(manager)}
    assert seen[billing].calls == 4 and seen[billing].keywords == ["bill", "charged"]
    assert [e.call_id for e in seen[billing].examples] == ["b0", "b1"]
    assert seen[billing].examples[0].opening == BILLING[0]
    assert seen[billing].pass_rate == 0.75 and seen[billing].customer_sentiment == -0.375
    # cust-0 called b0 then b3 eight days later: outside 7 days, inside 10
    assert seen[billing].repeat_rate == 0.0 and seen[billing].with_customer == 4
    assert wf.list_drivers(manager, repeat_days=10)[0].repeat_rate == 0.25

    with pytest.raises(QAError):
        wf.rename_driver(lead, billing, "   ")
    assert wf.rename_driver(lead, billing, "  Billing   disputes ").name == "Billing disputes"
    assert wf.pin_driver(lead, billing).pinned
    merged = wf.merge_drivers(lead, outage, billing)
    assert merged.calls == 7
    assert {d.id for d in wf.list_drivers(manager)} == {billing}
    with pytest.raises(QAError):
        wf.pin_driver(lead, outage)  # merged away

    trail = wf.audit_trail(manager, "driver")
    changes = {(a.entity_id, a.field, a.new_value, a.actor) for a in trail}
    assert (str(billing), "name", "Billing disputes", "leo") in changes
    assert (str(billing), "pinned", "true", "leo") in changes
    assert (str(outage), "merged_into", str(billing), "leo") in changes
    assert (str(billing), "merged", str(outage), "leo") in changes


def test_pinned_driver_labels_a_new_call_and_others_are_other(world, encoder):
    wf, users = world
    openings = _openings(BILLING, "b") + _openings(OUTAGE, "o")
    build = build_drivers(openings, encoder.encode([o.text for o in openings]))
    ids = wf.save_driver_build(build, openings, {})
    billing = next(i for i, g in zip(ids, build.groups, strict=True) if "b0" in g.call_ids)
    wf.pin_driver(users[UserRole.LEAD], billing)

    assigner = DriverAssigner(Settings(), wf, encoder=encoder)
    new = [
        Opening(call_id="new-bill", text="Why is my bill so high this month? I was overcharged."),
        Opening(call_id="new-other", text="Ich möchte meinen Hund beim Tierarzt anmelden."),
    ]
    assert assigner.assign(new) == 2
    views = {d.id: d for d in wf.list_drivers(users[UserRole.MANAGER])}
    assert views[billing].calls == 4  # three built, one assigned
    weeks = wf.driver_trends(users[UserRole.MANAGER])
    other = [w for w in weeks if w.driver == "other"]
    assert other and sum(w.calls for w in other) == 1


def test_trends_per_driver_per_week(world):
    wf, users = world
    build, openings = _hand_build()
    billing, outage = wf.save_driver_build(build, openings, {})
    weeks = wf.driver_trends(users[UserRole.LEAD], repeat_days=10)
    rows = {(w.week.isoformat(), w.driver): w for w in weeks}
    first = rows[("2026-11-16", "bill / charged")]
    assert first.calls == 3 and first.pass_rate == round(2 / 3, 4)
    assert first.repeat_rate == round(1 / 3, 4)  # b0, seen again in b3
    assert rows[("2026-11-23", "bill / charged")].calls == 1
    assert rows[("2026-11-16", "internet / broadband")].customer_sentiment == 0.5
    # a new build replaces the unpinned drivers but keeps the pinned one and its calls,
    # and a name a lead gave passes to the new group holding the renamed driver's calls
    wf.rename_driver(users[UserRole.LEAD], billing, "Billing")
    wf.pin_driver(users[UserRole.LEAD], outage)
    new_ids = wf.save_driver_build(
        build, openings, {o.call_id: (outage, 0.9) for o in openings[4:]}
    )
    current = {d.id for d in wf.list_drivers(users[UserRole.LEAD])}
    assert outage in current and billing not in current and len(new_ids) == 1
    assert {d.name for d in wf.list_drivers(users[UserRole.LEAD])} == {
        "Billing",
        "internet / broadband",
    }


# --------------------------------------------------------------------------- page


@pytest.fixture
def page_env(tmp_path, monkeypatch):
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'workflow.db'}"
    monkeypatch.setenv("QA_HOME", str(home))
    monkeypatch.setenv("QA_DATABASE_URL", url)
    monkeypatch.setenv("QA_STORE_URL", f"file://{home / 'store'}")
    home.mkdir()
    wf = Workflow(url)
    for name, role, agent in [
        ("leo", "lead", None),
        ("max", "manager", None),
        ("ann", "agent", "A1"),
    ]:
        wf.add_user(None, name, PASSWORD, role, agent_id=agent)
    build, openings = _hand_build()
    wf.save_driver_build(build, openings, {})
    return wf


def _login(username: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(PASSWORD)
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    return at


def test_drivers_page_lead_renames_manager_sees_agent_has_no_page(page_env):
    at = _login("leo")
    at.switch_page("views/drivers.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Drivers"]
    table = next(df.value for df in at.dataframe if "driver" in df.value.columns)
    assert set(table["driver"]) == {"bill / charged", "internet / broadband"}
    assert any("/review?call=b0" in str(m.value) for m in at.markdown)
    billing = int(table.loc[table["driver"] == "bill / charged", "id"].iloc[0])
    at.selectbox(key="dr_pick").set_value(billing).run()
    at.text_input(key=f"dr_name_{billing}").input("Billing disputes")
    at.button(key="dr_rename").click().run()
    assert not at.exception, [e.value for e in at.exception]

    at = _login("max")
    at.switch_page("views/drivers.py").run()
    assert not at.exception
    table = next(df.value for df in at.dataframe if "driver" in df.value.columns)
    assert "Billing disputes" in set(table["driver"])
    assert not [b for b in at.button if b.key == "dr_rename"]  # managers read only

    at = _login("ann")
    assert "drivers" not in {p for p in at.session_state} and not at.exception
    with pytest.raises(AccessDenied):
        page_env.list_drivers(page_env.authenticate("ann", PASSWORD)[0])


def test_random_assignment_is_stable_for_unit_centroids():
    """nearest_pinned on hand-made vectors: threshold and tie to the best."""
    from qa.drivers import PinnedCentroid, nearest_pinned

    pinned = [
        PinnedCentroid(driver_id=1, name="a", centroid=[1, 0], center=[0, 0]),
        PinnedCentroid(driver_id=2, name="b", centroid=[0, 1], center=[0, 0]),
    ]
    assert nearest_pinned(np.array([0.9, 0.1]), pinned)[0] == 1
    assert nearest_pinned(np.array([-1.0, -1.0]), pinned)[0] is None


def test_the_alerts_spike_rule_counts_the_drivers_calls_have(world, tmp_path):
    from qa.alerts.engine import Evaluator
    from qa.alerts.rules import load_rules
    from tests.test_alerts import result

    wf, _ = world
    build, openings = _hand_build()
    wf.save_driver_build(build, openings, {})
    assert wf.driver_name_of("b1") == "bill / charged" and wf.driver_name_of("nope") is None
    rules = tmp_path / "spike.yaml"
    rules.write_text("rules:\n  - {id: drv, type: driver_spike, min_calls: 1}\n")
    evaluator = Evaluator(load_rules(rules), wf)
    evaluator.evaluate(result("b1"))
    assert "drv" not in evaluator.noted  # the label came from the workflow database
    week = MONDAY.date() - timedelta(days=MONDAY.weekday())
    assert wf.label_counts("driver", "bill / charged", [week]) == {week: 1}
