"""Transcript search: English and Chinese words and phrases, every filter, what an agent may
find, a rebuild from the store, and the rows the pipeline's publisher writes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from qa.errors import AccessDenied
from qa.schema import FlagCode, Role, Utterance
from qa.search import (
    SearchError,
    SearchIndex,
    SearchQuery,
    default_root,
    index_terms,
    match_expression,
    parse_query,
    snippet,
)
from qa.store import LocalStore
from qa.workflow.views import UserRole, UserView
from tests.test_index import T0, result

LINES = {
    "c1": [
        ("agent", "Thank you for calling, my name is Anna."),
        ("customer", "I want to cancel my order and get a refund."),
        ("agent", "I can process the refund today."),
    ],
    "c2": [
        ("agent", "您好，请问有什么可以帮您？"),
        ("customer", "我想申请退款，订单号已经发给你们了。"),
    ],
    "c3": [
        ("agent", "Good morning, how can I help?"),
        ("customer", "My order never arrived, I would like to cancel."),
    ],
}


def call(call_id: str, **kw):
    r = result(call_id, **kw)
    utts = [
        Utterance(speaker=role, role=Role(role), start=5.0 * n, end=5.0 * n + 4.0, text=text)
        for n, (role, text) in enumerate(LINES[call_id])
    ]
    lang = "zh" if call_id == "c2" else "en"
    return r.model_copy(
        update={
            "transcript": r.transcript.model_copy(update={"utterances": utts, "language": lang})
        }
    )


def user(role: UserRole, agent_id: str | None = None) -> UserView:
    return UserView(id=1, username="u", display_name="U", role=role, agent_id=agent_id)


@pytest.fixture
def index(tmp_path) -> SearchIndex:
    ix = SearchIndex(tmp_path / "search")
    ix.add(
        [
            call("c1", agent="a1", team="blue", total=95.0),
            call(
                "c2",
                agent="a2",
                team="red",
                total=60.0,
                fails=("verify",),
                flags=(FlagCode.AUTO_FAIL,),
                started=T0 + timedelta(days=3),
            ),
            call("c3", agent="a1", team="blue", total=75.0, started=T0 - timedelta(days=3)),
        ]
    )
    return ix


def found(ix: SearchIndex, text: str, who: UserView | None = None, **kw) -> list[tuple[str, float]]:
    return [(h.call_id, h.start) for h in ix.search(who, SearchQuery(text=text, **kw)).hits]


def test_terms_and_query_parsing():
    assert index_terms("申请退款 VIP会员, Ｒｅｆｕｎｄ") == "申请 请退 退款 vip 会员 refund"
    assert parse_query('refund "cancel my order" 退款') == ["refund", "cancel my order", "退款"]
    assert match_expression(["cancel my order", "退"]) == '"cancel my order" AND "退"*'
    with pytest.raises(SearchError):
        parse_query('  "" ,, ')
    with pytest.raises(SearchError):
        parse_query("x" * 500)


def test_english_words_and_quoted_phrases(index):
    assert found(index, "refund") == [("c1", 10.0), ("c1", 5.0)]  # newest indexed first
    assert found(index, "REFUND today") == [("c1", 10.0)]  # every word, any case
    assert found(index, '"cancel my order"') == [("c1", 5.0)]
    assert found(index, "cancel order") == [("c3", 5.0), ("c1", 5.0)]
    assert found(index, '"order cancel"') == []
    assert found(index, "refun") == []  # whole words


def test_chinese_words_and_phrases(index):
    assert found(index, "退款") == [("c2", 5.0)]
    assert found(index, '"申请退款"') == [("c2", 5.0)]
    assert found(index, "请问") == [("c2", 0.0)]
    assert found(index, "申请 订单号") == [("c2", 5.0)]
    assert found(index, '"退款申请"') == []


def test_snippet_marks_matches_as_plain_text():
    parts = snippet("Refund *now*, the refund", ["refund"])
    assert [(p.text, p.hit) for p in parts] == [
        ("Refund", True),
        (" *now*, the ", False),
        ("refund", True),
    ]
    long = "word " * 100 + "refund " + "word " * 100
    parts = snippet(long, ["refund"], width=60)
    assert parts[0].text == "…" and parts[-1].text == "…"
    assert any(p.hit and p.text == "refund" for p in parts)
    assert [p.text for p in snippet("我想申请退款", ["退款"]) if p.hit] == ["退款"]


def test_every_filter(index):
    assert found(index, "cancel", agent_id="a1") == [("c3", 5.0), ("c1", 5.0)]
    assert found(index, "cancel", agent_id="a2") == []
    assert found(index, "cancel", team="red") == []
    assert found(index, "refund", queue="billing") == [("c1", 10.0), ("c1", 5.0)]
    assert found(index, "refund", queue="sales") == []
    assert found(index, "cancel", since=T0.date()) == [("c1", 5.0)]
    assert found(index, "cancel", until=T0.date()) == [("c3", 5.0)]
    assert found(index, "cancel", since=T0 + timedelta(days=10)) == []
    assert found(index, "cancel", min_score=80) == [("c1", 5.0)]
    assert found(index, "cancel", max_score=80) == [("c3", 5.0)]
    assert found(index, "退款", flag="auto_fail") == [("c2", 5.0)]
    assert found(index, "cancel", flag="auto_fail") == []
    assert found(index, "退款", item_failed="verify") == [("c2", 5.0)]
    assert found(index, "refund", item_failed="verify") == []
    assert found(index, "refund", role="agent") == [("c1", 10.0)]
    assert found(index, "refund", role="customer") == [("c1", 5.0)]
    more = index.search(None, SearchQuery(text="refund", limit=1))
    assert len(more.hits) == 1 and more.more


def test_an_agent_finds_only_own_calls(index):
    a1, a2 = user(UserRole.AGENT, "a1"), user(UserRole.AGENT, "a2")
    assert {c for c, _ in found(index, "cancel", a1)} == {"c1", "c3"}
    assert found(index, "cancel", a2) == []
    assert found(index, "cancel", a2, agent_id="a1") == []  # naming another agent: nothing
    assert found(index, "退款", a1) == []
    assert found(index, "cancel", user(UserRole.AGENT, None)) == []
    assert len(found(index, "cancel", user(UserRole.INSPECTOR))) == 2
    assert len(found(index, "cancel", user(UserRole.MANAGER))) == 2
    with pytest.raises(AccessDenied):
        index.search(user(UserRole.ADMIN), SearchQuery(text="cancel"))


def test_a_newer_result_replaces_a_call_and_an_older_one_does_not(index):
    newer = call("c3", agent="a1", processed=T0 + timedelta(days=30))
    newer.transcript.utterances[1].text = "It arrived broken."
    index.add([newer])
    assert found(index, "arrived broken") == [("c3", 5.0)]
    assert found(index, "never arrived") == []
    index.add([call("c3", agent="a1")])  # older: ignored
    assert found(index, "never arrived") == []
    assert index.counts() == (3, 7)


def test_rebuild_from_the_store_keeps_each_calls_newest(tmp_path, index):
    from qa.results import publish_result

    store = LocalStore(tmp_path / "store")
    old = call("c1", processed=T0)
    new = call("c1", processed=T0 + timedelta(hours=5), pipeline="2.0")
    new.transcript.utterances[2].text = "The refund is on its way."
    for r in (old, new, call("c2")):
        publish_result(store, r)
    report = index.rebuild(store)
    assert (report.results, report.calls, report.utterances) == (3, 2, 5)
    assert found(index, '"on its way"') == [("c1", 10.0)]
    assert found(index, "cancel") == [("c1", 5.0)]  # c3 was not in the store
    assert [f.name for f in (tmp_path / "search").glob("search-*.db")] == [
        index._current().name  # the old generation is gone
    ]


def test_publishing_results_builds_the_index(settings):
    from qa.pipeline import PIPELINE_VERSION
    from workers.batch import Publisher

    publisher = Publisher(settings)
    try:
        for r in (call("c1", pipeline=PIPELINE_VERSION), call("c2", pipeline=PIPELINE_VERSION)):
            assert publisher.result(r)
        publisher.flush()
    finally:
        getattr(publisher, "close", lambda: None)()
    ix = SearchIndex(default_root(settings.home))
    assert found(ix, "退款") == [("c2", 5.0)]
    assert found(ix, '"cancel my order"') == [("c1", 5.0)]
    # a result the search missed (a crash before the flush) is added by the next run
    (default_root(settings.home) / "CURRENT").unlink()
    assert SearchIndex(default_root(settings.home)).call_ids() == set()
    fresh = Publisher(settings)
    try:
        fresh.catch_up({"cs@2"})
    finally:
        getattr(fresh, "close", lambda: None)()
    assert SearchIndex(default_root(settings.home)).call_ids() == {"c1", "c2"}


def test_cli_search_and_rebuild(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app
    from qa.results import publish_result

    home = tmp_path / "home"
    monkeypatch.setenv("QA_HOME", str(home))
    monkeypatch.delenv("QA_STORE_URL", raising=False)
    store = LocalStore(home / "store")
    for r in (call("c1"), call("c2")):
        publish_result(store, r)
    runner = CliRunner()
    out = runner.invoke(app, ["index", "rebuild"])
    assert out.exit_code == 0, out.output
    assert "transcript search: 5 utterances of 2 calls" in out.output
    out = runner.invoke(app, ["search", '"get a refund"', "--role", "customer"])
    assert out.exit_code == 0, out.output
    assert "c1" in out.output and "0:05" in out.output and "1 hit" in out.output
    out = runner.invoke(app, ["search", "退款", "--agent", "nobody"])
    assert "0 hit" in out.output
