"""Records that cross a boundary (file, object store, database, Ray).

Every stage reads and writes these models, so a result written by one version of a
stage can be read back, validated, and shown by the dashboard without guessing.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

CALL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# No call lasts a day; a time beyond it is a broken file, and would be scored as hours of
# silence.
MAX_SECONDS = 86_400.0
# Float noise in times computed by the pipeline (they are rounded to the millisecond):
# clamped instead of refused, so a result is never lost to a rounding error.
TIME_NOISE = 0.001
# Words and utterances past the call's end by more than this are not from this call
# (Whisper's and pyannote's last times overshoot by a fraction of a second at most).
END_SLACK = 5.0
# An hour of one person talking is about 60 000 characters; a text far longer is not
# speech, and would hold the scoring of a batch for minutes.
MAX_TEXT_CHARS = 200_000


def validate_call_id(value: str) -> str:
    """Call ids become object keys and file names, so only a safe alphabet is accepted."""
    if not CALL_ID_RE.match(value) or ".." in value:
        raise ValueError(
            f"invalid call id {value!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, and no '..'"
        )
    return value


CallId = Annotated[str, AfterValidator(validate_call_id)]


def check_seconds(value: float) -> float:
    """A time in a call: finite, not negative, under a day (tiny negative noise -> 0)."""
    if not math.isfinite(value):
        raise ValueError(f"time must be a finite number of seconds, got {value}")
    if value < 0:
        if value >= -TIME_NOISE:
            return 0.0
        raise ValueError(f"time must not be negative, got {value:g} s")
    if value > MAX_SECONDS:
        raise ValueError(
            f"time {value:g} s is beyond {MAX_SECONDS:.0f} s (24 h), longer than any call"
        )
    return value


Seconds = Annotated[float, AfterValidator(check_seconds)]


def _check_span(record: Segment | Word | Utterance) -> None:
    """end >= start; an end before its start by float noise only is set to the start."""
    if record.end < record.start:
        if record.start - record.end > TIME_NOISE:
            raise ValueError(f"end {record.end:g} s is before start {record.start:g} s")
        record.end = record.start


class Record(BaseModel):
    """Base for all records: unknown fields are errors, so typos in files are caught."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Role(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    UNKNOWN = "unknown"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


# --------------------------------------------------------------------------- metadata


class CallMeta(Record):
    """What the centre knows about a call before it is processed."""

    call_id: CallId
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    direction: Direction = Direction.INBOUND
    started_at: datetime | None = None
    language: str | None = None  # ISO code ("en", "zh"); None means detect
    # channel index -> role for stereo recordings; None means decide automatically
    channel_roles: dict[int, Role] | None = None
    source: str | None = None  # site / recorder the call came from
    customer_id: str | None = None  # the caller, where the platform says (repeat callers)
    audio_key: str | None = None  # object-store key of the raw audio
    audio_sha256: str | None = None
    audio_format: str | None = None
    duration: Seconds | None = None  # seconds, filled at ingest


# --------------------------------------------------------------------------- transcript


class Segment(Record):
    start: Seconds
    end: Seconds

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _check_span(self)
        return self

    @property
    def duration(self) -> float:
        return self.end - self.start


