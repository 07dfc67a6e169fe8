"""`qa ingest --from connect|genesys|twilio`: vendor records mapped to CallMeta.

Fixtures are generated in each platform's documented layout: Connect contact records
(delivered at least once, back to back as Firehose writes them), Genesys bulk-export
`_metadata.json` files beside the recordings, Twilio Recording resources (RFC 2822 dates).
Recordings are tiny stereo WAVs with a different tone on each channel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from qa.ingest_vendors import VendorOptions, ingest_vendor, plan
from qa.schema import CallMeta, Direction, Role
from qa.store import keys, open_store

CUSTOMER_LEFT = {0: Role.CUSTOMER, 1: Role.AGENT}
AGENT_LEFT = {0: Role.AGENT, 1: Role.CUSTOMER}


def stereo(path: Path, left: float = 300.0, right: float = 520.0, seconds: float = 1.0) -> Path:
    rate = 8000
    t = np.arange(int(seconds * rate)) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * left * t), 0.2 * np.sin(2 * np.pi * right * t)], 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype="PCM_16")
    return path


def stored(settings, call_id: str) -> CallMeta:
    return open_store(settings).get_json(keys.meta(call_id), model=CallMeta)


# --------------------------------------------------------------------------- Amazon Connect

C1 = "6a1c2f4e-0b9d-4c1a-9f5e-2d7b8c3a1e01"
C2 = "7b2d3a5f-1cae-4d2b-8a6f-3e8c9d4b2f02"


def ctr(contact_id: str, updated: str, queue: str = "Billing", **extra: Any) -> dict[str, Any]:
    """A contact record as Amazon documents it (the fields used, and some that are not)."""
    record: dict[str, Any] = {
        "AWSAccountId": "123456789012",
        "AWSContactTraceRecordFormatVersion": "2017-03-10",
        "ContactId": contact_id,
        "InstanceARN": "arn:aws:connect:eu-west-2:123456789012:instance/abc",
        "Channel": "VOICE",
        "InitiationMethod": "INBOUND",
        "InitiationTimestamp": "2025-03-04T09:30:00Z",
        "ConnectedToSystemTimestamp": "2025-03-04T09:30:01Z",
        "DisconnectTimestamp": "2025-03-04T09:34:10Z",
        "LastUpdateTimestamp": updated,
        "Agent": {
            "ARN": "arn:aws:connect:eu-west-2:123456789012:instance/abc/agent/0f1e2d",
            "Username": "jsmith",
            "RoutingProfile": {"ARN": "arn:...:routing-profile/rp1", "Name": "Team Blue"},
            "AgentInteractionDuration": 240,
        },
        "Queue": {"ARN": "arn:...:queue/q1", "Name": queue, "Duration": 12},
        "CustomerEndpoint": {"Address": "+447700900123", "Type": "TELEPHONE_NUMBER"},
        "SystemEndpoint": {"Address": "+442079460000", "Type": "TELEPHONE_NUMBER"},
        "Recording": {
            "Location": f"my-bucket/connect/abc/CallRecordings/2025/03/04/{contact_id}"
            "_20250304T09:30_UTC.wav",
            "Status": "AVAILABLE",
            "Type": "AUDIO",
        },
        "Attributes": {"intent": "billing"},
    }
    record.update(extra)
    return record


def connect_delivery(root: Path) -> Path:
    d = root / "connect"
    stereo(d / "CallRecordings" / f"{C1}_20250304T09:30_UTC.wav", 300, 520)
    stereo(d / "CallRecordings" / f"{C2}_20250304T09:30_UTC.wav", 350, 610)
    # Firehose: objects back to back. C1 arrives, is updated (queue changed), and the
    # update is delivered twice; C2 once.
    first = [ctr(C1, "2025-03-04T09:34:11Z", queue="General")]
    second = [
        ctr(C1, "2025-03-04T09:40:00Z", queue="Billing"),
        ctr(C2, "2025-03-04T09:35:00Z", InitiationMethod="OUTBOUND"),
        ctr(C1, "2025-03-04T09:40:00Z", queue="Billing"),
    ]
    (d / "ctr").mkdir()
    (d / "ctr" / "part-1").with_suffix(".json").write_text(json.dumps(first[0]))
    (d / "ctr" / "part-2.json").write_text("".join(json.dumps(r) for r in second))
    return d


def test_connect_maps_the_latest_update_and_the_channel_map(tmp_path: Path, settings):
    report = ingest_vendor(open_store(settings), "connect", [connect_delivery(tmp_path)], settings)

    assert sorted(c.call_id for c in report.ingested) == [C1, C2]
    assert not report.rejected
    reasons = sorted(d.reason.split(" (")[0] for d in report.duplicates)
    assert reasons == [
        "repeat delivery of the update at 2025-03-04T09:40:00+00:00",
        "superseded by the update at 2025-03-04T09:40:00+00:00",
    ]
    repeat = next(d for d in report.duplicates if d.reason.startswith("repeat"))
    assert repeat.file.endswith("part-2.json record 3") and repeat.call_id == C1

    m1 = stored(settings, C1)
    assert m1.channel_roles == CUSTOMER_LEFT  # agent on the right channel
    assert (m1.agent_id, m1.team, m1.queue) == ("jsmith", "Team Blue", "Billing")
    assert m1.direction == Direction.INBOUND and m1.source == "connect"
    assert m1.customer_id == "+447700900123"
    assert m1.started_at is not None and m1.started_at.isoformat() == "2025-03-04T09:30:00+00:00"
    assert m1.duration == pytest.approx(1.0, abs=0.01)
    assert stored(settings, C2).direction == Direction.OUTBOUND


def test_connect_delivered_again_is_skipped_not_overwritten(tmp_path: Path, settings):
    d = connect_delivery(tmp_path)
    store = open_store(settings)
    ingest_vendor(store, "connect", [d], settings)
    before = store.get_bytes(keys.meta(C1))
    again = ingest_vendor(store, "connect", [d], settings)
    assert not again.ingested and not again.rejected
    assert {x.existing_call_id for x in again.duplicates} >= {C1, C2}
    assert store.get_bytes(keys.meta(C1)) == before


def test_connect_agent_channel_option(tmp_path: Path):
    out = plan("connect", [connect_delivery(tmp_path)], VendorOptions(agent_channel=0))
    assert {c.meta.channel_roles == AGENT_LEFT for c in out.calls} == {True}


@pytest.mark.parametrize(
    "change, column, words",
    [
        ({"LastUpdateTimestamp": None}, "LastUpdateTimestamp", "datetime"),
        ({"InitiationTimestamp": "yesterday"}, "InitiationTimestamp", "datetime"),
        ({"ContactId": "bad id/1"}, "ContactId", "invalid call id"),
        ({"Agent": {"Username": 7}}, "Agent.Username", "string"),
        ({"InitiationMethod": "SIDEWAYS"}, "InitiationMethod", "not a call direction"),
    ],
)
def test_connect_bad_fields_name_file_and_field(tmp_path: Path, change, column, words):
    d = tmp_path / "c"
    stereo(d / f"{C1}_20250304T09:30_UTC.wav")
    record = ctr(C1, "2025-03-04T09:40:00Z")
    record.update(change)
    (d / "ctr.json").write_text(json.dumps(record))
    out = plan("connect", [d], VendorOptions())
    assert not out.calls
    assert len(out.rejected) == 1, out.rejected  # the recording is claimed, not reported again
    r = out.rejected[0]
    assert r.file == str(d / "ctr.json") and r.column == column
    assert column in r.reason and words in r.reason


def test_connect_missing_field_and_unpaired_files(tmp_path: Path):
    d = tmp_path / "c"
    stereo(d / "stray.wav")
    record = ctr(C1, "2025-03-04T09:40:00Z")
    del record["Channel"]
    chat = ctr(C2, "2025-03-04T09:40:00Z", Channel="CHAT", Recording=None)
    (d / "ctr.json").write_text(json.dumps([record, chat, ctr("c-3", "2025-03-04T09:40:00Z")]))
    out = plan("connect", [d], VendorOptions())
    by_file = {(r.file, r.row): r for r in out.rejected}
    assert by_file[(str(d / "ctr.json"), 1)].reason == "Channel: missing"
    assert "not among the files given" in by_file[(str(d / "ctr.json"), 3)].reason
    assert "no Amazon Connect contact record names" in by_file[(str(d / "stray.wav"), None)].reason
    assert any("CHAT contact" in i for i in out.ignored)


def test_connect_not_json(tmp_path: Path):
    d = tmp_path / "c"
    d.mkdir()
    (d / "ctr.json").write_text('{"ContactId": ')
    out = plan("connect", [d], VendorOptions())
    assert out.rejected[0].file == str(d / "ctr.json")
    assert "not valid JSON" in out.rejected[0].reason


# --------------------------------------------------------------------------- Genesys Cloud

CONV = "3f6c1d2e-8a4b-4e6f-9c1d-2b3a4c5d6e7f"


def genesys_meta(recording_id: str, **extra: Any) -> dict[str, Any]:
    """A recording's metadata in the bulk-export layout."""
    record: dict[str, Any] = {
        "mediaType": "Call",
        "mediaSubtype": "Trunk",
        "provider": "Genesys Cloud",
        "conversationId": CONV,
        "recordingId": recording_id,
        "userIds": ["u-agent-1"],
        "queueIds": ["q-billing"],
        "divisionIds": ["d-1"],
        "direction": "inbound",
        "ani": "tel:+15550100",
        "dnis": "tel:+15550199",
        "conversationStartTime": "2025-03-04T09:30:00.000Z",
        "conversationEndTime": "2025-03-04T09:41:00.000Z",
        "participants": [
            {"purpose": "customer", "ani": "tel:+15550100", "name": "Caller"},
            {"purpose": "acd", "queueId": "q-billing", "queueName": "Billing"},
            {"purpose": "agent", "userId": "u-agent-1", "name": "Jo Agent", "queueId": "q-billing"},
        ],
    }
    record.update(extra)
    return record


