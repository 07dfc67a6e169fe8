"""The audio people hear: redacted spans are silent, the original is discarded or restricted
and audited, and a re-run works from what is kept."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from argon2 import PasswordHasher

from qa.config import Settings
from qa.errors import AccessDenied, QAError
from qa.playback import (
    discard_originals,
    encode,
    publish_playable,
    settle_original,
    silence_spans,
    source_audio,
)
from qa.schema import CallMeta, CallResult, CallScore, Redaction, Role, Transcript
from qa.store import Keys, LocalStore
from qa.workflow import Workflow
from qa.workflow.service import NotFoundError

RATE = 8000
PASSWORD = "correct horse battery"


def _tone(seconds: float, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.stack(
        [0.3 * np.sin(2 * np.pi * (300 + 100 * c) * t) for c in range(channels)]
    ).astype(np.float32)


def _wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.T, RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _result(call_id: str, redactions: list[Redaction], version: str = "4") -> CallResult:
    meta = CallMeta(
        call_id=call_id,
        agent_id="A1",
        audio_key=Keys.audio(call_id, "wav"),
        started_at=datetime(2026, 3, 2, tzinfo=UTC),
        duration=10.0,
    )
    score = CallScore(
        call_id=call_id,
        scorecard_id="en_cs",
        scorecard_version="1",
        total=90,
        pass_mark=80,
        passed=True,
    )
    transcript = Transcript(call_id=call_id, language="en", duration=10.0, redactions=redactions)
    return CallResult(
        meta=meta,
        transcript=transcript,
        score=score,
        pipeline_version=version,
        scorecard_version="1",
        created_at=datetime(2026, 3, 2, tzinfo=UTC),
    )


CARD = Redaction(
    kind="card_number", start=4.0, end=6.0, utterance_index=0, placeholder="[CARD_NUMBER]"
)


def test_silence_spans_zeroes_the_span_and_margin_on_every_channel():
    samples = _tone(10.0)
    out = silence_spans(samples, RATE, [CARD], margin=0.5)
    assert not np.any(out[:, int(3.5 * RATE) : int(6.5 * RATE)])
    np.testing.assert_array_equal(out[:, : int(3.49 * RATE)], samples[:, : int(3.49 * RATE)])
    np.testing.assert_array_equal(out[:, int(6.51 * RATE) :], samples[:, int(6.51 * RATE) :])
    assert np.any(samples[:, int(4 * RATE) : int(6 * RATE)])  # the input is left as it was


def test_spans_past_the_ends_are_clipped():
    early = Redaction(kind="cvv", start=0.1, end=0.4, utterance_index=0, placeholder="[CVV]")
    late = Redaction(kind="cvv", start=9.8, end=12.0, utterance_index=1, placeholder="[CVV]")
    out = silence_spans(_tone(10.0, 1), RATE, [early, late], margin=0.5)
    assert not np.any(out[:, : int(0.9 * RATE)]) and not np.any(out[:, int(9.3 * RATE) :])
    with pytest.raises(QAError, match="sample rate"):
        silence_spans(_tone(1.0, 1), 0, [], margin=0.1)


def test_playable_copy_is_stereo_flac_silent_over_the_card(tmp_path):
    store = LocalStore(tmp_path / "store")
    original = _wav(_tone(10.0))
    result = _result("c1", [CARD])
    store.put_bytes(result.meta.audio_key, original)
    key = publish_playable(store, original, result, margin=0.25)
    assert key == "playback/c1/4.flac"
    played, rate = sf.read(io.BytesIO(store.get_bytes(key)), dtype="float32", always_2d=True)
    assert rate == RATE and played.shape == (10 * RATE, 2)
    assert not np.any(played[int(3.75 * RATE) : int(6.25 * RATE)])
    assert np.abs(played[: 3 * RATE]).max() > 0.2 and np.abs(played[7 * RATE :]).max() > 0.2
    assert store.get_bytes(key) != original


def test_discard_deletes_the_original_and_a_rerun_reads_the_redacted_copy(tmp_path):
    store = LocalStore(tmp_path / "store")
    original = _wav(_tone(10.0))
    result = _result("c1", [CARD])
    meta = result.meta
    store.put_bytes(meta.audio_key, original)
    assert source_audio(store, meta) == original
    publish_playable(store, original, result, margin=0.25)

    assert settle_original(store, meta, "restricted") is False
    assert store.exists(meta.audio_key)
    assert settle_original(store, meta, "discard") is True
    assert not store.exists(meta.audio_key)
    assert settle_original(store, meta, "discard") is False

    again, _ = sf.read(io.BytesIO(source_audio(store, meta)), dtype="float32", always_2d=True)
    assert not np.any(again[int(4 * RATE) : int(6 * RATE)])  # the data cannot come back

    store.delete(Keys.playable(meta.call_id, "4"))
    with pytest.raises(QAError, match="no recording stored"):
        source_audio(store, meta)


def test_discard_originals_sweeps_only_processed_calls(tmp_path):
    store = LocalStore(tmp_path / "store")
    for call_id in ("done1", "done2", "pending"):
        store.put_bytes(Keys.audio(call_id, "wav"), b"RIFF")
    assert discard_originals(store, {"done1", "done2", "unknown"}) == 2
    assert list(store.list(Keys.ORIGINALS)) == ["originals/pending/audio.wav"]


def test_encode_round_trips_mono():
    samples = _tone(1.0, 1)
    back, rate = sf.read(io.BytesIO(encode(samples, RATE)), dtype="float32", always_2d=True)
    assert rate == RATE and back.shape == (RATE, 1)
    np.testing.assert_allclose(back[:, 0], samples[0], atol=1e-4)


# --------------------------------------------------------------------------- original audio


@pytest.fixture
def wf_store(tmp_path, database_url):
    from tests.test_workflow import make_score

    wf = Workflow(
        database_url, password_hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    store = LocalStore(tmp_path / "store")
    meta = CallMeta(
        call_id="c1",
        agent_id="A1",
        team="T",
        audio_key=Keys.audio("c1", "wav"),
        started_at=datetime(2026, 3, 2, tzinfo=UTC),
        duration=10.0,
    )
    store.put_json(Keys.meta("c1"), meta)
    store.put_bytes(meta.audio_key, b"RIFF-original")
    wf.sync_call(meta, make_score("c1", {}), pipeline_version="4")
    admin = wf.add_user(None, "admin", PASSWORD, "admin")
    users = {
        name: wf.add_user(admin, name, PASSWORD, role)
        for name, role in (("lead", "lead"), ("insp", "inspector"), ("mgr", "manager"))
    }
    users["agent"] = wf.add_user(admin, "agent", PASSWORD, "agent", agent_id="A1")
    return wf, store, users


def test_only_a_granted_role_reads_the_original_and_every_attempt_is_audited(wf_store):
    wf, store, users = wf_store
    assert wf.original_audio(users["lead"], "c1", store) == b"RIFF-original"
    for name in ("insp", "mgr", "agent"):
        with pytest.raises(AccessDenied, match="original recording"):
            wf.original_audio(users[name], "c1", store)
    trail = wf.audit_trail(users["lead"], "call", "c1")
    reads = sorted((a.actor, a.action) for a in trail if "original" in a.action)
    assert reads == [
        ("agent", "read_original_refused"),
        ("insp", "read_original_refused"),
        ("lead", "read_original"),
        ("mgr", "read_original_refused"),
    ]


def test_a_discarded_original_is_reported_not_served(wf_store):
    wf, store, users = wf_store
    store.delete(Keys.audio("c1", "wav"))
    with pytest.raises(NotFoundError, match="not kept"):
        wf.original_audio(users["lead"], "c1", store)


# --------------------------------------------------------------------------- real ASR, real audio


@pytest.mark.slow
def test_spoken_card_number_is_silent_in_the_stored_and_playable_audio(tmp_path):
    """A card read aloud on a call: after the pipeline, neither the kept audio nor the
    playable copy lets Whisper read the number again."""
    from qa.pipeline import Models, process_call, transcribe_stage
    from qa.scoring.redact import find_pii
    from qa.synth import SynthError, espeak_binary, render_all

    try:
        espeak_binary()
    except SynthError as exc:
        pytest.skip(str(exc))
    models = Models(Settings(home=tmp_path / "home"))
    try:
        models.transcriber("en")
    except QAError as exc:
        pytest.skip(f"Whisper model not installed: {exc}")
    call = render_all(tmp_path / "synth", names=["nw_card_payment"], rates=(8000,))[0]
    store = LocalStore(tmp_path / "store")
    original = Path(call.files["stereo_8k"]).read_bytes()
    meta = call.meta.model_copy(
        update={
            "audio_key": Keys.audio(call.call_id, "wav"),
            "channel_roles": {0: Role.AGENT, 1: Role.CUSTOMER},
        }
    )
    store.put_bytes(meta.audio_key, original)

    result = process_call(original, meta, models)  # what the actors do
    cards = [r for r in result.transcript.redactions if r.kind == "card_number"]
    assert cards, [u.text for u in result.transcript.utterances]
    publish_playable(store, original, result, margin=Settings().redaction_margin)
    settle_original(store, meta, "discard")
    assert not store.exists(meta.audio_key)

    kept = source_audio(store, meta)
    played, rate = sf.read(io.BytesIO(kept), dtype="float32", always_2d=True)
    for span in result.transcript.redactions:  # the card, and its security code
        assert not np.any(played[int(span.start * rate) : int(span.end * rate) + 1])
    heard = transcribe_stage(kept, meta, models)
    text = " ".join(u.text for u in heard.utterances)
    assert not find_pii(text, kinds=["card_number", "cvv"]), text
    digits = "".join(ch for ch in text if ch.isdigit())
    for group in ("4556", "7375", "8689", "9855"):
        assert group not in digits, text
