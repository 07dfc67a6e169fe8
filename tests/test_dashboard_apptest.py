"""Every dashboard page, run in-process with streamlit.testing as the role that uses it.

The demo store, index and database are built once per module from the scripted calls;
each test logs in through the login page like a person would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.workspace import shown_data
from tests.fixtures_demo import DEMO_PASSWORD, Demo, build_demo, demo_settings, synth_cache

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
NOT_PERMITTED = "not found or not permitted"
# ceiling of one script run (AppTest's timeout names the run that ran out); a busy machine
# can take many times the usual second or two
RUN_S = 120


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo(tmp_path_factory, request, databases) -> Demo:
    """The demo on each workflow database in turn (a fresh Postgres database per module)."""
    home = tmp_path_factory.mktemp("dash") / "home"
    with databases.fresh(request.param, home) as url:
        settings = demo_settings(home).model_copy(update={"database_url": url})
        synth_dir = synth_cache(request, tmp_path_factory)
        built = build_demo(settings, synth_dir, weeks=2)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in built.settings_env.items():
                mp.setenv(key, value)
            yield built
    if request.param != "sqlite":  # the pages used the database they were given
        assert not (home / "workflow.db").exists()


def login(username: str, page: str | None = None, call: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=RUN_S)
    if call:
        at.query_params["call"] = call
    at.run()
    at.text_input(key="login_username").input(username)
    at.text_input(key="login_password").input(DEMO_PASSWORD)
    at.button(key="login_submit").click().run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything a user reads on the page, to assert on messages."""
    parts = []
    for kind in (
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "title",
        "subheader",
    ):
        parts.extend(str(e.value) for e in getattr(at, kind))
    parts.extend(f"{m.label} {m.value}" for m in at.metric)
    return "\n".join(parts)


def table(at: AppTest, *columns: str):
    """The first table on the page with these columns (tables carry no key in AppTest)."""
    for df in at.dataframe:
        value = df.value
        if set(columns) <= set(getattr(value, "columns", ())):
            return value
    raise AssertionError(f"no table with columns {columns!r}")


def workspace(at: AppTest) -> dict:
    """What the review workspace (player, transcript, scorecard) was given to show."""
    shown = shown_data(at)
    assert len(shown) == 1, f"{len(shown)} review workspaces on the page"
    return shown[0]


def roles_said(at: AppTest) -> list[str]:
    return [u["role"] for u in workspace(at)["utterances"]]


def workflow(demo: Demo):
    from qa.workflow import Workflow

    return Workflow(demo.settings_env["QA_DATABASE_URL"])


def as_user(demo: Demo, key: str):
    wf = workflow(demo)
    username = demo.users.get(key) or key
    user, _ = wf.authenticate(username, DEMO_PASSWORD)
    return wf, user


# --------------------------------------------------------------------------- login


def test_login_rejects_wrong_password_and_expired_session_returns_to_login(demo):
    at = AppTest.from_file(APP, default_timeout=RUN_S).run()
    assert [t.value for t in at.title] == ["Call QA — log in"]
    at.text_input(key="login_username").input(demo.users["inspector"])
    at.text_input(key="login_password").input("wrong-password")
    at.button(key="login_submit").click().run()
    assert "Wrong username or password" in texts(at)

    at = login(demo.users["inspector"])
    assert "Review queue" in [t.value for t in at.title]
    workflow(demo).logout(at.session_state["auth_token"])  # the session ends elsewhere
    at.run()
    assert [t.value for t in at.title] == ["Call QA — log in"]
    assert "session has expired" in texts(at)


# --------------------------------------------------------------------------- queue


