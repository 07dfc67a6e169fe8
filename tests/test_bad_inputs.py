"""The bad-input corpus: broken and odd recordings, metadata and transcripts, each with the
exact outcome a user sees (the table in docs/bad_inputs.md).

Every file is generated here (numpy, soundfile, ffmpeg); nothing runs a model. A recording
is checked where it is decoded (`load_audio`), at ingest (rejected with the reason, or
stored as which format, channels and duration) and, for the cases only the pipeline can
meet, in `transcribe_stage` under `guarded` (an ErrorRecord). Silence and noise through the
ASR are in test_quality.py.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from qa.audio import load_audio, select_channels
from qa.config import Settings
from qa.errors import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    MetadataError,
    NotAudioError,
    QAError,
    SilentAudioError,
    TooLongAudioError,
)
from qa.ingest import ingest
from qa.pipeline import Models, guarded, transcribe_stage
from qa.schema import CallMeta, ErrorRecord, Role, Transcript
from qa.store import keys, open_store

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

RATE = 8000
MAX_DURATION = 10.0  # the limit the ingest cases run under


def voice(seconds: float, freq: float = 220.0, rate: int = RATE) -> np.ndarray:
    """A tone with a syllable-rate envelope: loud enough, not silence, not a copy of another."""
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


def wav(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> Path:
    data = np.asarray(samples, dtype=np.float32)
    sf.write(path, data.T if data.ndim == 2 else data, rate, subtype=subtype)
    return path


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)],
        check=True,
    )
    return dst


def png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Ok:
    """Decoded and ingested: this format, channels after merging copies, duration (s)."""

    format: str
    channels: int
    duration: float
    tolerance: float = 0.01


@dataclass(frozen=True)
class Refused:
    """Refused with this error type and a reason matching this pattern (a regex)."""

    error: type[QAError]
    reason: str


def _source(d: Path) -> Path:
    return wav(d / "source.wav", voice(2.0))


def _cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _scrambled(data: bytes) -> bytes:
    out = bytearray(data)
    n = len(out)
    out[n // 3 : 2 * n // 3] = (
        np.random.default_rng(0).integers(0, 256, 2 * n // 3 - n // 3, dtype=np.uint8).tobytes()
    )
    return bytes(out)


def _write(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


def _encoded(name: str, *args: str) -> Callable[[Path], Path]:
    return lambda d: ffmpeg(_source(d), d / name, *args)


def _truncated_wav(d: Path) -> Path:
    whole = wav(d / "whole.wav", voice(6.0)).read_bytes()
    return _write(d, "truncated.wav", whole[: 44 + (len(whole) - 44) // 3])


def _unfinished_header(d: Path) -> Path:
    data = bytearray(_source(d).read_bytes())
    data[4:8] = data[40:44] = b"\x00\x00\x00\x00"  # RIFF and data sizes never written
    return _write(d, "unfinished.wav", bytes(data))


def _mp3(d: Path, seconds: float = 6.0) -> bytes:
    src = wav(d / "six.wav", voice(seconds))
    return ffmpeg(src, d / "six.mp3", "-c:a", "libmp3lame", "-b:a", "32k").read_bytes()


def _zip(d: Path) -> Path:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("call.wav", _source(d).read_bytes())
    return _write(d, "archive.wav", buf.getvalue())


def _channels(d: Path, name: str, chans: list[np.ndarray]) -> Path:
    return wav(d / name, np.stack(chans))


def _noise(d: Path) -> Path:
    return wav(d / "noise.wav", 0.3 * np.random.default_rng(1).standard_normal(2 * RATE))


AUDIO: dict[str, tuple[Callable[[Path], Path], Ok | Refused]] = {
    "empty file": (
        lambda d: _write(d, "empty.wav", b""),
        Refused(EmptyAudioError, r"^file is empty \(0 bytes\)$"),
    ),
    "WAV header only, no samples": (
        lambda d: wav(d / "nosamples.wav", np.zeros(0)),
        Refused(EmptyAudioError, r"^wav/pcm_s16le: no samples$"),
    ),
    "WAV cut inside its header": (
        lambda d: _write(d, "hdr.wav", _source(d).read_bytes()[:20]),
        Refused(CorruptAudioError, r"^damaged or truncated audio header \("),
    ),
    "WAV cut to a third (header says 6 s)": (
        _truncated_wav,
        Refused(
            CorruptAudioError,
            r"^wav/pcm_s16le: header says 6\.0 s but only 2\.0 s could "
            r"be decoded \(33%\); the file is cut short or damaged$",
        ),
    ),
    "MP3 cut in half": (
        lambda d: _write(d, "half.mp3", _cut(_mp3(d), 0.5)),
        Refused(
            CorruptAudioError,
            r"^mp3/mp3float: header says 6\.0 s but only 3\.0 s could "
            r"be decoded",
        ),
    ),
    "MP3 with its middle third scrambled": (
        lambda d: _write(d, "scrambled.mp3", _scrambled(_mp3(d))),
        Refused(
            CorruptAudioError,
            r"^mp3/mp3float: header says 6\.0 s but only [34]\.\d s "
            r"could be decoded",
        ),
    ),
    "FLAC cut in half": (
        lambda d: _write(
            d,
            "half.flac",
            _cut(
                ffmpeg(wav(d / "six.wav", voice(6.0)), d / "six.flac", "-c:a", "flac").read_bytes(),
                0.5,
            ),
        ),
        Refused(
            CorruptAudioError,
            r"^flac/flac: header says 6\.0 s but only \d\.\d s could be "
            r"decoded",
        ),
    ),
    "ADPCM WAV cut in half": (
        lambda d: _write(
            d,
            "half_adpcm.wav",
            _cut(
                ffmpeg(
                    wav(d / "six.wav", voice(6.0)), d / "six_adpcm.wav", "-c:a", "adpcm_ima_wav"
                ).read_bytes(),
                0.5,
            ),
        ),
        Refused(CorruptAudioError, r"^wav/adpcm_ima_wav: header says 6\.1 s but only 3\.0 s"),
    ),
    "M4A cut in half (index at the end)": (
        lambda d: _write(
            d, "half.m4a", _cut(_encoded("x.m4a", "-c:a", "aac")(d).read_bytes(), 0.5)
        ),
        Refused(CorruptAudioError, r"^damaged or truncated audio header \("),
    ),
    "WAV with 0 sizes in its header, data present": (
        _unfinished_header,
        Ok("wav/pcm_s16le", 1, 2.0),
    ),
    "text file named .wav": (
        lambda d: _write(d, "notes.wav", b"customer called about a refund\n" * 20),
        Refused(NotAudioError, r"^not an audio file \(no known audio format\)$"),
    ),
    "PNG image named .wav": (
        lambda d: _write(d, "image.wav", png()),
        Refused(NotAudioError, r"^no audio stream \(format png_pipe\)$"),
    ),
    "zip archive named .wav": (_zip, Refused(NotAudioError, r"^not an audio file")),
    "µ-law WAV": (_encoded("mulaw.wav", "-c:a", "pcm_mulaw"), Ok("wav/pcm_mulaw", 1, 2.0)),
    "A-law WAV": (_encoded("alaw.wav", "-c:a", "pcm_alaw"), Ok("wav/pcm_alaw", 1, 2.0)),
    "8-bit unsigned WAV": (_encoded("u8.wav", "-c:a", "pcm_u8"), Ok("wav/pcm_u8", 1, 2.0)),
    "24-bit WAV": (_encoded("s24.wav", "-c:a", "pcm_s24le"), Ok("wav/pcm_s24le", 1, 2.0)),
    "float32 WAV": (_encoded("f32.wav", "-c:a", "pcm_f32le"), Ok("wav/pcm_f32le", 1, 2.0)),
    "IMA ADPCM WAV": (
        _encoded("ima.wav", "-c:a", "adpcm_ima_wav"),
        Ok("wav/adpcm_ima_wav", 1, 2.0, 0.15),
    ),
    "MS ADPCM WAV": (_encoded("msadpcm.wav", "-c:a", "adpcm_ms"), Ok("wav/adpcm_ms", 1, 2.0, 0.15)),
    "GSM WAV": (_encoded("gsm.wav", "-c:a", "gsm_ms"), Ok("wav/gsm_ms", 1, 2.0, 0.05)),
    "Opus": (_encoded("x.opus", "-c:a", "libopus", "-b:a", "16k"), Ok("ogg/opus", 1, 2.0)),
    "AAC in M4A": (_encoded("x.m4a", "-c:a", "aac", "-b:a", "32k"), Ok("mov/aac", 1, 2.0, 0.1)),
    "FLAC": (_encoded("x.flac", "-c:a", "flac"), Ok("flac/flac", 1, 2.0)),
    "stereo whose channels are copies": (
        lambda d: _channels(d, "copies2.wav", [voice(2.0)] * 2),
        Ok("wav/pcm_s16le", 1, 2.0),
    ),
    "6 channels, all copies": (
        lambda d: _channels(d, "copies6.wav", [voice(2.0)] * 6),
        Ok("wav/pcm_s16le", 1, 2.0),
    ),
    "6 channels: 2 parties, each twice, 2 silent": (
        lambda d: _channels(
            d,
            "two_in_six.wav",
            [
                voice(2.0),
                voice(2.0, 500),
                np.zeros(2 * RATE, np.float32),
                voice(2.0),
                voice(2.0, 500),
                np.zeros(2 * RATE, np.float32),
            ],
        ),
        Ok("wav/pcm_s16le", 2, 2.0),
    ),
    "6 different channels, no channel map": (
        lambda d: _channels(d, "distinct6.wav", [voice(2.0, f) for f in range(200, 800, 100)]),
        Refused(
            AudioError,
            r"^6 channels carry 6 different signals \(channels 0, 1, 2, 3, 4, "
            r"5\); say which channel is the agent and which the customer with "
            r"a channel map in the metadata, e.g. channels '0=agent,1=customer'$",
        ),
    ),
    "silence throughout": (
        lambda d: wav(d / "silence.wav", np.zeros(2 * RATE)),
        Refused(
            SilentAudioError,
            r"^silent throughout \(loudest 50 ms is "
            r"-inf dBFS, below -60 dBFS\)$",
        ),
    ),
    "white noise": (_noise, Ok("wav/pcm_s16le", 1, 2.0)),
    "longer than max_duration": (
        lambda d: wav(d / "long.wav", voice(12.0)),
        Refused(TooLongAudioError, r"^12 s long, over the 10 s limit$"),
    ),
}


def stored(store) -> list[str]:
    """Every key under the prefixes ingest writes (metadata, hashes, audio)."""
    prefixes = {keys.CALLS, keys.audio("x", "wav").split("/")[0] + "/"}
    return sorted({k for prefix in prefixes for k in store.list(prefix)})


@pytest.fixture
def ingest_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", max_duration=MAX_DURATION)


@pytest.mark.parametrize("case", list(AUDIO))
def test_recording(case: str, tmp_path: Path, ingest_settings: Settings):
    build, expected = AUDIO[case]
    work = tmp_path / "work"
    work.mkdir()
    path = build(work)
    store = open_store(ingest_settings)
    report = ingest(store, [path], None, ingest_settings)
    if isinstance(expected, Refused):
        with pytest.raises(AudioError) as caught:
            audio = load_audio(path, max_duration=MAX_DURATION)
            select_channels(audio, None)
        assert type(caught.value) is expected.error
        assert caught.value.file == str(path)
        assert str(caught.value).startswith(f"{path}: ")
        assert re.search(expected.reason, caught.value.reason), caught.value.reason
        (rejection,) = report.rejected
        assert rejection.file == str(path) and rejection.reason == caught.value.reason
        assert report.ingested == [] and stored(store) == []
    else:
        audio = load_audio(path, max_duration=MAX_DURATION)
        assert (audio.format, audio.channels) == (expected.format, expected.channels)
        assert audio.duration == pytest.approx(expected.duration, abs=expected.tolerance)
        assert report.rejected == []
        (call,) = report.ingested
        assert (call.format, call.channels) == (expected.format, expected.channels)
        assert call.duration == pytest.approx(expected.duration, abs=expected.tolerance)


# --------------------------------------------------------------------------- in the pipeline


class _NoAsr(Models):
    """Models whose ASR must never be reached: these calls fail before it."""

    def transcriber(self, key: str):
        def transcribe(samples, language):
            raise AssertionError("the ASR ran on a call that should have been refused")

        return SimpleNamespace(transcribe=transcribe, name="none")


PIPELINE = {
    "WAV cut to a third (header says 6 s)": (
        "CorruptAudioError",
        "header says 6.0 s but only 2.0 s could be decoded",
    ),
    "MP3 with its middle third scrambled": ("CorruptAudioError", "header says 6.0 s but only "),
    "6 different channels, no channel map": ("AudioError", "6 channels carry 6 different signals"),
    "zip archive named .wav": ("NotAudioError", "not an audio file"),
}


@pytest.mark.parametrize("case", list(PIPELINE))
def test_pipeline_error_record(case: str, tmp_path: Path, ingest_settings: Settings):
    """A recording that reaches the pipeline without ingest (a watch folder, an old store)
    becomes an ErrorRecord with the same reason; the batch goes on."""
    path = AUDIO[case][0](tmp_path)
    meta = CallMeta(call_id="c1", audio_key="calls/c1/audio.wav")
    record = guarded(
        "transcribe", meta, lambda: transcribe_stage(path, meta, _NoAsr(ingest_settings))
    )
    assert isinstance(record, ErrorRecord)
    error_type, reason = PIPELINE[case]
    assert (record.stage, record.error_type, record.call_id) == ("transcribe", error_type, "c1")
    assert reason in record.message and record.file == "calls/c1/audio.wav"


def test_pipeline_uses_the_channel_map(tmp_path: Path, ingest_settings: Settings):
    """With a map, a 6-channel call is two tracks: the agent's and the customer's."""
    chans = [voice(2.0, f) for f in range(200, 800, 100)]
    path = _channels(tmp_path, "distinct6.wav", chans)
    heard: list[np.ndarray] = []

    class Asr(Models):
        def transcriber(self, key: str):
            def transcribe(samples, language):
                heard.append(samples)
                raise AudioError("stop here")

            return SimpleNamespace(transcribe=transcribe, name="stub")

    meta = CallMeta(call_id="c1", channel_roles={4: Role.AGENT, 1: Role.CUSTOMER})
    record = guarded("transcribe", meta, lambda: transcribe_stage(path, meta, Asr(ingest_settings)))
    assert isinstance(record, ErrorRecord) and record.message == "stop here"
    (agent,) = heard  # the first track transcribed is the agent's: channel 4, at 16 kHz
    assert agent.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(agent))
    assert np.argmax(spectrum) * 16000 / len(agent) == pytest.approx(600, abs=5)


# --------------------------------------------------------------------------- ids and metadata


def _calls(d: Path, *names: str) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    return [wav(d / n, voice(1.0, 200 + 50 * i)) for i, n in enumerate(names)]


ODD_NAMES = {
    "spaces in the name": ("a call.wav", "invalid call id 'a call'"),
    "unicode name": ("通话.wav", "invalid call id '通话'"),
    "very long name": ("x" * 200 + ".wav", "invalid call id 'xxxx"),
}


@pytest.mark.parametrize("case", list(ODD_NAMES))
def test_odd_file_names(case: str, tmp_path: Path, ingest_settings: Settings):
    name, reason = ODD_NAMES[case]
    (path,) = _calls(tmp_path / "in", name)
    store = open_store(ingest_settings)
    report = ingest(store, [path], None, ingest_settings)
    (rejection,) = report.rejected
    assert rejection.column == "file" and rejection.reason.startswith(reason)
    assert rejection.reason.endswith(
        "(taken from the file name; give the call a call_id in the metadata)"
    )
    assert stored(store) == []


META_CASES: dict[str, tuple[str, dict[int, tuple[str | None, str]], list[str]]] = {
    # CSV text -> {row: (column, reason)} of the rejections, and the calls ingested from
    # in/c1.wav and in/c2.wav (a recording without a row is ingested under its name)
    "call id with path traversal": (
        "file,call_id\nin/c1.wav,../x\n",
        {
            2: (
                "call_id",
                "invalid call id '../x': use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit, and no '..'",
            )
        },
        ["c2"],
    ),
    "empty call id and no file": (
        "file,call_id,team\nin/c1.wav,c1,blue\n,,red\n",
        {3: ("file", "no file and no call_id")},
        ["c1", "c2"],
    ),
    "file outside the folder given": (
        "file,call_id\n../elsewhere.wav,c9\nin/c1.wav,c1\n",
        {2: ("file", "no such recording among the files given")},
        ["c1", "c2"],
    ),
    "bad date": (
        "file,started_at\nin/c1.wav,31/02/2025\n",
        {
            2: (
                "started_at",
                "'31/02/2025' is not an ISO 8601 date-time (e.g. 2025-03-04T09:30:00+01:00)",
            )
        },
        ["c2"],
    ),
    "unknown language": (
        "file,language\nin/c1.wav,klingon\nin/c2.wav,pt-BR\n",
        {
            2: (
                "language",
                "'klingon' is not a language code Whisper knows (e.g. en, zh, es, pt-BR)",
            )
        },
        ["c2"],
    ),
    "bad direction": (
        "file,direction\nin/c1.wav,sideways\n",
        {2: ("direction", "'sideways' is not inbound or outbound")},
        ["c2"],
    ),
    "channel map with a name for a number": (
        "file,channels\nin/c1.wav,left=agent\n",
        {2: ("channels", "channel 'left' is not a number")},
        ["c2"],
    ),
    "channel beyond the recording": (
        'file,channels\nin/c1.wav,"0=agent,1=customer"\n',
        {
            2: (
                "channels",
                "channel 1 mapped but the recording has 1 channel(s) (channels are "
                "numbered from 0)",
            )
        },
        ["c2"],
    ),
    "more values than columns": (
        "file,team\nin/c1.wav,blue,extra\n",
        {2: (None, "more values than columns")},
        ["c2"],
    ),
    "one call id on two rows": (
        "file,call_id,agent_id\nin/c1.wav,x1,a1\nin/c2.wav,x1,a2\n",
        {
            r: (
                "call_id",
                "call 'x1' is given on rows 2, 3 with different values; nothing is "
                "ingested for it until the metadata says it once",
            )
            for r in (2, 3)
        },
        [],
    ),
    "a row repeated verbatim": (
        "file,call_id,agent_id\nin/c1.wav,x1,a1\nin/c1.wav,x1,a1\n",
        {3: ("call_id", "repeats row 2")},
        ["c2", "x1"],
    ),
}


@pytest.mark.parametrize("case", list(META_CASES))
def test_metadata_rows(case: str, tmp_path: Path, ingest_settings: Settings):
    text, expected, ingested = META_CASES[case]
    files = _calls(tmp_path / "in", "c1.wav", "c2.wav")
    _calls(tmp_path, "elsewhere.wav")
    meta = tmp_path / "meta.csv"
    meta.write_text(text, encoding="utf-8")
    store = open_store(ingest_settings)
    report = ingest(store, [tmp_path / "in"], meta, ingest_settings)
    got = {r.row: (r.column, r.reason) for r in report.rejected}
    assert got == expected
    assert sorted(c.call_id for c in report.ingested) == ingested
    # a recording named by a rejected row is not stored under any id
    assert [m for m in stored(store) if keys.parse_meta(m)] == sorted(
        keys.meta(c) for c in ingested
    )
    assert len({c.file for c in report.ingested} & {str(f) for f in files}) == len(ingested)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("agent_id,team\na1,blue\n", "needs a 'file' or a 'call_id' column"),
        ("file,agnet_id\nin/c1.wav,a1\n", "unknown column(s) 'agnet_id'; expected some of file, "),
        (b"file,team\nin/c1.wav,\xff\xfe\n", "not a UTF-8 CSV file"),
        ("[1, 2", "not a JSON file"),
        ('{"file": "in/c1.wav"}', "expected a list of calls"),
        ('[{"file": "in/c1.wav", "agnet_id": "a1"}]', "unknown column(s) 'agnet_id'"),
    ],
    ids=[
        "missing column",
        "unknown column",
        "not UTF-8",
        "broken JSON",
        "JSON not a list",
        "JSON unknown key",
    ],
)
def test_unusable_metadata_file(
    text: str | bytes, reason: str, tmp_path: Path, ingest_settings: Settings
):
    _calls(tmp_path / "in", "c1.wav")
    meta = tmp_path / ("meta.json" if str(text)[:1] in "[{" else "meta.csv")
    if isinstance(text, bytes):
        meta.write_bytes(text)
    else:
        meta.write_text(text, encoding="utf-8")
    store = open_store(ingest_settings)
    with pytest.raises(MetadataError) as caught:
        ingest(store, [tmp_path / "in"], meta, ingest_settings)
    assert caught.value.file == str(meta) and caught.value.reason.startswith(reason)
    assert stored(store) == []


def test_metadata_with_wrong_types(tmp_path: Path, ingest_settings: Settings):
    _calls(tmp_path / "in", "c1.wav", "c2.wav", "c3.wav", "c4.wav")
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps(
            [
                {"file": "in/c1.wav", "agent_id": 42},
                {"file": "in/c2.wav", "call_id": 7},
                {"file": "in/c3.wav", "started_at": 1741080600},
                {"file": "in/c4.wav", "channels": ["agent"]},
                {"file": ["in/c1.wav"]},
            ]
        )
    )
    store = open_store(ingest_settings)
    report = ingest(store, [tmp_path / "in"], meta, ingest_settings)
    assert {r.row: (r.column, r.reason) for r in report.rejected} == {
        1: ("agent_id", "Input should be a valid string"),
        2: ("call_id", "call_id 7 is not a string"),
        3: (
            "started_at",
            "1741080600 is not an ISO 8601 date-time (e.g. 2025-03-04T09:30:00+01:00)",
        ),
        4: ("channels", "['agent'] is not a channel map (e.g. \"0=agent,1=customer\")"),
        5: ("file", "file ['in/c1.wav'] is not a file name"),
    }
    assert report.ingested == [] and stored(store) == []


def test_duplicate_of_an_ingested_call(tmp_path: Path, ingest_settings: Settings):
    (first,) = _calls(tmp_path / "a", "c1.wav")
    store = open_store(ingest_settings)
    assert [c.call_id for c in ingest(store, [first], None, ingest_settings).ingested] == ["c1"]
    before = {k: store.get_bytes(k) for k in stored(store)}
    copy = tmp_path / "b" / "renamed.wav"
    copy.parent.mkdir()
    copy.write_bytes(first.read_bytes())
    (tmp_path / "c").mkdir()
    clash = wav(tmp_path / "c" / "c1.wav", voice(1.0, 900))  # another call under its id
    report = ingest(store, [copy, clash], None, ingest_settings)
    (dup,) = report.duplicates
    assert (dup.call_id, dup.existing_call_id, dup.reason) == (
        "renamed",
        "c1",
        "same audio as call c1",
    )
    (rejection,) = report.rejected
    assert rejection.reason == "call c1 already exists with different audio; choose another call id"
    assert {k: store.get_bytes(k) for k in stored(store)} == before  # nothing overwritten


# --------------------------------------------------------------------------- transcripts


def _transcript(**changes) -> dict:
    t = {
        "call_id": "c1",
        "language": "en",
        "duration": 60.0,
        "utterances": [
            {
                "speaker": "S0",
                "role": "agent",
                "start": 1.0,
                "end": 3.0,
                "text": "hello there",
                "words": [
                    {"start": 1.0, "end": 1.5, "text": "hello"},
                    {"start": 1.6, "end": 3.0, "text": "there"},
                ],
            }
        ],
    }
    utterance, word = t["utterances"][0], t["utterances"][0]["words"][0]
    for key, value in changes.items():
        where, _, field = key.partition("__")
        {"t": t, "u": utterance, "w": word}[where][field] = value
    return t


HOSTILE = {
    "NaN start": (
        _transcript(u__start=math.nan),
        "utterances.0.start: time must be a finite number of seconds, got nan",
    ),
    "infinite end": (
        _transcript(w__end=math.inf),
        "utterances.0.words.0.end: time must be a finite number of seconds, got inf",
    ),
    "negative time": (
        _transcript(w__start=-3.0),
        "utterances.0.words.0.start: time must not be negative, got -3 s",
    ),
    "end before start": (
        _transcript(u__start=5.0, u__end=4.0),
        "utterances.0: end 4 s is before start 5 s",
    ),
    "word end before start": (
        _transcript(w__start=1.4, w__end=1.0),
        "utterances.0.words.0: end 1 s is before start 1.4 s",
    ),
    "a time of a billion seconds": (
        _transcript(u__end=999999996.0),
        "utterances.0.end: time 1e+09 s is beyond 86400 s (24 h), longer than any call",
    ),
    "NaN duration": (
        _transcript(t__duration=math.nan),
        "duration: time must be a finite number of seconds, got nan",
    ),
    "speech after the end of the call": (
        _transcript(t__duration=2.0, u__end=3000.0),
        "utterances.0 ends at 3000 s, after the end of the call (2 s)",
    ),
    "10 MB of text": (
        _transcript(u__text="blah " * 2_000_000),
        "utterances.0.text: String should have at most 200000 characters",
    ),
    "a time that is a word": (
        _transcript(u__start="soon"),
        "utterances.0.start: Input should be a valid number, unable to parse string as a number",
    ),
    "utterances not a list": (
        _transcript(t__utterances={"speaker": "S0"}),
        "utterances: Input should be a valid array",
    ),
    "unknown field": (
        _transcript(u__confidence=0.9),
        "utterances.0.confidence: Extra inputs are not permitted",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_transcript(case: str, tmp_path: Path, monkeypatch):
    """`qa score` names the file and the field; the model refuses the same record."""
    from qa.cli import app

    data, reason = HOSTILE[case]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))  # NaN and Infinity as Python's json writes them
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["score", "--no-models", str(path)])
    assert isinstance(result.exception, QAError), result.output
    assert str(result.exception) == f"{path}: not a transcript: {reason}"
    with pytest.raises(ValueError):
        Transcript.model_validate(data)


def test_hostile_transcript_is_one_line_not_a_traceback(tmp_path: Path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(_transcript(u__start=math.nan)))
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from qa.cli import main; main()",
            "score",
            "--no-models",
            str(path),
        ],
        capture_output=True,
        text=True,
        env={
            "QA_HOME": str(tmp_path / "home"),
            "COLUMNS": "300",
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
        },
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"error: {path}: not a transcript: utterances.0.start: time "
        "must be a finite number of seconds, got nan"
    )


def test_float_noise_in_pipeline_times_is_clamped():
    """A rounding error of the pipeline's arithmetic is not a reason to lose a result."""
    t = Transcript.model_validate(_transcript(w__start=-0.0004, u__start=1.0, u__end=0.9995))
    assert t.utterances[0].words[0].start == 0.0
    assert t.utterances[0].end == t.utterances[0].start == 1.0