class SpeakerTurn(Record):
    """A stretch of one speaker's voice, from diarization (or a reference)."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


class Sentiment(Record):
    score: float = Field(ge=-1.0, le=1.0)
    label: Literal["negative", "neutral", "positive"]


class Word(Record):
    start: Seconds
    end: Seconds
    text: str = Field(max_length=MAX_TEXT_CHARS)
    probability: float = 1.0
    speaker: str | None = None
    channel: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _check_span(self)
        return self


class Utterance(Record):
    """A run of words by one speaker; overlap marks speech while the other party talks."""

    speaker: str
    role: Role = Role.UNKNOWN
    start: Seconds
    end: Seconds
    text: str = Field(max_length=MAX_TEXT_CHARS)
    words: list[Word] = Field(default_factory=list)
    channel: int | None = None
    overlap: bool = False
    sentiment: Sentiment | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _check_span(self)
        return self


class RoleAssignment(Record):
    """Which speaker is the agent, how it was decided, and how sure we are."""

    speaker_roles: dict[str, Role] = Field(default_factory=dict)
    method: Literal["configured", "scored", "swapped", "default"] = "default"
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    margin: float | None = None  # agent score minus the runner-up's (scored roles)
    evidence: list[str] = Field(default_factory=list)


class Redaction(Record):
    kind: str  # card_number, card_expiry, cvv, phone, email, national_id, bank_account
    start: float
    end: float
    utterance_index: int
    placeholder: str


class QualityCode(StrEnum):
    """Why the evidence of a call may be wrong: each sends the call to a person."""

    SPEAKERS_COLLAPSED = "speakers_collapsed"  # one voice found where two parties talk
    SPEAKERS_UNCERTAIN = "speakers_uncertain"  # two voices, but hard to tell apart
    LOST_SPEECH = "lost_speech"  # speech the recogniser wrote nothing for
    SILENT_CHANNEL = "silent_channel"  # a party's channel without speech
    OVERLAP = "overlap"  # much of the call is both parties at once
    UNSURE_DECODING = "unsure_decoding"  # the recogniser had to guess much of the text


class QualityIssue(Record):
    code: QualityCode
    reason: str


class EvidenceQuality(Record):
    """What the transcript can be trusted for, from measured signals; `issues` says why not.

    Expected speakers are two (agent and customer). `speaker_separation` is the cosine
    distance between the two voices' embeddings (mono calls; about 0.35-0.55 for two clearly
    different voices with the bundled model, under 0.1 for one voice split in two).
    """

    speakers_expected: int = 2
    speakers_found: int = 0
    speaker_pass: Literal["channels", "estimated", "two_party_split", "given", "none"] = "none"
    speaker_separation: float | None = None
    speech_seconds: float | None = None  # voice activity; None where not measured
    lost_speech_seconds: float = 0.0
    lost_speech: list[Segment] = Field(default_factory=list)
    recovered_seconds: float = 0.0
    silent_channels: list[int] = Field(default_factory=list)
    asr_confidence: float | None = None
    overlap_share: float = 0.0  # share of speech time with both parties talking
    role_margin: float | None = None
    role_confidence: float = 0.0  # after the cap for speakers that are hard to tell apart
    decode_windows: int = 0
    decode_fallbacks: int = 0
    crosstalk_words: int = 0  # two-track calls: words that leaked from the other channel
    issues: list[QualityIssue] = Field(default_factory=list)

    @property
    def doubtful(self) -> bool:
        return bool(self.issues)

    @property
    def reason(self) -> str:
        return "; ".join(i.reason for i in self.issues)


class Transcript(Record):
    call_id: str
    language: str
    duration: Seconds
    channels: int = 1
    speaker_source: Literal["channels", "diarization", "single"] = "single"
    utterances: list[Utterance] = Field(default_factory=list)
    roles: RoleAssignment = Field(default_factory=RoleAssignment)
    redactions: list[Redaction] = Field(default_factory=list)
    asr_model: str = ""
    asr_confidence: float | None = None  # mean word probability
    quality: EvidenceQuality | None = None  # None in results written before it existed

    @model_validator(mode="after")
    def _within_the_call(self) -> Self:
        """Speech after the end of the call is not from this call (and would be scored as
        a silence as long as the gap)."""
        limit = self.duration + END_SLACK
        for i, u in enumerate(self.utterances):
            late = u.end > limit or any(w.end > limit for w in u.words)
            if late:
                end = max([u.end, *(w.end for w in u.words)])
                raise ValueError(
                    f"utterances.{i} ends at {end:g} s, after the end of the "
                    f"call ({self.duration:g} s)"
                )
        return self

    @property
    def words(self) -> list[Word]:
        return [w for u in self.utterances for w in u.words]

    @property
    def text(self) -> str:
        return "\n".join(f"[{u.role.value}] {u.text}" for u in self.utterances)


# --------------------------------------------------------------------------- scoring


class CallMetrics(Record):
    duration: float
    talk_time: dict[str, float] = Field(default_factory=dict)  # role -> seconds
    talk_share: dict[str, float] = Field(default_factory=dict)  # role -> 0..1
    silence_total: float = 0.0
    longest_silence: float = 0.0
    silences: list[Segment] = Field(default_factory=list)
    holds: list[Segment] = Field(default_factory=list)
    hold_total: float = 0.0
    overtalk_total: float = 0.0
    overtalks: list[Segment] = Field(default_factory=list)
    interruptions: dict[str, int] = Field(default_factory=dict)  # interrupting role -> count
    speaking_rate_wpm: dict[str, float] = Field(default_factory=dict)
    first_agent_response: float | None = None  # seconds from call start
    mean_response_latency: float | None = None  # agent's mean gap after customer turns
    # silences outside an announced hold (dead air), and who interrupted where
    dead_air: list[Segment] = Field(default_factory=list)
    longest_dead_air: float = 0.0
    interruption_spans: dict[str, list[Segment]] = Field(default_factory=dict)


class SentimentSummary(Record):
    """Per-role trajectory: where the speaker started, ended, and the slope between."""

    role: Role
    start: float
    end: float
    mean: float
    trend: float  # change per minute, least-squares slope


class ItemOutcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NA = "na"


class Evidence(Record):
    start: float
    end: float
    speaker: str | None = None
    role: Role | None = None
    text: str = ""
    matched: str | None = None  # the phrase, pattern or example that matched
    similarity: float | None = None
    note: str | None = None  # e.g. "longest silence 42.0 s > 30 s"


class ItemResult(Record):
    item_id: str
    name: str
    section: str = ""
    outcome: ItemOutcome
    critical: bool = False
    points_possible: float = 0.0
    points_awarded: float = 0.0
    rule_type: str = ""
    reason: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


class FlagCode(StrEnum):
    AUTO_FAIL = "auto_fail"
    BELOW_PASS = "below_pass"
    NEGATIVE_ENDING = "negative_ending"
    LOW_ROLE_CONFIDENCE = "low_role_confidence"
    LOW_ASR_CONFIDENCE = "low_asr_confidence"
    EVIDENCE_DOUBT = "evidence_doubt"  # see Transcript.quality
    RANDOM_SAMPLE = "random_sample"


class Flag(Record):
    code: FlagCode
    reason: str


class CallScore(Record):
    call_id: str
    scorecard_id: str
    scorecard_version: str
    total: float
    max_total: float = 100.0
    pass_mark: float
    passed: bool
    auto_fail: bool = False
    # how the card totals (qa.scoring.outcome): kept so reviews are totalled the same way
    scoring: Literal["deduction", "weighted"] = "deduction"
    auto_fail_zeroes_total: bool = True
    auto_fail_reasons: list[str] = Field(default_factory=list)
    items: list[ItemResult] = Field(default_factory=list)
    flags: list[Flag] = Field(default_factory=list)
    metrics: CallMetrics | None = None
    sentiment: list[SentimentSummary] = Field(default_factory=list)


# --------------------------------------------------------------------------- pipeline


class ErrorRecord(Record):
    """A call that could not be processed: stored instead of a result, the batch goes on."""

    call_id: str
    stage: str
    error_type: str
    message: str
    file: str | None = None
    pipeline_version: str = ""
    at: datetime


class CallResult(Record):
    """Everything the pipeline produced for one call, keyed by the versions that made it."""

    meta: CallMeta
    transcript: Transcript
    score: CallScore
    pipeline_version: str
    scorecard_version: str
    created_at: datetime
    timings: dict[str, float] = Field(default_factory=dict)  # stage -> seconds
