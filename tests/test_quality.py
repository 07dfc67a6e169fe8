"""Evidence quality: speech without words, the two-party split, tempered roles, the issues a
call is flagged for, and a call without speech refused instead of scored."""

from __future__ import annotations

import numpy as np
import pytest

from qa.asr.diarize import Diarization, two_party_split
from qa.asr.quality import assess, overlap_share, separation_cap, temper_roles
from qa.asr.speakers import transcribe_call
from qa.asr.whisper import AsrResult, Transcriber, uncovered
from qa.audio import DecodedAudio
from qa.errors import NoSpeechError
from qa.rules.format import Scorecard
from qa.schema import (
    CallMeta,
    FlagCode,
    QualityCode,
    Role,
    RoleAssignment,
    Segment,
    SpeakerTurn,
    Utterance,
    Word,
)


def seg(a, b):
    return Segment(start=a, end=b)


def utt(speaker, start, end, role=Role.UNKNOWN):
    return Utterance(speaker=speaker, start=start, end=end, text="x", role=role)


# --------------------------------------------------------------------------- speech map


def test_speech_far_from_every_word_is_uncovered():
    speech = [seg(0.0, 10.0), seg(20.0, 21.0)]
    words = [(1.0, 1.5), (2.0, 2.4), (8.0, 8.5)]
    lost = uncovered(speech, words, reach=0.5, min_piece=0.3)
    # 0.5 s before the first word's reach, 2.9-7.5 between words, the second region whole
    assert [(s.start, s.end) for s in lost] == [(0.0, 0.5), (2.9, 7.5), (9.0, 10.0), (20.0, 21.0)]
    assert uncovered(speech, [(0.0, 10.0), (20.0, 21.0)]) == []
    assert uncovered([], words) == []
    # a breath between two words is not lost speech
    assert uncovered([seg(0.0, 3.0)], [(0.0, 1.0), (2.2, 3.0)], reach=0.5, min_piece=0.3) == []


def test_doubtful_text_over_silence_is_dropped_confident_text_is_kept():
    from faster_whisper.transcribe import Segment as FwSegment
    from faster_whisper.transcribe import Word as FwWord

    def fw(start, end, **stats):
        values = dict(compression_ratio=1.5, no_speech_prob=0.1, avg_logprob=-0.3) | stats
        return FwSegment(
            id=0,
            seek=0,
            start=start,
            end=end,
            text=" x",
            tokens=[],
            temperature=0.0,
            words=[FwWord(start=start, end=end, word=" x", probability=0.9)],
            **values,
        )

    speech = [seg(0.0, 5.0)]
    segments = [
        fw(1.0, 2.0),
        fw(10.0, 12.0, no_speech_prob=0.8),
        fw(20.0, 22.0),
        fw(30.0, 31.0, avg_logprob=-1.5),
    ]
    dropped = [0.0]
    kept = list(Transcriber._judged(segments, speech, dropped))
    assert [s.start for s in kept] == [1.0, 20.0]  # the VAD may miss speech Whisper is sure of
    assert dropped[0] == pytest.approx(3.0)
    # the decoder said 0-18.8 s, the aligner put the words at 22-30 s: read that speech again
    from dataclasses import replace as dc_replace

    astray = dc_replace(
        fw(0.0, 18.8), words=[dc_replace(w, start=22.0, end=29.9) for w in fw(0.0, 18.8).words]
    )
    near = dc_replace(
        fw(7.0, 12.0), words=[dc_replace(w, start=13.1, end=13.5) for w in fw(7.0, 12.0).words]
    )
    dropped = [0.0]
    kept = list(Transcriber._judged([astray, near], [seg(0.0, 30.0)], dropped))
    assert kept == [near] and dropped[0] == pytest.approx(18.8)


# --------------------------------------------------------------------------- two voices


def _two_voices(rng, chunks=40, dim=16, distance=0.15, both_every=3):
    """Embeddings of two close voices (as on a telephone call), with windows where both
    talk alone for a while and windows with one voice only."""
    a = rng.normal(size=dim)
    a /= np.linalg.norm(a)
    c = rng.normal(size=dim)
    c -= (c @ a) * a
    c /= np.linalg.norm(c)
    b = (1 - distance) * a + np.sqrt(1 - (1 - distance) ** 2) * c  # cosine distance `distance`
    emb = np.full((chunks, 3, dim), np.nan)
    seg = np.zeros((chunks, 100, 3))
    truth = np.full((chunks, 3), -1)
    for c in range(chunks):
        first = c % 2
        voices = [first, 1 - first] if c % both_every == 0 else [first]
        for j, v in enumerate(voices):
            emb[c, j] = (a, b)[v] + 0.03 * rng.normal(size=dim)
            seg[c, 50 * j : 50 * j + 40, j] = 1
            truth[c, j] = v
    return emb, seg, truth


