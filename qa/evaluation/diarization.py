"""Diarization accuracy: DER against reference speaker turns, and roles through ASR.

The development recordings (`sample.wav`, `ami_dev00.wav` with their RTTM) are diarized with
the speaker count given and estimated; a two-channel call is mixed down to mono and scored
against each channel's voice activity; synthetic calls (`qa synth`) are scored against their
script's turns and, through the whole mono path, word by word against the speaker's role.
DER is the strict variant: no collar, overlap scored.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from qa.asr.diarize import SAMPLE_RATE, Diarizer
from qa.audio import resample
from qa.config import Settings
from qa.errors import QAError
from qa.models import model_path
from qa.schema import Role, SpeakerTurn

TABLE_COLUMNS = (
    "recording",
    "speakers given",
    "ref",
    "found",
    "DER",
    "missed",
    "false alarm",
    "confusion",
    "x RT",
    "agent ok",
    "word role acc",
)


def vad_turns(
    samples: np.ndarray, sample_rate: int, speaker: str, settings: Settings
) -> list[SpeakerTurn]:
    """Speech regions of one channel (Silero VAD): the reference for a stereo call's speaker."""
    import torch
    from silero_vad.utils_vad import get_speech_timestamps, init_jit_model

    model = init_jit_model(str(model_path("vad_model", settings)))
    audio = torch.from_numpy(resample(samples, sample_rate, SAMPLE_RATE))
    stamps = get_speech_timestamps(audio, model, sampling_rate=SAMPLE_RATE, return_seconds=True)
    return [SpeakerTurn(start=s["start"], end=s["end"], speaker=speaker) for s in stamps]


def to_annotation(turns: list[SpeakerTurn], uri: str = "call") -> Any:
    from pyannote.core import Annotation, Segment

    annotation = Annotation(uri=uri)
    for i, t in enumerate(turns):
        annotation[Segment(t.start, t.end), i] = t.speaker
    return annotation.support()  # merge a speaker's touching regions


def read_rttm(path: Path) -> list[SpeakerTurn]:
    turns = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] != "SPEAKER":
            continue
        try:
            start, dur = float(parts[3]), float(parts[4])
        except (IndexError, ValueError) as exc:
            raise QAError(f"line {n}: not an RTTM SPEAKER line", file=str(path)) from exc
        turns.append(SpeakerTurn(start=start, end=start + dur, speaker=parts[7]))
    return turns


def der(reference: list[SpeakerTurn], hypothesis: list[SpeakerTurn]) -> dict[str, float]:
    """Diarization error rate, no collar, overlap scored (the strict variant)."""
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.0, skip_overlap=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scored over the union of both extents, as intended
        parts = metric(to_annotation(reference), to_annotation(hypothesis), detailed=True)
    total = parts["total"] or 1.0
    return {
        "der": parts["diarization error rate"],
        "missed": parts["missed detection"] / total,
        "false_alarm": parts["false alarm"] / total,
        "confusion": parts["confusion"] / total,
    }


class EvalRow(BaseModel):
    """One recording scored against its reference."""

    name: str
    num_speakers: int | None  # given to the diarizer; None: estimated
    reference_speakers: int
    found_speakers: int
    der: float
    missed: float
    false_alarm: float
    confusion: float
    seconds: float
    audio_seconds: float
    agent_correct: bool | None = None  # synthetic calls with ASR: agent role right
    word_accuracy: float | None = None  # synthetic calls with ASR: words given the right role


def _timed(
    diarizer: Diarizer, samples: np.ndarray, rate: int, num_speakers: int | None
) -> tuple[list[SpeakerTurn], float]:
    import time

    start = time.perf_counter()
    turns = diarizer(samples, rate, num_speakers=num_speakers)
    return turns, time.perf_counter() - start


