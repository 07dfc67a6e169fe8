"""Score one call against a scorecard: every item with its evidence, the total, the flags.

Each item's rule gives pass, fail or N/A (not applicable to this call, or needing a model
that was not supplied); the total, pass and auto-fail come from `qa.scoring.outcome`,
the arithmetic reviews and final decisions use too.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import PACKAGE_DIR, Settings
from qa.errors import ScorecardError
from qa.rules.format import AppliesWhen, Item, Scorecard, Section
from qa.rules.format import load_scorecard as _load
from qa.rules.matchers import NA, CallContext
from qa.rules.text import is_cjk
from qa.schema import (
    CallMeta,
    CallMetrics,
    CallScore,
    Flag,
    FlagCode,
    ItemOutcome,
    ItemResult,
    Role,
    SentimentSummary,
    Transcript,
)
from qa.scoring.metrics import compute_metrics
from qa.scoring.outcome import Scoring, outcome, outcome_items

SCORECARD_DIR = PACKAGE_DIR / "scorecards"
DEFAULT_SCORECARDS = {"en": "en_customer_service.yaml", "zh": "zh_customer_service.yaml"}
_loaded: dict[tuple[str, float], Scorecard] = {}


def load_scorecard(path: str | Path) -> Scorecard:
    """A validated scorecard; cached per file and modification time (caches live on it)."""
    path = Path(path)
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError as exc:
        raise ScorecardError(f"cannot read scorecard: {exc}", file=str(path)) from None
    if key not in _loaded:
        _loaded[key] = _load(path)
    return _loaded[key]


def default_scorecard(language: str | None, settings: Settings | None = None) -> Scorecard:
    """The site's configured scorecard for the language, or the bundled one."""
    zh = is_cjk(language)
    if settings is not None:
        configured = settings.scorecard_zh if zh else settings.scorecard
        if configured:
            return load_scorecard(configured)
    return load_scorecard(SCORECARD_DIR / DEFAULT_SCORECARDS["zh" if zh else "en"])


def _not_applicable(
    when: AppliesWhen | None, meta: CallMeta, transcript: Transcript, ctx: CallContext
) -> str | None:
    """Why an item does not apply to this call, or None when it does."""
    if when is None:
        return None
    if when.queue is not None and meta.queue not in when.queue:
        return f"queue {meta.queue!r} is not one of {', '.join(when.queue)}"
    if when.direction is not None and meta.direction != when.direction:
        return f"only for {when.direction.value} calls"
    language = (meta.language or transcript.language or "").split("-")[0]
    if when.language is not None and language not in when.language:
        return f"language {language!r} is not one of {', '.join(when.language)}"
    if when.min_duration is not None and ctx.duration < when.min_duration:
        return f"call shorter than {when.min_duration:g} s"
    if when.max_duration is not None and ctx.duration > when.max_duration:
        return f"call longer than {when.max_duration:g} s"
    if when.hold is not None and bool(ctx.metrics.holds) != when.hold:
        return "no hold in this call" if when.hold else "the call had a hold"
    if when.rule is not None:
        condition = ctx.evaluate(when.rule)
        if condition.outcome != ItemOutcome.PASS:
            return f"condition not met: {condition.reason}"
    return None


def _item_result(
    section: Section,
    item: Item,
    card: Scorecard,
    meta: CallMeta,
    transcript: Transcript,
    ctx: CallContext,
) -> ItemResult:
    possible = item.points if card.scoring == "deduction" else item.weight
    base = dict(
        item_id=item.id,
        name=item.name,
        section=section.id,
        critical=item.critical,
        rule_type=item.rule.type,
    )
    # what the item is worth on the card, also when N/A: a reviewer who finds it did apply
    # scores it against the same points
    base = dict(base, points_possible=possible or 0.0)
    why_not = _not_applicable(item.applies_when, meta, transcript, ctx)
    if why_not:
        return ItemResult(outcome=NA, reason=f"not applicable: {why_not}", **base)
    result = ctx.evaluate(item.rule)
    awarded = possible if result.outcome == ItemOutcome.PASS else 0.0
    return ItemResult(
        outcome=result.outcome,
        reason=result.reason,
        evidence=result.evidence,
        points_awarded=awarded or 0.0,
        **base,
    )