def test_queue_lists_flagged_calls_with_reasons_and_filters(demo):
    at = login(demo.users["inspector"], "queue")
    at.radio(key="q_scope").set_value("all").run()
    df = table(at, "flag reasons")
    assert set(df["call_id"]) == set(demo.flagged)
    assert df["flag reasons"].str.len().gt(0).all()
    at.selectbox(key="q_flag").set_value("auto_fail").run()
    df = table(at, "flag reasons")
    assert len(df) > 0 and df["flags"].str.contains("auto_fail").all()
    assert df["auto_fail"].all()
    at.slider(key="q_score").set_value((50.0, 100.0)).run()
    assert table(at, "flag reasons").empty  # auto-failed calls score 0
    assert not at.exception


def test_inspector_queue_opens_on_what_they_can_act_on(demo):
    """The demo assigns nothing: the queue says so, lists the unassigned flagged calls with
    their count, and "Next call" opens the first one."""
    from qa.workflow import CallFilter

    wf, inspector = as_user(demo, "inspector")
    mine = wf.list_calls(inspector, CallFilter(assigned_to_me=True, flagged=True, reviewed=False))
    at = login(demo.users["inspector"], "queue")
    scope = at.radio(key="q_scope")
    assert scope.value == ("mine" if mine else "pool")
    shown = table(at, "flag reasons")
    if not mine:
        assert "Nothing is assigned to you" in texts(at)
        assert (shown["assigned"].fillna("") == "").all()
        assert f"Unassigned flagged ({len(shown)})" in scope.options
    assert len(shown) > 0
    at.button(key="q_next").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Call review" in [t.value for t in at.title]
    assert workspace(at)["call_id"] == shown["call_id"].iloc[0]


def test_lead_assigns_and_samples(demo):
    at = login(demo.users["lead"], "queue")
    at.toggle(key="q_flagged").set_value(False).run()
    target = table(at, "flag reasons")["call_id"].iloc[0]
    at.selectbox(key="assign_call").set_value(target)
    at.text_input(key="assign_reviewer").input(demo.users["inspector2"])
    at.button(key="assign_submit").click().run()
    assert not at.exception
    df = table(at, "flag reasons")
    assert demo.users["inspector2"] in df.set_index("call_id").loc[target, "assigned"]
    at.number_input(key="sample_n").set_value(3)
    at.button(key="sample_submit").click().run()
    assert len(at.session_state["sampled_calls"]) == 3


# --------------------------------------------------------------------------- review


def flagged_call(demo: Demo, n: int = 0) -> str:
    """An auto-failed call with a recording; each test takes its own so they do not mix."""
    return sorted(c for c in demo.auto_failed if c in demo.with_audio)[n]


def test_review_page_shows_audio_transcript_evidence_and_saves(demo):
    call_id = flagged_call(demo, 0)
    at = login(demo.users["inspector"], call=call_id)
    assert "Call review" in [t.value for t in at.title]
    shown = workspace(at)
    assert shown["audio"] and shown["mime"] == "audio/flac", "recording player missing"
    assert not at.get("audio"), "st.audio publishes the recording on an open /media/ URL"
    assert {"agent", "customer"} <= set(roles_said(at))
    radios = [r for r in at.radio if r.key and r.key.startswith(f"rv:{call_id}:")]
    assert len(radios) >= 10
    # every item's evidence is in the workspace, where a click seeks the player (no rerun)
    assert len(shown["items"]) == len(radios)
    assert any(ev["start"] > 0 for it in shown["items"] for ev in it["evidence"])
    assert shown["can_decide"] and not shown["locked"]
    # override one item, save a draft, then submit
    radios[0].set_value("na")
    at.text_input(key=f"rv:{call_id}:{radios[0].key.split(':')[2]}:comment").input("not asked")
    at.button(key="save_draft").click().run()
    assert "saved as draft" in texts(at)
    at.button(key="submit_review").click().run()
    assert not at.exception
    assert "Your review is submitted" in texts(at)


