"""Who spoke when in a mono call: pyannote.audio's SpeakerDiarization, loaded once.

The pipeline is assembled from the offline weights (segmentation-3.0 and CAM++, see
`qa/config/diarization.yaml`), or loaded whole from a site's own pyannote pipeline directory
(`pipeline:` in that file). Audio is handed over in memory, so pyannote never decodes files.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qa.audio import resample
from qa.config import PACKAGE_DIR, Settings
from qa.errors import ModelNotFoundError, QAError
from qa.models import model_path
from qa.schema import Record, SpeakerTurn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

SAMPLE_RATE = 16000
DEFAULT_CONFIG = PACKAGE_DIR / "config" / "diarization.yaml"

# Hook signature of pyannote pipelines: hook(step, artifact, file=..., total=..., completed=...)
Hook = Callable[..., None]


class Diarization(Record):
    """Speaker turns with how they were found, for the call's evidence-quality record."""

    turns: list[SpeakerTurn] = Field(default_factory=list)
    speakers_found: int = 0
    speaker_pass: Literal["estimated", "two_party_split", "given"] = "estimated"
    # cosine distance between the two voices' centroid embeddings (None: not two voices)
    separation: float | None = None


class DiarizationConfig(BaseModel):
    """`qa/config/diarization.yaml`; unknown keys are errors so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    pipeline: str | None = None
    segmentation: str | None = None
    embedding: str | None = None
    segmentation_step: float = Field(default=0.1, gt=0.0, le=1.0)
    segmentation_batch_size: int = Field(default=32, ge=1)
    embedding_batch_size: int = Field(default=64, ge=1)
    embedding_exclude_overlap: bool = True
    embedding_min_speech: float = Field(default=0.25, ge=0.0)
    embedding_batched: bool = True
    embedding_stride: int = Field(default=3, ge=1)
    clustering: Literal["AgglomerativeClustering", "KMeansClustering", "VBxClustering"] = (
        "AgglomerativeClustering"
    )
    clustering_min_active: float = Field(default=0.1, ge=0.0, le=1.0)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    num_speakers: int | None = Field(default=None, ge=1)
    min_speakers: int | None = Field(default=None, ge=1)
    max_speakers: int | None = Field(default=2, ge=1)
    two_party_split: bool = True
    split_min_separation: float = Field(default=0.10, ge=0.0, le=2.0)
    split_min_seconds: float = Field(default=0.5, ge=0.0)


def load_config(path: str | Path | None = None) -> tuple[DiarizationConfig, Path]:
    """The config and the folder its relative paths are read from."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise QAError(f"cannot read diarization config: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise QAError("diarization config must be a mapping", file=str(path))
    try:
        return DiarizationConfig.model_validate(data), path.parent
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise QAError(f"invalid diarization config: {problems}", file=str(path)) from exc


def _no_plda() -> Any:
    """A PLDA stand-in: the pipeline insists on one, agglomerative clustering never uses it."""
    from pyannote.audio.core.plda import PLDA

    class NoPLDA(PLDA):
        def __init__(self) -> None:  # no weights: nothing to load
            pass

        def __call__(self, embeddings: np.ndarray) -> np.ndarray:
            raise QAError("VBx clustering needs a PLDA: configure a full pyannote `pipeline`")

    return NoPLDA()