def genesys_export(root: Path, recordings: dict[str, dict[str, Any]]) -> Path:
    folder = root / "org" / "year=2025" / "month=3" / "day=4" / "hour=9" / f"conversation_id={CONV}"
    for i, (rec, meta) in enumerate(recordings.items()):
        stereo(folder / f"{rec}.wav", 300 + 40 * i, 520 + 30 * i)
        (folder / f"{rec}_metadata.json").write_text(json.dumps(meta))
    return root / "org"


def test_genesys_maps_the_export(tmp_path: Path, settings):
    root = genesys_export(tmp_path, {"r-1": genesys_meta("r-1")})
    report = ingest_vendor(open_store(settings), "genesys", [root], settings)
    assert [c.call_id for c in report.ingested] == [CONV] and not report.rejected
    m = stored(settings, CONV)
    assert m.channel_roles == CUSTOMER_LEFT
    assert (m.agent_id, m.queue, m.direction) == ("u-agent-1", "Billing", Direction.INBOUND)
    assert m.customer_id == "tel:+15550100" and m.source == "genesys"
    assert m.started_at is not None and m.started_at.isoformat() == "2025-03-04T09:30:00+00:00"


def test_genesys_several_recordings_and_bad_records(tmp_path: Path):
    root = genesys_export(
        tmp_path,
        {
            "r-1": genesys_meta("r-1", direction="OUTBOUND"),
            "r-2": genesys_meta("r-2"),
            "r-3": genesys_meta("r-3", direction="sideways"),
            "r-4": {k: v for k, v in genesys_meta("r-4").items() if k != "conversationStartTime"},
            "r-5": genesys_meta("r-5", mediaType="Screen"),
        },
    )
    out = plan("genesys", [root], VendorOptions(agent_channel=0))
    ids = {c.meta.call_id: c.meta for c in out.calls}
    assert set(ids) == {f"{CONV}.r-1", f"{CONV}.r-2"}
    assert ids[f"{CONV}.r-1"].direction == Direction.OUTBOUND
    assert ids[f"{CONV}.r-1"].channel_roles == AGENT_LEFT
    assert ids[f"{CONV}.r-1"].customer_id == "tel:+15550100"  # the customer participant
    reasons = {Path(r.file or "").name: r for r in out.rejected}
    assert reasons["r-3_metadata.json"].column == "direction"
    assert "direction" in reasons["r-3_metadata.json"].reason
    assert reasons["r-4_metadata.json"].reason == "conversationStartTime: missing"
    assert "r-3.wav" not in reasons  # claimed by its rejected metadata
    assert any("Screen recording" in i for i in out.ignored)


