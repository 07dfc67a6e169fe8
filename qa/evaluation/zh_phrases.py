"""Chinese phrase rules on real Mandarin speech: what matching by sound gains and costs.

Phrases are cut from the references of the zh_dev sentences (read customer-service speech,
see ../shared/data/README.md), and each is looked for, through the scorecard's own phrase
rules (`qa.rules.matchers`), in Whisper's text of every sentence. Recall: a phrase found in
the text of the sentence it was said in. False matches: a phrase found in the text of another
sentence whose reference does not contain it. Each for exact matching, matching by sound,
character-level fuzzy matching (the rule default before by-sound) and both (the default now).

The ASR text can be kept in a JSON cache (keyed by model setting and sample rate) so that a
rerun, or a change to the matching, costs seconds rather than a Whisper pass; delete it after
changing other ASR settings (beam size, compute type).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from qa.config import Settings
from qa.errors import QAError
from qa.rules.format import Scorecard
from qa.rules.matchers import CallContext
from qa.rules.text import normalize, to_simplified
from qa.schema import ItemOutcome, Role, Transcript, Utterance, Word
from qa.scoring.metrics import compute_metrics

# rule settings compared: name -> (fuzzy, by_sound)
CONFIGS: dict[str, tuple[bool, bool]] = {
    "exact": (False, False),
    "exact + by sound": (False, True),
    "exact + fuzzy (old default)": (True, False),
    "exact + fuzzy + by sound (default)": (True, True),
}
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")


def default_data_dir() -> Path:
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("QA_SHARED_DATA", root.parent / "shared" / "data")) / "zh_dev"


def read_refs(folder: Path) -> list[tuple[str, str]]:
    """(file name, reference) of each sentence in refs.tsv, in file order."""
    path = folder / "refs.tsv"
    if not path.is_file():
        raise QAError("no refs.tsv (file<TAB>reference) in the zh_dev folder", file=str(path))
    refs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, text = line.partition("\t")
        if sep and text.strip():
            refs.append((name.strip(), text.strip()))
    return refs


# --------------------------------------------------------------------------- ASR


def telephone_band(samples: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz samples through a `rate` channel and back (the simulated telephone band)."""
    from qa.audio import resample

    if rate == 16000:
        return samples
    return resample(resample(samples, 16000, rate), rate, 16000)


def transcribe_all(
    folder: Path,
    refs: list[tuple[str, str]],
    rate: int,
    settings: Settings,
    cache: Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, list[list]]:
    """Whisper words ([start, end, text]) of each sentence at `rate`, from the cache when
    there; the multilingual model is loaded only when some sentence is not."""
    from qa.audio import load_audio

    key = f"multi={settings.asr_model_multi or 'bundled'} rate={rate}"
    stored: dict = {}
    if cache is not None and cache.is_file():
        stored = json.loads(cache.read_text(encoding="utf-8"))
    done: dict[str, list[list]] = stored.setdefault(key, {})
    todo = [name for name, _ in refs if name not in done]
    if todo:
        from qa.asr.whisper import Transcriber

        transcriber = Transcriber(settings, "multi")
        for k, name in enumerate(todo):
            if progress is not None:
                progress(k, len(todo), name)
            samples = load_audio(folder / name).resampled(16000).mono()
            result = transcriber.transcribe(telephone_band(samples, rate), "zh")
            done[name] = [[w.start, w.end, w.text] for w in result.words]
            if cache is not None:  # after each clip: an interrupted run keeps what it did
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(cache.suffix + ".tmp")
                tmp.write_text(json.dumps(stored, ensure_ascii=False, indent=1), encoding="utf-8")
                tmp.replace(cache)
    return {name: done[name] for name, _ in refs}


def transcript_of(name: str, words: list[list]) -> Transcript:
    """One agent utterance with Whisper's words and times: what a rule sees of a call."""
    ws = [Word(start=s, end=e, text=t) for s, e, t in words]
    end = ws[-1].end if ws else 0.0
    utt = Utterance(
        speaker="agent",
        role=Role.AGENT,
        start=ws[0].start if ws else 0.0,
        end=end,
        text="".join(w.text for w in ws).strip(),
        words=ws,
    )
    return Transcript(call_id=name, language="zh", duration=end, utterances=[utt])


# --------------------------------------------------------------------------- phrases


def sample_phrases(
    refs: list[tuple[str, str]],
    per_sentence: int = 4,
    lengths: tuple[int, ...] = (4, 5, 6),
    seed: str = "zh-phrases",
) -> list[tuple[int, str]]:
    """(sentence index, phrase): spans of `lengths` Han characters inside one clause of a
    reference (punctuation and Latin words end a clause), drawn deterministically per
    sentence, not overlapping while enough others are left."""
    out: list[tuple[int, str]] = []
    for i, (name, ref) in enumerate(refs):
        spans = [
            (m.start() + a, m.start() + a + n)
            for m in _HAN_RUN.finditer(to_simplified(ref))
            for n in lengths
            for a in range(len(m.group()) - n + 1)
        ]
        random.Random(f"{seed}:{name}").shuffle(spans)
        chosen: list[tuple[int, int]] = []
        for overlap_ok in (False, True):
            for a, b in spans:
                if len(chosen) >= per_sentence:
                    break
                if (a, b) in chosen or (not overlap_ok and any(x < b and a < y for x, y in chosen)):
                    continue
                chosen.append((a, b))
        text = to_simplified(ref)
        seen: set[str] = set()
        for a, b in sorted(chosen):
            if text[a:b] not in seen:
                seen.add(text[a:b])
                out.append((i, text[a:b]))
    return out


