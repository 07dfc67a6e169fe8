"""Decoding any recording a contact centre produces into float samples, and checking it.

Recorders write G.711 (µ-law / A-law) at 8 kHz, 8-bit unsigned WAV, MP3, Opus, AAC and
so on; PyAV (FFmpeg) decodes all of them through one code path. A file that cannot be
used raises a typed `AudioError` naming the file and the reason, so a batch records it
and goes on. That includes a file that decodes only in part (cut short, bytes scrambled):
scoring an agent on a third of the call is worse than not scoring it.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

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

if TYPE_CHECKING:
    from qa.schema import Role

# Two channels whose difference is this far below their level are one signal twice
# (a mono recording stored as stereo); lossy codecs leave a residual around -50 dB.
FAKE_STEREO_RESIDUAL_DB = -35.0
# Window for the "quiet throughout" check: long enough to ignore single-sample clicks.
SILENCE_WINDOW_S = 0.05
# Undecodable packets in more than this share of a file (and more than one) mean it is
# damaged, not a glitch: each one is a gap of 20-70 ms in what the agent is scored on.
MAX_BAD_PACKET_SHARE = 0.02
# A header that states the length (WAV data size, MP3 Xing frame count, FLAC STREAMINFO,
# MP4 mdhd) and decoding that falls short of it by more than this is a file cut short or
# partly unreadable. Encoder delay and padding account for well under 0.2 s.
SHORTFALL_TOLERANCE_S = 0.5
SHORTFALL_TOLERANCE_SHARE = 0.005

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
    fake_stereo: bool = False  # the file's channels were copies of one signal, now one
    # the file's channel(s) behind each channel here, where copies were merged, silent
    # tracks of a many-channel file dropped or channels picked; empty: one to one
    channel_groups: tuple[tuple[int, ...], ...] = ()
    source_channels: int = 0  # channels in the file; 0: as many as here

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def file_channels(self) -> int:
        return self.source_channels or self.channels

    def origin(self) -> tuple[tuple[int, ...], ...]:
        """For each channel here, the channel numbers in the file it stands for."""
        return self.channel_groups or tuple((i,) for i in range(self.channels))

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
        return replace(
            self, samples=resample(self.samples, self.sample_rate, rate), sample_rate=rate
        )


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


def _wav_declared_seconds(fh: BinaryIO) -> float | None:
    """Length a WAV header states, read from the raw bytes: FFmpeg trims the data size to
    the file, so a file cut short looks whole to it.

    PCM, float and G.711 data is `block_align` bytes per sample frame, so the data chunk's
    size gives the length; a compressed format (ADPCM, GSM) gives it in its `fact` chunk
    (its byte rate is often wrong). None when the file is not RIFF/RIFX, states no length,
    or the size is a placeholder (0 or 0xFFFFFFFF, written by recorders that never finished
    the header; FFmpeg then reads to the end).
    """
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
        return None
    endian = "<" if head[:4] == b"RIFF" else ">"
    rate = block_align = 0
    fixed = False  # a format with a fixed number of bytes per sample frame
    fact: int | None = None
    for _ in range(64):  # a header has a handful of chunks; stop on nonsense
        chunk = fh.read(8)
        if len(chunk) < 8:
            return None
        size = struct.unpack(f"{endian}I", chunk[4:])[0]
        body = fh.read(min(size, 40)) if chunk[:4] in (b"fmt ", b"fact") else b""
        if chunk[:4] == b"fmt " and len(body) >= 14:
            tag, _, rate, _, block_align = struct.unpack(f"{endian}HHIIH", body[:14])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format
                tag = struct.unpack(f"{endian}H", body[24:26])[0]
            fixed = tag in (1, 3, 6, 7)  # PCM, IEEE float, A-law, µ-law
        elif chunk[:4] == b"fact" and len(body) >= 4:
            fact = struct.unpack(f"{endian}I", body[:4])[0]
        elif chunk[:4] == b"data":
            if size in (0, 0xFFFFFFFF) or not rate:
                return None
            if fixed and block_align:
                return size / block_align / rate
            return fact / rate if fact else None
        fh.seek(size + (size & 1) - len(body), io.SEEK_CUR)
    return None


def _declared_seconds(
    container: av.container.InputContainer, stream: av.AudioStream, src: bytes | str
) -> float | None:
    """The length the file says it has, where the header states it exactly; None where it
    is only an estimate (FFmpeg's guess from the bit rate is no ground for a verdict)."""
    if container.format.name.split(",")[0] == "wav":
        if isinstance(src, bytes):
            return _wav_declared_seconds(io.BytesIO(src))
        with open(src, "rb") as fh:
            return _wav_declared_seconds(fh)
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
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


def _header_duration(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _same_signal(a: np.ndarray, b: np.ndarray) -> bool:
    """Two channels carry the same signal, up to codec noise: their difference is
    `FAKE_STEREO_RESIDUAL_DB` below their level (a correlation above 0.9999). A party's
    voice leaking onto the other's line is 15-40 dB down, so it never passes."""
    level = residual = 0.0
    step = 1 << 20  # in pieces, so an hour at 8 kHz needs no float64 copy of a channel
    for i in range(0, a.shape[-1], step):
        x = a[i : i + step].astype(np.float64)
        y = b[i : i + step].astype(np.float64)
        level += float(np.sum(((x + y) / 2) ** 2))
        residual += float(np.sum((x - y) ** 2))
    if level == 0.0 or residual == 0.0:
        return True
    return 10 * math.log10(residual / level) < FAKE_STEREO_RESIDUAL_DB


def _is_fake_stereo(samples: np.ndarray) -> bool:
    """Both channels carry the same signal, up to codec noise."""
    return _same_signal(samples[0], samples[1])


def _channel_dbfs(samples: np.ndarray, rate: int) -> list[float]:
    return [_loudest_window_dbfs(samples[i : i + 1], rate) for i in range(samples.shape[0])]


def _merge_copies(
    samples: np.ndarray,
    rate: int,
    silence_dbfs: float,
) -> tuple[np.ndarray, tuple[tuple[int, ...], ...]]:
    """Channels that are copies of one signal become one (their mean); in a file with more
    than two channels, channels silent throughout (unused recorder inputs) are dropped.

    A two-channel file keeps a silent channel: there it is a party's line, and its silence
    is evidence (`silent_channel`). Returns the samples and the file's channels behind each.
    """
    n = samples.shape[0]
    live = list(range(n))
    if n > 2:
        levels = _channel_dbfs(samples, rate)
        live = [i for i in live if levels[i] >= silence_dbfs] or [int(np.argmax(levels))]
    groups: list[list[int]] = []
    for i in live:
        for group in groups:
            if _same_signal(samples[group[0]], samples[i]):
                group.append(i)
                break
        else:
            groups.append([i])
    origin = tuple(tuple(g) for g in groups)
    if len(origin) == n:
        return samples, ()
    merged = np.stack([samples[list(g)].mean(axis=0, dtype=np.float32) for g in groups])
    return merged, origin


def select_channels(
    audio: DecodedAudio,
    channel_roles: Mapping[int, Role] | None,
) -> tuple[DecodedAudio, dict[int, Role] | None]:
    """The agent and customer tracks of a recording, and the roles of its channels here.

    `channel_roles` numbers the file's channels (as the metadata does). Two channels or
    fewer (after copies were merged in `load_audio`) pass through, the map renumbered to
    match. More than two different signals need a map naming the agent's and the
    customer's channel(s): the pipeline then gets those two tracks (several channels of one
    role are mixed) and nothing else, instead of one "speaker" per channel.
    """
    from qa.schema import Role

    roles = {int(c): Role(r) for c, r in (channel_roles or {}).items()}
    n_file = audio.file_channels
    beyond = sorted(c for c in roles if c >= n_file)
    if beyond:
        raise AudioError(
            f"channel {beyond[-1]} mapped but the recording has {n_file} "
            "channel(s) (channels are numbered from 0)",
            file=audio.source,
        )
    origin = audio.origin()
    here = {c: i for i, group in enumerate(origin) for c in group}
    wanted = {
        role: sorted(c for c, r in roles.items() if r is role)
        for role in (Role.AGENT, Role.CUSTOMER)
    }
    complete = all(wanted.values())
    if audio.channels == 1:  # copies of one signal: diarization tells the parties apart
        return audio, None
    for a in wanted[Role.AGENT]:
        for c in wanted[Role.CUSTOMER]:
            if a in here and here.get(c) == here[a]:
                raise AudioError(
                    f"channels {a} (agent) and {c} (customer) carry the same signal, so they "
                    "cannot tell the parties apart; correct the channel map or leave it out",
                    file=audio.source,
                )
    if n_file > 2 and complete:
        tracks, groups = [], []
        for role in (Role.AGENT, Role.CUSTOMER):
            kept = sorted({here[c] for c in wanted[role] if c in here})
            # a mapped channel dropped as silent is still that party's (silent) line
            tracks.append(
                audio.samples[kept].mean(axis=0, dtype=np.float32)
                if kept
                else np.zeros(audio.samples.shape[1], dtype=np.float32)
            )
            groups.append(tuple(sorted({*wanted[role], *(c for k in kept for c in origin[k])})))
        picked = replace(
            audio, samples=np.stack(tracks), channel_groups=tuple(groups), source_channels=n_file
        )
        return picked, {0: Role.AGENT, 1: Role.CUSTOMER}
    if audio.channels > 2:
        distinct = ", ".join(str(g[0]) for g in origin)
        example = f"{origin[0][0]}=agent,{origin[1][0]}=customer"
        raise AudioError(
            f"{n_file} channels carry {audio.channels} different signals (channels "
            f"{distinct}); say which channel is the agent and which the customer with a "
            f"channel map in the metadata, e.g. channels '{example}'",
            file=audio.source,
        )
    renumbered = {here[c]: r for c, r in roles.items() if c in here}
    return audio, renumbered or None


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

    Channels that are copies of one signal are merged (a 2-channel file of copies becomes
    mono and is marked `fake_stereo`, so it is not transcribed twice as two "speakers"); in
    a file with more than two channels, silent ones are dropped too (`channel_groups` says
    which of the file's channels each one stands for). Picking the agent's and the
    customer's channel out of several is `select_channels`, which needs the metadata.

    A file that decodes short of the length its header states (by more than
    `SHORTFALL_TOLERANCE_S` and `SHORTFALL_TOLERANCE_SHARE`), or with more than
    `MAX_BAD_PACKET_SHARE` of its packets undecodable, is a `CorruptAudioError` saying how
    much was read.
    """
    if isinstance(src, bytes | bytearray | memoryview):
        source = name or "<bytes>"
        raw: bytes | str = bytes(src)
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
        opened = raw = str(path)

    try:
        container = av.open(opened, mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        if _looks_like_audio(head):
            raise CorruptAudioError(
                f"damaged or truncated audio header ({exc.strerror})", file=source
            ) from exc
        raise NotAudioError("not an audio file (no known audio format)", file=source) from exc

    with container:
        if not container.streams.audio:
            raise NotAudioError(f"no audio stream (format {container.format.name})", file=source)
        stream = container.streams.audio[0]
        codec = stream.codec_context.name
        fmt = f"{container.format.name.split(',')[0]}/{codec}"
        rate = stream.codec_context.sample_rate or stream.rate
        channels = stream.codec_context.channels
        if not rate or not channels:
            raise CorruptAudioError(
                f"{fmt}: header gives no sample rate or channel count", file=source
            )
        header = _header_duration(container, stream)
        declared = _declared_seconds(container, stream, raw)
        longest = max(header or 0.0, declared or 0.0)
        if max_duration is not None and longest > max_duration:
            raise TooLongAudioError(
                f"{longest:.0f} s long, over the {max_duration:.0f} s limit", file=source
            )
        limit = None if max_duration is None else int(max_duration * rate) + 1

        chunks: list[np.ndarray] = []
        total = packets = bad = 0
        truncated: str | None = None
        try:
            for packet in container.demux(stream):
                packets += packet.size > 0  # the last, empty one only flushes the decoder
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    bad += 1  # skipped as the ffmpeg command line does; counted below
                    continue
                for frame in frames:
                    chunk = _frame_to_float(frame, channels)
                    chunks.append(chunk)
                    total += chunk.shape[1]
                if limit is not None and total > limit:
                    raise TooLongAudioError(f"over the {max_duration:.0f} s limit", file=source)
        except av.error.FFmpegError as exc:
            truncated = str(exc)

    decoded = total / rate
    lost = f", {bad} of {packets} packets undecodable" if bad else ""
    if total == 0:
        if truncated or bad:
            raise CorruptAudioError(
                f"{fmt}: no decodable audio ({truncated or 'bad packets'})", file=source
            )
        raise EmptyAudioError(f"{fmt}: no samples", file=source)
    if declared and declared - decoded > max(
        SHORTFALL_TOLERANCE_S, SHORTFALL_TOLERANCE_SHARE * declared
    ):
        raise CorruptAudioError(
            f"{fmt}: header says {declared:.1f} s but only {decoded:.1f} s could be decoded "
            f"({decoded / declared:.0%}{lost}); the file is cut short or damaged",
            file=source,
        )
    if bad > 1 and bad / packets > MAX_BAD_PACKET_SHARE:
        raise CorruptAudioError(
            f"{fmt}: {bad} of {packets} packets cannot be decoded ({decoded:.1f} s read); "
            "the file is damaged",
            file=source,
        )
    if truncated and header and decoded < 0.5 * header:
        raise CorruptAudioError(
            f"{fmt}: truncated, decoding stopped at {decoded:.1f} s of {header:.1f} s",
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
    n_file = samples.shape[0]
    samples, groups = _merge_copies(samples, rate, silence_dbfs) if n_file > 1 else (samples, ())
    fake = n_file > 1 and samples.shape[0] == 1 and len(groups[0]) > 1
    return DecodedAudio(
        samples=np.ascontiguousarray(samples),
        sample_rate=int(rate),
        source=source,
        format=fmt,
        duration=samples.shape[1] / rate,
        fake_stereo=fake,
        channel_groups=groups,
        source_channels=n_file,
    )