def test_stale_edit_shows_a_clear_message(demo):
    call_id = flagged_call(demo, 1)
    at = login(demo.users["inspector2"], call=call_id)
    at.button(key="save_draft").click().run()
    assert "saved as draft" in texts(at), [e.value for e in at.error]
    # the same reviewer saves from another window in between
    wf, user = as_user(demo, "inspector2")
    mine = next(r for r in wf.reviews_for_call(user, call_id) if r.reviewer == user.username)
    from qa.workflow import ReviewItemInput

    wf.save_review(
        user,
        call_id,
        [ReviewItemInput(item_id=i.item_id, outcome=i.outcome) for i in mine.items],
        expected_version=mine.version,
    )
    at.button(key="save_draft").click().run()
    assert "changed elsewhere" in texts(at)
    at.button(key="reload_review").click().run()
    at.button(key="save_draft").click().run()
    assert "saved as draft" in texts(at)


def test_redacted_card_number_is_highlighted(demo):
    at = login(demo.users["inspector"], call="nw_card_payment")
    said = " ".join(u["text"] for u in workspace(at)["utterances"])
    assert "[CARD_NUMBER]" in said, "card number placeholder missing"  # marked in the browser
    body = texts(at) + said
    assert "4556" not in body and "four five five six" not in body


def test_player_has_the_redacted_copy_and_only_a_lead_opens_the_original(demo, monkeypatch):
    import io

    import numpy as np
    import soundfile as sf

    from qa.schema import CallResult
    from qa.store import keys, open_store
    from tests.fixtures_demo import PIPELINE_VERSION

    store = open_store(demo_settings(Path(demo.settings_env["QA_HOME"])))
    key = next(iter(store.list(keys.results_prefix("nw_card_payment", PIPELINE_VERSION))))
    result = store.get_json(key, CallResult)
    card = next(r for r in result.transcript.redactions if r.kind == "card_number")
    played, rate = sf.read(
        io.BytesIO(store.get_bytes(keys.playable("nw_card_payment", PIPELINE_VERSION))),
        always_2d=True,
    )
    assert not np.any(played[int(card.start * rate) : int(card.end * rate)])

    at = login(demo.users["inspector"], call="nw_card_payment")
    assert workspace(at)["audio"] and "spans of personal data are silent" in texts(at)
    monkeypatch.setenv("QA_ORIGINAL_AUDIO", "restricted")
    at = login(demo.users["inspector"], call="nw_card_payment")
    assert not [b for b in at.button if b.key == "original_audio"]
    at = login(demo.users["lead"], call="nw_card_payment")
    at.button(key="original_audio").click().run()
    assert "Original recording, unredacted" in texts(at)
    assert [d["label"] for d in shown_data(at, "player:original:")] == ["Original recording"]
    assert not at.get("audio")
    wf, lead = as_user(demo, "lead")
    assert [
        a.action for a in wf.audit_trail(lead, "call", "nw_card_payment") if "original" in a.action
    ] == ["read_original"]


def test_swap_roles_flips_the_transcript_and_scores_again(demo):
    call_id = sorted(demo.calls)[-1]
    at = login(demo.users["admin"], call=call_id)  # admins do not review, so do not swap
    assert not [b for b in at.button if b.key == "swap_roles"]
    at = login(demo.users["lead"], call=call_id)
    first = roles_said(at)
    at.button(key="swap_roles").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "swapped by a reviewer" in texts(at) and "Roles swapped; automatic score" in texts(at)
    flip = {"agent": "customer", "customer": "agent", "unknown": "unknown"}
    assert roles_said(at) == [flip[r] for r in first]
    wf, lead = as_user(demo, "lead")
    call = wf.get_call(lead, call_id)
    assert call.role_swapped and call.pipeline_version.endswith("+r1")
    shown = next(m.value for m in at.metric if m.label == "Automatic score")
    assert shown == f"{call.auto_total:.1f} / {call.max_total:.0f}"  # the new result's
    at.button(key="swap_roles").click().run()  # and back, for the other tests
    assert not wf.get_call(lead, call_id).role_swapped


