"""Synthetic two-party calls with exact ground truth, for tests and the demo.

Real recordings come without a trustworthy transcript, roles, turn times or a list of the
scorecard items the agent failed. These calls are rendered from scripts with espeak-ng, so
every one of those is known exactly: each turn is synthesised on its own and placed at an
exact sample offset, agent on the left channel and customer on the right (the usual
dual-channel call-centre recording), plus a mono mix for the diarization path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from math import gcd
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from qa.asr.utterances import mark_overlap
from qa.errors import QAError
from qa.schema import (
    CallId,
    CallMeta,
    CallScore,
    Direction,
    FlagCode,
    ItemOutcome,
    Record,
    Role,
    RoleAssignment,
    Transcript,
    Utterance,
    Word,
)

SCRIPTS_DIR = Path(__file__).resolve().parent / "synth_scripts"

# Bump when the rendering changes in a way that alters the audio, so old outputs are redone.
GENERATOR_VERSION = "1"

DEFAULT_PAUSE = 0.4  # seconds between turns when the script does not say
LEAD_IN = 0.5  # silence before the first turn
TAIL = 0.8  # silence after the last turn
MIN_SAME_CHANNEL_GAP = 0.05  # one party never overlaps itself

# Item ids of the default scorecards; a planted violation must be one of them, so a typo in
# a script is an error rather than a silently unmatched label.
SCORECARD_ITEM_IDS = frozenset(
    {
        "greeting",
        "agent_introduction",
        "recording_disclosure",
        "identity_verification",
        "verify_before_account",
        "empathy",
        "hold_etiquette",
        "no_forbidden_language",
        "resolution_confirmation",
        "closing",
        "dead_air",
        "overtalk",
    }
)

PII_KINDS = frozenset(
    {"card_number", "card_expiry", "cvv", "phone", "email", "national_id", "bank_account"}
)


class SynthError(QAError):
    """A script is invalid or the speech synthesiser cannot be run."""


# --------------------------------------------------------------------------- voices


class Voice(Record):
    """espeak-ng settings for one party; part of the render hash."""

    name: str  # espeak-ng voice, optionally "+variant"
    speed: int = 165  # words per minute
    pitch: int = 50  # 0-99
    peak: float = Field(default=0.5, gt=0.0, le=0.5)  # so that the mono sum never clips


# The plain "cmn" voice in espeak-ng 1.51 turns characters into tone-numbered pinyin and then
# reads the digits in English ("nin two hao three"); "cmn-latn-pinyin" is the same Mandarin
# voice reading that pinyin as Mandarin, which is what a listener (and an ASR model) expects.
VOICES: dict[str, dict[Role, Voice]] = {
    "en": {
        Role.AGENT: Voice(name="en-us", speed=165, pitch=40, peak=0.5),
        Role.CUSTOMER: Voice(name="en+f3", speed=170, pitch=65, peak=0.4),
    },
    "zh": {
        Role.AGENT: Voice(name="cmn-latn-pinyin", speed=190, pitch=35, peak=0.5),
        Role.CUSTOMER: Voice(name="cmn-latn-pinyin+f2", speed=195, pitch=70, peak=0.4),
    },
}

CHANNEL = {Role.AGENT: 0, Role.CUSTOMER: 1}


# --------------------------------------------------------------------------- scripts


class ScriptMeta(Record):
    agent_id: str | None = None
    team: str | None = None
    queue: str | None = None
    direction: Direction = Direction.INBOUND


class ScriptTurn(Record):
    role: Literal[Role.AGENT, Role.CUSTOMER]
    text: str = Field(min_length=1)
    # Negative: this turn starts before the previous one ends (interruption / overlap).
    pause_before: float = DEFAULT_PAUSE
    # Silence before this turn (and before its pause), e.g. a 45 s hold.
    hold: float = Field(default=0.0, ge=0.0)


class PlantedPII(Record):
    """Personal data spoken in a turn, for redaction tests; `text` occurs verbatim in it."""

    kind: str
    text: str = Field(min_length=1)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in PII_KINDS:
            raise ValueError(f"unknown PII kind {value!r}; use one of {sorted(PII_KINDS)}")
        return value


# A call's result on its scorecard, as a QA team reads it.
Verdict = Literal["pass", "fail", "auto_fail"]


def expected_verdict(expect: Verdict | None, violations: list[str]) -> Verdict:
    return expect or ("fail" if violations else "pass")


class SynthScript(Record):
    """One scripted call, as written in qa/synth_scripts/<call_id>.yaml."""

    call_id: CallId
    language: Literal["en", "zh"]
    description: str = ""
    meta: ScriptMeta = Field(default_factory=ScriptMeta)
    # what the call is written to show on the default scorecard: `violations` are the items
    # that fail and `expect` the result, so the demo can say whether the product agrees
    violations: list[str] = Field(default_factory=list)
    expect: Verdict | None = None
    pii: list[PlantedPII] = Field(default_factory=list)
    turns: list[ScriptTurn] = Field(min_length=1)

    @field_validator("violations")
    @classmethod
    def _known_items(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - SCORECARD_ITEM_IDS)
        if unknown:
            raise ValueError(
                f"unknown scorecard item ids {unknown}; use ids of the default scorecards: "
                f"{sorted(SCORECARD_ITEM_IDS)}"
            )
        if len(set(value)) != len(value):
            raise ValueError("violations list an item more than once")
        return value

    @model_validator(mode="after")
    def _check_expect(self) -> SynthScript:
        if self.expect not in (None, "pass") and not self.violations:
            raise ValueError(
                f"expect: {self.expect} needs the items that fail it listed in `violations`"
            )
        return self

    @property
    def expected(self) -> Verdict:
        """The result the call is written to get (stated, or read from its violations)."""
        return expected_verdict(self.expect, self.violations)

    @model_validator(mode="after")
    def _check_turns(self) -> SynthScript:
        if self.turns[0].pause_before < 0:
            raise ValueError("the first turn cannot overlap a previous one")
        for i in range(1, len(self.turns)):
            turn, prev = self.turns[i], self.turns[i - 1]
            if turn.pause_before < 0 and turn.role == prev.role:
                raise ValueError(
                    f"turn {i}: a negative pause_before overlaps the same party's previous "
                    "turn; only the other party can interrupt"
                )
        for p in self.pii:
            if not any(p.text in t.text for t in self.turns):
                raise ValueError(f"pii text {p.text!r} does not occur in any turn")
        return self


def load_script(path: Path) -> SynthScript:
    """Read one script; a mistake names the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SynthError(f"cannot read script: {exc}", file=str(path)) from exc
    except yaml.YAMLError as exc:
        raise SynthError(f"invalid YAML: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise SynthError("a script must be a mapping with call_id, language, turns", file=str(path))
    try:
        script = SynthScript.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        )
        raise SynthError(problems, file=str(path)) from exc
    if script.call_id != path.stem:
        raise SynthError(f"call_id {script.call_id!r} differs from the file name", file=str(path))
    return script


