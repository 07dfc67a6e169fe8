"""Words to speakers: overlap assignment, and the stereo / mono paths of transcribe_call."""

from __future__ import annotations

import numpy as np
import pytest

from qa.asr.speakers import assign_words, transcribe_call
from qa.asr.whisper import AsrResult
from qa.audio import DecodedAudio
from qa.schema import CallMeta, Role, SpeakerTurn, Word


def word(start, end, text=" w", probability=0.9):
    return Word(start=start, end=end, text=text, probability=probability)


def turn(start, end, speaker):
    return SpeakerTurn(start=start, end=end, speaker=speaker)


def test_word_inside_a_turn_takes_its_speaker():
    turns = [turn(0, 2, "A"), turn(2.5, 5, "B")]
    out = assign_words([word(0.2, 0.6), word(3.0, 3.4)], turns)
    assert [w.speaker for w in out] == ["A", "B"]


def test_straddling_word_goes_to_the_larger_overlap():
    turns = [turn(0, 2.0, "A"), turn(2.0, 5, "B")]
    out = assign_words([word(1.9, 2.5), word(1.5, 2.1)], turns)
    assert [w.speaker for w in out] == ["B", "A"]


def test_overlap_is_summed_per_speaker():
    # 0.3 s in two A turns beats 0.2 s in one B turn even though each A piece is smaller
    turns = [turn(0, 1.15, "A"), turn(1.15, 1.2, "B"), turn(1.2, 3, "A")]
    turns[1] = turn(1.05, 1.25, "B")
    out = assign_words([word(1.0, 1.4)], turns)
    assert out[0].speaker == "A"


def test_words_in_gaps_take_the_nearest_turn():
    turns = [turn(0, 1, "A"), turn(5, 6, "B")]
    out = assign_words([word(1.2, 1.5), word(4.2, 4.6), word(9, 9.3), word(3.0, 3.0)], turns)
    assert [w.speaker for w in out] == ["A", "B", "B", "A"]


def test_no_word_left_without_a_speaker():
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 60, 200))
    words = [word(s, s + 0.3) for s in starts]
    turns = [turn(i * 7.0, i * 7.0 + 4.0, "AB"[i % 2]) for i in range(8)]
    out = assign_words(words, turns)
    assert len(out) == len(words) and all(w.speaker in {"A", "B"} for w in out)
    assert [w.start for w in out] == [w.start for w in words]  # order and timing kept
    assert assign_words(words[:3], [])[0].speaker == "S0"
    assert assign_words([], turns) == []


# --------------------------------------------------------------------------- transcribe_call


def decoded(samples: np.ndarray, rate: int = 8000, fake_stereo: bool = False) -> DecodedAudio:
    samples = np.atleast_2d(samples).astype(np.float32)
    return DecodedAudio(
        samples=samples,
        sample_rate=rate,
        source="test.wav",
        format="wav",
        duration=samples.shape[1] / rate,
        fake_stereo=fake_stereo,
    )


AGENT_WORDS = [
    (0.0, " Thank"),
    (0.3, " you"),
    (0.6, " for"),
    (0.9, " calling,"),
    (1.3, " how"),
    (1.6, " can"),
    (1.9, " I"),
    (2.1, " help?"),
    (6.0, " Let"),
    (6.3, " me"),
    (6.6, " check."),
]
CUSTOMER_WORDS = [
    (2.8, " I'm"),
    (3.1, " calling"),
    (3.4, " about"),
    (3.7, " my"),
    (4.0, " bill."),
    (6.4, " okay"),
]


def fake_channel_asr(calls):
    """ASR stand-in: a channel loud in its first 2.5 s is the agent's."""

    def transcribe(samples: np.ndarray, language: str | None) -> AsrResult:
        calls.append((samples.shape, language))
        loud_first = np.abs(samples[: int(2.5 * 16000)]).mean() > 0.05
        script = AGENT_WORDS if loud_first else CUSTOMER_WORDS
        words = [Word(start=s, end=s + 0.25, text=t, probability=0.8) for s, t in script]
        return AsrResult(words=words, language="en", duration=len(samples) / 16000, model="fake")

    return transcribe


def speaking(spans, seconds=8, rate=8000):
    """A channel that is loud where its party talks and silent elsewhere."""
    out = np.zeros(seconds * rate)
    for a, b in spans:
        out[int(a * rate) : int(b * rate)] = 0.3
    return out


def test_stereo_call_one_speaker_per_channel(settings):
    loud = speaking([(0, 2.5), (6.0, 7.0)])
    quiet = speaking([(2.8, 4.5), (6.4, 6.7)])
    calls: list = []
    meta = CallMeta(call_id="c1", language="en")
    t = transcribe_call(
        decoded(np.stack([loud, quiet])), meta, fake_channel_asr(calls), None, settings
    )
    assert [shape for shape, _ in calls] == [(16000 * 8,), (16000 * 8,)]  # each at 16 kHz
    assert t.speaker_source == "channels" and t.channels == 2
    assert {u.speaker for u in t.utterances} == {"ch0", "ch1"}
    assert t.roles.speaker_roles == {"ch0": Role.AGENT, "ch1": Role.CUSTOMER}
    assert all(u.role == t.roles.speaker_roles[u.speaker] for u in t.utterances)
    # the customer's "okay" at 6.4 s is said over the agent's "Let me check": kept and marked
    okay = next(u for u in t.utterances if u.text == "okay")
    assert okay.overlap and next(u for u in t.utterances if u.text == "Let me check.").overlap
    assert len(t.words) == len(AGENT_WORDS) + len(CUSTOMER_WORDS)
    assert t.asr_confidence == pytest.approx(0.8)
    assert t.asr_model == "fake" and t.language == "en"


