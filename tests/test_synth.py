"""Synthetic calls: audio layout, exact turn times, re-use, ground-truth transcripts, scripts."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qa.asr.utterances import join_text
from qa.errors import QAError
from qa.schema import CallScore, Flag, FlagCode, ItemOutcome, ItemResult, Role, Transcript
from qa.synth import (
    SCORECARD_ITEM_IDS,
    SynthCall,
    SynthScript,
    SynthTurn,
    agreement,
    load_script,
    load_scripts,
    render_all,
    render_call,
    written_to_show,
)

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (scripts/setup.sh installs it with apt-get)",
)

ACTIVE = 1e-3  # |sample| above this is speech; everything else in a synthetic call is 0
TOL = 0.05  # seconds


def short_script(text_suffix: str = "") -> SynthScript:
    return SynthScript.model_validate(
        {
            "call_id": "short_call",
            "language": "en",
            "description": "test call",
            "meta": {"agent_id": "A1", "team": "t", "queue": "q", "direction": "inbound"},
            "violations": ["overtalk"],
            "pii": [{"kind": "cvv", "text": "one two three"}],
            "turns": [
                {"role": "agent", "text": "Thank you for calling Northwind Telecom."},
                {"role": "customer", "text": "Hi, my code is one two three, and I need help."},
                {"role": "agent", "text": "Of course I can help.", "pause_before": -0.8},
                {"role": "customer", "text": "Thanks." + text_suffix, "hold": 3.0},
            ],
        }
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> SynthCall:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it with apt-get)")
    return render_call(short_script(), tmp_path_factory.mktemp("synth"), rates=(8000, 16000))


def _read(call: SynthCall, key: str) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(call.files[key], dtype="float32", always_2d=True)
    return audio, rate


def _active(x: np.ndarray, rate: int, lo: float, hi: float) -> np.ndarray:
    """Times (s) of active samples of `x` between lo and hi seconds."""
    a, b = max(int(lo * rate), 0), min(int(hi * rate), len(x))
    return (np.flatnonzero(np.abs(x[a:b]) > ACTIVE) + a) / rate


# --------------------------------------------------------------------------- audio


@needs_espeak
def test_files_rates_and_channels(rendered: SynthCall) -> None:
    assert set(rendered.files) == {"stereo_8k", "stereo_16k", "mono_8k", "mono_16k"}
    for key, path in rendered.files.items():
        info = sf.info(path)
        assert info.samplerate == int(key.split("_")[1][:-1]) * 1000
        assert info.channels == (2 if key.startswith("stereo") else 1)
        assert info.subtype == "PCM_16"
        assert abs(info.duration - rendered.duration) < 0.01
    assert rendered.duration == pytest.approx(rendered.turns[-1].end + 0.8, abs=1e-3)


@needs_espeak
@pytest.mark.parametrize("key", ["stereo_8k", "stereo_16k"])
def test_agent_left_customer_right(rendered: SynthCall, key: str) -> None:
    audio, rate = _read(rendered, key)
    for turn in rendered.turns:
        own = 0 if turn.role is Role.AGENT else 1
        others = [t for t in rendered.turns if t.role is not turn.role]
        # the part of this turn where the other party is silent
        lo, hi = turn.start, turn.end
        for o in others:
            if o.start <= lo < o.end:
                lo = o.end
            if lo < o.start < hi:
                hi = o.start
        seg = audio[int(lo * rate) : int(hi * rate)]
        assert len(seg) > rate // 10
        assert np.sqrt(np.mean(seg[:, own] ** 2)) > 0.02, turn.text
        assert np.max(np.abs(seg[:, 1 - own])) < ACTIVE, f"{turn.text!r} leaks into channel"


@needs_espeak
@pytest.mark.parametrize("rate_key", ["8k", "16k"])
def test_mono_is_the_mix(rendered: SynthCall, rate_key: str) -> None:
    stereo, r1 = _read(rendered, f"stereo_{rate_key}")
    mono, r2 = _read(rendered, f"mono_{rate_key}")
    assert r1 == r2 and len(stereo) == len(mono)
    # each file is quantised to 16 bits on its own: at most 1.5 LSB apart
    assert np.max(np.abs(stereo.sum(axis=1) - mono[:, 0])) <= 1.5 / 32768 + 1e-7


@needs_espeak
@pytest.mark.parametrize("key", ["stereo_8k", "stereo_16k"])
def test_turn_times_match_audio(rendered: SynthCall, key: str) -> None:
    audio, rate = _read(rendered, key)
    for i, turn in enumerate(rendered.turns):
        ch = audio[:, 0 if turn.role is Role.AGENT else 1]
        same = [t for t in rendered.turns if t.role is turn.role]
        j = same.index(turn)
        prev_end = same[j - 1].end if j else 0.0
        next_start = same[j + 1].start if j + 1 < len(same) else rendered.duration
        speech = _active(ch, rate, prev_end + TOL, next_start - TOL)
        assert len(speech), f"turn {i} is silent"
        assert abs(speech[0] - turn.start) < TOL, f"turn {i} onset {speech[0]} vs {turn.start}"
        assert abs(speech[-1] - turn.end) < TOL, f"turn {i} offset {speech[-1]} vs {turn.end}"
    # the 3 s hold before the last turn is silence on both channels
    hold_lo, hold_hi = rendered.turns[2].end, rendered.turns[3].start
    assert hold_hi - hold_lo == pytest.approx(3.4, abs=0.01)
    assert not len(_active(audio.sum(axis=1), rate, hold_lo + TOL, hold_hi - TOL))


@needs_espeak
def test_interruption_overlaps(rendered: SynthCall) -> None:
    customer, agent = rendered.turns[1], rendered.turns[2]
    assert agent.start == pytest.approx(customer.end - 0.8, abs=1e-3)
    tr = rendered.to_transcript()
    assert [u.overlap for u in tr.utterances] == [False, True, True, False]


@needs_espeak
def test_outputs_reused_until_script_changes(tmp_path: Path) -> None:
    seen: list[bool] = []

    def run(script: SynthScript) -> SynthCall:
        (call,) = render_all(
            tmp_path,
            scripts=[script],
            rates=(8000,),
            on_call=lambda c, rendered: seen.append(rendered),
        )
        return call

    first = run(short_script())
    mtimes = {k: Path(p).stat().st_mtime_ns for k, p in first.files.items()}
    second = run(short_script())
    assert seen == [True, False]
    assert second == first
    assert {k: Path(p).stat().st_mtime_ns for k, p in second.files.items()} == mtimes

    changed = run(short_script(" Bye."))  # new text: new hash, rendered again
    assert seen[-1] is True and changed.script_hash != first.script_hash
    Path(changed.files["mono_8k"]).unlink()  # a missing wav is rendered again
    run(short_script(" Bye."))
    assert seen[-1] is True and Path(changed.files["mono_8k"]).is_file()
    run(short_script(" Bye."))
    assert seen[-1] is False


@needs_espeak
def test_ground_truth_json_and_transcript(rendered: SynthCall) -> None:
    gt = Path(rendered.files["mono_8k"]).parent / "short_call.json"
    loaded = SynthCall.load(gt)
    assert loaded == rendered
    assert loaded.meta.channel_roles == {0: Role.AGENT, 1: Role.CUSTOMER}
    assert loaded.meta.agent_id == "A1" and loaded.violations == ["overtalk"]
    (pii,) = loaded.pii
    assert pii.turn == 1 and rendered.turns[1].start < pii.start < pii.end < rendered.turns[1].end

    tr = loaded.to_transcript()
    assert Transcript.model_validate_json(tr.model_dump_json()) == tr
    assert tr.speaker_source == "channels" and tr.channels == 2
    assert tr.roles.method == "configured" and tr.roles.confidence == 1.0
    assert tr.roles.speaker_roles == {"agent": Role.AGENT, "customer": Role.CUSTOMER}
    assert [(u.role, u.text) for u in tr.utterances] == [(t.role, t.text) for t in loaded.turns]
    for u, t in zip(tr.utterances, loaded.turns, strict=True):
        assert u.speaker == t.role.value and u.channel == (0 if t.role is Role.AGENT else 1)
        assert join_text(u.words) == u.text
        assert u.words[0].start == t.start and u.words[-1].end == pytest.approx(t.end, abs=1e-3)
        starts = [w.start for w in u.words]
        assert starts == sorted(starts)
        assert all(w.speaker == u.speaker for w in u.words)
    # longer words get more time
    words = tr.utterances[1].words
    assert words[-1].end - words[-1].start > words[1].end - words[1].start  # "help." > "my"


def test_chinese_words_one_per_character() -> None:
    call = SynthCall(
        call_id="zh1", language="zh", meta={"call_id": "zh1"}, duration=5.0,
        turns=[SynthTurn(role=Role.AGENT, text="您好，工号1024。", start=1.0, end=3.0)],
    )  # fmt: skip
    (utt,) = call.to_transcript().utterances
    assert [w.text for w in utt.words] == ["您", "好，", "工", "号", "1024。"]
    assert join_text(utt.words) == utt.text
    assert utt.words[0].start == 1.0 and utt.words[-1].end == 3.0


# --------------------------------------------------------------------------- scripts


def test_script_validation(tmp_path: Path) -> None:
    bad = tmp_path / "bad_call.yaml"
    bad.write_text(
        "call_id: bad_call\nlanguage: en\nviolations: [greting]\nturns: [{role: agent, text: hi}]\n"
    )
    with pytest.raises(QAError, match=r"bad_call\.yaml.*unknown scorecard item ids \['greting'\]"):
        load_script(bad)
    bad.write_text(
        "call_id: bad_call\nlanguage: en\nturns:\n"
        "  - {role: agent, text: hi}\n  - {role: agent, text: yo, pause_before: -1}\n"
    )
    with pytest.raises(QAError, match="only the other party can interrupt"):
        load_script(bad)
    bad.write_text("call_id: other\nlanguage: en\nturns: [{role: agent, text: hi}]\n")
    with pytest.raises(QAError, match="differs from the file name"):
        load_script(bad)
    with pytest.raises(QAError, match="no script for nope"):
        load_scripts(["nope"])


# Phrases that decide the text-only scorecard items, so a script edit that breaks its
# `violations` label is caught here rather than in a scoring test downstream.
COMPANY = re.compile(r"Northwind Telecom|北风电信")
INTRO = re.compile(r"my name is|工号", re.I)
DISCLOSURE = re.compile(r"\brecorded\b|录音", re.I)
VERIFY = re.compile(r"date of birth|身份证", re.I)
FORBIDDEN = re.compile(r"calm down|not my problem|shut up|这不是我的问题|冲我喊", re.I)
APOLOGY = re.compile(r"sorry|apologi[sz]e|抱歉|对不起", re.I)
COMPLAINT = re.compile(r"annoyed|ridiculous|worst|keeps dropping|生气|你们到底", re.I)
RESOLUTION = re.compile(r"anything else|resolved|还有其他|解决了吗", re.I)
CLOSING = re.compile(r"thank you for calling|have a nice day|感谢您的来电", re.I)
HOLD_ASK = re.compile(r"may i (place|put) you on (a )?(brief )?hold", re.I)
HOLD_THANKS = re.compile(r"thank you for (holding|waiting)", re.I)


def _expected_violations(s: SynthScript) -> set[str]:
    agent = [(i, t) for i, t in enumerate(s.turns) if t.role is Role.AGENT]
    text = " ".join(t.text for _, t in agent)
    out: set[str] = set()
    if not COMPANY.search(agent[0][1].text):
        out.add("greeting")
    if not INTRO.search(text):
        out.add("agent_introduction")
    if not DISCLOSURE.search(text):
        out.add("recording_disclosure")
    if not VERIFY.search(text):
        out |= {"identity_verification", "verify_before_account"}
    if FORBIDDEN.search(text):
        out.add("no_forbidden_language")
    if any(COMPLAINT.search(t.text) for t in s.turns if t.role is Role.CUSTOMER) and not (
        APOLOGY.search(text)
    ):
        out.add("empathy")
    if not RESOLUTION.search(text):
        out.add("resolution_confirmation")
    if not CLOSING.search(agent[-1][1].text):
        out.add("closing")
    if sum(t.pause_before < 0 for _, t in agent) > 2:
        out.add("overtalk")
    for i, t in enumerate(s.turns):
        if t.hold <= 0:
            continue
        before = " ".join(x.text for x in s.turns[max(i - 2, 0) : i] if x.role is Role.AGENT)
        announced = "hold" in before.lower() or "稍等" in before
        if not announced and t.hold > 30:
            out.add("dead_air")
        if announced and not (HOLD_ASK.search(before) and HOLD_THANKS.search(s.turns[i].text)):
            out.add("hold_etiquette")
    return out


def test_bundled_scripts_cover_the_scorecard() -> None:
    scripts = load_scripts()
    assert 7 <= len(scripts) <= 10
    assert {s.language for s in scripts} == {"en", "zh"}
    for lang in ("en", "zh"):
        assert any(not s.violations for s in scripts if s.language == lang)
        assert any(s.violations for s in scripts if s.language == lang)
    planted = {v for s in scripts for v in s.violations}
    assert planted == SCORECARD_ITEM_IDS
    assert any(s.pii for s in scripts)


@pytest.mark.parametrize("script", load_scripts(), ids=lambda s: s.call_id)
def test_bundled_violation_labels_match_text(script: SynthScript) -> None:
    assert set(script.violations) == _expected_violations(script)


@pytest.mark.parametrize("script", load_scripts(), ids=lambda s: s.call_id)
def test_bundled_expected_result_is_what_the_scorecard_makes_of_the_violations(
    script: SynthScript,
) -> None:
    """`expect` is stated in every script and is the default card's arithmetic over its
    planted violations, so a re-weighted card or a new violation cannot leave it stale."""
    from qa.scoring.outcome import OutcomeItem, Scoring, outcome
    from qa.scoring.scorecard import default_scorecard

    card = default_scorecard(script.language)
    result = outcome(
        (
            OutcomeItem(
                item_id=item.id,
                outcome=ItemOutcome.FAIL if item.id in script.violations else ItemOutcome.PASS,
                points_possible=item.points or 0.0,
                critical=item.critical,
            )
            for _, item in card.items
        ),
        Scoring.of_card(card),
    )
    assert script.expect is not None
    assert script.expect == (
        "auto_fail" if result.auto_fail else "pass" if result.passed else "fail"
    )


def _score(failed: dict[str, bool], *, total: float, passed: bool, auto_fail: bool) -> CallScore:
    """A call score with these items failed (item id -> critical) and the rest passed."""
    ids = sorted(SCORECARD_ITEM_IDS | {"customer_mood"})
    return CallScore(
        call_id="c",
        scorecard_id="card",
        scorecard_version="1",
        total=total,
        pass_mark=80,
        passed=passed,
        auto_fail=auto_fail,
        items=[
            ItemResult(
                item_id=i,
                name=i,
                outcome=ItemOutcome.FAIL if i in failed else ItemOutcome.PASS,
                critical=failed.get(i, False),
            )
            for i in ids
        ],
    )


def test_agreement_of_a_score_with_what_the_script_was_written_to_show() -> None:
    script = SynthScript(
        call_id="c",
        language="en",
        violations=["dead_air", "closing"],
        expect="fail",
        turns=[{"role": "agent", "text": "hi"}],
    )
    assert written_to_show(script) == "fail: dead_air, closing"
    same = agreement(
        script,
        _score({"dead_air": False, "closing": False}, total=70, passed=False, auto_fail=False),
    )
    assert same.agrees and same.text() == "✓"
    # an item outside the labelled ones (a site's own) does not count against agreement
    mood = _score(
        {"dead_air": False, "closing": False, "customer_mood": False},
        total=65,
        passed=False,
        auto_fail=False,
    )
    assert agreement(script, mood).agrees
    wrong = agreement(
        script,
        _score({"dead_air": False, "greeting": False}, total=85, passed=True, auto_fail=False),
    )
    assert not wrong.agrees and (wrong.expected, wrong.actual) == ("fail", "pass")
    assert wrong.text() == "✗ expected fail, got pass; not failed: closing; also failed: greeting"
    auto = _score(
        {"dead_air": False, "closing": False, "recording_disclosure": True},
        total=0,
        passed=False,
        auto_fail=True,
    )
    assert (
        agreement(script, auto).text()
        == "✗ expected fail, got auto_fail; also failed: recording_disclosure"
    )
    doubtful = auto.model_copy(
        update={"flags": [Flag(code=FlagCode.EVIDENCE_DOUBT, reason="text guessed")]}
    )
    assert agreement(script, doubtful).text().endswith("; flagged evidence_doubt")
    clean = SynthScript(call_id="c", language="en", turns=[{"role": "agent", "text": "hi"}])
    assert written_to_show(clean) == "pass" and clean.expected == "pass"
    assert agreement(clean, _score({}, total=100, passed=True, auto_fail=False)).agrees


def test_expect_needs_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad_call.yaml"
    bad.write_text(
        "call_id: bad_call\nlanguage: en\nexpect: fail\nturns: [{role: agent, text: hi}]\n"
    )
    with pytest.raises(QAError, match="expect: fail needs the items that fail it"):
        load_script(bad)
    bad.write_text(
        "call_id: bad_call\nlanguage: en\nexpect: maybe\nturns: [{role: agent, text: hi}]\n"
    )
    with pytest.raises(QAError, match="expect"):
        load_script(bad)


@needs_espeak
def test_bundled_calls_render_with_timing_rules(tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("bundled")
    calls = render_all(out, rates=(8000,))
    assert len(calls) == len(load_scripts())
    for call in calls:
        assert 45 <= call.duration <= 120, (call.call_id, call.duration)
        agent = [t for t in call.turns if t.role is Role.AGENT]
        assert agent[0].start < 15
        if "greeting" not in call.violations:
            assert COMPANY.search(agent[0].text) and agent[0].end < 15
        if "recording_disclosure" not in call.violations:
            assert any(DISCLOSURE.search(t.text) and t.end < 30 for t in agent), call.call_id
        # the longest stretch with nobody speaking, measured on the audio
        audio, rate = sf.read(call.files["mono_8k"], dtype="float32")
        speech = np.flatnonzero(np.abs(audio) > ACTIVE) / rate
        longest = float(np.max(np.diff(speech)))
        if "dead_air" in call.violations:
            assert longest > 30
        elif call.call_id != "nw_billing_complaint":
            assert longest < 30, (call.call_id, longest)
        else:  # the announced 35 s hold
            assert longest == pytest.approx(35.4, abs=0.1)
