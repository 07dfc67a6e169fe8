"""G.711 mu-law, the codec telephone platforms stream (Twilio Media Streams: 8 kHz mu-law).

Written with numpy because the standard library's `audioop` is deprecated (PEP 594) and
removed in Python 3.13. Follows the ITU-T G.711 / Sun reference: 14-bit linear magnitude,
bias 0x84, clipped at 32635, bits inverted on the wire.
"""

from __future__ import annotations

import numpy as np

BIAS = 0x84
CLIP = 32635


def encode(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] to mu-law bytes, one per sample."""
    x = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    pcm = np.round(x * 32767.0).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0x00).astype(np.int32)
    mag = np.minimum(np.abs(pcm), CLIP) + BIAS
    # Segment: position of the highest set bit above bit 7 (0..7).
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    code = ~(sign | (exponent << 4) | mantissa) & 0xFF
    return code.astype(np.uint8).tobytes()


def _table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = code & 0x80
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    mag = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return (np.where(sign != 0, -mag, mag) / 32768.0).astype(np.float32)


_DECODE = _table()


def decode(data: bytes) -> np.ndarray:
    """Mu-law bytes to float32 samples in [-1, 1]."""
    return _DECODE[np.frombuffer(data, dtype=np.uint8)]
