"""Transcription: options and merging without a model; real tiny.en on synthetic speech (slow)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qa.asr.chinese import is_chinese, to_script
from qa.asr.speakers import transcribe_call
from qa.asr.whisper import AsrResult, Transcriber, select_model_key
from qa.audio import DecodedAudio, load_audio
from qa.config import Settings
from qa.errors import ModelNotFoundError, QAError
from qa.evaluation.asr import error_rate, normalize_text, read_stm, transcript_text
from qa.schema import CallMeta, Word

GREETING = "Thank you for calling Northwind support, my name is Sarah. How can I help you today?"
REQUEST = "I would like to check the balance on my account please."


# --------------------------------------------------------------------------- no model


def test_select_model_key(settings):
    assert select_model_key("en", settings) == "en"
    assert select_model_key("EN-us", settings) == "en"
    assert select_model_key("zh", settings) == "multi"
    assert select_model_key(None, settings) == "multi"
    assert select_model_key(None, settings.model_copy(update={"default_language": "en"})) == "en"
    assert select_model_key(None, settings.model_copy(update={"default_language": "de"})) == "multi"


def test_batched_segments_are_guarded_and_loops_decoded_again():
    """Silence decoded to text is dropped; a looping window is not lost but decoded again on
    its own (with the temperature fallback), its times shifted back into the call."""
    from faster_whisper.transcribe import Segment
    from faster_whisper.transcribe import Word as FwWord

    def seg(start, end, text, **stats):
        values = dict(compression_ratio=1.5, no_speech_prob=0.1, avg_logprob=-0.3) | stats
        words = [FwWord(start=start, end=end, word=text, probability=0.9)]
        return Segment(
            id=0,
            seek=0,
            start=start,
            end=end,
            text=text,
            tokens=[],
            temperature=0.0,
            words=words,
            **values,
        )

    asked = []

    def transcribe(audio, language=None, **options):
        asked.append((len(audio), language, options))
        return iter([seg(1.0, 2.0, " again")]), None

    t = Transcriber.__new__(Transcriber)
    t.model = SimpleNamespace(transcribe=transcribe)
    t._fast_plain_options = lambda: {"temperature": [0.0, 0.2]}
    audio = np.zeros(16000 * 40, dtype=np.float32)
    segments = [
        seg(0.0, 5.0, " kept"),
        seg(5.0, 10.0, " noise", no_speech_prob=0.9, avg_logprob=-1.4),
        seg(10.0, 30.0, " loop loop loop", compression_ratio=3.1),
        seg(30.0, 32.0, " quiet but sure", no_speech_prob=0.9, avg_logprob=-0.2),
    ]
    out = list(t._checked(segments, audio, "zh"))
    assert [s.text for s in out] == [" kept", " again", " quiet but sure"]
    assert (out[1].start, out[1].end) == (11.0, 12.0)
    assert (out[1].words[0].start, out[1].words[0].end) == (11.0, 12.0)
    assert asked == [(16000 * 20, "zh", {"temperature": [0.0, 0.2]})]


def test_unaligned_repeats_are_dropped():
    w = lambda s, e, t: SimpleNamespace(start=s, end=e, word=t, probability=0.9)  # noqa: E731
    segments = [
        SimpleNamespace(
            end=3.0,
            words=[
                w(0.0, 0.5, " Hello."),
                w(0.5, 0.5, " Hello."),
                w(0.5, 0.5, " hello"),
                w(0.6, 0.9, " hello"),
                w(1.0, 1.0, " I"),
                w(1.0, 1.0, " "),
            ],
        )
    ]
    seen: list[float] = []
    words = list(Transcriber._words(segments, seen.append))
    assert [x.text for x in words] == [" Hello.", " hello", " I"]
    assert seen == [3.0]


def test_chinese_single_script():
    assert to_script("請問有什麼可以幫您", "simplified") == "请问有什么可以帮您"
    assert to_script("请问有什么可以帮您", "traditional") == "請問有什麼可以幫您"
    assert to_script("ok 123", "simplified") == "ok 123"
    assert is_chinese("zh") and is_chinese("zh-TW") and is_chinese("yue")
    assert not is_chinese("en") and not is_chinese(None)


class FakeTranscriber:
    """Returns one word per call at the loudest sample, and records the language asked."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[tuple[int, str | None]] = []

    def transcribe(self, samples, language=None, *, progress=None):
        self.calls.append((len(samples), language))
        t = float(np.argmax(np.abs(samples))) / 16000
        if progress:
            progress(len(samples) / 16000)
        return AsrResult(
            words=[
                Word(
                    start=t,
                    end=t + 0.3,
                    text=f" w{len(self.calls)}",
                    probability=0.5 + 0.2 * len(self.calls),
                )
            ],
            language="de",
            duration=len(samples) / 16000,
        )


