"""The audio people hear: a copy of the recording with every redacted span silenced.

The transcript's redactions (card numbers, security codes, ...) name the seconds where the
personal data was spoken; the playable copy is silent there on every channel, with a margin
either side because word times from ASR are only good to a few tenths of a second, and
because a number read on one channel of a two-track call leaks onto the other one 25-45 dB
down. The dashboard only ever plays this copy (`Keys.playable`).

The uploaded original sits under its own prefix (`Keys.audio`, `originals/`) until the call
has a playable copy and a result. Then the site's setting decides: `discard` deletes it,
`restricted` keeps it for the roles granted `auth.ORIGINAL_AUDIO`, and every read of it goes
through `Workflow.original_audio`, which writes the audit log.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import soundfile as sf

from qa.audio import load_audio
from qa.errors import QAError
from qa.schema import CallMeta, CallResult, Redaction
from qa.store import Keys, ObjectNotFoundError, Store

PLAYABLE_FORMAT = "flac"  # lossless (a silenced span stays digital zero) and half a WAV


def silence_spans(
    samples: np.ndarray, sample_rate: int, spans: Iterable[Redaction], margin: float
) -> np.ndarray:
    """A copy of `samples` (channels, n) with each span plus `margin` seconds set to zero on
    every channel."""
    if sample_rate <= 0:
        raise QAError(f"sample rate must be positive, got {sample_rate}")
    out = np.array(samples, dtype=np.float32, copy=True)
    n = out.shape[-1]
    for span in spans:
        a = max(0, int(np.floor((span.start - margin) * sample_rate)))
        b = min(n, int(np.ceil((span.end + margin) * sample_rate)))
        if b > a:
            out[..., a:b] = 0.0
    return out


def encode(samples: np.ndarray, sample_rate: int) -> bytes:
    """FLAC bytes of float samples shaped (channels, n)."""
    buf = io.BytesIO()
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    sf.write(buf, data.T, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def playable_copy(
    audio: bytes, result: CallResult, *, margin: float, max_duration: float | None = None
) -> bytes:
    """The redacted, playable copy of a call's recording (all its channels, its own rate)."""
    decoded = load_audio(
        audio,
        name=result.meta.audio_key or result.meta.call_id,
        max_duration=max_duration,
        silence_dbfs=float("-inf"),
    )
    silenced = silence_spans(
        decoded.samples, decoded.sample_rate, result.transcript.redactions, margin
    )
    return encode(silenced, decoded.sample_rate)


def source_audio(store: Store, meta: CallMeta) -> bytes:
    """The recording to process: the original, or, where the site discards originals, the
    newest playable copy (already redacted, so a re-run cannot bring the data back)."""
    if meta.audio_key:
        try:
            return store.get_bytes(meta.audio_key)
        except ObjectNotFoundError:
            pass
    copies = [store.stat(k) for k in store.list(Keys.playable_prefix(meta.call_id))]
    if not copies:
        raise QAError(
            f"call {meta.call_id}: no recording stored (original "
            f"{meta.audio_key or 'never ingested'}, no playable copy)",
            file=meta.audio_key,
        )
    newest = max(copies, key=lambda c: c.modified.timestamp() if c.modified else 0.0)
    return store.get_bytes(newest.key)


def original_key(store: Store, call_id: str) -> str | None:
    """Where the call's original recording is, if it is still kept."""
    try:
        key = store.get_json(Keys.meta(call_id), CallMeta).audio_key
    except ObjectNotFoundError:
        key = None
    if key and store.exists(key):
        return key
    return next(iter(store.list(Keys.original_prefix(call_id))), None)


def publish_playable(
    store: Store,
    audio: bytes,
    result: CallResult,
    *,
    margin: float,
    max_duration: float | None = None,
) -> str:
    """Write the playable copy for this result's pipeline version (atomic, idempotent)."""
    key = Keys.playable(result.meta.call_id, result.pipeline_version)
    data = playable_copy(audio, result, margin=margin, max_duration=max_duration)
    store.put_bytes(key, data, f"audio/{PLAYABLE_FORMAT}")
    return key


def settle_original(store: Store, meta: CallMeta, policy: str) -> bool:
    """Apply the site's policy once a call has its playable copy and result; True when the
    original was deleted."""
    if policy != "discard" or not meta.audio_key or not store.exists(meta.audio_key):
        return False
    store.delete(meta.audio_key)
    return True


def discard_originals(store: Store, call_ids: set[str]) -> int:
    """Delete the originals of these (processed) calls still under `originals/`."""
    gone = 0
    for key in store.list(Keys.ORIGINALS):
        if key.split("/")[1] in call_ids:
            store.delete(key)
            gone += 1
    return gone