def test_agent_sees_only_own_calls_and_disputes(demo):
    wf, lead = as_user(demo, "lead")

    def failed(call_id: str) -> list[str]:
        return [i.name for i in wf.get_call(lead, call_id).items if i.outcome.value == "fail"]

    agent_id, username = next(
        (a, u)
        for a, u in sorted(demo.agents.items())
        if any(failed(c) for c, x in demo.calls.items() if x == a)
    )
    own = sorted(c for c, a in demo.calls.items() if a == agent_id)
    other = next(c for c, a in sorted(demo.calls.items()) if a != agent_id)

    at = login(username, "my_calls")
    df = table(at, "acknowledged")
    assert sorted(df["call_id"]) == own

    at = login(username, call=other)
    assert NOT_PERMITTED in texts(at)
    assert not at.get("audio") and not shown_data(at, "")

    at = login(username, call=own[0])
    at.button(key="ack_score").click().run()
    assert "You acknowledged this score" in texts(at)
    if not failed(own[0]):
        assert "nothing to dispute" in texts(at)
    target = next(c for c in own if failed(c))
    at = login(username, call=target)
    assert at.selectbox(key="dispute_item").options == failed(target), "failed items only"
    item = next(i for i in wf.get_call(lead, target).items if i.outcome.value == "fail")
    at.selectbox(key="dispute_item").set_value(item.item_id)
    at.text_area(key="dispute_reason").input("I did this at 0:01")
    at.button(key="dispute_submit").click().run()
    assert not at.exception
    assert any(
        d.call_id == target and d.item_id == item.item_id for d in wf.list_disputes(lead, "open")
    )


# --------------------------------------------------------------------------- calibration


def test_calibration_shows_disagreement_and_lead_sets_final(demo):
    from qa.schema import ItemOutcome
    from qa.workflow import ReviewItemInput

    call_id = flagged_call(demo, 2)
    for key, flip in (("inspector", False), ("inspector2", True)):
        wf, user = as_user(demo, key)
        call = wf.get_call(user, call_id)
        opposite = {
            ItemOutcome.PASS: ItemOutcome.FAIL,
            ItemOutcome.FAIL: ItemOutcome.PASS,
            ItemOutcome.NA: ItemOutcome.FAIL,
        }
        items = [
            ReviewItemInput(
                item_id=i.item_id,
                outcome=(opposite[i.auto_outcome] if flip and n == 0 else i.auto_outcome),
            )
            for n, i in enumerate(call.items)
        ]
        wf.save_review(user, call_id, items, submit=True)

    at = login(demo.users["lead"], "calibration")
    at.selectbox(key="cal_call").set_value(call_id).run()
    assert "Disagreement on" in texts(at)
    per_item = table(at, "all agree")
    assert not per_item["all agree"].all()
    assert per_item["majority"].iloc[0] == "tie"  # 1-1 is a tie, not a majority
    # the card's total follows a flipped item before anything is saved
    first = call.items[0]
    shown = at.metric[-1].value
    flipped = opposite[first.auto_outcome].value
    at.radio(key=f"final:{call_id}:{first.item_id}").set_value(flipped).run()
    expected = call.outcome_of({first.item_id: flipped})
    assert at.metric[-1].value == f"{expected.total:.1f} · {'pass' if expected.passed else 'fail'}"
    assert at.metric[-1].value != shown or expected.total == call.auto_total
    at.text_area(key=f"final_note:{call_id}").input("agreed in calibration")
    at.button(key="final_submit").click().run()  # the card's arithmetic decides
    assert not at.exception
    wf, lead = as_user(demo, "lead")
    decided = wf.get_call(lead, call_id)
    chosen = {i.item_id: i.final_outcome for i in decided.items}
    assert decided.final_total == decided.outcome_of(chosen).total
    at.checkbox(key=f"final_override:{call_id}").check().run()
    at.number_input(key=f"final_total:{call_id}").set_value(88.0)
    at.button(key="final_submit").click().run()
    assert not at.exception
    assert wf.get_call(lead, call_id).final_total == 88.0

    # the lead sends one review back to its reviewer as a new draft revision
    at = login(demo.users["lead"], call=call_id)
    at.text_input(key="reopen_reason").input("recheck the first item")
    at.button(key="reopen_btn").click().run()
    assert not at.exception
    statuses = {r.reviewer: r.status.value for r in wf.reviews_for_call(lead, call_id)}
    assert sorted(statuses.values()) == ["draft", "submitted"]


