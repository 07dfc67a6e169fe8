"""Decoding every format a recorder writes, and refusing bad files with a clear reason.

Fixtures are generated in a temporary directory with ffmpeg from a known signal, so the
decoded samples can be checked against what was encoded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qa.audio import (
    DecodedAudio,
    load_audio,
    resample,
    select_channels,
    split_channels,
    write_wav,
)
from qa.errors import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongAudioError,
)
from qa.schema import Role

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def tone(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)],
        check=True,
    )
    return dst


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio")


@pytest.fixture(scope="module")
def source16k(work) -> Path:
    """2 s of 440 Hz at 16 kHz, float, the master the other formats are encoded from."""
    return write_wav(work / "src16k.wav", tone(440, 2.0, 16000), 16000, subtype="FLOAT")


# name, ffmpeg output arguments, expected rate, tolerance on the samples (None: lossy)
FORMATS = [
    ("u8.wav", ["-ar", "8000", "-c:a", "pcm_u8"], 8000, 1 / 64),
    ("s16_8k.wav", ["-ar", "8000", "-c:a", "pcm_s16le"], 8000, 1e-3),
    ("s16_16k.wav", ["-c:a", "pcm_s16le"], 16000, 1e-4),
    ("s24.wav", ["-c:a", "pcm_s24le"], 16000, 1e-5),
    ("s32.wav", ["-c:a", "pcm_s32le"], 16000, 1e-5),
    ("f32.wav", ["-c:a", "pcm_f32le"], 16000, 1e-6),
    ("mulaw.wav", ["-ar", "8000", "-c:a", "pcm_mulaw"], 8000, 0.02),
    ("alaw.wav", ["-ar", "8000", "-c:a", "pcm_alaw"], 8000, 0.02),
    ("x.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"], 16000, None),
    ("x.flac", ["-c:a", "flac"], 16000, 1e-4),
    ("x.ogg", ["-c:a", "libvorbis"], 16000, None),
    ("x.opus", ["-c:a", "libopus", "-b:a", "32k"], 48000, None),
    ("x.m4a", ["-c:a", "aac", "-b:a", "64k"], 16000, None),
]


@pytest.mark.parametrize("fname,args,rate,tol", FORMATS, ids=[f[0] for f in FORMATS])
def test_formats_decode_to_the_encoded_signal(work, source16k, fname, args, rate, tol):
    path = ffmpeg(source16k, work / fname, *args)
    audio = load_audio(path)
    assert isinstance(audio, DecodedAudio)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 2
    assert audio.channels == 1 and not audio.fake_stereo
    assert audio.sample_rate == rate
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    assert np.abs(audio.samples).max() <= 1.0
    mono = audio.mono()
    assert peak_hz(mono, rate) == pytest.approx(440, abs=5)
    assert np.sqrt(np.mean(mono**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    if tol is not None:  # lossless or G.711: sample by sample
        expected = tone(440, 2.0, rate)
        n = min(len(expected), len(mono))
        err = np.abs(mono[:n] - expected[:n])
        assert np.percentile(err, 99) < tol, f"{fname}: decoding error {err.max()}"
    assert audio.format.split("/")[1]  # codec named
    assert audio.source == str(path)


def test_bytes_input_carries_the_given_name(source16k):
    audio = load_audio(source16k.read_bytes(), name="call-7.wav")
    assert audio.source == "call-7.wav" and audio.sample_rate == 16000


def test_stereo_keeps_one_party_per_channel(work):
    left, right = tone(440, 1.0, 8000), tone(1000, 1.0, 8000, amp=0.3)
    right = right + 0.05 * left  # a little leakage, as on real call recordings
    path = write_wav(work / "stereo.wav", np.stack([left, right]), 8000)
    audio = load_audio(path)
    assert audio.channels == 2 and not audio.fake_stereo
    assert peak_hz(audio.channel(0), 8000) == pytest.approx(440, abs=5)
    assert peak_hz(audio.channel(1), 8000) == pytest.approx(1000, abs=5)
    parts = split_channels(audio)
    assert len(parts) == 2 and np.array_equal(parts[1], audio.channel(1))
    with pytest.raises(AudioError, match="channel 2"):
        audio.channel(2)
    assert audio.mono().shape == (8000,)


def test_more_than_two_channels_are_kept(work):
    chans = np.stack([tone(f, 0.5, 16000) for f in (300, 600, 900, 1200)])
    audio = load_audio(write_wav(work / "quad.wav", chans, 16000))
    assert audio.channels == 4 and not audio.fake_stereo


@pytest.mark.parametrize("codec", ["pcm_s16le", "libmp3lame"])
def test_identical_channels_collapse_to_mono(work, codec):
    x = tone(440, 1.0, 16000) + tone(1300, 1.0, 16000, amp=0.2)
    src = write_wav(work / "dup.wav", np.stack([x, x]), 16000)
    path = (
        src
        if codec == "pcm_s16le"
        else ffmpeg(src, work / "dup.mp3", "-c:a", codec, "-b:a", "48k", "-joint_stereo", "0")
    )
    audio = load_audio(path)
    assert audio.fake_stereo and audio.channels == 1


def test_resample_preserves_the_tone():
    x = tone(440, 1.0, 8000)
    up = resample(x, 8000, 16000)
    assert up.dtype == np.float32 and up.shape == (16000,)
    assert peak_hz(up, 16000) == pytest.approx(440, abs=2)
    down = resample(tone(440, 1.0, 44100), 44100, 16000)
    assert down.shape == (16000,)
    stereo = resample(np.stack([x, x]), 8000, 16000)
    assert stereo.shape == (2, 16000)
    with pytest.raises(ValueError):
        resample(x, 0, 16000)


def test_resampled_audio(work):
    audio = load_audio(write_wav(work / "r8k.wav", tone(440, 1.0, 8000), 8000))
    at16 = audio.resampled(16000)
    assert at16.sample_rate == 16000 and at16.samples.shape == (1, 16000)
    assert at16.duration == audio.duration and at16.source == audio.source
    assert audio.resampled(8000) is audio


# --------------------------------------------------------------------------- bad input


def test_text_file_named_wav_is_not_audio(work):
    path = work / "notes.wav"
    path.write_text("customer called about a refund\n" * 20)
    with pytest.raises(NotAudioError, match="notes.wav"):
        load_audio(path)


def test_file_without_audio_stream(work):
    path = work / "video.avi"
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=black:s=16x16:d=0.2",
            "-c:v",
            "mjpeg",
            str(path),
        ],
        check=True,
    )
    with pytest.raises(NotAudioError, match="no audio stream"):
        load_audio(path)


@pytest.mark.parametrize("fmt,keep", [("wav", 20), ("mp3", 6)])
def test_truncated_header_is_corrupt(work, source16k, fmt, keep):
    full = ffmpeg(source16k, work / f"full.{fmt}")
    cut = work / f"cut.{fmt}"
    cut.write_bytes(full.read_bytes()[:keep])
    with pytest.raises(CorruptAudioError, match=f"cut.{fmt}"):
        load_audio(cut)


def test_garbage_after_a_valid_header_is_corrupt(work, source16k):
    full = ffmpeg(source16k, work / "g.mp3", "-c:a", "libmp3lame")
    data = bytearray(full.read_bytes())
    rng = np.random.default_rng(0)
    data[200:] = rng.integers(0, 256, len(data) - 200, dtype=np.uint8).tobytes()
    bad = work / "garbage.mp3"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptAudioError, match="garbage.mp3"):
        load_audio(bad)


def test_zero_length_file(work):
    path = work / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(EmptyAudioError, match="empty.wav"):
        load_audio(path)
    with pytest.raises(EmptyAudioError):
        load_audio(b"", name="upload.wav")


def test_valid_header_without_samples(work):
    path = write_wav(work / "nosamples.wav", np.zeros(0, dtype=np.float32), 8000)
    with pytest.raises(EmptyAudioError, match="no samples"):
        load_audio(path)


def test_all_silent(work):
    with pytest.raises(SilentAudioError, match="silent"):
        load_audio(write_wav(work / "zeros.wav", np.zeros(8000, np.float32), 8000))
    hiss = np.random.default_rng(1).normal(0, 10 ** (-75 / 20), 16000).astype(np.float32)
    path = write_wav(work / "hiss.wav", hiss, 16000, subtype="FLOAT")
    with pytest.raises(SilentAudioError):
        load_audio(path)
    assert load_audio(path, silence_dbfs=-90).duration == pytest.approx(1.0)


def test_too_long_from_the_header(work):
    path = write_wav(work / "long.wav", tone(440, 10.0, 8000), 8000)
    with pytest.raises(TooLongAudioError, match=r"long.wav: 10 s long, over the 5 s limit"):
        load_audio(path, max_duration=5)
    assert load_audio(path, max_duration=11).duration == pytest.approx(10.0)


def test_missing_file(work):
    with pytest.raises(AudioError, match="no such file"):
        load_audio(work / "nope.wav")


# --------------------------------------------------------------------------- decoded in part


def test_wav_cut_short_says_how_much_was_read(work):
    """The header says 6 s, a third of the data is there: refused, not scored on 2 s."""
    full = write_wav(work / "whole.wav", tone(440, 6.0, 8000), 8000).read_bytes()
    cut = work / "third.wav"
    cut.write_bytes(full[: 44 + (len(full) - 44) // 3])
    with pytest.raises(
        CorruptAudioError,
        match=r"third.wav: wav/pcm_s16le: header says 6.0 s but only 2.0 s "
        r"could be decoded",
    ):
        load_audio(cut)
    with pytest.raises(CorruptAudioError, match="header says 6.0 s"):
        load_audio(cut.read_bytes(), name="third.wav")


def test_scrambled_mp3_says_how_much_was_read(work, source16k):
    full = ffmpeg(source16k, work / "s.mp3", "-c:a", "libmp3lame", "-b:a", "32k").read_bytes()
    data = bytearray(full)
    n = len(data)
    data[n // 3 : 2 * n // 3] = (
        np.random.default_rng(0).integers(0, 256, 2 * n // 3 - n // 3, dtype=np.uint8).tobytes()
    )
    bad = work / "scrambled.mp3"
    bad.write_bytes(bytes(data))
    with pytest.raises(
        CorruptAudioError,
        match=r"scrambled.mp3: mp3/mp3float: header says "
        r"2.0 s but only 1.\d s could be decoded",
    ):
        load_audio(bad)


def test_unfinished_wav_header_reads_to_the_end(work):
    """A recorder that died before writing the sizes leaves 0 there: all the data counts."""
    data = bytearray(write_wav(work / "live.wav", tone(440, 3.0, 8000), 8000).read_bytes())
    data[4:8] = data[40:44] = b"\x00\x00\x00\x00"
    path = work / "unfinished.wav"
    path.write_bytes(bytes(data))
    assert load_audio(path).duration == pytest.approx(3.0)


# --------------------------------------------------------------------------- many channels


def test_six_copies_are_one_channel(work):
    x = tone(440, 1.0, 8000) + tone(1300, 1.0, 8000, amp=0.2)
    audio = load_audio(write_wav(work / "six.wav", np.stack([x] * 6), 8000))
    assert audio.channels == 1 and audio.fake_stereo and audio.file_channels == 6
    assert audio.channel_groups == ((0, 1, 2, 3, 4, 5),)
    assert select_channels(audio, None)[0] is audio


def test_copies_and_silent_tracks_merge_to_the_two_parties(work):
    agent, customer = tone(300, 1.0, 8000), tone(900, 1.0, 8000, amp=0.3)
    silent = np.zeros(8000, np.float32)
    chans = np.stack([agent, silent, customer, agent, silent, customer])
    audio = load_audio(write_wav(work / "six_two.wav", chans, 8000))
    assert audio.channels == 2 and not audio.fake_stereo
    assert audio.channel_groups == ((0, 3), (2, 5))
    assert select_channels(audio, None) == (audio, None)  # two parties: no map needed
    picked, roles = select_channels(audio, {5: Role.AGENT, 0: Role.CUSTOMER})
    assert roles == {0: Role.AGENT, 1: Role.CUSTOMER}  # numbered as the tracks now
    assert picked.channel_groups == ((2, 5), (0, 3))
    assert np.array_equal(picked.channel(0), audio.channel(1))


def test_distinct_channels_need_a_channel_map(work):
    chans = np.stack([tone(f, 1.0, 8000) for f in (300, 600, 900, 1200, 1500, 1800)])
    audio = load_audio(write_wav(work / "six_distinct.wav", chans, 8000))
    assert audio.channels == 6
    with pytest.raises(
        AudioError,
        match=r"six_distinct.wav: 6 channels carry 6 different "
        r"signals .* channels '0=agent,1=customer'",
    ):
        select_channels(audio, None)
    with pytest.raises(AudioError, match="6 different signals"):  # no customer named
        select_channels(audio, {0: Role.AGENT})
    picked, roles = select_channels(audio, {0: Role.AGENT, 3: Role.CUSTOMER, 4: Role.CUSTOMER})
    assert picked.channels == 2 and roles == {0: Role.AGENT, 1: Role.CUSTOMER}
    assert picked.channel_groups == ((0,), (3, 4)) and picked.file_channels == 6
    assert np.allclose(picked.channel(0), audio.channel(0))
    assert np.allclose(picked.channel(1), (audio.channel(3) + audio.channel(4)) / 2)
    with pytest.raises(AudioError, match="channel 6 mapped but the recording has 6"):
        select_channels(audio, {0: Role.AGENT, 6: Role.CUSTOMER})


def test_a_map_on_copies(work):
    x = tone(440, 1.0, 8000)
    stereo = load_audio(write_wav(work / "dup2.wav", np.stack([x, x]), 8000))
    assert select_channels(stereo, {0: Role.AGENT, 1: Role.CUSTOMER}) == (stereo, None)
    y = tone(900, 1.0, 8000)
    quad = load_audio(write_wav(work / "quad_dup.wav", np.stack([x, x, y, y]), 8000))
    with pytest.raises(
        AudioError,
        match=r"channels 0 \(agent\) and 1 \(customer\) carry the "
        "same signal",
    ):
        select_channels(quad, {0: Role.AGENT, 1: Role.CUSTOMER})