def transcript_doubt(transcript: Transcript, scorecard: Scorecard) -> str:
    """Why the words of this call cannot be taken as proof of what was (not) said, or "".

    Evidence-quality issues, ASR confidence and role confidence under the card's flag
    thresholds: each means a phrase may be missing from the transcript (or from the agent's
    side of it) although the agent said it.
    """
    thresholds = scorecard.flags
    reasons = []
    if transcript.quality is not None and transcript.quality.issues:
        reasons.append(transcript.quality.reason)
    if transcript.asr_confidence is not None and (
        transcript.asr_confidence < thresholds.low_asr_confidence
    ):
        reasons.append(
            f"mean word probability {transcript.asr_confidence:.2f} < "
            f"{thresholds.low_asr_confidence:.2f}"
        )
    if transcript.roles.confidence < thresholds.low_role_confidence:
        reasons.append(
            f"agent/customer roles decided with confidence {transcript.roles.confidence:.2f} "
            f"< {thresholds.low_role_confidence:.2f}"
        )
    return "; ".join(reasons)


def sample_draw(call_id: str, seed: Any) -> float:
    """A number in [0, 1) fixed by call id and seed, so re-running picks the same calls."""
    digest = hashlib.sha256(f"{seed}:{call_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _summaries(ctx: CallContext) -> list[SentimentSummary]:
    """Per-role sentiment trajectory: first, last, mean and least-squares slope per minute."""
    scores = ctx.sentiments()
    if scores is None:
        return []
    out = []
    for role in (Role.AGENT, Role.CUSTOMER):
        pts = [
            ((u.start + u.end) / 2, s.score)
            for (u, r), s in zip(ctx.utts, scores, strict=True)
            if r == role
        ]
        if not pts:
            continue
        t = np.array([p[0] for p in pts]) / 60.0
        y = np.array([p[1] for p in pts])
        trend = float(np.polyfit(t, y, 1)[0]) if len(pts) > 1 and np.ptp(t) > 0 else 0.0
        out.append(
            SentimentSummary(
                role=role,
                start=float(y[0]),
                end=float(y[-1]),
                mean=float(y.mean()),
                trend=round(trend, 4),
            )
        )
    return out


def score_call(
    transcript: Transcript,
    meta: CallMeta | None,
    scorecard: Scorecard,
    *,
    metrics: CallMetrics | None = None,
    encoder: Any = None,
    sentiment: Any = None,
    sample_rate: float = 0.0,
    rng_seed: Any = None,
) -> CallScore:
    """Evaluate every item of `scorecard` on one call (see the module docstring).

    `encoder` (qa.scoring.encoder.Encoder) enables semantic rules and `sentiment`
    (qa.scoring.sentiment.SentimentModel) sentiment rules when utterances carry no
    sentiment yet; without them those rules are N/A with the reason. `sample_rate` picks
    calls for random human review, deterministically per call id and `rng_seed`.
    """
    if meta is None:
        meta = CallMeta(
            call_id=transcript.call_id, language=transcript.language, duration=transcript.duration
        )
    metrics = metrics or compute_metrics(transcript)
    ctx = CallContext(transcript, scorecard, metrics, encoder=encoder, sentiment=sentiment)
    items = [_item_result(s, i, scorecard, meta, transcript, ctx) for s, i in scorecard.items]

    thresholds = scorecard.flags
    doubt = transcript_doubt(transcript, scorecard)
    # a critical fail that rests only on words not heard in a doubtful transcript is held
    # for a person (qa.scoring.outcome), not an automatic fail
    doubts = {
        i.item_id: doubt
        for (_, item), i in zip(scorecard.items, items, strict=True)
        if doubt
        and i.critical
        and i.outcome == ItemOutcome.FAIL
        and ctx.evaluate(item.rule).missing
    }
    scoring = Scoring.of_card(scorecard)
    result = outcome(outcome_items(items, doubts), scoring)
    total, passed, auto_fail = result.total, result.passed, result.auto_fail
    auto_fail_reasons = result.reasons

    flags: list[Flag] = []
    if auto_fail:
        flags.append(Flag(code=FlagCode.AUTO_FAIL, reason="; ".join(auto_fail_reasons)))
    if total < scorecard.pass_mark:
        flags.append(
            Flag(
                code=FlagCode.BELOW_PASS,
                reason=f"score {total:g} below the pass mark {scorecard.pass_mark:g}",
            )
        )
    summaries = _summaries(ctx)
    scores = ctx.sentiments()
    if scores is not None:
        end_from = ctx.duration - thresholds.ending_seconds
        ending = [
            s.score
            for (u, r), s in zip(ctx.utts, scores, strict=True)
            if r == Role.CUSTOMER and u.end >= end_from
        ]
        if not ending:  # the customer said nothing at the very end: their last words count
            ending = [
                s.score for (_, r), s in zip(ctx.utts, scores, strict=True) if r == Role.CUSTOMER
            ][-2:]
        end_mean = sum(ending) / len(ending) if ending else 0.0
        if ending and end_mean < thresholds.negative_ending:
            flags.append(
                Flag(
                    code=FlagCode.NEGATIVE_ENDING,
                    reason=f"customer sentiment at the end {end_mean:+.2f} < "
                    f"{thresholds.negative_ending:+.2f}",
                )
            )
    if transcript.roles.confidence < thresholds.low_role_confidence:
        flags.append(
            Flag(
                code=FlagCode.LOW_ROLE_CONFIDENCE,
                reason=f"agent/customer roles decided with confidence "
                f"{transcript.roles.confidence:.2f} < "
                f"{thresholds.low_role_confidence:.2f}",
            )
        )
    if transcript.asr_confidence is not None and (
        transcript.asr_confidence < thresholds.low_asr_confidence
    ):
        flags.append(
            Flag(
                code=FlagCode.LOW_ASR_CONFIDENCE,
                reason=f"mean word probability {transcript.asr_confidence:.2f} < "
                f"{thresholds.low_asr_confidence:.2f}",
            )
        )
    if result.held:
        names = ", ".join(f"'{name}'" for name in result.held)
        flags.append(
            Flag(
                code=FlagCode.EVIDENCE_DOUBT,
                reason=f"critical item{'s' if len(result.held) > 1 else ''} {names} failed on a "
                f"transcript marked doubtful, so the call is not failed automatically: {doubt}",
            )
        )
    elif transcript.quality is not None and transcript.quality.issues:
        flags.append(Flag(code=FlagCode.EVIDENCE_DOUBT, reason=transcript.quality.reason))
    if sample_rate > 0 and sample_draw(transcript.call_id, rng_seed) < sample_rate:
        flags.append(
            Flag(
                code=FlagCode.RANDOM_SAMPLE,
                reason=f"picked for random review ({sample_rate:.0%} of calls)",
            )
        )

    return CallScore(
        call_id=transcript.call_id,
        scorecard_id=scorecard.id,
        scorecard_version=scorecard.version,
        total=total,
        max_total=scoring.max_total,
        pass_mark=scorecard.pass_mark,
        passed=passed,
        auto_fail=auto_fail,
        auto_fail_reasons=auto_fail_reasons,
        scoring=scoring.mode,
        auto_fail_zeroes_total=scoring.auto_fail_zeroes_total,
        items=items,
        flags=flags,
        metrics=metrics,
        sentiment=summaries,
    )
