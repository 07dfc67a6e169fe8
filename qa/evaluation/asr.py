"""Transcription accuracy: word error rate (character error rate for Chinese) against
reference transcripts, from NIST STM files or synthetic calls (`qa synth`).

Text is compared normalised: lowercase, punctuation and hesitations removed, one Chinese
script on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

from qa.asr.chinese import is_chinese, to_script
from qa.asr.whisper import SAMPLE_RATE, Transcriber, base_language
from qa.config import Settings
from qa.errors import QAError
from qa.schema import Record, Transcript


class StmSegment(Record):
    """One line of a NIST STM reference: `file channel speaker start end [<label>] text`."""

    file: str
    channel: str
    speaker: str
    start: float
    end: float
    text: str


def read_stm(path: str | Path) -> list[StmSegment]:
    """Reference segments in time order; comment lines (`;;`) and blank lines skipped."""
    path = Path(path)
    out: list[StmSegment] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith(";;"):
            continue
        parts = line.split(maxsplit=5)
        if len(parts) < 5:
            raise QAError(
                f"line {lineno}: an STM line needs file, channel, speaker, start, end",
                file=str(path),
            )
        text = parts[5] if len(parts) > 5 else ""
        if text.startswith("<"):  # optional <label> column
            text = text.split(">", 1)[1] if ">" in text else ""
        try:
            start, end = float(parts[3]), float(parts[4])
        except ValueError as exc:
            raise QAError(f"line {lineno}: start and end must be numbers", file=str(path)) from exc
        out.append(
            StmSegment(
                file=parts[0],
                channel=parts[1],
                speaker=parts[2],
                start=start,
                end=end,
                text=text.strip(),
            )
        )
    out.sort(key=lambda s: s.start)
    return out


# Hesitations that references and recognisers write or leave out at will (Whisper's own
# English normaliser removes the same ones before scoring).
FILLERS = frozenset({"hmm", "mm", "mhm", "mmm", "uh", "um", "umm", "uhm", "er", "erm"})


def normalize_text(text: str) -> str:
    """Lowercase, punctuation and hesitations removed (apostrophes joined: "didn't" ->
    "didnt")."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(w for w in text.split() if w not in FILLERS)


def error_rate(reference: str, hypothesis: str, language: str = "en") -> float:
    """WER on normalised text; character error rate for Chinese, which has no spaces."""
    import jiwer

    ref, hyp = normalize_text(reference), normalize_text(hypothesis)
    if is_chinese(language):  # one script on both sides: script is not a recognition error
        ref = to_script(ref.replace(" ", ""), "simplified")
        hyp = to_script(hyp.replace(" ", ""), "simplified")
        if not ref:
            return 0.0 if not hyp else 1.0
        return float(jiwer.cer(ref, hyp))
    if not ref:
        return 0.0 if not hyp else 1.0
    return float(jiwer.wer(ref, hyp))


def transcript_text(transcript: Transcript) -> str:
    """All words of a transcript in time order, whatever speaker said them."""
    words = sorted(transcript.words, key=lambda w: w.start)
    return " ".join(w.text.strip() for w in words)


class EvalCase(Record):
    """One recording with its reference text, from an STM file or a synthetic call."""

    name: str
    audio: str
    reference: str
    language: str


class EvalRow(Record):
    """One model on one recording."""

    model: str
    case: str
    language: str
    error_rate: float  # WER, or CER for Chinese
    metric: Literal["WER", "CER"]
    reference_words: int  # characters for Chinese
    audio_seconds: float
    wall_seconds: float
    hypothesis: str = ""


def stm_case(audio: str | Path, stm: str | Path, language: str = "en") -> EvalCase:
    segments = read_stm(stm)
    return EvalCase(
        name=Path(audio).name,
        audio=str(audio),
        language=language,
        reference=" ".join(s.text for s in segments),
    )


