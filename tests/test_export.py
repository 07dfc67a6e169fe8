from __future__ import annotations

import pytest

from qa.asr.export import render, to_json, to_srt, to_vtt
from qa.schema import Role, Transcript, Utterance, Word


@pytest.fixture
def transcript() -> Transcript:
    return Transcript(
        call_id="c1",
        language="en",
        duration=3725.0,
        channels=2,
        speaker_source="channels",
        utterances=[
            Utterance(
                speaker="ch0",
                role=Role.AGENT,
                start=0.5,
                end=2.25,
                text="Thank you for calling.",
                words=[Word(start=0.5, end=2.25, text=" Thank you for calling.")],
            ),
            Utterance(speaker="ch1", start=3723.0, end=3724.999, text="Bye --> now\n\nsee you"),
        ],
    )


def test_srt(transcript):
    assert to_srt(transcript) == (
        "1\n00:00:00,500 --> 00:00:02,250\nagent: Thank you for calling.\n"
        "\n"
        "2\n01:02:03,000 --> 01:02:04,999\nch1: Bye -> now see you\n"
    )


def test_vtt(transcript):
    vtt = to_vtt(transcript)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\nagent: Thank you")
    assert "01:02:03.000 --> 01:02:04.999\nch1: Bye -> now see you\n" in vtt


def test_json_round_trip(transcript):
    back = Transcript.model_validate_json(to_json(transcript))
    assert back == transcript
    assert render(transcript, "json") == to_json(transcript)


def test_zero_length_utterance_gets_a_positive_cue():
    t = Transcript(
        call_id="c",
        language="en",
        duration=1.0,
        utterances=[Utterance(speaker="S0", start=1.0, end=1.0, text="ok")],
    )
    assert "00:00:01,000 --> 00:00:01,001" in to_srt(t)


def test_unknown_format(transcript):
    with pytest.raises(ValueError, match="unknown transcript format"):
        render(transcript, "docx")


# --------------------------------------------------------------------------- results export


def _stored_results(tmp_path):
    """A store holding scored scripted calls (no ASR), one with a newer revision."""
    from datetime import UTC, datetime, timedelta

    from qa.config import Settings
    from qa.results import publish_result
    from qa.rules.scripted import long_call
    from qa.schema import CallMeta, CallResult, Redaction
    from qa.scoring.scorecard import default_scorecard, score_call
    from qa.store import open_store

    settings = Settings(home=tmp_path / "home")
    store = open_store(settings)
    card = default_scorecard("en")
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    results = {}
    for n, call_id in enumerate(["c-1", "c-2", "c-3"]):
        transcript = long_call(1.0, seed=n, call_id=call_id)
        transcript.redactions = [
            Redaction(
                kind="card_number", start=1.0, end=2.0, utterance_index=0, placeholder="[CARD]"
            )
        ]
        meta = CallMeta(
            call_id=call_id,
            agent_id=f"A{n}",
            team="blue",
            queue="billing",
            started_at=start + timedelta(days=n),
            language="en",
            channel_roles={0: Role.CUSTOMER, 1: Role.AGENT},
            source="connect",
            customer_id=f"+4477009001{n}",
        )
        for created in (1, 2) if call_id == "c-2" else (1,):
            result = CallResult(
                meta=meta,
                transcript=transcript,
                score=score_call(transcript, meta, card),
                pipeline_version="p1" if created == 1 else "p1+r1",
                scorecard_version=card.version,
                created_at=datetime(2026, 3, 10 + created, tzinfo=UTC),
            )
            publish_result(store, result)
            results[call_id] = result
    return store, results


def test_results_export_json_round_trip(tmp_path):
    from qa.export import EXPORT_VERSION, export_results, read_export, to_export

    store, results = _stored_results(tmp_path)
    seen = []
    report = export_results(
        store, tmp_path / "out", "json", progress=lambda d, t, n: seen.append((d, t))
    )
    assert report.calls == 3 and not report.problems and seen[-1] == (3, 3)
    for call_id, result in results.items():
        back = read_export(tmp_path / "out" / f"{call_id}.json")
        assert back == to_export(result)
        assert back.version == EXPORT_VERSION and back.format == "qa.call"
        assert back.call.channel_roles == {0: "customer", 1: "agent"}
        assert back.call.customer_id == result.meta.customer_id
        assert back.score.total == result.score.total
        assert [i.item_id for i in back.items] == [i.item_id for i in result.score.items]
        assert [u.text for u in back.transcript.utterances] == [
            u.text for u in result.transcript.utterances
        ]
        assert back.transcript.redactions[0].placeholder == "[CARD]"
        assert back.metrics is not None
    # the newest result of a call is exported (its revision)
    assert read_export(tmp_path / "out" / "c-2.json").processing.pipeline_version == "p1+r1"


def test_results_export_csv_and_selection(tmp_path):
    import csv
    from datetime import UTC, datetime

    from qa.export import CALL_COLUMNS, ITEM_COLUMNS, ExportSelection, export_results

    store, results = _stored_results(tmp_path)
    out = tmp_path / "csv"
    sel = ExportSelection(since=datetime(2026, 3, 3, tzinfo=UTC), call_ids=None)
    report = export_results(store, out, "csv", sel)
    with (out / "calls.csv").open(newline="") as fh:
        calls = list(csv.DictReader(fh))
    with (out / "items.csv").open(newline="") as fh:
        items = list(csv.DictReader(fh))
    assert list(calls[0]) == CALL_COLUMNS and list(items[0]) == ITEM_COLUMNS
    assert [c["call_id"] for c in calls] == ["c-2", "c-3"]  # c-1 started before --since
    r = results["c-3"]
    row = calls[1]
    assert float(row["total"]) == pytest.approx(r.score.total, abs=0.001)
    assert row["passed"] == ("true" if r.score.passed else "false")
    assert row["agent_id"] == "A2" and row["customer_id"] == r.meta.customer_id
    failed = [i.item_id for i in r.score.items if i.outcome.value == "fail"]
    assert row["items_failed"] == ";".join(failed)
    mine = [i for i in items if i["call_id"] == "c-3"]
    assert [i["item_id"] for i in mine] == [i.item_id for i in r.score.items]
    assert report.items == len(items) and not list(out.glob(".*.tmp"))

    only = export_results(
        store, tmp_path / "one", "json", ExportSelection(call_ids=["c-1", "nope"])
    )
    assert only.calls == 1 and only.problems == {"nope": "no stored result"}
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["c-1.json"]


def test_results_export_command(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app
    from qa.config import get_settings

    _stored_results(tmp_path)
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        out = tmp_path / "x"
        res = CliRunner().invoke(
            app, ["export", "--format", "csv", "--out", str(out), "--since", "2026-03-03"]
        )
        assert res.exit_code == 0, res.output
        assert "exported 2 calls" in res.output and (out / "items.csv").is_file()
        res = CliRunner().invoke(app, ["export", "--out", str(out), "--call", "c-9"])
        assert res.exit_code == 1
    finally:
        get_settings.cache_clear()