def _audio(samples: np.ndarray, rate: int) -> DecodedAudio:
    return DecodedAudio(
        samples=samples,
        sample_rate=rate,
        source="x.wav",
        format="wav",
        duration=samples.shape[1] / rate,
    )


def test_stereo_one_speaker_per_channel(settings):
    x = np.zeros((2, 8000), np.float32)
    x[0, 2000], x[1, 6000] = 0.9, 0.9  # 0.25 s and 0.75 s
    fake = FakeTranscriber()
    t = transcribe_call(_audio(x, 8000), CallMeta(call_id="c1"), fake.transcribe, None, settings)
    assert [c[0] for c in fake.calls] == [16000, 16000]  # resampled to 16 kHz
    assert fake.calls[1][1] == "de"  # first channel's language reused
    assert t.speaker_source == "channels" and t.channels == 2 and t.language == "de"
    assert [(u.speaker, u.channel, u.text) for u in t.utterances] == [
        ("ch0", 0, "w1"),
        ("ch1", 1, "w2"),
    ]
    assert t.utterances[0].start == pytest.approx(0.25, abs=0.01)
    assert t.asr_confidence == pytest.approx(0.8)


def test_mono_without_diarizer_is_one_speaker(settings):
    x = np.zeros((1, 16000), np.float32)
    x[0, 100] = 0.5
    t = transcribe_call(
        _audio(x, 16000),
        CallMeta(call_id="c2", language="en"),
        FakeTranscriber().transcribe,
        None,
        settings,
    )
    assert t.speaker_source == "single" and t.channels == 1
    assert [u.speaker for u in t.utterances] == ["S0"] and t.utterances[0].channel is None
    assert transcript_text(t) == "w1"


def test_missing_model_directory(settings, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model.bin"):
        Transcriber(settings, str(tmp_path))


def test_stm_and_error_rate(tmp_path):
    stm = tmp_path / "r.stm"
    stm.write_text(
        ";; comment\nA 1 Bob 2.0 3.0 <o,f0,male> Second line.\nA 1 Ann 0.5 1.5 Hello, world!\n\n"
    )
    segs = read_stm(stm)
    assert [(s.speaker, s.text) for s in segs] == [
        ("Ann", "Hello, world!"),
        ("Bob", "Second line."),
    ]
    bad = tmp_path / "bad.stm"
    bad.write_text("A 1 Bob x 3.0 hi\n")
    with pytest.raises(QAError, match="bad.stm: line 1"):
        read_stm(bad)
    assert normalize_text("I didn't -- know, you're THERE.") == "i didnt know youre there"
    assert error_rate("Hello, world!", "hello world") == 0.0
    assert error_rate("a b c d", "a x c") == pytest.approx(0.5)
    assert error_rate("请问有什么", "請問有什麼", "zh") == 0.0  # CER, one script
    assert error_rate("请问有什么", "请问有甚么", "zh") == pytest.approx(0.2)


# --------------------------------------------------------------------------- real model

needs_espeak = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng / sox missing"
)


def _speak(text: str, path: Path) -> Path:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True)
    return path


def _speech_span(x: np.ndarray, rate: int = 16000) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(x) > 0.02)
    return loud[0] / rate, loud[-1] / rate


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng / sox missing")
    d = tmp_path_factory.mktemp("speech")
    greeting, request = _speak(GREETING, d / "greeting.wav"), _speak(REQUEST, d / "request.wav")
    # greeting, 60 s of line hiss, request: a customer put on hold without music
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            str(d / "hiss.wav"),
            "synth",
            "60",
            "whitenoise",
            "vol",
            "0.003",
        ],
        check=True,
    )
    subprocess.run(
        ["sox", str(greeting), str(d / "hiss.wav"), str(request), str(d / "hold.wav")], check=True
    )
    return {"greeting": greeting, "request": request, "hold": d / "hold.wav"}


@pytest.fixture(scope="module", params=[8, 0], ids=["batched", "plain"])
def tiny_en(request) -> Transcriber:
    settings = Settings(asr_batch_size=request.param, asr_threads=2)
    try:
        return Transcriber(settings, "en")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.mark.slow
@needs_espeak
def test_tiny_en_words_and_timings(tiny_en, speech):
    audio = load_audio(speech["greeting"])
    samples = audio.mono()
    result = tiny_en.transcribe(samples, "en")
    assert result.language == "en" and result.model == "whisper-tiny.en"
    assert result.duration == pytest.approx(audio.duration)
    assert error_rate(GREETING, result.text) < 0.25, result.text
    first, last = _speech_span(samples)
    for w in result.words:
        assert first - 0.3 <= w.start <= w.end <= last + 0.3, w
        assert 0.0 <= w.probability <= 1.0
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)