def _row(
    name: str,
    reference: list[SpeakerTurn],
    turns: list[SpeakerTurn],
    ns: int | None,
    seconds: float,
    audio_seconds: float,
    **extra: Any,
) -> EvalRow:
    return EvalRow(
        name=name,
        num_speakers=ns,
        reference_speakers=len({t.speaker for t in reference}),
        found_speakers=len({t.speaker for t in turns}),
        seconds=round(seconds, 2),
        audio_seconds=round(audio_seconds, 2),
        **der(reference, turns),
        **extra,
    )


def stereo_reference(path: Path, settings: Settings) -> tuple[np.ndarray, int, list[SpeakerTurn]]:
    """Mono mixdown of a two-channel call and its reference from per-channel voice activity."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if data.shape[1] != 2:
        raise QAError("expected a two-channel recording", file=str(path))
    reference = vad_turns(data[:, 0], rate, "left", settings) + vad_turns(
        data[:, 1], rate, "right", settings
    )
    return data.mean(axis=1), rate, reference


def evaluate(
    settings: Settings,
    data_dir: Path,
    synth_dir: Path | None = None,
    report: Callable[[EvalRow], None] | None = None,
) -> list[EvalRow]:
    """DER on the development recordings (each with the speaker count given and estimated)
    and on synthetic calls; with `synth_dir`, also roles and word attribution through ASR."""
    import soundfile as sf

    diarizer = Diarizer(settings)
    rows: list[EvalRow] = []

    def add(row: EvalRow) -> None:
        rows.append(row)
        if report:
            report(row)

    calls = data_dir / "calls"
    for name, counts in (("sample", (2, None)), ("ami_dev00", (None, 2))):
        wav = calls / f"{name}.wav"
        if not wav.is_file():
            continue
        samples, rate = sf.read(str(wav), dtype="float32")
        reference = read_rttm(calls / f"{name}.rttm")
        for ns in counts:
            turns, secs = _timed(diarizer, samples, rate, ns)
            add(_row(name, reference, turns, ns, secs, len(samples) / rate))
    stereo = calls / "auto_repairs_40_stereo.wav"
    if stereo.is_file():
        samples, rate, reference = stereo_reference(stereo, settings)
        for ns in (2, None):
            turns, secs = _timed(diarizer, samples, rate, ns)
            add(_row("auto_repairs_40 mixdown", reference, turns, ns, secs, len(samples) / rate))
    if synth_dir is not None:
        for row in evaluate_synth(settings, synth_dir, diarizer):
            add(row)
    return rows


def barely_speaks_mix(call: Any, keep: int = 2) -> tuple[np.ndarray, int, list[SpeakerTurn]]:
    """A synthetic call in which the customer says only their `keep` shortest turns (a
    "yes", a name): the agent's channel whole, the customer's silenced elsewhere, mixed
    down to mono; the reference has only what is still said."""
    import soundfile as sf

    data, rate = sf.read(call.files["stereo_16k"], dtype="float32", always_2d=True)
    customer = [t for t in call.turns if t.role == Role.CUSTOMER]
    kept = sorted(customer, key=lambda t: t.end - t.start)[:keep]
    mask = np.zeros(len(data), dtype=np.float32)
    for t in kept:
        mask[int(t.start * rate) : int(np.ceil(t.end * rate))] = 1.0
    mono = data[:, 0] + data[:, 1] * mask
    reference = [
        SpeakerTurn(start=t.start, end=t.end, speaker=t.role.value)
        for t in call.turns
        if t.role != Role.CUSTOMER or t in kept
    ]
    return mono, rate, reference


def evaluate_synth(settings: Settings, synth_dir: Path, diarizer: Diarizer) -> Iterator[EvalRow]:
    """Synthetic calls at 16 and 8 kHz, and with a customer who barely speaks: DER against
    the script's turns, then the full mono path (ASR, diarization, roles) scored per word
    against the role of the turn the word is in."""
    import tempfile

    import soundfile as sf

    from qa.asr.speakers import assign_words, transcribe_call
    from qa.asr.whisper import Transcriber, select_model_key
    from qa.audio import load_audio
    from qa.synth import SynthCall

    transcribers: dict[str, Any] = {}

    def row(
        name: str, call: Any, samples: np.ndarray, rate: int, reference: list[SpeakerTurn]
    ) -> EvalRow:
        turns, secs = _timed(diarizer, samples, rate, None)
        key = select_model_key(call.language, settings)
        if key not in transcribers:
            transcribers[key] = Transcriber(settings, model=key)
        meta = call.meta.model_copy(update={"channel_roles": None})
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
            sf.write(wav.name, samples, rate)
            transcript = transcribe_call(
                load_audio(Path(wav.name)), meta, transcribers[key].transcribe, diarizer, settings
            )
        words = transcript.words
        truth = assign_words(words, reference)  # each word's true role, by time
        said = [u.role.value for u in transcript.utterances for _ in u.words]
        correct = sum(t.speaker == r for t, r in zip(truth, said, strict=True))
        agent_speakers = {s for s, r in transcript.roles.speaker_roles.items() if r == Role.AGENT}
        agent_words = [
            w.speaker for w, t in zip(words, truth, strict=True) if t.speaker == Role.AGENT.value
        ]
        majority = max(set(agent_words), key=agent_words.count) if agent_words else None
        return _row(
            name,
            reference,
            turns,
            None,
            secs,
            len(samples) / rate,
            agent_correct=majority in agent_speakers,
            word_accuracy=round(correct / len(words), 4) if words else None,
        )

    for path in sorted(synth_dir.glob("*.json")):
        call = SynthCall.load(path)
        reference = [
            SpeakerTurn(start=t.start, end=t.end, speaker=t.role.value) for t in call.turns
        ]
        for variant in ("mono_16k", "mono_8k"):
            if variant in call.files:
                samples, rate = sf.read(call.files[variant], dtype="float32")
                yield row(f"synth {call.call_id} {variant}", call, samples, rate, reference)
        if "stereo_16k" in call.files:
            samples, rate, few = barely_speaks_mix(call)
            yield row(f"synth {call.call_id}, customer barely speaks", call, samples, rate, few)


# --------------------------------------------------------------------------- report


def summary(r: EvalRow) -> str:
    """One line per recording, printed as each is scored (rich markup)."""
    extra = (
        ""
        if r.word_accuracy is None
        else (
            f", agent {'right' if r.agent_correct else 'WRONG'}, words with the right role "
            f"{r.word_accuracy:.1%}"
        )
    )
    return (
        f"{r.name} (speakers {r.num_speakers or 'estimated'}): DER {r.der:.1%}, "
        f"{r.found_speakers} found{extra}"
    )


def table_row(r: EvalRow) -> list[str]:
    """The cells of `r` under `TABLE_COLUMNS`."""
    return [
        r.name,
        str(r.num_speakers or "-"),
        str(r.reference_speakers),
        str(r.found_speakers),
        f"{r.der:.1%}",
        f"{r.missed:.1%}",
        f"{r.false_alarm:.1%}",
        f"{r.confusion:.1%}",
        f"{r.audio_seconds / r.seconds:.1f}" if r.seconds else "-",
        "-" if r.agent_correct is None else ("yes" if r.agent_correct else "NO"),
        "-" if r.word_accuracy is None else f"{r.word_accuracy:.1%}",
    ]


def run(settings: Settings, data_dir: Path, synth_dir: Path | None, *, console: Console) -> Table:
    """`qa eval diarization`: each row's summary is printed on `console` as it is measured
    (a run takes minutes), and the table of them all returned."""
    table = Table(*TABLE_COLUMNS)

    def report(r: EvalRow) -> None:
        console.print(summary(r))
        table.add_row(*table_row(r))

    if not evaluate(settings, data_dir, synth_dir, report=report):
        raise QAError("nothing to evaluate: no recordings found (give --data or --synth)")
    return table
