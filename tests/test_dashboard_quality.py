"""Evidence quality on the dashboard: a call whose speakers collapsed into one voice reaches
an inspector's queue with the reason, and its review page says why the evidence is in doubt,
with the lost speech playable; results from before the record existed still open.

The calls are built here (no speech synthesis) and scored by the product's `score_call`, so
the evidence_doubt flag is the scorer's, not the test's.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dashboard.components import escape_md
from dashboard.workspace import shown_data
from qa.config import Settings
from qa.rules.scripted import ScriptedTurn, scripted_transcript
from qa.schema import (
    CallMeta,
    CallResult,
    EvidenceQuality,
    FlagCode,
    QualityCode,
    QualityIssue,
    Role,
    Segment,
    Transcript,
)
from tests.fixtures_demo import (
    DEMO_PASSWORD,
    PIPELINE_VERSION,
    STAFF,
    demo_settings,
    publish_result,
)
from tests.test_dashboard_apptest import login, table, texts

COLLAPSED = "q_collapsed_mono"
OLD = "q_before_quality"
AGENT_ID = "Q1"
LOST = Segment(start=21.5, end=24.0)
COLLAPSED_REASON = (
    "one voice found in a mono call: every word is given to one party, so the "
    "customer's words may count as the agent's"
)
LOST_REASON = "2.5 s of speech produced no words (at 0:21.5)"

TURNS = [
    (
        Role.AGENT,
        "Thank you for calling Northwind Telecom, my name is Sam. This call may be "
        "recorded for quality and training purposes. How can I help?",
    ),
    (Role.CUSTOMER, "Hi, my internet has been down since this morning."),
    (Role.AGENT, "I'm sorry to hear that. Can I have your account number please?"),
    (Role.CUSTOMER, "It's 4 4 1 9 2."),
    (
        Role.AGENT,
        "Thanks. I've reset the line; it should be back in a few minutes. "
        "Is there anything else I can help you with?",
    ),
    (Role.CUSTOMER, "No, that's all, thank you."),
    (Role.AGENT, "Thank you for calling, have a great day."),
]


def silent_wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return buf.getvalue()


def collapsed(transcript: Transcript) -> Transcript:
    """What the pipeline writes for a mono call where diarization found one voice: every word
    given to that voice (as the agent), role confidence capped to 0, and the quality record."""
    utts = [
        u.model_copy(update={"speaker": "SPEAKER_00", "role": Role.AGENT, "channel": None})
        for u in transcript.utterances
    ]
    roles = transcript.roles.model_copy(
        update={"speaker_roles": {"SPEAKER_00": Role.AGENT}, "method": "scored", "confidence": 0.0}
    )
    quality = EvidenceQuality(
        speakers_found=1,
        speaker_pass="estimated",
        speech_seconds=round(sum(u.end - u.start for u in utts) + LOST.duration, 2),
        lost_speech_seconds=LOST.duration,
        lost_speech=[LOST],
        asr_confidence=0.81,
        role_confidence=0.0,
        decode_windows=2,
        issues=[
            QualityIssue(code=QualityCode.SPEAKERS_COLLAPSED, reason=COLLAPSED_REASON),
            QualityIssue(code=QualityCode.LOST_SPEECH, reason=LOST_REASON),
        ],
    )
    return transcript.model_copy(
        update={
            "utterances": utts,
            "roles": roles,
            "channels": 1,
            "speaker_source": "diarization",
            "asr_confidence": 0.81,
            "quality": quality,
        }
    )


def scored_result(call_id: str, transcript: Transcript, hour: int) -> CallResult:
    from qa.scoring.redact import redact_transcript
    from qa.scoring.scorecard import default_scorecard, score_call
    from qa.store import keys

    transcript = redact_transcript(transcript.model_copy(update={"call_id": call_id}))
    meta = CallMeta(
        call_id=call_id,
        agent_id=AGENT_ID,
        team="customer_care",
        queue="billing",
        started_at=datetime(2026, 11, 16, hour, tzinfo=UTC),
        language="en",
        duration=transcript.duration,
        audio_key=keys.audio(call_id, "wav"),
        audio_format="wav",
    )
    score = score_call(transcript, meta, default_scorecard("en"))
    return CallResult(
        meta=meta,
        transcript=transcript,
        score=score,
        pipeline_version=PIPELINE_VERSION,
        scorecard_version=score.scorecard_version,
        created_at=datetime.now(UTC),
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def quality_demo(tmp_path_factory, request, databases) -> Iterator[dict[str, CallResult]]:
    """The two calls on each workflow database in turn."""
    home = tmp_path_factory.mktemp("dash-quality") / "home"
    with databases.fresh(request.param, home) as url:
        yield from _quality_demo(demo_settings(home).model_copy(update={"database_url": url}))
    if request.param != "sqlite":  # the pages used the database they were given
        assert not (home / "workflow.db").exists()


def _quality_demo(settings: Settings) -> Iterator[dict[str, CallResult]]:
    from qa.store import open_store
    from qa.workflow import open_workflow

    store, wf = open_store(settings), open_workflow(settings)
    for key in ("lead", "inspector"):
        username, name, team = STAFF[key]
        wf.add_user(None, username, DEMO_PASSWORD, key, display_name=name, team=team)

    base = scripted_transcript([ScriptedTurn(role=r, text=t) for r, t in TURNS])
    base = base.model_copy(update={"duration": base.utterances[-1].end + 1.0})
    results = {
        COLLAPSED: scored_result(COLLAPSED, collapsed(base), 11),
        OLD: scored_result(OLD, base, 10),
    }
    assert results[OLD].transcript.quality is None  # as results written before it existed
    for result in results.values():
        publish_result(store, wf, result, silent_wav(result.transcript.duration))
    lead, _ = wf.authenticate(STAFF["lead"][0], DEMO_PASSWORD)
    wf.assign(lead, COLLAPSED, STAFF["inspector"][0])  # on the inspector's own queue

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("QA_HOME", str(settings.home))
        mp.setenv("QA_STORE_URL", settings.resolved_store_url)
        mp.setenv("QA_DATABASE_URL", settings.resolved_database_url)
        yield results


def test_scorer_flags_the_collapsed_call(quality_demo):
    flags = {f.code: f.reason for f in quality_demo[COLLAPSED].score.flags}
    assert f"{COLLAPSED_REASON}; {LOST_REASON}" in flags[FlagCode.EVIDENCE_DOUBT]
    # a missing phrase on a doubtful transcript is held for a person, not an auto-fail
    assert flags[FlagCode.EVIDENCE_DOUBT].startswith("critical item 'Identity verification'")
    assert not quality_demo[COLLAPSED].score.auto_fail
    assert FlagCode.EVIDENCE_DOUBT not in {f.code for f in quality_demo[OLD].score.flags}


@pytest.mark.parametrize("who", ["inspector", "lead"])
def test_queue_lists_evidence_doubt_with_its_reason(quality_demo, who):
    """With each role's default filters (flagged only; an inspector's own assignments)."""
    at = login(STAFF[who][0], "queue")
    df = table(at, "flag reasons").set_index("call_id")
    assert COLLAPSED in df.index
    assert "evidence_doubt" in df.loc[COLLAPSED, "flags"].split(", ")
    assert COLLAPSED_REASON in df.loc[COLLAPSED, "flag reasons"]
    assert LOST_REASON in df.loc[COLLAPSED, "flag reasons"]
    at.selectbox(key="q_flag").set_value("evidence_doubt").run()
    assert list(table(at, "flag reasons")["call_id"]) == [COLLAPSED]


def test_review_page_says_why_the_evidence_is_in_doubt(quality_demo):
    at = login(STAFF["inspector"][0], call=COLLAPSED)
    assert not at.exception, [e.value for e in at.exception]
    doubt = next(w.value for w in at.warning if "Evidence in doubt" in w.value)
    assert escape_md(COLLAPSED_REASON) in doubt and escape_md(LOST_REASON) in doubt
    flags = next(w.value for w in at.warning if w.value.startswith("Flags:"))
    assert "evidence_doubt — see Evidence quality below" in flags  # not said twice
    signals = next(c.value for c in at.caption if c.value.startswith("Evidence quality:"))
    assert "speakers 1 of 2 (estimated from the voices)" in signals
    assert "role confidence 0.00" in signals and "ASR confidence 0.81" in signals
    assert "2.5 s lost" in signals
    # the lost speech plays like an evidence span: the workspace's player offers it
    (shown,) = shown_data(at)
    assert shown["lost"] == [{"start": LOST.start, "end": LOST.end}]
    assert len([r for r in at.radio if r.key and r.key.startswith(f"rv:{COLLAPSED}:")]) >= 5


def test_result_without_a_quality_record_still_opens(quality_demo):
    at = login(STAFF["inspector"][0], call=OLD)
    assert not at.exception, [e.value for e in at.exception]
    body = texts(at)
    assert "Call review" in body and "Automatic score" in body
    assert "No evidence-quality record" in body
    assert "Evidence in doubt" not in body
    assert not any(b.key and b.key.startswith("lost:") for b in at.button)
    assert any(r.key and r.key.startswith(f"rv:{OLD}:") for r in at.radio)