def load_scripts(
    names: list[str] | None = None, *, directory: Path | None = None
) -> list[SynthScript]:
    """The bundled scripts (or those in `directory`), all or the named call ids, sorted by id."""
    directory = directory or SCRIPTS_DIR
    available = {p.stem: p for p in sorted(directory.glob("*.yaml"))}
    if names:
        missing = [n for n in names if n not in available]
        if missing:
            raise SynthError(
                f"no script for {', '.join(missing)}; available: {', '.join(available)}",
                file=str(directory),
            )
        chosen = [available[n] for n in dict.fromkeys(names)]
    else:
        chosen = list(available.values())
    return [load_script(p) for p in chosen]


# --------------------------------------------------------------------------- agreement


def verdict(score: CallScore) -> Verdict:
    return "auto_fail" if score.auto_fail else ("pass" if score.passed else "fail")


def written_to_show(script: SynthScript) -> str:
    """The script's intent in a table cell: its result and the items that fail it."""
    shown = script.expected.replace("_", "-")
    return f"{shown}: {', '.join(script.violations)}" if script.violations else shown


class Agreement(Record):
    """Whether a scored call shows what its script was written to show: the same result, and
    exactly the planted items failed among the items scripts label (`SCORECARD_ITEM_IDS`)."""

    expected: Verdict
    actual: Verdict
    missed: list[str] = Field(default_factory=list)  # planted, but the item did not fail
    unexpected: list[str] = Field(default_factory=list)  # failed, but was not planted
    in_doubt: bool = False  # the call is flagged evidence_doubt: its words are not proof

    @property
    def agrees(self) -> bool:
        return self.expected == self.actual and not self.missed and not self.unexpected

    def text(self) -> str:
        """✓, or ✗ with what differs."""
        if self.agrees:
            return "✓"
        parts = []
        if self.expected != self.actual:
            parts.append(f"expected {self.expected}, got {self.actual}")
        if self.missed:
            parts.append(f"not failed: {', '.join(self.missed)}")
        if self.unexpected:
            parts.append(f"also failed: {', '.join(self.unexpected)}")
        if self.in_doubt:
            parts.append("flagged evidence_doubt")
        return "✗ " + "; ".join(parts)