def test_stereo_call_uses_configured_channel_roles(settings):
    n = 8000 * 8
    loud = np.r_[np.full(n // 2, 0.3), np.zeros(n - n // 2)]
    meta = CallMeta(call_id="c2", channel_roles={0: Role.CUSTOMER, 1: Role.AGENT})
    t = transcribe_call(
        decoded(np.stack([loud, loud[::-1]])), meta, fake_channel_asr([]), None, settings
    )
    assert t.roles.method == "configured" and t.roles.confidence == 1.0
    assert t.roles.speaker_roles == {"ch0": Role.CUSTOMER, "ch1": Role.AGENT}


class FakeDiarizer:
    default_num_speakers = 2

    def __init__(self, turns):
        self.turns = turns
        self.calls = []

    def diarize(self, samples, sample_rate, *, num_speakers=None, **_):
        from qa.asr.diarize import Diarization

        self.calls.append((samples.shape, sample_rate, num_speakers))
        return Diarization(
            turns=self.turns, speakers_found=len({t.speaker for t in self.turns}), separation=0.5
        )


def test_mono_call_is_diarized_and_words_assigned(settings):
    def transcribe(samples, language):
        words = [
            Word(start=s, end=s + 0.25, text=t, probability=0.6)
            for s, t in sorted(AGENT_WORDS + CUSTOMER_WORDS)
        ]
        return AsrResult(words=words, language="en", duration=8.0)

    diarizer = FakeDiarizer(
        [turn(0, 2.5, "SPEAKER_01"), turn(2.7, 4.4, "SPEAKER_00"), turn(5.9, 7.0, "SPEAKER_01")]
    )
    audio = decoded(np.zeros(8000 * 8), fake_stereo=False)
    t = transcribe_call(audio, CallMeta(call_id="c3"), transcribe, diarizer, settings)
    assert diarizer.calls == [((16000 * 8,), 16000, 2)]
    assert t.speaker_source == "diarization"
    assert [u.speaker for u in t.utterances] == ["SPEAKER_01", "SPEAKER_00", "SPEAKER_01"]
    assert t.roles.speaker_roles["SPEAKER_01"] is Role.AGENT
    assert t.utterances[1].role is Role.CUSTOMER
    assert t.asr_confidence == pytest.approx(0.6)


def test_fake_stereo_is_treated_as_mono(settings):
    seen = []

    def transcribe(samples, language):
        seen.append(samples.shape)
        return AsrResult(words=[word(0.1, 0.4, " hello")], language="en", duration=2.0)

    audio = decoded(np.zeros((1, 16000)), rate=16000, fake_stereo=True)
    t = transcribe_call(audio, CallMeta(call_id="c4"), transcribe, None, settings)
    assert seen == [(16000,)] and t.speaker_source == "single"
    assert [u.speaker for u in t.utterances] == ["S0"]


def test_words_leaking_from_the_other_channel_are_dropped():
    from qa.asr.speakers import drop_crosstalk

    rate = 16000
    agent = speaking([(0.0, 3.0)], seconds=4, rate=rate)
    customer = speaking([(3.0, 4.0)], seconds=4, rate=rate) + agent * 0.02  # echo, -34 dB
    both = speaking([(3.0, 4.0)], seconds=4, rate=rate)
    said = [word(0.5, 1.0, " hello"), word(1.2, 1.6, " there"), word(2.0, 2.4, " again")]
    echo = [
        word(0.5, 1.0, " hello"),
        word(1.2, 1.6, " there"),
        word(2.1, 2.4, " a"),
        word(3.2, 3.6, " yes"),
    ]
    kept, dropped = drop_crosstalk([said, echo], np.stack([agent, customer]), rate)
    assert [w.text for w in kept[0]] == [" hello", " there", " again"]
    # "hello there" leaked as a run; a lone quiet "a" that matches nothing stays
    assert [w.text for w in kept[1]] == [" a", " yes"] and dropped == 2
    # one matching word alone is as likely the party's own
    kept, dropped = drop_crosstalk(
        [said, [word(0.5, 1.0, " hello")]], np.stack([agent, customer]), rate
    )
    assert dropped == 0
    # real overtalk is loud on both channels: nothing goes
    overtalk = [word(3.2, 3.6, " wait")]
    kept, dropped = drop_crosstalk(
        [overtalk, [word(3.3, 3.7, " no")]], np.stack([both, both]), rate
    )
    assert dropped == 0 and len(kept[0]) == len(kept[1]) == 1
