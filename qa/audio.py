"""Decoding any recording a contact centre produces into float samples, and checking it.

Recorders write G.711 (µ-law / A-law) at 8 kHz, 8-bit unsigned WAV, MP3, Opus, AAC and
so on; PyAV (FFmpeg) decodes all of them through one code path. A file that cannot be
used raises a typed `AudioError` naming the file and the reason, so a batch records it
and goes on.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from qa.errors import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    NotAudioError,
    SilentAudioError,
    TooLongAudioError,
)

# Two channels whose difference is this far below their level are one signal twice
# (a mono recording stored as stereo); lossy codecs leave a residual around -50 dB.
FAKE_STEREO_RESIDUAL_DB = -35.0
# Window for the "quiet throughout" check: long enough to ignore single-sample clicks.
SILENCE_WINDOW_S = 0.05
# More undecodable packets than this share means the file is damaged, not a glitch.
MAX_BAD_PACKET_SHARE = 0.1

# Leading bytes of containers we decode; a file that starts like one of these but does
# not open is damaged rather than "not audio".
_AUDIO_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"),
    (0, b"RIFX"),
    (0, b"RF64"),
    (0, b"ID3"),
    (0, b"fLaC"),
    (0, b"OggS"),
    (0, b"FORM"),
    (0, b".snd"),
    (0, b"caff"),
    (4, b"ftyp"),
    (0, b"#!AMR"),
    (0, b"\x30\x26\xb2\x75"),  # ASF / WMA
)


@dataclass
class DecodedAudio:
    """Float samples in [-1, 1], shape (channels, n), with where they came from."""

    samples: np.ndarray
    sample_rate: int
    source: str
    format: str
    duration: float
    fake_stereo: bool = False

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    def mono(self) -> np.ndarray:
        """Mean of the channels: what a single-stream model (VAD, diarization) hears."""
        if self.channels == 1:
            return self.samples[0]
        return self.samples.mean(axis=0, dtype=np.float32)

    def channel(self, i: int) -> np.ndarray:
        if not 0 <= i < self.channels:
            raise AudioError(
                f"channel {i} requested but the recording has {self.channels}", file=self.source
            )
        return self.samples[i]

    def resampled(self, rate: int) -> DecodedAudio:
        if rate == self.sample_rate:
            return self
        return replace(self, samples=resample(self.samples, self.sample_rate, rate),
                       sample_rate=rate)


def resample(samples: np.ndarray, orig: int, target: int) -> np.ndarray:
    """Change the sample rate along the last axis.

    scipy's polyphase filter is used rather than PyAV's resampler: it works on whole
    arrays (all channels at once, no frame bookkeeping or filter delay to flush), its
    Kaiser-windowed FIR suppresses aliasing well for telephone rates (8 kHz -> 16 kHz is
    up=2, down=1; 44.1 kHz -> 16 kHz is 160/441), and its output is deterministic.
    """
    if orig <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {orig} -> {target}")
    if orig == target:
        return samples.astype(np.float32, copy=False)
    g = math.gcd(orig, target)
    out = resample_poly(samples, target // g, orig // g, axis=-1)
    return np.clip(out, -1.0, 1.0).astype(np.float32, copy=False)


def split_channels(audio: DecodedAudio | np.ndarray) -> list[np.ndarray]:
    """One 1-D array per channel (stereo calls: one party per channel)."""
    samples = audio.samples if isinstance(audio, DecodedAudio) else np.asarray(audio)
    if samples.ndim == 1:
        return [samples]
    return [samples[i] for i in range(samples.shape[0])]


def write_wav(path: str | Path, samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    """Write float samples, 1-D or (channels, n), as a WAV file."""
    import soundfile as sf

    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 2:
        data = data.T  # soundfile wants (frames, channels)
    path = Path(path)
    sf.write(str(path), np.clip(data, -1.0, 1.0), rate, subtype=subtype)
    return path


# --------------------------------------------------------------------------- decoding


def probe_duration(src: str | Path) -> float | None:
    """Duration from the container header without decoding (None when it does not say)."""
    try:
        with av.open(str(src), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                return None
            return _header_duration(container, container.streams.audio[0])
    except (av.error.FFmpegError, OSError):
        return None


def _looks_like_audio(head: bytes) -> bool:
    if any(head[off : off + len(magic)] == magic for off, magic in _AUDIO_MAGIC):
        return True
    # MPEG audio frame sync (raw MP3 / ADTS AAC without tags)
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0


def _frame_to_float(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """One decoded frame as float32 (channels, n), whatever the sample format."""
    data = frame.to_ndarray()
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    kind = frame.format.name.rstrip("p")
    if kind == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    if kind == "s16":
        return data.astype(np.float32) / 32768.0
    if kind == "s32":
        return (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    if kind == "s64":
        return (data.astype(np.float64) / 9223372036854775808.0).astype(np.float32)
    return data.astype(np.float32, copy=False)  # flt, dbl


def _header_duration(container: av.container.InputContainer,
                     stream: av.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _is_fake_stereo(samples: np.ndarray) -> bool:
    """Both channels carry the same signal, up to codec noise."""
    left, right = samples[0].astype(np.float64), samples[1].astype(np.float64)
    level = np.sqrt(np.mean(((left + right) / 2) ** 2))
    if level == 0.0:
        return True
    residual = np.sqrt(np.mean((left - right) ** 2))
    if residual == 0.0:
        return True
    return 20 * math.log10(residual / level) < FAKE_STEREO_RESIDUAL_DB


def _loudest_window_dbfs(samples: np.ndarray, rate: int) -> float:
    win = max(1, int(rate * SILENCE_WINDOW_S))
    mono = samples.astype(np.float64)
    n = mono.shape[-1] // win * win
    if n == 0:
        rms = np.sqrt(np.mean(mono**2, axis=-1))
    else:
        frames = mono[..., :n].reshape(mono.shape[0], -1, win)
        rms = np.sqrt(np.mean(frames**2, axis=-1))
        if n < mono.shape[-1]:
            tail = np.sqrt(np.mean(mono[..., n:] ** 2, axis=-1, keepdims=True))
            rms = np.concatenate([rms, tail], axis=-1)
    peak = float(np.max(rms))
    return -math.inf if peak <= 0 else 20 * math.log10(peak)


def load_audio(
    src: str | Path | bytes,
    *,
    name: str | None = None,
    max_duration: float | None = None,
    silence_dbfs: float = -60.0,
) -> DecodedAudio:
    """Decode a file (or its bytes) into float samples at the file's own rate.

    A 2-channel file whose channels are the same signal is collapsed to mono and marked
    `fake_stereo`, so it is not transcribed twice as two "speakers". More channels are
    kept as they are.
    """
    if isinstance(src, bytes | bytearray | memoryview):
        source = name or "<bytes>"
        raw = bytes(src)
        if not raw:
            raise EmptyAudioError("file is empty (0 bytes)", file=source)
        head = raw[:16]
        opened: io.BytesIO | str = io.BytesIO(raw)
    else:
        path = Path(src)
        source = name or str(path)
        if not path.is_file():
            raise AudioError("no such file", file=source)
        if path.stat().st_size == 0:
            raise EmptyAudioError("file is empty (0 bytes)", file=source)
        with path.open("rb") as fh:
            head = fh.read(16)
        opened = str(path)

    try:
        container = av.open(opened, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_audio(head):
            raise CorruptAudioError(f"damaged or truncated audio header ({exc.strerror})",
                                    file=source) from exc
        raise NotAudioError("not an audio file (no known audio format)", file=source) from exc

    with container:
        if not container.streams.audio:
            raise NotAudioError(
                f"no audio stream (format {container.format.name})", file=source
            )
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        fmt = f"{container.format.name.split(',')[0]}/{codec}"
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels
        if not rate or not channels:
            raise CorruptAudioError(f"{fmt}: header gives no sample rate or channel count",
                                    file=source)
        header = _header_duration(container, stream)
        if max_duration is not None and header is not None and header > max_duration:
            raise TooLongAudioError(
                f"{header:.0f} s long, over the {max_duration:.0f} s limit", file=source
            )
        limit = None if max_duration is None else int(max_duration * rate) + 1

        chunks: list[np.ndarray] = []
        total = packets = bad = 0
        truncated: str | None = None
        try:
            for packet in container.demux(stream):
                packets += 1
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    bad += 1  # skipped as the ffmpeg command line does
                    continue
                for frame in frames:
                    chunk = _frame_to_float(frame, channels)
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if limit is not None and total > limit:
                    raise TooLongAudioError(
                        f"over the {max_duration:.0f} s limit", file=source
                    )
        except av.error.FFmpegError as exc:
            truncated = str(exc)

    if packets and bad / packets > MAX_BAD_PACKET_SHARE:
        raise CorruptAudioError(f"{fmt}: {bad} of {packets} packets cannot be decoded",
                                file=source)
    if total == 0:
        if truncated or bad:
            raise CorruptAudioError(f"{fmt}: no decodable audio ({truncated or 'bad packets'})",
                                    file=source)
        raise EmptyAudioError(f"{fmt}: no samples", file=source)
    if truncated and header and total / rate < 0.5 * header:
        raise CorruptAudioError(
            f"{fmt}: truncated, decoding stopped at {total / rate:.1f} s of {header:.1f} s",
            file=source,
        )

    samples = np.concatenate(chunks, axis=1) if len(chunks) > 1 else chunks[0]
    samples = np.clip(samples, -1.0, 1.0).astype(np.float32, copy=False)
    dbfs = _loudest_window_dbfs(samples, rate)
    if dbfs < silence_dbfs:
        raise SilentAudioError(
            f"silent throughout (loudest {SILENCE_WINDOW_S * 1000:.0f} ms is "
            f"{dbfs:.1f} dBFS, below {silence_dbfs:.0f} dBFS)",
            file=source,
        )
    fake = samples.shape[0] == 2 and _is_fake_stereo(samples)
    if fake:
        samples = samples.mean(axis=0, keepdims=True, dtype=np.float32)
    return DecodedAudio(
        samples=np.ascontiguousarray(samples),
        sample_rate=int(rate),
        source=source,
        format=fmt,
        duration=samples.shape[1] / rate,
        fake_stereo=fake,
    )
