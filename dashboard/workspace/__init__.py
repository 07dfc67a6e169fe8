"""The call review workspace and the recording player, as one browser-side component.

Why a component: seeking the player to an evidence span or a transcript line happens in
the browser, so it never reruns the page; the transcript follows playback there too.
Why the recording travels inside the component's data: `st.audio` publishes the bytes on
an unauthenticated `/media/...` address that keeps answering after logout. Here the audio
is base64 in this render's message only, and the browser plays it from a `blob:` URL that
exists in that tab alone, so nobody without the signed-in session can fetch it.
"""

from __future__ import annotations

import base64
import hashlib
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from qa.schema import Evidence, ItemResult, Segment, Transcript

_HERE = Path(__file__).resolve().parent
_component = st.components.v2.component(
    "qa_review_workspace",
    js=(_HERE / "workspace.js").read_text(encoding="utf-8"),
    css=(_HERE / "workspace.css").read_text(encoding="utf-8"),
)
LOST_SPANS_SHOWN = 12
SHORTCUTS = (
    "Keyboard (when no text box has the focus): **Space** play/pause · **←/→** 5 s back/"
    "forward · **J/K** next/previous item (the player jumps to its first evidence) · **E** "
    "next evidence of the selected item · **1/2/3** pass/fail/n/a for the selected item. "
    "A click on a transcript line or an evidence span plays from there."
)


def recording_bytes(source: bytes | str | None) -> bytes | None:
    """The recording's bytes; a presigned store URL is read here on the server, so the
    address never reaches the browser (it would work without a session until it expires)."""
    if source is None or isinstance(source, bytes):
        return source
    with urllib.request.urlopen(source, timeout=30) as r:  # noqa: S310 - the store's own URL
        return r.read()


_MAGIC = ((b"fLaC", "flac"), (b"RIFF", "wav"), (b"OggS", "ogg"), (b"ID3", "mpeg"))


def _audio_fields(audio: bytes | None, fmt: str | None) -> dict[str, Any]:
    if not audio:
        return {"audio": None, "audio_id": None, "mime": None}
    if fmt is None:  # an uploaded original: any format the pipeline accepts
        fmt = next((name for magic, name in _MAGIC if audio.startswith(magic)), "wav")
    return {
        "audio": base64.b64encode(audio).decode("ascii"),
        "audio_id": hashlib.sha1(audio, usedforsecurity=False).hexdigest()[:16],
        "mime": f"audio/{fmt}",
    }


def _evidence(ev: Evidence) -> dict[str, Any]:
    return {
        "start": float(ev.start),
        "end": float(ev.end),
        "who": ev.role.value if ev.role else (ev.speaker or ""),
        "text": ev.text,
        "matched": ev.matched,
        "similarity": ev.similarity,
        "note": ev.note,
    }


def _lost(spans: list[Segment] | None) -> tuple[list[dict[str, float]], str | None]:
    spans = spans or []
    shown = [{"start": s.start, "end": s.end} for s in spans[:LOST_SPANS_SHOWN]]
    rest = spans[LOST_SPANS_SHOWN:]
    more = f"{len(rest)} more ({sum(s.duration for s in rest):.1f} s)" if rest else None
    return shown, more


def transcript_rows(transcript: Transcript | None) -> list[dict[str, Any]]:
    """Utterances as the component shows them; the text stays plain text."""
    if transcript is None:
        return []
    return [
        {
            "start": float(u.start),
            "end": float(u.end),
            "role": u.role.value,
            "speaker": u.speaker,
            "text": u.text,
            "overlap": u.overlap,
            "mood": u.sentiment.label if u.sentiment else None,
        }
        for u in transcript.utterances
    ]


def item_rows(items: Iterable[Any], auto_items: Mapping[str, ItemResult]) -> list[dict[str, Any]]:
    """The call's items (workflow view) with the pipeline's evidence for each."""
    rows = []
    for item in items:
        auto = auto_items.get(item.item_id)
        rows.append(
            {
                "item_id": item.item_id,
                "name": item.name,
                "outcome": item.outcome.value,
                "auto_outcome": item.auto_outcome.value,
                "final_outcome": item.final_outcome.value if item.final_outcome else None,
                "critical": item.critical,
                "points": f"{item.auto_points:g}",
                "possible": f"{item.points_possible:g}",
                "reason": auto.reason if auto else None,
                "evidence": [_evidence(ev) for ev in auto.evidence] if auto else [],
            }
        )
    return rows


def review_workspace(
    *,
    call_id: str,
    audio: bytes | None,
    fmt: str | None,
    transcript: Transcript | None,
    transcript_caption: str,
    items: list[dict[str, Any]],
    summary: str,
    alert: str | None,
    decisions: Mapping[str, str],
    can_decide: bool,
    locked: bool,
    lost_speech: list[Segment] | None,
    note: str | None,
    on_decide: Callable[[], None] | None,
    start: float = 0.0,
) -> Any:
    """Player, transcript and scorecard on one screen; returns the component's result,
    whose `decide` is {item_id, outcome} in the run a decision button or key started.
    `start` (seconds) puts the player there when the recording loads (a search hit)."""
    lost, lost_more = _lost(lost_speech)
    return _component(
        key=f"workspace:{call_id}",
        data={
            "mode": "review",
            "call_id": call_id,
            **_audio_fields(audio, fmt),
            "utterances": transcript_rows(transcript),
            "transcript_caption": transcript_caption,
            "items": items,
            "summary": summary,
            "alert": alert,
            "decisions": dict(decisions),
            "can_decide": can_decide,
            "locked": locked,
            "lost": lost,
            "lost_more": lost_more,
            "note": note,
            "start": float(start),
        },
        on_decide_change=on_decide or (lambda: None),
    )


def player(
    key: str,
    audio: bytes | None,
    fmt: str | None,
    *,
    start: float = 0.0,
    autoplay: bool = False,
    label: str | None = None,
    note: str | None = None,
) -> None:
    """A recording player alone (disputes, the original recording), started at `start`."""
    _component(
        key=f"player:{key}",
        data={
            "mode": "player",
            "call_id": key,
            **_audio_fields(audio, fmt),
            "start": float(start),
            "autoplay": autoplay,
            "label": label,
            "note": note,
        },
    )


def shown_data(at: Any, prefix: str = "workspace:") -> list[dict[str, Any]]:
    """For in-process page tests: the data each workspace or player on the page was given."""
    import json

    out = []
    for el in at.get("bidi_component"):
        proto = el.proto
        if proto.component_name != "qa_review_workspace":
            continue
        raw = proto.json or (proto.mixed.json if proto.HasField("mixed") else "")
        payload = json.loads(raw) if raw else {}
        if el.key is None or str(el.key).startswith(prefix):
            out.append(payload)
    return out
