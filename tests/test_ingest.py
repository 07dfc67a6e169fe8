"""Ingest: validation report, de-duplication, no overwrite, bad files skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from qa.errors import MetadataError
from qa.ingest import ingest, iter_calls, parse_channel_roles
from qa.schema import CallMeta, Role
from qa.store import keys, open_store

pytest_plugins = ["s3server"]


def tone(
    path: Path, freq: float = 440.0, seconds: float = 1.5, channels: int = 1, rate: int = 8000
) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sig = 0.3 * np.sin(2 * np.pi * freq * t)
    data = np.stack([sig * (1 + 0.1 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, subtype="PCM_16")
    return path


@pytest.fixture
def calls_dir(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    tone(d / "c1.wav", 300, channels=2)
    tone(d / "c2.wav", 500)
    tone(d / "c3.wav", 700, channels=2)
    (d / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (d / "notes.txt").write_text("not audio")
    return d


def test_channel_roles():
    assert parse_channel_roles("0=agent, 1=Customer") == {0: Role.AGENT, 1: Role.CUSTOMER}
    for bad, msg in [
        ("0:agent", "channel=role"),
        ("x=agent", "not a number"),
        ("0=boss", "not one of"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_channel_roles(bad)


def test_ingest_with_metadata_report(calls_dir: Path, tmp_path: Path, settings):
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "file,call_id,agent_id,team,queue,direction,started_at,language,channels\n"
        "in/c1.wav,call-1,a1,blue,billing,inbound,2025-03-04T09:30:00+01:00,en,"
        '"0=agent,1=customer"\n'
        "in/c2.wav,call-2,a2,red,sales,sideways,2025-03-04 10:00,en,\n"  # bad direction
        "in/c3.wav,call-3,a1,blue,billing,outbound,yesterday,en,\n"  # bad time
        "in/missing.wav,call-4,a1,blue,billing,inbound,,en,\n"  # no such file
        "in/c4.wav,call 5,a1,blue,billing,inbound,,en,\n"  # bad call id
    )
    tone(calls_dir / "c4.wav", 900)
    store = open_store(settings)
    report = ingest(store, [calls_dir], meta, settings)

    assert [c.call_id for c in report.ingested] == ["call-1"]
    by_row = {r.row: r for r in report.rejected}
    assert by_row[3].column == "direction" and "sideways" in by_row[3].reason
    assert by_row[4].column == "started_at" and "ISO 8601" in by_row[4].reason
    assert by_row[5].column == "file"
    assert by_row[6].column == "call_id" and "invalid call id" in by_row[6].reason
    broken = [r for r in report.rejected if r.file and r.file.endswith("broken.wav")]
    assert len(broken) == 1 and broken[0].row is None
    assert report.ignored == [str(calls_dir / "notes.txt")]

    meta1 = store.get_json(keys.meta("call-1"), model=CallMeta)
    assert meta1.team == "blue" and meta1.channel_roles == {0: Role.AGENT, 1: Role.CUSTOMER}
    assert meta1.started_at.utcoffset().total_seconds() == 3600
    assert meta1.duration == pytest.approx(1.5, abs=0.01)
    assert store.get_bytes(meta1.audio_key) == (calls_dir / "c1.wav").read_bytes()
    assert store.get_json(keys.content_hash(meta1.audio_sha256))["call_id"] == "call-1"


def test_dedup_and_never_overwrite(calls_dir: Path, tmp_path: Path, settings):
    store = open_store(settings)
    first = ingest(store, [calls_dir / "c1.wav", calls_dir / "c2.wav"], None, settings)
    assert sorted(c.call_id for c in first.ingested) == ["c1", "c2"]

    # Same content under another name: a duplicate of c1, nothing written.
    copy = tmp_path / "other" / "renamed.wav"
    copy.parent.mkdir()
    copy.write_bytes((calls_dir / "c1.wav").read_bytes())
    # Different content under an existing id: rejected, the stored audio is untouched.
    clash = tone(tmp_path / "clash" / "c2.wav", 900)
    again = ingest(store, [copy, clash, calls_dir / "c1.wav"], None, settings)
    assert again.ingested == []
    assert {(d.call_id, d.existing_call_id) for d in again.duplicates} == {
        ("renamed", "c1"),
        ("c1", "c1"),
    }
    assert (
        len(again.rejected) == 1
        and "already exists with different audio" in again.rejected[0].reason
    )
    assert store.get_bytes("originals/c2/audio.wav") == (calls_dir / "c2.wav").read_bytes()
    assert not store.exists(keys.meta("renamed"))
    assert [m.call_id for m in iter_calls(store)] == ["c1", "c2"]


def test_crash_before_hash_entry_is_repaired(calls_dir: Path, settings):
    store = open_store(settings)
    report = ingest(store, [calls_dir / "c2.wav"], None, settings)
    sha = report.ingested[0].sha256
    store.delete(keys.content_hash(sha))  # as if the process died after meta.json
    again = ingest(store, [calls_dir / "c2.wav"], None, settings)
    assert again.ingested == [] and again.duplicates[0].existing_call_id == "c2"
    assert store.exists(keys.content_hash(sha))


def test_bad_csv_header_is_a_typed_error(calls_dir: Path, tmp_path: Path, settings):
    meta = tmp_path / "meta.csv"
    meta.write_text("file,agnet_id\nin/c1.wav,a1\n")
    with pytest.raises(MetadataError, match="agnet_id"):
        ingest(open_store(settings), [calls_dir], meta, settings)


def test_rows_matched_by_call_id_and_bad_channels(calls_dir: Path, tmp_path: Path, settings):
    meta = tmp_path / "m.csv"
    meta.write_text(
        'call_id,team,channels\nc2,green,"0=agent,1=customer"\n'
        "c3,green,0=agent;1=customer\nc1,green,\n"
    )
    report = ingest(
        open_store(settings), [calls_dir / f"c{i}.wav" for i in (1, 2, 3)], meta, settings
    )
    assert sorted(c.call_id for c in report.ingested) == ["c1", "c3"]
    (rej,) = report.rejected
    assert rej.row == 2 and rej.column == "channels" and "1 channel" in rej.reason


@pytest.mark.integration
def test_ingest_into_s3(calls_dir: Path, s3_settings):
    store = open_store(s3_settings)
    report = ingest(store, [calls_dir / "c1.wav", calls_dir / "c1.wav"], None, s3_settings)
    assert [c.call_id for c in report.ingested] == ["c1"] and len(report.duplicates) == 1
    assert store.get_json(keys.meta("c1"), model=CallMeta).audio_key == "originals/c1/audio.wav"


def test_cli_ingest(calls_dir: Path, tmp_path: Path, monkeypatch):
    from qa import cli
    from qa.cli import app
    from qa.config import get_settings

    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["ingest", str(calls_dir)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output  # broken.wav is rejected
    assert "c3" in result.output and "broken.wav" in result.output
    assert "3 ingested" in result.output


def _stored(store) -> list[str]:
    return sorted(
        {
            k
            for prefix in ("calls/", keys.audio("x", "wav").split("/")[0] + "/")
            for k in store.list(prefix)
        }
    )


def test_rejected_row_stores_nothing(calls_dir: Path, tmp_path: Path, settings):
    """A row refused for its call id still claims its recording: nothing of it is stored,
    rather than a call without agent or team."""
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "file,call_id,agent_id,team\n"
        "in/c1.wav,call-1,a1,blue\n"
        "in/c2.wav,call-1,a2,red\n"  # the same call id, other values
        "in/c3.wav,call-3,a3,green\n"
        "in/c3.wav,call-3,a3,green\n"
    )  # a verbatim repeat
    store = open_store(settings)
    report = ingest(store, [calls_dir / f"c{i}.wav" for i in (1, 2, 3)], meta, settings)
    assert [c.call_id for c in report.ingested] == ["call-3"]
    by_row = {r.row: r for r in report.rejected}
    conflict = (
        "call 'call-1' is given on rows 2, 3 with different values; nothing is "
        "ingested for it until the metadata says it once"
    )
    assert by_row[2].reason == by_row[3].reason == conflict
    assert by_row[2].file == str(calls_dir / "c1.wav") and by_row[3].column == "call_id"
    assert by_row[5].reason == "repeats row 4"
    assert [m.call_id for m in iter_calls(store)] == ["call-3"]
    (only,) = report.ingested
    assert _stored(store) == sorted(
        [keys.meta("call-3"), keys.audio("call-3", "wav"), keys.content_hash(only.sha256)]
    )


def test_rows_naming_one_file_twice_are_refused(calls_dir: Path, tmp_path: Path, settings):
    meta = tmp_path / "meta.csv"
    meta.write_text("file,call_id\nin/c1.wav,call-a\nin/c1.wav,call-b\n")
    store = open_store(settings)
    report = ingest(store, [calls_dir / "c1.wav"], meta, settings)
    assert report.ingested == [] and [r.row for r in report.rejected] == [2, 3]
    assert "file 'in/c1.wav' is given on rows 2, 3" in report.rejected[0].reason.replace(
        str(tmp_path) + "/", ""
    )
    assert _stored(store) == []


def test_json_metadata(calls_dir: Path, tmp_path: Path, settings):
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            [
                {
                    "file": "in/c1.wav",
                    "call_id": "j1",
                    "agent_id": "a1",
                    "team": "blue",
                    "channels": {"agent": 1, "customer": 0},
                },
                {"file": "in/c2.wav", "call_id": "j2", "agent_id": 42},  # a number, not a name
                {
                    "file": "in/c3.wav",
                    "call_id": "j3",
                    "channels": {"0": "customer", "1": "agent"},
                    "started_at": "2025-03-04T09:30:00Z",
                },
                "in/broken.wav",
            ]
        )
    )
    store = open_store(settings)
    report = ingest(store, [calls_dir / f"c{i}.wav" for i in (1, 2, 3)], meta, settings)
    assert sorted(c.call_id for c in report.ingested) == ["j1", "j3"]
    assert store.get_json(keys.meta("j1"), model=CallMeta).channel_roles == {
        0: Role.CUSTOMER,
        1: Role.AGENT,
    }
    by_row = {r.row: r for r in report.rejected}
    assert by_row[2].column == "agent_id" and by_row[2].reason == "Input should be a valid string"
    assert by_row[4].reason == "item 4 is not an object with the call's fields"
    bad = tmp_path / "bad.json"
    bad.write_text('{"file": "in/c1.wav"}')
    with pytest.raises(MetadataError, match="bad.json: expected a list of calls"):
        ingest(store, [calls_dir], bad, settings)
