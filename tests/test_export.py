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
