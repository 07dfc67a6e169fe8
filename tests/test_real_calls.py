"""The real-call evaluation on the SpokenWOZ phone calls (slow, real models): the gate that
the transcription path keeps what plain faster-whisper hears and two parties stay two."""

from __future__ import annotations

import pytest

from qa.config import Settings
from qa.evaluation.calls import Evaluator, dev_calls, evaluate_calls

WER_SLACK = 0.01  # one point over the plain anchor
MAX_LOST = 1.0  # seconds of reference speech without a word, per call


@pytest.fixture(scope="module")
def rows(shared_data):
    calls = [c for c in dev_calls(shared_data) if c.name.startswith("swoz_")]
    if len(calls) < 3:
        pytest.skip(f"fewer than three SpokenWOZ calls in {shared_data / 'calls'}")
    evaluator = Evaluator(Settings(asr_threads=2), "en", anchor_diarization=False)
    return evaluate_calls(evaluator, calls)


@pytest.mark.slow
def test_mono_mixdowns_keep_two_speakers(rows):
    mono = [r for r in rows if r.path == "mono"]
    assert len(mono) >= 3
    for r in mono:
        assert r.speakers_found == 2, f"{r.call}: speakers collapsed ({r.speaker_pass})"


@pytest.mark.slow
def test_no_speech_is_lost(rows):
    for r in rows:
        assert r.lost_seconds <= MAX_LOST, f"{r.call} ({r.path}): {r.lost_seconds} s lost"


@pytest.mark.slow
def test_error_rate_no_worse_than_plain_faster_whisper(rows):
    for r in rows:
        assert r.error_rate is not None and r.anchor_error_rate is not None
        assert r.error_rate <= r.anchor_error_rate + WER_SLACK, (r.call, r.path)
        for role, wer in r.channel_error_rates.items():
            assert wer <= r.anchor_channel_error_rates[role] + WER_SLACK, (r.call, role)


@pytest.mark.slow
def test_wrong_evidence_is_flagged(rows):
    for r in rows:
        if r.wrong:
            assert r.flagged, f"{r.call} ({r.path}): roles wrong or DER > 20 % but not flagged"