def test_genesys_metadata_without_recording(tmp_path: Path):
    d = tmp_path / "g"
    d.mkdir()
    (d / "r-9_metadata.json").write_text(json.dumps(genesys_meta("r-9")))
    stereo(d / "other.wav")
    out = plan("genesys", [d], VendorOptions())
    reasons = {Path(r.file or "").name: r.reason for r in out.rejected}
    assert "not among the files given" in reasons["r-9_metadata.json"]
    assert "no Genesys _metadata.json record names" in reasons["other.wav"]


# --------------------------------------------------------------------------- Twilio

CALL_SID = "CA0123456789abcdef0123456789abcdef"


def twilio_recording(sid: str, direction: str | None = "inbound", **extra: Any) -> dict[str, Any]:
    """A Recording resource as the REST API returns it (RFC 2822 dates), with the Call
    resource saved beside it under "call"."""
    record: dict[str, Any] = {
        "account_sid": "AC" + "0" * 32,
        "api_version": "2010-04-01",
        "call_sid": CALL_SID,
        "conference_sid": None,
        "date_created": "Tue, 04 Mar 2025 09:30:05 +0000",
        "date_updated": "Tue, 04 Mar 2025 09:34:10 +0000",
        "start_time": "Tue, 04 Mar 2025 09:30:00 +0000",
        "duration": "245",
        "sid": sid,
        "price": "-0.0025",
        "price_unit": "USD",
        "status": "completed",
        "channels": 2,
        "source": "DialVerb",
        "error_code": None,
        "uri": f"/2010-04-01/Accounts/AC.../Recordings/{sid}.json",
    }
    if direction:
        record["call"] = {
            "sid": CALL_SID,
            "direction": direction,
            "from": "+15550100" if direction == "inbound" else "+15550199",
            "to": "+15550199" if direction == "inbound" else "client:alice",
        }
    record.update(extra)
    return record


