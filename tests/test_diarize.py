"""Diarization config handling, and the real pipeline on real recordings (slow)."""

from __future__ import annotations

import numpy as np
import pytest

from qa.asr.diarize import DiarizationConfig, Diarizer, load_config
from qa.errors import ModelNotFoundError, QAError
from qa.evaluation.diarization import der, read_rttm
from qa.schema import SpeakerTurn


def test_default_config_is_valid():
    config, base = load_config()
    assert config.num_speakers is None and config.max_speakers == 2
    assert config.pipeline is None
    assert config.params["clustering"]["method"] == "centroid"
    assert (base / "diarization.yaml").is_file()


def test_config_typo_and_bad_file_are_user_errors(tmp_path):
    bad = tmp_path / "d.yaml"
    bad.write_text("segmentation_stepp: 0.1\n")
    with pytest.raises(QAError, match="segmentation_stepp"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(QAError, match="mapping"):
        load_config(bad)
    with pytest.raises(QAError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_missing_site_pipeline_is_reported(tmp_path, settings):
    config = DiarizationConfig(pipeline=str(tmp_path / "community-1"))
    with pytest.raises(ModelNotFoundError, match="community-1"):
        Diarizer(settings, config=config)


def test_der_counts_confusion_and_misses():
    ref = [SpeakerTurn(start=0, end=10, speaker="a"), SpeakerTurn(start=10, end=20, speaker="b")]
    assert der(ref, ref)["der"] == 0.0
    hyp = [SpeakerTurn(start=0, end=10, speaker="x"), SpeakerTurn(start=10, end=15, speaker="x")]
    parts = der(ref, hyp)
    assert parts["confusion"] == pytest.approx(0.25) and parts["missed"] == pytest.approx(0.25)


@pytest.fixture(scope="module")
def diarizer():
    from qa.config import Settings

    return Diarizer(Settings())


@pytest.mark.slow
def test_sample_call_two_speakers_and_der(shared_data, diarizer):
    import soundfile as sf

    samples, rate = sf.read(shared_data / "calls" / "sample.wav", dtype="float32")
    reference = read_rttm(shared_data / "calls" / "sample.rttm")
    for num_speakers in (2, None):
        turns = diarizer(samples, rate, num_speakers=num_speakers)
        assert len({t.speaker for t in turns}) == 2
        assert der(reference, turns)["der"] <= 0.06
    # 8 kHz input is resampled, not misread
    from qa.audio import resample

    turns = diarizer(resample(samples, rate, 8000), 8000, num_speakers=2)
    assert der(reference, turns)["der"] <= 0.08


@pytest.mark.slow
def test_silence_gives_no_turns(diarizer):
    assert diarizer(np.zeros(16000 * 12, dtype=np.float32), 16000) == []


@pytest.mark.slow
def test_real_stereo_call_agent_found_without_configuration(shared_data, settings):
    """The first 60 s of the auto-repair call (left channel = agent): roles from the words."""
    from qa.asr.speakers import transcribe_call
    from qa.asr.whisper import Transcriber
    from qa.audio import load_audio
    from qa.schema import CallMeta, Role

    audio = load_audio(shared_data / "calls" / "auto_repairs_40_stereo.wav")
    audio.samples = audio.samples[:, : audio.sample_rate * 60]
    audio.duration = 60.0
    transcriber = Transcriber(settings, "en")
    t = transcribe_call(
        audio,
        CallMeta(call_id="auto-repairs", language="en"),
        transcriber.transcribe,
        None,
        settings,
    )
    assert t.speaker_source == "channels"
    assert t.roles.method == "scored" and t.roles.confidence >= 0.5
    assert t.roles.speaker_roles == {"ch0": Role.AGENT, "ch1": Role.CUSTOMER}


@pytest.mark.slow
def test_customer_who_barely_speaks_is_still_found(tmp_path, settings, diarizer):
    """The card-payment call with the customer saying only their two shortest lines: two
    speakers found, what the customer says is theirs, and the agent is the agent."""
    from qa.asr.speakers import transcribe_call
    from qa.asr.whisper import Transcriber
    from qa.audio import load_audio
    from qa.evaluation.diarization import barely_speaks_mix
    from qa.schema import Role
    from qa.synth import SynthError, espeak_binary, render_all

    try:
        espeak_binary()
    except SynthError as exc:
        pytest.skip(str(exc))
    (call,) = render_all(tmp_path, names=["nw_card_payment"], rates=(16000,))
    samples, rate, reference = barely_speaks_mix(call)
    customer = [t for t in reference if t.speaker == "customer"]
    assert sum(t.end - t.start for t in customer) < 4.0  # a few words in a 77 s call
    for num_speakers in (2, None):
        turns = diarizer(samples, rate, num_speakers=num_speakers)
        assert len({t.speaker for t in turns}) == 2
        assert der(reference, turns)["der"] <= 0.08

    import soundfile as sf

    sf.write(tmp_path / "few.wav", samples, rate)
    meta = call.meta.model_copy(update={"channel_roles": None})
    t = transcribe_call(
        load_audio(tmp_path / "few.wav"),
        meta,
        Transcriber(settings, "en").transcribe,
        diarizer,
        settings,
    )
    agent = {s for s, r in t.roles.speaker_roles.items() if r == Role.AGENT}
    said = [u for u in t.utterances if u.role == Role.CUSTOMER]
    assert len(agent) == 1 and said and t.roles.confidence >= 0.9
    for turn in customer:  # the customer's words are the customer's
        words = [w for w in t.words if turn.start <= (w.start + w.end) / 2 <= turn.end]
        assert words and all(w.speaker not in agent for w in words)