# --------------------------------------------------------------------------- disputes


def test_lead_resolves_dispute_with_audit_trail(demo):
    wf, lead = as_user(demo, "lead")
    failed = [
        (c, i.item_id, demo.agents[a])
        for c, a in sorted(demo.calls.items())
        if a in demo.agents
        for i in wf.get_call(lead, c).items
        if i.outcome.value == "fail"
    ]
    call_id, item_id, username = failed[0]
    wf_a, agent = as_user(demo, username)
    d = wf_a.open_dispute(agent, call_id, item_id, "I did this properly")

    at = login(demo.users["lead"], "disputes")
    assert f"Dispute {d.id}" in texts(at)
    at.radio(key=f"decision:{d.id}").set_value("overturned").run()
    at.radio(key=f"rescore:{d.id}").set_value("partial").run()
    possible = next(i for i in wf.get_call(lead, call_id).items if i.item_id == item_id)
    at.number_input(key=f"points:{d.id}").set_value(possible.points_possible / 2)
    at.text_area(key=f"resolution:{d.id}").input("Partly there")
    at.button(key=f"resolve_btn:{d.id}").click().run()
    assert not at.exception
    decided = next(x for x in wf_a.list_disputes(agent) if x.id == d.id)
    assert (decided.status.value, decided.resolution) == ("overturned", "Partly there")
    after = next(i for i in wf.get_call(lead, call_id).items if i.item_id == item_id)
    assert after.final_points == possible.points_possible / 2
    trail = table(at, "old_value")
    assert ((trail["entity"] == "dispute") & (trail["entity_id"] == str(d.id))).any()


# --------------------------------------------------------------------------- coaching


def test_coaching_created_from_failed_items_and_acknowledged(demo):
    call_id = flagged_call(demo, 3)
    agent_id = demo.calls[call_id]
    at = login(demo.users["lead"], "coaching")
    at.text_input(key="co_agent").input(agent_id).run()
    at.selectbox(key="co_call").set_value(call_id).run()
    assert at.multiselect(key=f"co_items:{call_id}").value, "failed items are preselected"
    at.text_area(key="co_notes").input("Practise the recording disclosure")
    at.button(key="co_create").click().run()
    assert "Coaching session" in texts(at)
    assert "Pass rate before" in texts(at)

    at = login(demo.agents[agent_id], "coaching")
    sid = at.selectbox(key="co_pick").value
    at.button(key=f"co_ack:{sid}").click().run()
    wf, lead = as_user(demo, "lead")
    assert next(c for c in wf.list_coaching(lead) if c.id == sid).acknowledged_at is not None


# --------------------------------------------------------------------------- trends, cases


def test_trends_for_manager_with_charts_and_csv(demo):
    # a lead's decision of its own, so the figures below include one whatever ran before
    wf, lead = as_user(demo, "lead")
    decided = sorted(demo.calls)[0]
    wf.set_final_score(lead, decided, note="trend check")
    at = login(demo.users["manager"], "trends")
    # the figures match the service's final outcomes (lead decisions, overturned disputes)
    wf, manager = as_user(demo, "manager")
    rows = wf.final_outcomes(manager)
    assert any(r.finalised and r.call_id == decided for r in rows)
    metric = {m.label: m.value for m in at.metric}
    assert metric["Average score"] == f"{sum(r.total for r in rows) / len(rows):.1f}"
    assert metric["Pass rate"] == f"{sum(r.passed for r in rows) / len(rows):.0%}"
    assert metric["Final decisions"] == str(sum(r.finalised for r in rows))
    body = texts(at)
    assert "Average score" in body and "Auto-fail rate" in body
    assert len(at.get("vega_lite_chart")) >= 4
    weekly = table(at, "group")
    assert weekly["calls"].sum() == len(demo.calls)
    assert len(at.get("download_button")) >= 4
    at.selectbox(key="tr_by").set_value("agent_id").run()
    assert not at.exception
    assert set(table(at, "agent_id", "average_score")["agent_id"]) == set(demo.agents)