def test_two_party_split_finds_two_close_voices():
    from pyannote.core import SlidingWindow, SlidingWindowFeature

    rng = np.random.default_rng(0)
    emb, data, truth = _two_voices(rng)
    window = SlidingWindow(start=0.0, duration=10.0, step=1.0)
    found = two_party_split(emb, SlidingWindowFeature(data, window))
    assert found is not None
    hard, separation = found
    active = truth >= 0
    agree = (hard[active] == truth[active]).mean()
    assert max(agree, 1 - agree) == 1.0  # every local voice on its own side
    assert separation == pytest.approx(0.15, abs=0.05)
    # no window in which two talk: nothing to split on
    one = data.copy()
    one[:, :, 1:] = 0
    assert two_party_split(emb, SlidingWindowFeature(one, window)) is None


def test_role_confidence_is_capped_by_the_speakers_it_rests_on():
    roles = RoleAssignment(
        speaker_roles={"A": Role.AGENT, "B": Role.CUSTOMER},
        method="scored",
        confidence=0.97,
        margin=6.0,
    )
    one = temper_roles(roles, Diarization(speakers_found=1))
    assert one.confidence == 0.0 and "only one voice" in one.evidence[-1]
    close = temper_roles(roles, Diarization(speakers_found=2, separation=0.16))
    assert close.confidence == pytest.approx(separation_cap(0.16), abs=1e-3)
    assert close.confidence < 0.6
    assert temper_roles(roles, Diarization(speakers_found=2, separation=0.5)) == roles
    assert temper_roles(roles, None) == roles
    configured = roles.model_copy(update={"method": "configured"})
    assert temper_roles(configured, Diarization(speakers_found=1)) == configured


def test_overlap_share():
    assert overlap_share([("A", 0, 4), ("B", 2, 6)]) == pytest.approx(2 / 6, abs=1e-3)
    assert overlap_share([("A", 0, 4), ("A", 2, 6)]) == 0.0
    assert overlap_share([("A", 0, 1), ("B", 3, 4)]) == 0.0
    assert overlap_share([]) == 0.0


# --------------------------------------------------------------------------- issues


def _asr(words=1, speech=30.0, lost=()):
    return AsrResult(
        words=[Word(start=i, end=i + 0.5, text=" w") for i in range(words)],
        language="en",
        duration=60.0,
        speech_seconds=speech,
        lost=[seg(a, b) for a, b in lost],
    )


def test_collapsed_mono_call_is_an_issue():
    roles = RoleAssignment(speaker_roles={"S": Role.AGENT}, method="scored", confidence=0.0)
    q = assess(
        [utt("S", 0, 5)],
        roles,
        [_asr()],
        source="diarization",
        diarization=Diarization(speakers_found=1),
    )
    assert [i.code for i in q.issues] == [QualityCode.SPEAKERS_COLLAPSED]
    assert q.speakers_found == 1 and q.doubtful


def test_split_close_voices_lost_speech_and_overtalk_are_issues():
    roles = RoleAssignment(method="scored", confidence=0.2)
    turns = [SpeakerTurn(start=0, end=4, speaker="A"), SpeakerTurn(start=1, end=5, speaker="B")]
    q = assess(
        [utt("A", 0, 4), utt("B", 1, 5)],
        roles,
        [_asr(lost=[(10, 12.5)])],
        source="diarization",
        diarization=Diarization(
            turns=turns, speakers_found=2, speaker_pass="two_party_split", separation=0.16
        ),
    )
    codes = [i.code for i in q.issues]
    assert codes == [QualityCode.SPEAKERS_UNCERTAIN, QualityCode.LOST_SPEECH, QualityCode.OVERLAP]
    assert "0:10.0" in q.issues[1].reason and q.lost_speech_seconds == 2.5
    clear = assess(
        [utt("A", 0, 4), utt("B", 4, 8)],
        roles,
        [_asr(lost=[(1, 1.5)])],
        source="diarization",
        diarization=Diarization(speakers_found=2, separation=0.45),
    )
    assert clear.issues == [] and clear.lost_speech_seconds == 0.5


def test_silent_channel_is_an_issue():
    roles = RoleAssignment(method="configured", confidence=1.0)
    q = assess(
        [utt("ch0", 0, 4)],
        roles,
        [_asr(), _asr(words=0, speech=0.0)],
        source="channels",
        channel_speech={0: _asr(), 1: _asr(words=0, speech=0.0)},
    )
    assert [i.code for i in q.issues] == [QualityCode.SILENT_CHANNEL]
    assert q.silent_channels == [1] and q.speakers_found == 1


