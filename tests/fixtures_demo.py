"""Demo data for the dashboard: the scripted calls, scored for real, with users of every role.

Each bundled script (qa/synth_scripts) is rendered by qa.synth (espeak-ng; cached in
`synth_dir`), turned into its ground-truth transcript, redacted and scored with the default
scorecard; the results go to the object store, the analytics index and the workflow
database exactly as the pipeline would put them. Earlier weeks repeat the same calls
under new ids so trend charts have more than one point.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from qa.config import Settings
from qa.schema import CallResult

DEMO_PASSWORD = "demo-password-1"
PIPELINE_VERSION = "demo-1"
# Monday noon of a fixed week, so demo data and assertions do not drift with the clock.
BASE_TIME = datetime(2026, 11, 16, 12, 0, tzinfo=UTC)

STAFF = {
    "admin": ("admin", "Site Admin", None),
    "lead": ("lead1", "Lena Lead", "customer_care"),
    "inspector": ("insp1", "Ian Inspector", "customer_care"),
    "inspector2": ("insp2", "Ivy Inspector", "customer_care"),
    "manager": ("mgr1", "Mona Manager", None),
}


class Demo(BaseModel):
    """What a test needs to know about the demo it built."""

    settings_env: dict[str, str]
    password: str = DEMO_PASSWORD
    users: dict[str, str] = Field(default_factory=dict)  # role key -> username
    agents: dict[str, str] = Field(default_factory=dict)  # agent_id -> username
    calls: dict[str, str] = Field(default_factory=dict)  # call_id -> agent_id
    flagged: list[str] = Field(default_factory=list)
    auto_failed: list[str] = Field(default_factory=list)
    with_audio: list[str] = Field(default_factory=list)


def synth_cache(request: Any, tmp_path_factory: Any) -> Path:
    """Rendered calls are kept in pytest's cache between runs (espeak-ng takes ~30 s)."""
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("qa-demo-synth"))
    return Path(tmp_path_factory.mktemp("synth"))


def demo_settings(home: Path) -> Settings:
    """Settings for a demo under `home`, whatever QA_* variables the environment holds."""
    home = Path(home).resolve()
    return Settings(
        home=home,
        store_url=f"file://{home / 'store'}",
        database_url=f"sqlite:///{home / 'workflow.db'}",
    )


def agent_username(agent_id: str) -> str:
    return f"agent_{agent_id.lower()}"


def build_results(
    synth_dir: Path, weeks: int = 2, languages: tuple[str, ...] = ("en",)
) -> list[tuple[CallResult, Path | None]]:
    """Scored results of the scripted calls, newest week first, with the audio to upload."""
    from qa.scoring.redact import redact_transcript
    from qa.scoring.scorecard import default_scorecard, score_call
    from qa.store import keys
    from qa.synth import load_scripts, render_all

    scripts = [s for s in load_scripts() if s.language in languages]
    synth_calls = sorted(
        render_all(synth_dir, scripts=scripts, rates=(8000,)), key=lambda c: c.call_id
    )
    cards = {lang: default_scorecard(lang) for lang in {c.language for c in synth_calls}}
    now = datetime.now(UTC)
    out: list[tuple[CallResult, Path | None]] = []
    for week in range(weeks):
        for n, sc in enumerate(synth_calls):
            call_id = sc.call_id if week == 0 else f"{sc.call_id}-w{week}"
            started = BASE_TIME - timedelta(weeks=week, hours=n)
            audio = Path(sc.files["stereo_8k"]) if "stereo_8k" in sc.files else None
            meta = sc.meta.model_copy(
                update={
                    "call_id": call_id,
                    "started_at": started,
                    "duration": sc.duration,
                    "language": sc.language,
                    "audio_key": keys.audio(call_id, "wav") if audio else None,
                    "audio_format": "wav" if audio else None,
                }
            )
            # as the pipeline does: personal data is replaced before anything is stored
            transcript = redact_transcript(
                sc.to_transcript().model_copy(update={"call_id": call_id})
            )
            card = cards[sc.language]
            score = score_call(transcript, meta, card, sample_rate=0.25, rng_seed=7)
            out.append(
                (
                    CallResult(
                        meta=meta,
                        transcript=transcript,
                        score=score,
                        pipeline_version=PIPELINE_VERSION,
                        scorecard_version=score.scorecard_version,
                        created_at=now,
                    ),
                    audio,
                )
            )
    return out


def publish_result(store: Any, wf: Any, result: CallResult, audio: bytes | None) -> bool:
    """Put one result where the pipeline puts it (the original kept as a restricted site
    keeps it, the redacted playable copy, the store, the workflow database); True when the
    recording was stored too."""
    from qa.playback import publish_playable
    from qa.store import keys

    meta, score = result.meta, result.score
    stored_audio = audio is not None and bool(meta.audio_key)
    if stored_audio:
        store.put_bytes(meta.audio_key, audio, f"audio/{meta.audio_format or 'wav'}")
        publish_playable(store, audio, result, margin=0.5)
    store.put_json(
        keys.result(
            meta.call_id, result.pipeline_version, score.scorecard_id, score.scorecard_version
        ),
        result,
    )
    wf.sync_result(result)
    return stored_audio


def build_demo(
    settings: Settings, synth_dir: Path, *, weeks: int = 2, languages: tuple[str, ...] = ("en",)
) -> Demo:
    """Fill the store, the index and the workflow database named by `settings`."""
    from qa.index import Index
    from qa.search import SearchIndex, default_root
    from qa.store import open_store
    from qa.summary import CallSummary
    from qa.workflow import open_workflow

    store = open_store(settings)
    wf = open_workflow(settings)
    demo = Demo(
        settings_env={
            "QA_HOME": str(settings.home),
            "QA_STORE_URL": settings.resolved_store_url,
            "QA_DATABASE_URL": settings.resolved_database_url,
        }
    )

    for key, (username, name, team) in STAFF.items():
        role = "inspector" if key == "inspector2" else key
        wf.add_user(None, username, DEMO_PASSWORD, role, display_name=name, team=team)
        demo.users[key] = username

    rows = []
    for result, audio in build_results(synth_dir, weeks, languages):
        meta, score = result.meta, result.score
        if publish_result(store, wf, result, audio.read_bytes() if audio else None):
            demo.with_audio.append(meta.call_id)
        rows.append(result)
        demo.calls[meta.call_id] = meta.agent_id or ""
        if score.flags:
            demo.flagged.append(meta.call_id)
        if score.auto_fail:
            demo.auto_failed.append(meta.call_id)
        agent_id = meta.agent_id
        if agent_id and agent_id not in demo.agents:
            username = agent_username(agent_id)
            wf.add_user(
                None,
                username,
                DEMO_PASSWORD,
                "agent",
                display_name=f"Agent {agent_id}",
                team=meta.team,
                agent_id=agent_id,
            )
            demo.agents[agent_id] = username
    Index(store).append([CallSummary.from_result(r) for r in rows])
    SearchIndex(default_root(settings.home)).add(rows)  # as the pipeline's publisher does
    return demo