def phrase_card(phrases: list[str], fuzzy: bool, by_sound: bool, threshold: float) -> Scorecard:
    """A scorecard with one phrase rule (any speaker, anywhere) per phrase."""
    items = [
        {
            "id": f"p{k}",
            "name": p,
            "weight": 1,
            "rule": {
                "type": "phrase",
                "speaker": "any",
                "phrases": [p],
                "fuzzy": fuzzy,
                "by_sound": by_sound,
            },
        }
        for k, p in enumerate(phrases)
    ]
    return Scorecard.model_validate(
        {
            "id": "zh_phrases_eval",
            "version": "1",
            "name": "zh phrases",
            "languages": ["zh"],
            "pass_mark": 0,
            "scoring": "weighted",
            "fuzzy_threshold": threshold,
            "sections": [{"id": "phrases", "name": "phrases", "items": items}],
        }
    )


# --------------------------------------------------------------------------- measuring


@dataclass
class Figures:
    config: str
    found_own: int = 0
    phrases: int = 0
    found_other: int = 0
    pairs: int = 0
    # (phrase, sentence index, own sentence?, what matched) of each match by sound
    by_sound: list[tuple[str, int, bool, str]] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found_own / self.phrases if self.phrases else 0.0

    @property
    def false_rate(self) -> float:
        return self.found_other / self.pairs if self.pairs else 0.0


def measure(
    refs: list[tuple[str, str]],
    words: dict[str, list[list]],
    phrases: list[tuple[int, str]],
    threshold: float,
) -> list[Figures]:
    """Recall and false matches of each rule setting in CONFIGS (see module docstring)."""
    transcripts = [transcript_of(name, words[name]) for name, _ in refs]
    metrics = [compute_metrics(t) for t in transcripts]
    norm_refs = [normalize(ref, True) for _, ref in refs]
    texts = [p for _, p in phrases]
    out = []
    for config, (fuzzy, by_sound) in CONFIGS.items():
        card = phrase_card(texts, fuzzy, by_sound, threshold)
        rules = [item.rule for _, item in card.items]
        fig = Figures(config)
        for j, (t, m) in enumerate(zip(transcripts, metrics, strict=True)):
            ctx = CallContext(t, card, m)
            for (i, phrase), rule in zip(phrases, rules, strict=True):
                own = i == j
                if not own and normalize(phrase, True) in norm_refs[j]:
                    continue  # said there too: neither a hit nor a false match
                result = ctx.evaluate(rule)
                hit = result.outcome == ItemOutcome.PASS
                if own:
                    fig.phrases += 1
                    fig.found_own += hit
                else:
                    fig.pairs += 1
                    fig.found_other += hit
                if hit and "(by sound:" in (result.evidence[0].matched or ""):
                    fig.by_sound.append((phrase, j, own, result.evidence[0].matched or ""))
        out.append(fig)
    return out


def pooled_cer(refs: list[tuple[str, str]], words: dict[str, list[list]]) -> float:
    """Character error rate of the ASR text over all sentences, weighted by length."""
    from qa.evaluation.asr import error_rate

    total = errors = 0.0
    for name, ref in refs:
        n = len(normalize(ref, True))
        hyp = "".join(w[2] for w in words[name])
        errors += error_rate(ref, hyp, "zh") * n
        total += n
    return errors / total if total else 0.0


def run(
    settings: Settings,
    folder: Path | None = None,
    rate: int = 16000,
    cache: Path | None = None,
    threshold: float | None = None,
    per_sentence: int = 4,
    *,
    console: Console,
) -> tuple[Table, list[str]]:
    """`qa eval zh-phrases`: the table of every rule setting, and each match by sound of the
    default setting (in its own sentence, or false); progress is shown on `console`."""
    from qa.scoring.scorecard import default_scorecard

    folder = folder or default_data_dir()
    refs = read_refs(folder)
    if threshold is None:
        threshold = default_scorecard("zh", settings).fuzzy_threshold
    with console.status(f"Whisper (multi) on {len(refs)} sentences at {rate} Hz") as status:
        words = transcribe_all(
            folder,
            refs,
            rate,
            settings,
            cache,
            lambda k, n, name: status.update(f"{k + 1}/{n} {name} at {rate} Hz"),
        )
    phrases = sample_phrases(refs, per_sentence)
    figures = measure(refs, words, phrases, threshold)
    table = Table(
        "rule setting",
        "recall",
        "found / said",
        "false matches",
        "found / not said",
        title=f"{len(phrases)} phrases (4-6 characters) from "
        f"{len(refs)} sentences, {rate} Hz, threshold {threshold:g}, ASR CER "
        f"{pooled_cer(refs, words):.1%}",
    )
    for f in figures:
        table.add_row(
            f.config,
            f"{f.recall:.1%}",
            f"{f.found_own}/{f.phrases}",
            f"{f.false_rate:.2%}",
            f"{f.found_other}/{f.pairs}",
        )
    by_sound = []
    for _, j, own, matched in figures[1].by_sound:
        where = "own sentence" if own else f"FALSE in {refs[j][0]}"
        by_sound.append(f"{where}: {matched}")
    return table, by_sound
