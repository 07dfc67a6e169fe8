"""Records of a live call, as the server, the rules and the workflow database share them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from qa.schema import Direction, Record, Role, Seconds


class LiveWord(Record):
    """A committed word: times in seconds of its track from the start of the stream, and
    when (epoch seconds) the audio of its end arrived and its text was committed, whose
    difference is the latency a supervisor sees."""

    start: Seconds
    end: Seconds
    text: str
    probability: float = 1.0
    heard_at: float
    committed_at: float

    @property
    def latency(self) -> float:
        return self.committed_at - self.heard_at


class Commit(Record):
    """Words of one track that stopped changing; `final` closes the utterance after them
    (the speaker fell silent, or the stream ended)."""

    words: list[LiveWord] = Field(default_factory=list)
    final: bool = False


class LiveStatus(StrEnum):
    LIVE = "live"  # audio is arriving
    ENDED = "ended"  # the platform said stop; the recording is being stored
    STORED = "stored"  # stored as a normal call for `qa run`
    FAILED = "failed"  # closed on an error (the reason says which)


class LiveCallInfo(Record):
    """What the platform said of a call when its stream started."""

    call_id: str
    source: str  # the authenticated source (platform account) it came from
    protocol: str = "twilio"
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    language: str | None = None
    direction: Direction = Direction.INBOUND
    started_at: datetime
    tracks: dict[str, Role]  # the platform's track name -> the role speaking on it


class LiveLine(Record):
    """One utterance of the rolling transcript; its text grows until `final`."""

    call_id: str
    index: int  # per call, in the order utterances started
    track: str
    role: Role
    start: Seconds
    end: Seconds
    text: str
    final: bool = False


class LiveEvent(Record):
    """Something a supervisor should see as it happens: an alert, or a scorecard item
    decided before the end of the call."""

    call_id: str
    kind: Literal["alert", "item"]
    rule_id: str  # the alert rule's id, or the scorecard item's id
    name: str
    outcome: Literal["alert", "met", "missed"]
    reason: str
    at: float  # seconds into the call (audio time) the evidence ends
    created_at: datetime