def test_automatic_and_human_scores_kept_apart(demo):
    """A reviewer and a lead disagree with the machine: the review page shows all three
    scores, and the manager's trends compare the automatic and human pass rates."""
    from qa.workflow import ReviewItemInput

    call_id = sorted(c for c in demo.calls if c not in demo.auto_failed)[-1]
    wf, inspector = as_user(demo, "inspector2")
    _, lead = as_user(demo, "lead")
    call = wf.get_call(lead, call_id)
    flip = {"pass": "fail", "fail": "pass", "na": "na"}
    items = [
        ReviewItemInput(
            item_id=i.item_id, outcome=flip[i.auto_outcome.value] if n else i.auto_outcome
        )
        for n, i in enumerate(call.items)
    ]
    review = wf.save_review(inspector, call_id, items, submit=True)
    call = wf.set_final_score(lead, call_id, [], passed=not call.auto_passed)

    at = login(demo.users["lead"], call=call_id)
    scores = table(at, "score", "by", "self-review", "total", "passed")
    rows = {r.score: r for r in scores.itertuples()}
    assert list(scores["score"]) == ["automatic", "review", "final"]
    assert rows["automatic"].total == pytest.approx(call.auto_total)
    assert rows["review"].total == pytest.approx(review.total)
    assert rows["final"].passed == (not call.auto_passed)

    at = login(demo.users["manager"], "trends")
    assert "Automatic vs human" in [tab.label for tab in at.tabs]
    _, manager = as_user(demo, "manager")
    vs = wf.auto_vs_human(manager)
    assert vs.calls >= 1
    metric = {m.label: m.value for m in at.metric}
    assert metric["Automatic pass rate"] == f"{vs.auto_pass_rate:.0%}"
    assert metric["Human pass rate"] == f"{vs.human_pass_rate:.0%}"
    per_item = table(at, "item_id", "calls", "agree", "agreement")
    assert len(per_item) == len(vs.items)
    assert per_item["agree"].sum() == sum(i.agree for i in vs.items)


@pytest.mark.parametrize("view", ["trends", "cases"])
def test_views_refused_to_agents_by_the_service(demo, view):
    """An agent who runs a page not in their menu is refused by qa.workflow, not the menu."""
    username = sorted(demo.agents.values())[0]
    _, token = workflow(demo).authenticate(username, DEMO_PASSWORD)
    at = AppTest.from_file(str(Path(APP).parent / "views" / f"{view}.py"), default_timeout=RUN_S)
    at.session_state["auth_token"] = token
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Not permitted" in texts(at)


def test_case_library_add_search_open(demo):
    call_id = sorted(demo.calls)[0]
    at = login(demo.users["inspector"], call=call_id)
    at.text_input(key="case_title").input("Textbook address change")
    at.text_input(key="case_tags").input("address, verification")
    at.button(key="case_submit").click().run()
    assert "Added to the case library" in texts(at)

    at.switch_page("views/cases.py").run()
    at.text_input(key="case_search").input("address").run()
    df = table(at, "tags")
    assert call_id in set(df["call_id"])
    at.button(key="case_open").click().run()
    assert "Call review" in [t.value for t in at.title]


