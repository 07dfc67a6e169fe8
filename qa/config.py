"""Settings from the environment (prefix ``QA_``) or a YAML file named by ``QA_CONFIG``.

The embedded defaults run on a laptop: a local store directory, SQLite, Ray on this
machine and CPU models from the offline packages. Production sets URLs and model paths.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from qa.errors import QAError

PACKAGE_DIR = Path(__file__).resolve().parent


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the file named by QA_CONFIG; environment variables still win."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("QA_CONFIG")
        if not path:
            return {}
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise QAError(f"cannot read settings: {exc}", file=path) from exc
        if not isinstance(data, dict):
            raise QAError("settings file must be a mapping of names to values", file=path)
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QA_", extra="ignore")

    home: Path = Field(default=Path(".qa"), description="working directory for embedded state")
    # Assembled model weights live with the environment whose packages they come from, so
    # every QA_HOME (a test's, a site's) shares them.
    models_dir: Path = Field(default=Path(sys.prefix) / "share" / "qa-models")

    # ---- ASR
    asr_model_en: str | None = Field(default=None, description="path to English CTranslate2 model")
    asr_model_multi: str | None = Field(default=None, description="path to multilingual model")
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_compute_type: str = "auto"  # int8 on CPU, float16 on GPU when "auto"
    # accurate: faster-whisper's own decoding, words aligned after, speech without words read
    # again; fast: batched, beam 1, VAD cut (about 2x the speed, loses speech; benchmarks.md)
    asr_mode: Literal["accurate", "fast"] = "accurate"
    asr_batch_size: int = 8  # fast mode; 0 decodes sequentially
    asr_threads: int = 0  # 0: let CTranslate2 decide
    asr_beam_size: int = 5
    # temperatures of the fallback when a window's text loops or is improbable; each step
    # samples 5 candidates. faster-whisper's six steps made synthetic Mandarin 1.5x slower
    # than these three at the same CER; real calls rarely fall back (docs/benchmarks.md)
    asr_temperatures: tuple[float, ...] = (0.0, 0.4, 0.8)
    asr_prompt: str | None = None  # initial prompt (site vocabulary in a sentence)
    default_language: str | None = None  # None: detect per call
    # the site's own words (company, products), e.g. "Northwind Telecom, broadband, SIM":
    # given to Whisper as hotwords so names the scorecard looks for are spelt right
    asr_hotwords: str | None = None
    chinese_script: Literal["simplified", "traditional"] = "simplified"

    # ---- speakers
    diarization_config: str | None = None  # YAML; default: qa/config/diarization.yaml
    segmentation_model: str | None = None
    embedding_model: str | None = None
    vad_model: str | None = None

    # ---- text models
    encoder_model: str | None = None  # sentence encoder for semantic rules
    sentiment_backend: Literal["default", "transformers", "lexicon"] = "default"
    sentiment_model: str | None = None  # trained head (default) or transformers model dir

    # ---- audio
    max_duration: float = 4 * 3600.0  # seconds; longer recordings are refused
    silence_dbfs: float = -60.0  # a recording quieter than this throughout is "all silence"

    # ---- scoring
    scorecard: str | None = None  # default: qa/scorecards/en_customer_service.yaml
    scorecard_zh: str | None = None
    redact: bool = True
    # the playable copy is silent over each redacted span and this many seconds either side
    # (ASR word times are good to a few tenths of a second)
    redaction_margin: float = Field(default=0.5, ge=0.0, le=5.0)
    # once a call is processed: delete the uploaded original, or keep it readable only by
    # the roles granted original audio, every read audited
    original_audio: Literal["discard", "restricted"] = "discard"
    review_sample_rate: float = 0.05

    # ---- storage and services
    store_url: str | None = None  # file:///path or s3://bucket (default: <home>/store)
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = False
    database_url: str | None = None  # default: sqlite:///<home>/workflow.db
    ray_address: str | None = None
    # a Ray custom resource that only the transcription (GPU) nodes offer, e.g. "asr":
    # transcribe workers run only there; None runs them on any node
    transcribe_resource: str | None = None
    session_ttl_minutes: int = 480
    # sign-in throttling (qa.workflow.throttle): consecutive failed logins that lock an
    # account, for how long, the same for a client address over any accounts, and the wait
    # after the second failure (doubling with each further one)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: float = Field(default=900.0, gt=0)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_delay_seconds: float = Field(default=1.0, ge=0)
    # the largest recording and metadata file `qa ingest` accepts
    max_audio_mb: float = Field(default=2048.0, gt=0)
    max_metadata_mb: float = Field(default=100.0, gt=0)

    # ---- alerts (qa.alerts): the rule file (default: the bundled example, which sends
    # nothing), tries per recipient and the first wait between them (doubling), and the
    # dashboard address alerts link to (e.g. https://qa.example.com)
    alert_rules: str | None = None
    alert_attempts: int = Field(default=3, ge=1, le=10)
    alert_backoff_seconds: float = Field(default=2.0, ge=0, le=300)
    dashboard_url: str | None = None

    # ---- live monitoring (qa.live): a token per source (platform account) that may
    # stream calls, e.g. QA_LIVE_TOKENS='{"twilio-main": "<secret>"}'; where the endpoint
    # listens; how many calls at once; decode threads (0: one per core); and StreamOptions
    # (qa.live.stream) overrides, e.g. {"step_s": 0.8}
    live_tokens: dict[str, str] = Field(default_factory=dict)
    live_host: str = "127.0.0.1"
    live_port: int = Field(default=8765, ge=0, le=65535)
    live_max_calls: int = Field(default=8, ge=1)
    live_decode_workers: int = Field(default=0, ge=0)
    live_stream: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"file://{(self.home / 'store').resolve()}"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'workflow.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