def agreement(script: SynthScript, score: CallScore) -> Agreement:
    """Compare a call's score with its script's intent (see `Agreement`)."""
    failed = {
        r.item_id
        for r in score.items
        if r.outcome is ItemOutcome.FAIL and r.item_id in SCORECARD_ITEM_IDS
    }
    planted = set(script.violations)
    return Agreement(
        expected=script.expected,
        actual=verdict(score),
        missed=[v for v in script.violations if v not in failed],
        unexpected=sorted(failed - planted),
        in_doubt=any(f.code is FlagCode.EVIDENCE_DOUBT for f in score.flags),
    )


# --------------------------------------------------------------------------- results


class SynthTurn(Record):
    role: Role
    text: str
    start: float
    end: float


class SynthPII(Record):
    """Where planted personal data is spoken (times spread by characters, like the words)."""

    kind: str
    text: str
    turn: int
    start: float
    end: float


class SynthCall(Record):
    """Ground truth of a rendered call, written next to its audio as <call_id>.json."""

    call_id: CallId
    language: str
    description: str = ""
    meta: CallMeta
    violations: list[str] = Field(default_factory=list)
    expect: Verdict | None = None
    turns: list[SynthTurn]
    pii: list[SynthPII] = Field(default_factory=list)
    duration: float
    files: dict[str, str] = Field(default_factory=dict)  # "stereo_8k" -> wav path
    script_hash: str = ""

    @property
    def expected(self) -> Verdict:
        return expected_verdict(self.expect, self.violations)

    @classmethod
    def load(cls, path: Path) -> SynthCall:
        """Read a ground-truth JSON; wav paths are re-anchored to its folder, so the folder
        can be moved or mounted elsewhere."""
        try:
            call = cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as exc:
            raise SynthError(f"cannot read synthetic call: {exc}", file=str(path)) from exc
        call.files = {k: str(path.parent / Path(v).name) for k, v in call.files.items()}
        return call

    def to_transcript(self) -> Transcript:
        """The transcript a perfect ASR and diarizer would produce: true roles and text,
        words timed by spreading each turn over its characters."""
        utterances: list[Utterance] = []
        for turn in self.turns:
            speaker = turn.role.value
            channel = CHANNEL[turn.role]
            words = [
                Word(start=s, end=e, text=t, speaker=speaker, channel=channel)
                for t, s, e in _timed_tokens(turn.text, turn.start, turn.end, self.language)
            ]
            utterances.append(
                Utterance(
                    speaker=speaker,
                    role=turn.role,
                    start=turn.start,
                    end=turn.end,
                    text=turn.text,
                    words=words,
                    channel=channel,
                )
            )
        utterances.sort(key=lambda u: (u.start, u.end))
        mark_overlap(utterances)
        return Transcript(
            call_id=self.call_id,
            language=self.language,
            duration=self.duration,
            channels=2,
            speaker_source="channels",
            utterances=utterances,
            roles=RoleAssignment(
                speaker_roles={"agent": Role.AGENT, "customer": Role.CUSTOMER},
                method="configured",
                confidence=1.0,
                evidence=["synthetic call: roles come from the script"],
            ),
            asr_model="script",
            asr_confidence=1.0,
        )


# --------------------------------------------------------------------------- text timing