def twilio_files(d: Path, records: list[dict[str, Any]]) -> Path:
    for i, r in enumerate(records):
        stereo(d / f"{r['sid']}.wav", 300 + 50 * i, 520 + 20 * i)
        (d / f"{r['sid']}.json").write_text(json.dumps(r))
    return d


RE1, RE2 = "RE" + "1" * 32, "RE" + "2" * 32


def test_twilio_legs_follow_the_direction(tmp_path: Path, settings):
    d = twilio_files(tmp_path / "t", [twilio_recording(RE1)])
    report = ingest_vendor(open_store(settings), "twilio", [d], settings)
    assert [c.call_id for c in report.ingested] == [CALL_SID] and not report.rejected
    m = stored(settings, CALL_SID)
    # inbound: the caller is the parent leg (channel 1), the agent the <Dial>ed child
    assert m.channel_roles == CUSTOMER_LEFT and m.direction == Direction.INBOUND
    assert m.customer_id == "+15550100" and m.source == "twilio"
    assert m.started_at is not None and m.started_at.isoformat() == "2025-03-04T09:30:00+00:00"


def test_twilio_outbound_and_the_agent_leg_option(tmp_path: Path):
    d = twilio_files(tmp_path / "t", [twilio_recording(RE1, "outbound-api")])
    (out,) = plan("twilio", [d], VendorOptions()).calls
    assert out.meta.channel_roles == AGENT_LEFT and out.meta.direction == Direction.OUTBOUND
    assert out.meta.agent_id == "alice"  # the parent leg rang the agent's Twilio Client
    assert out.meta.customer_id is None  # the child leg's address is not in the parent call
    (forced,) = plan("twilio", [d], VendorOptions(agent_leg="child")).calls
    assert forced.meta.channel_roles == CUSTOMER_LEFT


def test_twilio_without_call_resource_is_taken_as_inbound(tmp_path: Path):
    d = twilio_files(tmp_path / "t", [twilio_recording(RE1, None), twilio_recording(RE2, None)])
    out = plan("twilio", [d], VendorOptions())
    assert sorted(c.meta.call_id for c in out.calls) == [f"{CALL_SID}.{RE1}", f"{CALL_SID}.{RE2}"]
    assert {c.meta.channel_roles == CUSTOMER_LEFT for c in out.calls} == {True}


def test_twilio_bad_records(tmp_path: Path):
    mono = twilio_recording(RE1, channels=1)
    no_call = {k: v for k, v in twilio_recording(RE2).items() if k != "call_sid"}
    d = twilio_files(tmp_path / "t", [mono, no_call])
    out = plan("twilio", [d], VendorOptions())
    assert not out.calls
    reasons = {Path(r.file or "").name: r for r in out.rejected}
    assert reasons[f"{RE1}.json"].column == "channels"
    assert "dual-channel" in reasons[f"{RE1}.json"].reason
    assert reasons[f"{RE2}.json"].reason == "call_sid: missing"
    assert len(out.rejected) == 2  # the recordings are claimed by their records


def test_cli_from_vendor_exit_codes(tmp_path: Path, monkeypatch):
    from qa.cli import app
    from qa.config import get_settings

    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        d = twilio_files(tmp_path / "t", [twilio_recording(RE1)])
        ok = CliRunner().invoke(
            app, ["ingest", "--from", "twilio", "--agent-leg", "parent", str(d)]
        )
        assert ok.exit_code == 0, ok.output
        assert "1 ingested" in ok.output
        meta = open_store(get_settings()).get_json(keys.meta(CALL_SID), model=CallMeta)
        assert meta.channel_roles == AGENT_LEFT
        stereo(d / "stray.wav")
        bad = CliRunner().invoke(app, ["ingest", "--from", "twilio", str(d)])
        assert bad.exit_code == 1 and "1 duplicates, 1 rejected" in bad.output
        wrong = CliRunner().invoke(app, ["ingest", "--from", "avaya", str(d)])
        assert wrong.exit_code != 0
    finally:
        get_settings.cache_clear()