def synth_cases(folder: str | Path) -> list[EvalCase]:
    """Synthetic calls written by `qa synth`: `<call_id>.json` beside its wavs.

    The mono mix is used (highest rate available); the reference is every turn's text
    in time order. Other JSON files in the folder are not ground truth and are skipped.
    """
    from qa.synth import SynthCall, SynthError

    folder = Path(folder)
    if not folder.is_dir():
        raise QAError("not a folder", file=str(folder))
    cases: list[EvalCase] = []
    for gt in sorted(folder.glob("*.json")):
        try:
            call = SynthCall.load(gt)
        except SynthError:
            continue
        monos = {
            int(key.removeprefix("mono_").removesuffix("k")): path
            for key, path in call.files.items()
            if key.startswith("mono_") and Path(path).is_file()
        }
        if not monos:
            continue
        turns = sorted(call.turns, key=lambda t: t.start)
        cases.append(
            EvalCase(
                name=call.call_id,
                audio=monos[max(monos)],
                language=call.language,
                reference=" ".join(t.text for t in turns),
            )
        )
    return cases


def evaluate(
    transcriber: Transcriber,
    cases: list[EvalCase],
    progress: Callable[[EvalCase], None] | None = None,
) -> list[EvalRow]:
    """Error rate of one model on each case; cases the model cannot handle are skipped
    (an English-only model on a Chinese call)."""
    import time

    from qa.audio import load_audio

    rows: list[EvalRow] = []
    for case in cases:
        lang = base_language(case.language)
        if not transcriber.multilingual and lang != "en":
            continue
        audio = load_audio(case.audio).resampled(SAMPLE_RATE)
        t0 = time.perf_counter()
        result = transcriber.transcribe(audio.mono(), lang)
        wall = time.perf_counter() - t0
        chinese = is_chinese(lang)
        rows.append(
            EvalRow(
                model=transcriber.name,
                case=case.name,
                language=lang,
                error_rate=round(error_rate(case.reference, result.text, lang), 4),
                metric="CER" if chinese else "WER",
                reference_words=(
                    len(normalize_text(case.reference).replace(" ", ""))
                    if chinese
                    else len(normalize_text(case.reference).split())
                ),
                audio_seconds=round(audio.duration, 2),
                wall_seconds=round(wall, 2),
                hypothesis=result.text,
            )
        )
        if progress is not None:
            progress(case)
    return rows


def run(
    settings: Settings,
    calls: Path,
    synth: Path | None = None,
    model: str = "all",
    *,
    console: Console,
    notes: Console,
) -> list[EvalRow]:
    """`qa eval asr`: sample.wav against sample.stm in `calls` and the `qa synth` calls in
    `synth`, through the English and multilingual models (`model` "all") or one; what was
    found or skipped is said on `notes`, progress shown on `console`."""
    cases = []
    if (calls / "sample.wav").is_file() and (calls / "sample.stm").is_file():
        cases.append(stm_case(calls / "sample.wav", calls / "sample.stm"))
    else:
        notes.print(f"no sample.wav + sample.stm in {calls}: skipped")
    if synth is not None:
        found = synth_cases(synth)
        notes.print(f"{len(found)} synthetic calls in {synth}")
        cases += found
    if not cases:
        raise QAError("nothing to evaluate: give --data or --synth")
    rows = []
    for key in ["en", "multi"] if model == "all" else [model]:
        transcriber = Transcriber(settings, key)
        with console.status(f"{transcriber.name}: {len(cases)} recordings"):
            rows += evaluate(transcriber, cases)
    return rows


# --------------------------------------------------------------------------- report


def rich_table(rows: list[EvalRow]) -> Table:
    table = Table("model", "call", "lang", "metric", "error", "ref words", "audio s", "x RT")
    for r in rows:
        table.add_row(
            r.model,
            r.case,
            r.language,
            r.metric,
            f"{r.error_rate:.1%}",
            str(r.reference_words),
            f"{r.audio_seconds:.1f}",
            f"{r.audio_seconds / r.wall_seconds:.1f}" if r.wall_seconds else "-",
        )
    return table


def pooled(rows: list[EvalRow]) -> list[str]:
    """Per model, the WER over all its English recordings, weighted by reference words."""
    lines = []
    for name in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == name and r.metric == "WER"]
        if mine:
            total = sum(r.reference_words for r in mine)
            rate = sum(r.error_rate * r.reference_words for r in mine) / max(total, 1)
            lines.append(
                f"{name}: WER {rate:.1%} over {len(mine)} English recordings "
                f"({total} reference words)"
            )
    return lines