@pytest.mark.slow
@needs_espeak
def test_no_words_invented_in_a_long_silence(tiny_en, speech):
    greeting_end = load_audio(speech["greeting"]).duration
    resume = greeting_end + 60.0
    audio = load_audio(speech["hold"])
    assert audio.duration == pytest.approx(
        resume + load_audio(speech["request"]).duration, abs=0.05
    )
    result = tiny_en.transcribe(audio.mono(), "en")
    invented = [w for w in result.words if greeting_end + 0.5 < w.start < resume - 0.5]
    assert not invented, invented
    before = " ".join(w.text for w in result.words if w.start < greeting_end)
    after = " ".join(w.text for w in result.words if w.start >= resume - 0.5)
    assert error_rate(GREETING, before) < 0.3, before
    assert error_rate(REQUEST, after) < 0.3, after


@pytest.mark.slow
def test_english_only_model_refuses_other_languages(tiny_en):
    with pytest.raises(QAError, match="English-only.*'zh'.*--model multi"):
        tiny_en.transcribe(np.zeros(16000, np.float32), "zh")
    assert tiny_en.check_language("en-GB") == "en"


@pytest.mark.slow
def test_cli_transcribe_goes_on_after_a_bad_file(speech, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from qa.cli import app
    from qa.config import get_settings

    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("QA_ASR_THREADS", "2")
    get_settings.cache_clear()
    stereo = tmp_path / "call 1.wav"
    subprocess.run(
        ["sox", "-M", str(speech["greeting"]), str(speech["request"]), "-r", "8000", str(stereo)],
        check=True,
    )
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "transcribe",
            str(bad),
            str(stereo),
            "--model",
            "en",
            "--out",
            str(out),
            "--format",
            "json,vtt",
        ],
    )
    assert result.exit_code == 1
    assert f"error: {bad}: not an audio file" in result.output.splitlines()[0]
    assert sorted(p.name for p in out.iterdir()) == ["call 1.json", "call 1.vtt"]
    from qa.schema import Transcript

    t = Transcript.model_validate_json((out / "call 1.json").read_text())
    assert t.call_id == "call_1" and t.speaker_source == "channels" and t.channels == 2
    assert {u.speaker for u in t.utterances} == {"ch0", "ch1"}
    assert all(w.channel == int(u.speaker[-1]) for u in t.utterances for w in u.words)
    assert t.roles.speaker_roles == {"ch0": "agent", "ch1": "customer"}  # from the greeting
    vtt = (out / "call 1.vtt").read_text()
    assert "\nagent: Thank you for calling" in vtt and "\ncustomer: " in vtt
    get_settings.cache_clear()


@pytest.mark.slow
@needs_espeak
def test_site_hotwords_spell_the_company_name(tmp_path):
    """Telephone-band speech of a company name Whisper does not know, with the site's words."""
    wav = _speak("Thank you for calling Northwind Telecom, my name is Olivia.", tmp_path / "g.wav")
    phone = tmp_path / "g8k.wav"
    subprocess.run(["sox", str(wav), "-r", "8000", str(phone)], check=True)
    samples = load_audio(phone).resampled(16000).mono()
    site = Transcriber(Settings(asr_threads=2, asr_hotwords="Northwind Telecom"), "en")
    assert site._accurate_options()["hotwords"] == "Northwind Telecom"
    text = normalize_text(site.transcribe(samples, "en").text)
    assert "northwind telecom" in text, text


def test_chinese_words_are_converted_with_their_neighbours():
    from qa.asr.chinese import words_to_script

    # 計畫 is the phrase 计划; 畫 alone would become 画
    assert words_to_script(["我", "計", "畫", "保險"]) == ["我", "计", "划", "保险"]
    assert words_to_script([]) == []


@pytest.mark.slow
def test_accurate_mode_writes_what_plain_faster_whisper_writes(shared_data):
    """Words aligned after decoding leave the text as faster-whisper's defaults decode it."""
    samples = load_audio(shared_data / "calls" / "sample.wav").resampled(16000).mono()
    transcriber = Transcriber(Settings(asr_threads=2), "en")
    result = transcriber.transcribe(samples, "en")
    plain = "".join(s.text for s in transcriber.model.transcribe(samples, language="en")[0])
    assert normalize_text(result.text) == normalize_text(plain)
    assert result.windows >= 1 and result.speech_seconds and result.lost_seconds <= 1.0
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.end <= 30.5 for w in result.words)