def _resolve(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _strided_pipeline(**kwargs: Any) -> Any:
    """SpeakerDiarization that embeds only every `embedding_stride`-th window.

    With a 1 s step, consecutive 10 s windows share 9 s, so their speakers' embeddings are
    nearly the same and computing every one is most of the CPU time. A window between two
    embedded ones takes, for each local speaker, the embedding of the nearest embedded
    window's speaker it co-occurs with over the shared seconds (Hungarian matching on
    co-activity); a speaker without a clear match (e.g. one who starts talking only in the
    new second) gets its own embedding, so nobody is clustered on a guess.
    """
    import torch
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.core import SlidingWindow, SlidingWindowFeature
    from scipy.optimize import linear_sum_assignment

    class StridedSpeakerDiarization(SpeakerDiarization):
        embedding_stride: int = 1

        def get_embeddings(
            self,
            file: Any,
            binary_segmentations: Any,
            exclude_overlap: bool = False,
            hook: Hook | None = None,
        ) -> Any:
            k = self.embedding_stride
            if k <= 1 or self.training:
                return super().get_embeddings(file, binary_segmentations, exclude_overlap, hook)
            data = np.nan_to_num(binary_segmentations.data, nan=0.0)
            window = binary_segmentations.sliding_window
            num_chunks, num_frames, num_speakers = data.shape
            anchors = np.arange(0, num_chunks, k)
            anchor_windows = SlidingWindow(
                start=window.start, duration=window.duration, step=window.step * k
            )
            found = super().get_embeddings(
                file, SlidingWindowFeature(data[anchors], anchor_windows), exclude_overlap, hook
            )
            embeddings = np.full(
                (num_chunks, num_speakers, found.shape[-1]), np.nan, dtype=found.dtype
            )
            embeddings[anchors] = found
            frames_per_step = window.step / window.duration * num_frames
            todo: list[tuple[int, int]] = []
            for c in range(num_chunks):
                if c % k == 0:
                    continue
                a = int(min(anchors[-1], round(c / k) * k))
                shift = int(round(abs(c - a) * frames_per_step))
                active = data[c].sum(axis=0)
                if shift >= num_frames:
                    todo += [(c, j) for j in range(num_speakers) if active[j] > 0]
                    continue
                if c > a:
                    ya, yc = data[a, shift:], data[c, : num_frames - shift]
                else:
                    ya, yc = data[a, : num_frames - shift], data[c, shift:]
                co = yc.T @ ya  # (speakers of c, speakers of a): frames spoken together
                own = yc.sum(axis=0)
                match = dict(zip(*linear_sum_assignment(co, maximize=True), strict=True))
                for j in range(num_speakers):
                    if active[j] == 0:
                        continue
                    i = match.get(j)
                    if (
                        i is not None
                        and own[j] >= 0.5 * active[j]
                        and co[j, i] >= 0.8 * own[j]
                        and not np.isnan(embeddings[a, i, 0])
                    ):
                        embeddings[c, j] = embeddings[a, i]
                    else:
                        todo.append((c, j))
            for start in range(0, len(todo), self.embedding_batch_size):
                batch = todo[start : start + self.embedding_batch_size]
                waves, masks = [], []
                for c, j in batch:
                    wave, _ = self._audio.crop(file, window[c], mode="pad")
                    mask = data[c, :, j]
                    if exclude_overlap:
                        clean = mask * (data[c].sum(axis=1) < 2)
                        mask = clean if clean.sum() > 0 else mask
                    waves.append(wave[None])
                    masks.append(torch.from_numpy(mask.astype(np.float32))[None])
                result = self._embedding(torch.vstack(waves), masks=torch.vstack(masks))
                for (c, j), vector in zip(batch, result, strict=True):
                    embeddings[c, j] = vector
            return embeddings

    return StridedSpeakerDiarization(**kwargs)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def two_party_split(
    embeddings: np.ndarray, segmentations: Any, min_alone: float = 0.05
) -> tuple[np.ndarray, float] | None:
    """Two voices where the clustering heard one, from what the segmentation model knows.

    Inside one 10 s window the segmentation model tells two voices apart far better than
    CAM++ does across a telephone call (its same-speaker and cross-speaker distances overlap
    on 8 kHz calls), so every window in which two local speakers each talk alone gives a
    pair of embeddings that must belong to different people (a cannot-link pair). The
    direction that separates those pairs best (first principal component of their
    differences) splits all embeddings in two; each window's speakers then go to the nearer
    centroid, never both to the same one. Returns (hard clusters as pyannote shapes them,
    centroid distance), or None when no window holds two voices. Written here because
    neither pyannote's clustering nor scikit-learn's takes cannot-link constraints.
    """
    from scipy.optimize import linear_sum_assignment

    data = (np.nan_to_num(segmentations.data) > 0.5).astype(np.float32)
    num_chunks, num_frames, num_speakers = data.shape
    alone = (data * (data.sum(axis=2, keepdims=True) == 1)).sum(axis=1)  # frames alone
    valid = ~np.isnan(embeddings).any(axis=2)
    usable = valid & (alone >= min_alone * num_frames)
    norms = np.linalg.norm(np.nan_to_num(embeddings), axis=2, keepdims=True)
    unit = np.nan_to_num(embeddings) / np.where(norms > 0, norms, 1.0)
    pairs = []
    for c in range(num_chunks):
        local = np.flatnonzero(usable[c])
        if len(local) >= 2:
            a, b = local[np.argsort(-alone[c, local])[:2]]
            pairs.append(unit[c, a] - unit[c, b])
    if not pairs:
        return None
    direction = np.linalg.svd(np.array(pairs), full_matrices=False)[2][0]
    values = unit[usable] @ direction
    cut = float(np.median(values))
    for _ in range(50):  # two-means in one dimension
        low, high = values[values < cut], values[values >= cut]
        if not len(low) or not len(high):
            return None
        new = float((low.mean() + high.mean()) / 2)
        if abs(new - cut) < 1e-6:
            break
        cut = new
    members = unit[usable]
    centroids = np.stack([members[values < cut].mean(axis=0), members[values >= cut].mean(axis=0)])
    similarity = np.einsum("csd,kd->csk", unit, centroids)
    similarity[~valid] = -1.0
    hard = np.full((num_chunks, num_speakers), -2, dtype=np.int8)
    for c in range(num_chunks):
        rows, cols = linear_sum_assignment(similarity[c], maximize=True)
        hard[c, rows] = cols
    return hard, _cosine_distance(centroids[0], centroids[1])


class ProgressBar:
    """pyannote hook drawing each step's done/total, rate and ETA on stderr (stdout is kept
    clean for results and is silenced while the pipeline runs)."""

    def __enter__(self) -> ProgressBar:
        from rich.console import Console

        from qa.progress import progress_bar

        self.progress = progress_bar(console=Console(stderr=True))
        self.progress.start()
        self.tasks: dict[str, Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(
        self,
        step: str,
        artifact: Any,
        file: Any = None,
        total: int | None = None,
        completed: int | None = None,
    ) -> None:
        if total is None or completed is None:
            return
        if step not in self.tasks:
            self.tasks[step] = self.progress.add_task(step, total=total)
        self.progress.update(self.tasks[step], completed=completed, total=total)


class Diarizer:
    """Loads the pipeline once; each call diarizes one recording."""

    def __init__(self, settings: Settings, *, config: DiarizationConfig | None = None) -> None:
        self.settings = settings
        if config is None:
            config, base = load_config(settings.diarization_config)
        else:
            base = Path.cwd()
        self.config = config
        site = _resolve(config.pipeline, base)
        if site is not None and not site.exists():
            raise ModelNotFoundError("diarization pipeline not found", file=str(site))

        import torch

        self.default_num_speakers = config.num_speakers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchcodec / lightning notices at import
            self.pipeline = self._load(config, base)
        clustering = getattr(self.pipeline, "clustering", None)
        if hasattr(clustering, "filter_embeddings"):
            clustering.filter_embeddings = functools.partial(
                clustering.filter_embeddings, min_active_ratio=config.clustering_min_active
            )
        # a site pipeline may have been saved with a GPU in mind; here we run where we can
        if torch.cuda.is_available():
            self.pipeline.to(torch.device("cuda"))

    def _load(self, config: DiarizationConfig, base: Path) -> Any:
        from pyannote.audio import Model, Pipeline

        from qa.asr.campplus import CamPlusPlus

        if config.pipeline:
            path = _resolve(config.pipeline, base)
            pipeline = Pipeline.from_pretrained(path)
            if pipeline is None:
                raise ModelNotFoundError("not a pyannote pipeline", file=str(path))
            return pipeline

        seg_path = _resolve(config.segmentation, base) or model_path(
            "segmentation_model", self.settings
        )
        emb_path = _resolve(config.embedding, base) or model_path("embedding_model", self.settings)
        for p in (seg_path, emb_path):
            if not p.exists():
                raise ModelNotFoundError("diarization model not found", file=str(p))
        segmentation = Model.from_pretrained(seg_path)
        if segmentation is None:
            raise ModelNotFoundError("not a pyannote segmentation model", file=str(seg_path))
        embedding = CamPlusPlus(
            emb_path, min_speech=config.embedding_min_speech, batched=config.embedding_batched
        )
        pipeline = _strided_pipeline(
            segmentation=segmentation,
            segmentation_step=config.segmentation_step,
            embedding=embedding,
            embedding_exclude_overlap=config.embedding_exclude_overlap,
            plda=_no_plda(),
            clustering=config.clustering,
            embedding_batch_size=config.embedding_batch_size,
            segmentation_batch_size=config.segmentation_batch_size,
        )
        pipeline.embedding_stride = config.embedding_stride
        params = {
            "segmentation": {"min_duration_off": 0.0},
            "clustering": {"method": "centroid", "threshold": 0.7, "min_cluster_size": 12},
        }
        for key, values in config.params.items():
            params.setdefault(key, {}).update(values)
        if config.clustering != "AgglomerativeClustering":
            params["clustering"] = config.params.get("clustering", {})
        pipeline.instantiate(params)
        return pipeline

    def __call__(self, samples: np.ndarray, sample_rate: int, **kwargs: Any) -> list[SpeakerTurn]:
        """Speaker turns only; see `diarize`."""
        return self.diarize(samples, sample_rate, **kwargs).turns

    def diarize(
        self,
        samples: np.ndarray,
        sample_rate: int,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        hook: Hook | None = None,
        progress: bool = False,
    ) -> Diarization:
        """Speaker turns of a mono recording (may overlap); `num_speakers=None` estimates it.

        A call is a conversation: when the estimate finds one voice but the segmentation
        heard two within its windows, the two-party split (see `two_party_split`) is taken
        if its second voice has speech and the voices differ at all. `hook` receives
        pyannote's progress calls; `progress=True` shows a progress bar.
        """
        import torch

        if samples.ndim == 2:  # (channels, n), as qa.audio decodes it
            samples = samples.mean(axis=0)
        audio = resample(np.asarray(samples, dtype=np.float32), sample_rate, SAMPLE_RATE)
        if audio.size == 0:
            return Diarization()
        file = {
            "waveform": torch.from_numpy(np.ascontiguousarray(audio))[None],
            "sample_rate": SAMPLE_RATE,
            "uri": "call",
        }
        min_speakers = min_speakers if min_speakers is not None else self.config.min_speakers
        max_speakers = max_speakers if max_speakers is not None else self.config.max_speakers
        steps: dict[str, Any] = {}

        def keep(
            step: str,
            artifact: Any,
            file: Any = None,
            total: int | None = None,
            completed: int | None = None,
        ) -> None:
            if total is None and step in ("segmentation", "speaker_counting", "embeddings"):
                # the pipeline later overwrites the count's data in place: keep a copy
                steps[step] = (
                    type(artifact)(np.copy(artifact.data), artifact.sliding_window)
                    if step == "speaker_counting"
                    else artifact
                )
            if hook is not None:
                hook(step, artifact, file=file, total=total, completed=completed)

        with contextlib.ExitStack() as stack:
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            # agglomerative clustering prints advice on stdout when it cannot reach a count
            stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            if progress and hook is None:
                hook = stack.enter_context(ProgressBar())
            output = self.pipeline(
                file,
                num_speakers=num_speakers,
                min_speakers=min_speakers,
                max_speakers=max_speakers,
                hook=keep,
            )
        annotation = getattr(output, "speaker_diarization", output)
        turns = _turns(annotation)
        found = len({t.speaker for t in turns})
        centroids = getattr(output, "speaker_embeddings", None)
        separation = (
            round(_cosine_distance(centroids[0], centroids[1]), 4)
            if found == 2 and centroids is not None and len(centroids) == 2
            else None
        )
        result = Diarization(
            turns=turns,
            speakers_found=found,
            separation=separation,
            speaker_pass="given" if num_speakers else "estimated",
        )
        if (
            found == 1
            and num_speakers is None
            and (max_speakers or 2) >= 2
            and self.config.two_party_split
            and len(steps) == 3
        ):
            split = self._split(steps)
            if split is not None:
                result = split
        return result

    def _split(self, steps: dict[str, Any]) -> Diarization | None:
        """The two-party split of one recording, if its second voice is real enough."""
        segmentations = steps["segmentation"]
        found = two_party_split(steps["embeddings"], segmentations)
        if found is None:
            return None
        hard, separation = found
        if separation < self.config.split_min_separation:
            return None
        hard[np.sum(segmentations.data, axis=1) == 0] = -2  # inactive local speakers
        count = steps["speaker_counting"]
        count = type(count)(np.minimum(count.data, 2).astype(np.int8), count.sliding_window)
        discrete = self.pipeline.reconstruct(segmentations, hard, count)
        annotation = self.pipeline.to_annotation(
            discrete,
            min_duration_on=0.0,
            min_duration_off=self.pipeline.segmentation.min_duration_off,
        )
        turns = _turns(
            annotation.rename_labels(
                {label: f"SPEAKER_{int(label):02d}" for label in annotation.labels()}
            )
        )
        talk: dict[str, float] = {}
        for t in turns:
            talk[t.speaker] = talk.get(t.speaker, 0.0) + t.duration
        if len(talk) < 2 or min(talk.values()) < self.config.split_min_seconds:
            return None
        return Diarization(
            turns=turns,
            speakers_found=len(talk),
            speaker_pass="two_party_split",
            separation=round(separation, 4),
        )


def _turns(annotation: Any) -> list[SpeakerTurn]:
    turns = [
        SpeakerTurn(start=round(seg.start, 3), end=round(seg.end, 3), speaker=str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    turns.sort(key=lambda t: (t.start, t.end))
    return turns