def test_queue_run_by_an_agent_lists_only_own_calls(demo):
    """The queue is not in an agent's menu; run anyway, the service still narrows the list."""
    agent_id, username = sorted(demo.agents.items())[1]
    _, token = workflow(demo).authenticate(username, DEMO_PASSWORD)
    at = AppTest.from_file(str(Path(APP).parent / "views" / "queue.py"), default_timeout=RUN_S)
    at.session_state["auth_token"] = token
    at.run()
    at.toggle(key="q_flagged").set_value(False)
    at.radio(key="q_scope").set_value("all")
    at.selectbox(key="q_status").set_value("all").run()
    assert not at.exception
    ids = set(table(at, "flag reasons")["call_id"])
    assert ids == {c for c, a in demo.calls.items() if a == agent_id}
    assert "Assign and sample" not in texts(at)


# --------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_pages_render_with_100k_calls_in_the_index(tmp_path_factory, request):
    """Queue, call review and trends with 100,000 indexed calls, timed as AppTest reruns (the
    server-side render). The times are printed for `make bench`, not asserted: speed is
    measured in benchmarks."""
    import statistics
    import time

    from qa.bench.index import synthetic_table
    from qa.index import Index
    from qa.store import open_store

    settings = demo_settings(tmp_path_factory.mktemp("dash-bench") / "home")
    bench = build_demo(settings, synth_cache(request, tmp_path_factory), weeks=1)
    index = Index(open_store(settings))
    index.append_table(synthetic_table(100_000, seed=3))
    assert index.count() >= 100_000
    call_id = sorted(bench.auto_failed)[0]
    timings: dict[str, float] = {}
    first: dict[str, float] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in bench.settings_env.items():
            mp.setenv(key, value)
        for who, page, call in (
            ("inspector", "queue", None),
            ("inspector", "review", call_id),
            ("manager", "trends", None),
        ):
            at = login(bench.users[who])
            if call:
                at.query_params["call"] = call
            start = time.perf_counter()
            at.switch_page(f"views/{page}.py").run()
            first[page] = time.perf_counter() - start
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                at.run()
                runs.append(time.perf_counter() - start)
                assert not at.exception
            timings[page] = statistics.median(runs)
    if page == "trends":
        assert table(at, "group")["calls"].sum() >= 100_000
    print(
        "\ndashboard render seconds with 100,000 indexed calls, first:",
        {k: round(v, 3) for k, v in first.items()},
        "rerun (median of 3):",
        {k: round(v, 3) for k, v in timings.items()},
    )


# --------------------------------------------------------------------------- search

PHRASE_CALL = "nw_no_disclosure_no_verification"  # "... include roaming in Europe?"


def test_search_finds_the_moment_and_opens_the_call_there(demo):
    at = login(demo.users["inspector"], "search")
    at.text_input(key="s_text").input('"roaming in Europe"')
    at.button(key="s_submit").click().run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert ":orange-badge[roaming in Europe]" in shown
    assert f"{PHRASE_CALL}-w1" in shown.replace("\\", "")  # both weeks' copies
    buttons = [b for b in at.button if str(b.key).startswith("s_open:")]
    assert len(buttons) == 2
    at.button(key="s_open:1").click().run()  # the newest indexed last: week 0's call
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["call"] in ([PHRASE_CALL], PHRASE_CALL)
    start = workspace(at)["start"]
    assert start > 0
    said = [u for u in workspace(at)["utterances"] if u["start"] == start]
    assert "roaming in Europe" in said[0]["text"]

    # an agent finds the phrase in their own calls only
    owner = demo.agents[demo.calls[PHRASE_CALL]]
    other = next(u for a, u in demo.agents.items() if a != demo.calls[PHRASE_CALL])
    for username, hits in ((owner, 2), (other, 0)):
        at = login(username, "search")
        at.text_input(key="s_text").input("roaming Europe")
        at.button(key="s_submit").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert len([b for b in at.button if str(b.key).startswith("s_open:")]) == hits
        if not hits:
            assert "Nothing found" in texts(at)