_ZH_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['.@-][A-Za-z0-9]+)*|\S")
_PUNCT = re.compile(r"^[^\w]+$")


def _tokens(text: str, language: str) -> list[str]:
    """Whisper-style words: English words carry a leading space; Chinese is one word per
    character (Latin/digit runs kept whole), punctuation joined to the word before it."""
    if language != "zh":
        return [" " + w for w in text.split()]
    out: list[str] = []
    for tok in _ZH_TOKEN.findall(text):
        if out and _PUNCT.match(tok):
            out[-1] += tok
        else:
            out.append(tok)
    return out


def _timed_tokens(
    text: str, start: float, end: float, language: str
) -> list[tuple[str, float, float]]:
    tokens = _tokens(text, language)
    weights = [max(len(t.strip()), 1) for t in tokens]
    total = sum(weights)
    span = end - start
    out: list[tuple[str, float, float]] = []
    acc = 0
    for tok, w in zip(tokens, weights, strict=True):
        s = start + span * acc / total
        acc += w
        out.append((tok, round(s, 3), round(start + span * acc / total, 3)))
    return out


def _char_span(text: str, sub: str, start: float, end: float) -> tuple[float, float]:
    """Time span of `sub` inside a turn, by the same character spreading as the words."""
    i = text.index(sub)
    n = max(len(text), 1)
    span = end - start
    return round(start + span * i / n, 3), round(start + span * (i + len(sub)) / n, 3)


# --------------------------------------------------------------------------- rendering


def espeak_binary() -> str:
    """Path of espeak-ng, or a clear error saying how to install it."""
    exe = shutil.which("espeak-ng")
    if not exe:
        raise SynthError(
            "espeak-ng is not installed (needed to render synthetic calls); "
            "run scripts/setup.sh or `apt-get install espeak-ng`"
        )
    return exe


def _synthesize(text: str, voice: Voice, workdir: Path) -> tuple[np.ndarray, int]:
    """One turn as float32 mono at espeak's native rate, trimmed to the speech and scaled
    to the voice's peak, so the turn's start and end in the call are where speech is."""
    txt = workdir / "turn.txt"
    wav = workdir / "turn.wav"
    txt.write_text(text, encoding="utf-8")
    cmd = [
        espeak_binary(), "-b", "1", "-v", voice.name, "-s", str(voice.speed),
        "-p", str(voice.pitch), "-w", str(wav), "-f", str(txt),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not wav.exists():
        raise SynthError(f"espeak-ng failed for voice {voice.name!r}: {proc.stderr.strip()}")
    import soundfile as sf

    audio, rate = sf.read(str(wav), dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0:
        raise SynthError(f"espeak-ng produced silence for {text[:40]!r}")
    voiced = np.flatnonzero(np.abs(audio) > peak * 0.01)
    audio = audio[voiced[0] : voiced[-1] + 1]
    return (audio * (voice.peak / peak)).astype(np.float32), int(rate)


def _resample(audio: np.ndarray, src: int, dst: int) -> np.ndarray:
    if src == dst:
        return audio
    from scipy.signal import resample_poly

    g = gcd(src, dst)
    return resample_poly(audio, dst // g, src // g).astype(np.float32)


def _rate_key(rate: int) -> str:
    return f"{rate // 1000}k" if rate % 1000 == 0 else f"{rate}hz"


def script_hash(script: SynthScript, rates: Iterable[int]) -> str:
    """Changes when anything that shapes the audio changes: script, voices, rates, renderer."""
    voices = {r.value: v.model_dump() for r, v in VOICES[script.language].items()}
    payload = {
        "script": script.model_dump(mode="json"),
        "voices": voices,
        "rates": sorted(set(rates)),
        "generator": GENERATOR_VERSION,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    """Write to a temporary name and rename, so a crash never leaves a half file."""
    import soundfile as sf

    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    os.replace(tmp, path)


def render_call(
    script: SynthScript, out_dir: Path, rates: Iterable[int] = (8000, 16000)
) -> SynthCall:
    """Render one script to stereo and mono wavs at each rate, plus <call_id>.json."""
    rates = sorted(set(rates))
    if not rates or any(r < 4000 for r in rates):
        raise SynthError(f"sample rates must be >= 4000 Hz, got {rates}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    voices = VOICES[script.language]

    clips: list[tuple[np.ndarray, int]] = []
    with tempfile.TemporaryDirectory(prefix="qa-synth-") as tmp:
        for turn in script.turns:
            clips.append(_synthesize(turn.text, voices[turn.role], Path(tmp)))

    # Timeline: each turn follows the end of everything said so far, after its hold and
    # pause; a negative pause starts it inside the previous turn (an interruption).
    turns: list[SynthTurn] = []
    cursor = LEAD_IN
    channel_end = {Role.AGENT: 0.0, Role.CUSTOMER: 0.0}
    for i, (turn, (audio, native)) in enumerate(zip(script.turns, clips, strict=True)):
        start = round(cursor + turn.hold + turn.pause_before, 3)
        if start < channel_end[turn.role] + MIN_SAME_CHANNEL_GAP or (
            turns and start <= turns[-1].start
        ):
            raise SynthError(
                f"turn {i}: pause_before {turn.pause_before} s starts it before the "
                "previous turn (or over the same party's speech); make the overlap shorter",
                file=f"{script.call_id}.yaml",
            )
        end = round(start + len(audio) / native, 3)
        turns.append(SynthTurn(role=turn.role, text=turn.text, start=start, end=end))
        channel_end[turn.role] = end
        cursor = max(cursor, end)
    duration = round(cursor + TAIL, 3)

    files: dict[str, str] = {}
    for rate in rates:
        stereo = np.zeros((int(round(duration * rate)) + 1, 2), dtype=np.float32)
        for st, (audio, native) in zip(turns, clips, strict=True):
            y = _resample(audio, native, rate)
            s = int(round(st.start * rate))
            n = min(len(y), stereo.shape[0] - s)
            stereo[s : s + n, CHANNEL[st.role]] += y[:n]
        key = _rate_key(rate)
        for layout, data in (("stereo", stereo), ("mono", stereo.sum(axis=1))):
            path = out_dir / f"{script.call_id}.{layout}_{key}.wav"
            _write_wav(path, data, rate)
            files[f"{layout}_{key}"] = str(path.resolve())

    pii = []
    for p in script.pii:
        idx = next(i for i, t in enumerate(turns) if p.text in t.text)
        s, e = _char_span(turns[idx].text, p.text, turns[idx].start, turns[idx].end)
        pii.append(SynthPII(kind=p.kind, text=p.text, turn=idx, start=s, end=e))

    call = SynthCall(
        call_id=script.call_id,
        language=script.language,
        description=script.description,
        meta=CallMeta(
            call_id=script.call_id,
            agent_id=script.meta.agent_id,
            team=script.meta.team,
            queue=script.meta.queue,
            direction=script.meta.direction,
            language=script.language,
            channel_roles={c: r for r, c in CHANNEL.items()},
            source="synthetic",
            duration=duration,
        ),
        violations=list(script.violations),
        expect=script.expect,
        turns=turns,
        pii=pii,
        duration=duration,
        files=files,
        script_hash=script_hash(script, rates),
    )
    gt = out_dir / f"{script.call_id}.json"
    tmp_gt = gt.with_name(gt.name + ".part")
    tmp_gt.write_text(call.model_dump_json(indent=2), encoding="utf-8")
    os.replace(tmp_gt, gt)  # written last: its presence means the wavs are complete
    return call


def _reusable(script: SynthScript, out_dir: Path, rates: Iterable[int]) -> SynthCall | None:
    gt = out_dir / f"{script.call_id}.json"
    if not gt.is_file():
        return None
    try:
        call = SynthCall.load(gt)
    except SynthError:
        return None
    if call.script_hash != script_hash(script, rates):
        return None
    if not all(Path(p).is_file() for p in call.files.values()):
        return None
    return call


def render_all(
    out_dir: Path,
    names: list[str] | None = None,
    *,
    scripts: list[SynthScript] | None = None,
    rates: Iterable[int] = (8000, 16000),
    force: bool = False,
    progress: bool = False,
    on_call: Callable[[SynthCall, bool], None] | None = None,
) -> list[SynthCall]:
    """Render the bundled scripts (or `scripts`), re-using outputs whose script, voices and
    rates are unchanged. `on_call(call, rendered)` is told about each call as it is done."""
    out_dir = Path(out_dir)
    rates = sorted(set(rates))
    todo = scripts if scripts is not None else load_scripts(names)
    calls: list[SynthCall] = []

    def one(script: SynthScript) -> None:
        call = None if force else _reusable(script, out_dir, rates)
        rendered = call is None
        if call is None:
            call = render_call(script, out_dir, rates)
        calls.append(call)
        if on_call:
            on_call(call, rendered)

    if not progress:
        for script in todo:
            one(script)
        return calls

    from qa.progress import progress_bar

    with progress_bar("{task.fields[rate]}", transient=True) as bar:
        task = bar.add_task("calls", total=len(todo), rate="")
        for script in todo:
            bar.update(task, description=f"synth {script.call_id}")
            one(script)
            elapsed = bar.tasks[task].elapsed or 0.0
            done = len(calls)
            audio_s = sum(c.duration for c in calls)
            speed = f"{audio_s / elapsed:.0f}x realtime" if elapsed > 0 else ""
            bar.update(task, completed=done, rate=speed)
    return calls