def test_text_the_recogniser_had_to_guess_is_an_issue():
    """Many windows decoded again at a higher temperature (the espeak-ng Mandarin calls: 3 of
    6, 7 of 10) mean sampled, mostly wrong words; one in ten (English calls) does not."""
    roles = RoleAssignment(method="configured", confidence=1.0)

    def quality(windows: int, fallbacks: int):
        asr = _asr().model_copy(update={"windows": windows, "fallbacks": fallbacks})
        return assess([utt("ch0", 0, 4)], roles, [asr], source="channels", channel_speech={0: asr})

    guessed = quality(6, 3)
    assert [i.code for i in guessed.issues] == [QualityCode.UNSURE_DECODING]
    assert "3 of 6 windows" in guessed.issues[0].reason and guessed.decode_fallbacks == 3
    assert quality(10, 1).issues == [] and quality(50, 0).issues == []
    assert quality(4, 1).issues == []  # a single fallback is chance, not a pattern


def test_issues_flag_the_call_for_a_person():
    from qa.scoring.scorecard import default_scorecard, score_call

    words = [Word(start=0.0, end=0.5, text=" hello", speaker="S")]
    meta = CallMeta(call_id="c1", language="en")
    t = transcribe_call(
        _decoded(),
        meta,
        lambda s, lang: AsrResult(words=words, language="en", duration=4.0, speech_seconds=2.0),
        _OneVoice(),
        _settings(),
    )
    assert t.quality is not None and t.quality.issues
    card: Scorecard = default_scorecard("en")
    score = score_call(t, meta, card)
    flag = next(f for f in score.flags if f.code == FlagCode.EVIDENCE_DOUBT)
    assert "one voice" in flag.reason
    assert t.roles.confidence == 0.0


# --------------------------------------------------------------------------- no speech


class _OneVoice:
    default_num_speakers = None

    def diarize(self, samples, rate, **_):
        turns = [SpeakerTurn(start=0.0, end=4.0, speaker="S")]
        return Diarization(turns=turns, speakers_found=1)


def _decoded(channels=1, seconds=4.0):
    n = int(8000 * seconds)
    return DecodedAudio(
        samples=np.zeros((channels, n), dtype=np.float32),
        sample_rate=8000,
        source="x.wav",
        format="wav",
        duration=seconds,
    )


def _settings():
    from qa.config import Settings

    return Settings()


def test_a_call_without_speech_is_refused_not_scored():
    silent = lambda s, lang: AsrResult(language="en", duration=4.0, speech_seconds=0.0)  # noqa: E731
    with pytest.raises(NoSpeechError, match="no speech.*voice activity 0.0 s"):
        transcribe_call(_decoded(), CallMeta(call_id="n1"), silent, None, _settings())
    with pytest.raises(NoSpeechError):
        transcribe_call(_decoded(channels=2), CallMeta(call_id="n2"), silent, None, _settings())


def test_one_silent_channel_is_scored_with_an_issue():
    calls = []

    def asr(samples, lang):
        calls.append(1)
        if len(calls) == 1:
            return AsrResult(
                words=[Word(start=0.2, end=0.6, text=" hello")],
                language="en",
                duration=4.0,
                speech_seconds=1.0,
            )
        return AsrResult(language="en", duration=4.0, speech_seconds=0.0)

    t = transcribe_call(_decoded(channels=2), CallMeta(call_id="s1"), asr, None, _settings())
    assert t.quality is not None and t.quality.silent_channels == [1]
    assert [i.code for i in t.quality.issues] == [QualityCode.SILENT_CHANNEL]


@pytest.mark.slow
def test_white_noise_is_no_speech_not_a_failed_call(tmp_path):
    """60 s of noise gave 0 utterances and a 0/100 auto-fail before; now an error record."""
    import soundfile as sf

    from qa.config import Settings
    from qa.pipeline import Models, guarded, transcribe_stage
    from qa.schema import ErrorRecord

    path = tmp_path / "noise.wav"
    noise = np.random.default_rng(0).normal(scale=0.1, size=8000 * 60).astype(np.float32)
    sf.write(path, noise, 8000)
    meta = CallMeta(call_id="noise", language="en")
    models = Models(Settings(home=tmp_path / "home", asr_threads=2))
    out = guarded("transcribe", meta, lambda: transcribe_stage(path, meta, models))
    assert isinstance(out, ErrorRecord), out
    assert out.error_type == "NoSpeechError" and out.message.startswith("no speech")
