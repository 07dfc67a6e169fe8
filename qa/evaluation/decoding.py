"""Decoding options compared on the real calls: what the defaults of `qa.asr.whisper` rest on.

Every English development stream with a transcript (each channel of the SpokenWOZ calls, and
sample.wav) is decoded with each configuration; WER is pooled over all reference words, lost
speech is reference voice activity with no word within reach, speed is audio seconds per CPU
second of this process (steadier than wall time on a shared machine). "plain" rows call
`WhisperModel.transcribe` directly; "qa" rows go through `Transcriber` as the pipeline does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from qa.asr.whisper import Transcriber, uncovered
from qa.audio import load_audio
from qa.config import Settings
from qa.evaluation.asr import error_rate
from qa.evaluation.calls import dev_calls, joined_text, timeline
from qa.evaluation.diarization import vad_turns
from qa.schema import Record

ASR_RATE = 16000

# name -> options for WhisperModel.transcribe (plain), or a Settings update (qa)
PLAIN: dict[str, dict[str, Any]] = {
    "plain defaults (anchor)": {},
    "plain, word timestamps": {"word_timestamps": True},
    "plain, VAD cut, word timestamps": {"vad_filter": True, "word_timestamps": True},
    "plain, beam 1, word timestamps": {"beam_size": 1, "word_timestamps": True},
    "plain, no conditioning, word timestamps": {
        "condition_on_previous_text": False,
        "word_timestamps": True,
    },
}
QA: dict[str, dict[str, Any]] = {
    "qa accurate (default)": {},
    "qa fast (batched 8, beam 1, VAD cut)": {"asr_mode": "fast"},
    "qa fast, sequential": {"asr_mode": "fast", "asr_batch_size": 0},
}


class OptionRow(Record):
    config: str
    model: str
    wer: float
    per_stream: dict[str, float]
    lost_seconds: float  # summed over streams; plain rows without word times: segments
    audio_seconds: float
    cpu_seconds: float

    @property
    def audio_per_cpu_second(self) -> float:
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds else 0.0


def streams(data: Path, settings: Settings) -> list[tuple[str, np.ndarray, str, list[Any]]]:
    """(name, 16 kHz samples, reference text, reference speech) of every English stream."""
    out = []
    for call in dev_calls(data):
        if not call.words or call.language != "en" or call.text_reference == "silver":
            continue
        audio = load_audio(Path(call.audio)).resampled(ASR_RATE)
        if call.channel_roles and audio.channels == 2:
            for ch, role in call.channel_roles.items():
                ref = [w for w in call.words if w.speaker == role.value]
                speech = vad_turns(audio.channel(ch), ASR_RATE, role.value, settings)
                out.append(
                    (
                        f"{call.name} {role.value}",
                        audio.channel(ch),
                        joined_text(ref),
                        timeline(speech),
                    )
                )
        else:
            out.append((call.name, audio.mono(), joined_text(call.words), timeline(call.turns)))
    return out


def _score(
    config: str,
    model: str,
    found: list[tuple[str, str, list, float]],
    data: list[tuple[str, np.ndarray, str, list[Any]]],
) -> OptionRow:
    per, errors, words, lost, audio, cpu = {}, 0.0, 0, 0.0, 0.0, 0.0
    for (name, samples, ref, speech), (_, text, spans, secs) in zip(data, found, strict=True):
        n = len(ref.split())
        rate = error_rate(ref, text)
        per[name] = round(rate, 4)
        errors += rate * n
        words += n
        lost += sum(s.duration for s in uncovered(speech, spans))
        audio += len(samples) / ASR_RATE
        cpu += secs
    return OptionRow(
        config=config,
        model=model,
        wer=round(errors / max(words, 1), 4),
        per_stream=per,
        lost_seconds=round(lost, 2),
        audio_seconds=round(audio, 1),
        cpu_seconds=round(cpu, 2),
    )


def compare(
    settings: Settings,
    data: Path,
    model: str = "en",
    report: Callable[[OptionRow], None] | None = None,
) -> list[OptionRow]:
    """Every configuration of PLAIN and QA on the English development streams."""
    material = streams(data, settings)
    rows = []
    base = Transcriber(settings, model)
    for config, options in PLAIN.items():
        found = []
        for name, samples, _, _ in material:
            start = time.process_time()
            segments = list(base.model.transcribe(samples, language="en", **options)[0])
            secs = time.process_time() - start
            spans = (
                [(w.start, w.end) for s in segments for w in s.words]
                if options.get("word_timestamps")
                else [(s.start, s.end) for s in segments]
            )
            found.append((name, " ".join(s.text.strip() for s in segments), spans, secs))
        rows.append(_score(config, base.name, found, material))
        if report:
            report(rows[-1])
    for config, update in QA.items():
        transcriber = base if not update else Transcriber(settings.model_copy(update=update), model)
        found = []
        for name, samples, _, _ in material:
            start = time.process_time()
            result = transcriber.transcribe(samples, "en")
            secs = time.process_time() - start
            found.append((name, result.text, [(w.start, w.end) for w in result.words], secs))
        rows.append(_score(config, base.name, found, material))
        if report:
            report(rows[-1])
    return rows


def run(settings: Settings, data: Path, model: str = "en", *, notes: Console) -> Table:
    """`qa eval decoding`: every configuration's figures said on `notes` as each finishes
    (with a spinner meanwhile), and the table of them all returned."""
    table = Table(
        "configuration",
        "model",
        "WER",
        "lost s",
        "audio s / CPU s",
        "per stream",
        title="decoding options on the real calls",
    )

    def report(r: OptionRow) -> None:
        notes.print(
            f"{r.config}: WER {r.wer:.1%}, lost {r.lost_seconds:.1f} s, "
            f"{r.audio_per_cpu_second:.1f} audio s per CPU s"
        )
        table.add_row(
            r.config,
            r.model,
            f"{r.wer:.1%}",
            f"{r.lost_seconds:.1f}",
            f"{r.audio_per_cpu_second:.1f}",
            ", ".join(f"{k} {v:.0%}" for k, v in r.per_stream.items()),
        )

    with notes.status("decoding the development streams"):
        compare(settings, data, model, report)
    return table
