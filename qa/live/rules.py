"""Scorecard items and alert rules decided while a call goes on.

`LiveChecker` reads the rolling transcript about once a second and says what is new: an
alert rule that fired (each at most once per call) or a scorecard item whose outcome can no
longer change (each reported once). It decides with the same code the batch pipeline and
the post-call alerts use, on a partial transcript built from the lines: scorecard rules
through `qa.rules.matchers.CallContext`, alert phrases through `qa.alerts.engine`'s
matcher, so "said" means the same live and after the call. What can change until the end
(semantic and sentiment rules, windows at the end or around events, talk ratios, items
that apply by duration or hold) is left to the batch pipeline, which scores the whole call
with the better decoder; `items()` says which is which, and why.

Growing lines count for phrases (a forbidden phrase fires as soon as its words are
committed); timing (silences, overtalk, interruptions) is measured only up to the first
line still growing, where no later commit can close a gap. A deadline (`first: 30`,
`within: 30`) passes once the audio received is past it and no line of the speaker that
started before it is still growing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from qa.alerts.engine import (
    Hit,
    PhraseMatcher,
    drop_reason,
    missing_reason,
    said_reason,
    sentiment_drop,
    silence_reason,
)
from qa.alerts.rules import (
    LIVE_TYPES,
    AlertRule,
    AlertRules,
    MissingPhraseRule,
    PhraseRule,
    SentimentDropRule,
    SilenceRule,
)
from qa.live.models import LiveCallInfo, LiveEvent, LiveLine
from qa.rules.format import (
    AllRule,
    AnyRule,
    Item,
    MetricRule,
    NotRule,
    OrderRule,
    RefRule,
    RegexRule,
    Scorecard,
)
from qa.rules.format import PhraseRule as ItemPhraseRule
from qa.rules.matchers import FAIL, NA, PASS, CallContext, RuleResult
from qa.rules.text import is_cjk
from qa.schema import CallMeta, CallMetrics, Record, Role, Transcript, Utterance
from qa.scoring.metrics import announced, compute_metrics
from qa.scoring.scorecard import _not_applicable

log = logging.getLogger("qa.live")

ItemState = Literal["met", "missed", "pending", "at_end", "na"]
# Metrics that only grow as the call goes on: once past a `<`/`<=` threshold the item is
# missed, once past a `>`/`>=` one it is met, whatever comes later.
GROWING = frozenset(
    {
        "longest_silence",
        "dead_air",
        "silence_total",
        "hold_total",
        "hold_count",
        "overtalk_total",
        "interruptions",
    }
)
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
STATES: dict[str, ItemState] = {
    "pass": "met",
    "fail": "missed",
    "pending": "pending",
    "at_end": "at_end",
    "na": "na",
}
GUESS_CHARS = 20  # characters of speech before a call without a language is guessed


class LiveItem(Record):
    """A scorecard item as the supervisor page shows it during the call: decided (met,
    missed), still open (pending), only decidable on the whole call (at_end), or not
    applicable to this call (na)."""

    item_id: str
    name: str
    section: str = ""
    critical: bool = False
    state: ItemState
    reason: str = ""
    at: float | None = None  # audio time the deciding evidence ends


@dataclass(frozen=True)
class _Decision:
    state: Literal["pass", "fail", "pending", "at_end", "na"]
    reason: str = ""
    at: float | None = None


def _pending(reason: str) -> _Decision:
    return _Decision("pending", reason)


def _at_end(reason: str) -> _Decision:
    return _Decision("at_end", reason)


def _now() -> datetime:
    return datetime.now(UTC)


class LiveChecker:
    """The live rules of one call; see the module docstring."""

    def __init__(
        self,
        info: LiveCallInfo,
        *,
        scorecard: Scorecard | None,
        alerts: AlertRules | None,
        sentiment: Any = None,
    ) -> None:
        self.info = info
        self.scorecard = scorecard
        self.alerts = alerts
        self.sentiment = sentiment
        self.rules: list[AlertRule] = [
            r
            for r in (alerts.active if alerts else ())
            if r.type in LIVE_TYPES and (r.teams is None or info.team in r.teams)
        ]
        self._by_id = {r.id: r for r in self.rules}
        self.matchers = {
            r.id: PhraseMatcher(r.phrases)
            for r in self.rules
            if isinstance(r, PhraseRule | MissingPhraseRule)
        }
        self.fired: set[str] = set()
        self._said: dict[tuple[str, int], tuple[int, tuple[str, float] | None]] = {}
        self._disclosed: set[str] = set()  # missing_phrase rules satisfied
        self._scores: dict[int, float] = {}  # customer line index -> sentiment
        self._sentiment_off = False
        self._language = info.language
        self._signature: tuple | None = None
        self._lines: list[LiveLine] = []
        self._ctx: CallContext | None = None
        self._metrics: CallMetrics | None = None
        self._horizon = 0.0
        self._elapsed = 0.0
        self._ended = False
        self._items: dict[str, LiveItem] = {}
        self._decided: set[str] = set()
        if scorecard is not None:
            for section, item in scorecard.items:
                self._items[item.id] = LiveItem(
                    item_id=item.id,
                    name=item.name,
                    section=section.id,
                    critical=item.critical,
                    state="pending",
                    reason="not decided yet",
                )

    # ---------------------------------------------------------------- public

    def update(
        self, lines: list[LiveLine], elapsed: float, voice_until: float | None = None
    ) -> list[LiveEvent]:
        """What is new since the last call: alerts fired and items decided. `elapsed` is
        the audio received (seconds), `voice_until` the latest voice activity on any track
        (speech the decoder has not committed yet is not silence)."""
        return self._check(lines, elapsed, voice_until, ended=False)

    def finish(self, lines: list[LiveLine], elapsed: float) -> list[LiveEvent]:
        """The last check when the call ends: deadlines close, items still open but
        decidable on the live transcript are decided; the rest wait for the batch scoring."""
        return self._check(lines, elapsed, None, ended=True)

    def items(self) -> list[LiveItem]:
        """Every scorecard item with its state and reason, in card order."""
        return list(self._items.values())

    def hits(self, events: list[LiveEvent]) -> list[Hit]:
        """The alert events as hits for `AlertEngine.deliver`, keyed by the call id as the
        post-call evaluation keys them, so each is sent once in total."""
        out = []
        for event in events:
            rule = self._by_id.get(event.rule_id) if event.kind == "alert" else None
            if rule is None or self.alerts is None:
                continue
            out.append(
                Hit(
                    rule_id=rule.id,
                    rule_name=rule.title,
                    rule_type=rule.type,
                    key=self.info.call_id,
                    call_id=self.info.call_id,
                    team=self.info.team,
                    agent_id=self.info.agent_id,
                    reason=event.reason,
                    recipients=self.alerts.recipients_for(rule, self.info.team),
                )
            )
        return out

    # ---------------------------------------------------------------- one check

    def _check(
        self, lines: list[LiveLine], elapsed: float, voice_until: float | None, ended: bool
    ) -> list[LiveEvent]:
        signature = tuple((ln.index, len(ln.text), ln.final, ln.end) for ln in lines)
        changed = signature != self._signature
        if changed:
            self._signature = signature
            self._lines = sorted(lines, key=lambda ln: (ln.start, ln.index))
            self._ctx = None
            self._metrics = None
            self._horizon = min((ln.start for ln in self._lines if not ln.final), default=None)
            if self._horizon is None:
                self._horizon = float("inf")
            if self._language is None:
                self._language = self._guess_language()
        self._elapsed = max(self._elapsed, elapsed)
        self._ended = ended
        events = self._alert_events(changed, voice_until)
        if self.scorecard is not None:
            events += self._item_events()
        return events

    @property
    def cjk(self) -> bool:
        return is_cjk(self._language)

    def _guess_language(self) -> str | None:
        """Chinese or not, from the speech so far, for a call the platform gave no language."""
        text = "".join(ln.text for ln in self._lines)[:2000]
        kept = [c for c in text if not c.isspace()]
        if len(kept) < GUESS_CHARS:
            return None
        return "zh" if len(_HAN_RE.findall(text)) * 2 > len(kept) else "en"

    def _event(
        self,
        kind: Literal["alert", "item"],
        rule_id: str,
        name: str,
        outcome: Any,
        reason: str,
        at: float,
    ) -> LiveEvent:
        return LiveEvent(
            call_id=self.info.call_id,
            kind=kind,
            rule_id=rule_id,
            name=name,
            outcome=outcome,
            reason=reason,
            at=round(max(0.0, at), 3),
            created_at=_now(),
        )

    def _settled_metrics(self) -> CallMetrics:
        """Timing metrics of the speech before the first line still growing."""
        if self._metrics is None:
            settled = [ln for ln in self._lines if ln.start < self._horizon and ln.final]
            self._metrics = compute_metrics(self._transcript(settled))
        return self._metrics

    def _transcript(self, lines: list[LiveLine]) -> Transcript:
        end = max([self._elapsed, *(ln.end for ln in lines)])
        return Transcript(
            call_id=self.info.call_id,
            language=self._language or "en",
            duration=end,
            channels=max(1, len(self.info.tracks)),
            speaker_source="channels",
            utterances=[
                Utterance(
                    speaker=ln.track,
                    role=ln.role,
                    start=ln.start,
                    end=max(ln.start, ln.end),
                    text=ln.text,
                )
                for ln in lines
            ],
        )

    # ---------------------------------------------------------------- alerts

    def _alert_events(self, changed: bool, voice_until: float | None) -> list[LiveEvent]:
        events = []
        for rule in self.rules:
            if rule.id in self.fired:
                continue
            found: tuple[str, float] | None = None
            if isinstance(rule, PhraseRule):
                found = self._phrase(rule) if changed else None
            elif isinstance(rule, MissingPhraseRule):
                found = self._missing(rule, changed)
            elif isinstance(rule, SilenceRule):
                found = self._silence(rule, voice_until)
            elif isinstance(rule, SentimentDropRule):
                found = self._drop(rule) if changed else None
            if found is not None:
                self.fired.add(rule.id)
                reason, at = found
                events.append(self._event("alert", rule.id, rule.title, "alert", reason, at))
        return events

    def _said_in(self, rule_id: str, line: LiveLine) -> tuple[str, float] | None:
        """The phrase of the rule found in a line, cached until the line's text grows."""
        key = (rule_id, line.index)
        cached = self._said.get(key)
        if cached is None or cached[0] != len(line.text):
            cached = (len(line.text), self.matchers[rule_id].search(line.text, self.cjk))
            self._said[key] = cached
        return cached[1]

    def _phrase(self, rule: PhraseRule) -> tuple[str, float] | None:
        for line in self._lines:
            if rule.speaker != "any" and line.role.value != rule.speaker:
                continue
            if found := self._said_in(rule.id, line):
                phrase, frac = found
                at = line.start + (line.end - line.start) * frac
                return said_reason(line.role.value, phrase, line.start), at
        return None

    def _missing(self, rule: MissingPhraseRule, changed: bool) -> tuple[str, float] | None:
        if rule.id in self._disclosed:
            return None
        mine = [
            ln
            for ln in self._lines
            if ln.start < rule.within and rule.speaker in ("any", ln.role.value)
        ]
        if changed and any(self._said_in(rule.id, ln) for ln in mine):
            self._disclosed.add(rule.id)
            return None
        if self._elapsed < rule.within:
            return None  # not yet; and a call that ends before the deadline is not late
        if not self._ended and any(not ln.final for ln in mine):
            return None  # still saying something that started in time
        return missing_reason(rule), rule.within

    def _silence(self, rule: SilenceRule, voice_until: float | None) -> tuple[str, float] | None:
        metrics = self._settled_metrics()
        spans = metrics.silences if rule.holds else metrics.dead_air
        longest = max(spans, key=lambda s: s.duration, default=None)
        if longest is not None and longest.duration > rule.over:
            return silence_reason(longest.start, longest.end), longest.end
        if self._ended or not self._lines:
            return None  # after the last words is not a silence (the call metrics agree)
        last = max(ln.end for ln in self._lines)
        if voice_until is None and any(not ln.final for ln in self._lines):
            return None  # someone may be mid-utterance, and no voice activity says otherwise
        since = max(last, voice_until or 0.0)
        if self._elapsed - since <= rule.over:
            return None
        if not rule.holds:
            before = [(self._utterance(ln), ln.role) for ln in self._lines if ln.start < since]
            if announced(before, since, self.cjk):
                return None
        return silence_reason(since, self._elapsed), self._elapsed

    @staticmethod
    def _utterance(line: LiveLine) -> Utterance:
        return Utterance(
            speaker=line.track,
            role=line.role,
            start=line.start,
            end=max(line.start, line.end),
            text=line.text,
        )

    def _drop(self, rule: SentimentDropRule) -> tuple[str, float] | None:
        if self.sentiment is None or self._sentiment_off:
            if not self._sentiment_off:
                self._sentiment_off = True
                log.info(
                    "live rule %s skipped: no sentiment model (call %s)", rule.id, self.info.call_id
                )
            return None
        said: list[LiveLine] = []
        for line in self._lines:
            if line.role is not Role.CUSTOMER:
                continue
            if not line.final:
                break  # the order of what follows is not settled yet
            said.append(line)
        todo = [ln for ln in said if ln.index not in self._scores]
        if todo:
            try:
                scored = self.sentiment.score([ln.text for ln in todo], self._language or "en")
            except Exception:  # a model failure must not stop the live call
                log.exception("live sentiment failed (call %s)", self.info.call_id)
                self._sentiment_off = True
                return None
            for line, s in zip(todo, scored, strict=True):
                self._scores[line.index] = float(s.score)
        found = sentiment_drop([self._scores[ln.index] for ln in said], rule)
        if found is None:
            return None
        k, mean, base = found
        return drop_reason(rule, mean, base, said[k].end), said[k].end

    # ---------------------------------------------------------------- scorecard items

    def _context(self) -> CallContext:
        if self._ctx is None:
            assert self.scorecard is not None
            self._ctx = CallContext(
                self._transcript(self._lines), self.scorecard, self._settled_metrics()
            )
        return self._ctx

    def _item_events(self) -> list[LiveEvent]:
        assert self.scorecard is not None
        events = []
        for _, item in self.scorecard.items:
            if item.id in self._decided:
                continue
            decision = self._applies(item) or self._decide(item.rule, 0)
            state: ItemState = STATES[decision.state]
            self._items[item.id] = self._items[item.id].model_copy(
                update={"state": state, "reason": decision.reason, "at": decision.at}
            )
            if state in ("met", "missed"):
                self._decided.add(item.id)
                at = decision.at if decision.at is not None else self._elapsed
                events.append(self._event("item", item.id, item.name, state, decision.reason, at))
            elif state == "na" and self._ended:
                self._decided.add(item.id)
        return events

    def _applies(self, item: Item) -> _Decision | None:
        """Why the item does not apply (na), cannot be told yet, or None: it applies."""
        when = item.applies_when
        if when is None:
            return None
        meta = CallMeta(
            call_id=self.info.call_id,
            agent_id=self.info.agent_id,
            team=self.info.team,
            queue=self.info.queue,
            direction=self.info.direction,
            language=self._language,
        )
        ctx = self._context()
        known = when.model_copy(
            update={"min_duration": None, "max_duration": None, "hold": None, "rule": None}
        )
        why = _not_applicable(known, meta, ctx.transcript, ctx)
        if why:
            return _Decision("na", f"not applicable: {why}")
        if when.min_duration is not None or when.max_duration is not None or when.hold is not None:
            return _at_end("applies by the call's duration or holds: decided on the whole call")
        if when.rule is not None:
            condition = self._decide(when.rule, 0)
            if condition.state == "fail":
                return _Decision("na", f"not applicable: condition not met: {condition.reason}")
            if condition.state in ("pending", "at_end", "na"):
                return _Decision(condition.state, f"condition: {condition.reason}")
        return None

    def _final(self, result: RuleResult) -> _Decision:
        state = {PASS: "pass", FAIL: "fail"}.get(result.outcome, "na")
        return _Decision(state, result.reason, self._evidence_end(result))  # type: ignore[arg-type]

    def _evidence_end(self, result: RuleResult) -> float | None:
        spans = result.hits or result.evidence
        return max((e.end for e in spans), default=None)

    def _decide(self, rule: Any, depth: int) -> _Decision:
        """Whether the rule's outcome on the call so far is final (see module docstring)."""
        if depth > 50:
            return _at_end("rule refers to itself")
        ctx = self._context()
        if isinstance(rule, ItemPhraseRule | RegexRule):
            return self._presence(rule, ctx)
        if isinstance(rule, MetricRule):
            return self._metric(rule, ctx)
        if isinstance(rule, RefRule):
            target = ctx.named.get(rule.ref) if rule.ref != "hold" else None
            if target is None:
                return _at_end(f"{rule.ref}: decided on the whole call")
            return self._decide(target, depth + 1)
        if isinstance(rule, NotRule):
            inner = self._decide(rule.rule, depth + 1)
            flipped = {"pass": "fail", "fail": "pass"}.get(inner.state)
            if flipped is None:
                return inner
            return _Decision(flipped, f"not ({inner.reason})", inner.at)  # type: ignore[arg-type]
        if isinstance(rule, AllRule | AnyRule):
            return self._combined(rule, depth)
        if isinstance(rule, OrderRule):
            return self._order(rule, ctx, depth)
        return _at_end(f"{rule.type} rule: decided on the whole call")

    def _closed(self, deadline: float | None, speaker: str) -> bool:
        """The call is over, or past `deadline` with nothing of `speaker` that started
        before it still growing."""
        if self._ended:
            return True
        if deadline is None or self._elapsed < deadline:
            return False
        return not any(
            not ln.final and ln.start < deadline and speaker in ("any", ln.role.value)
            for ln in self._lines
        )

    def _presence(self, rule: ItemPhraseRule | RegexRule, ctx: CallContext) -> _Decision:
        window = rule.window
        if window is not None and window.first is None:
            return _at_end("window at the end or around another event: decided on the whole call")
        result = ctx.evaluate(rule)
        if result.outcome == NA:
            return self._final(result) if self._ended else _at_end(result.reason)
        deadline = window.first if window is not None else None
        closed = self._closed(deadline, rule.speaker)
        said = (result.outcome == PASS) == (rule.mode == "present")
        if said:  # present and found, or absent and said: nothing later changes it
            return self._final(result)
        if closed:
            at = deadline if deadline is not None and not self._ended else self._elapsed
            decision = self._final(result)
            return _Decision(decision.state, decision.reason, at)
        return _pending(result.reason)

    def _metric(self, rule: MetricRule, ctx: CallContext) -> _Decision:
        result = ctx.evaluate(rule)
        if rule.metric in GROWING:
            if self._ended:
                return self._final(result)
            over = result.outcome == FAIL and rule.op in ("<", "<=")
            reached = result.outcome == PASS and rule.op in (">", ">=")
            return self._final(result) if over or reached else _pending(result.reason)
        if rule.metric == "first_response":
            if self._ended or ctx.metrics.first_agent_response is not None:
                return self._final(result)
            return _pending("the agent has not spoken yet")
        return _at_end(f"{rule.metric.replace('_', ' ')}: decided on the whole call")

    def _combined(self, rule: AllRule | AnyRule, depth: int) -> _Decision:
        parts = [self._decide(r, depth + 1) for r in rule.rules]
        deciding, other = ("fail", "pass") if isinstance(rule, AllRule) else ("pass", "fail")
        hit = next((p for p in parts if p.state == deciding), None)
        if hit is not None:
            return hit
        if all(p.state in (other, "na") for p in parts):
            if all(p.state == "na" for p in parts):
                return _Decision("na", "; ".join(p.reason for p in parts))
            done = [p for p in parts if p.state == other]
            ends = [p.at for p in done if p.at is not None]
            return _Decision(
                other,  # type: ignore[arg-type]
                "; ".join(p.reason for p in done),
                max(ends, default=None),
            )
        if any(p.state == "pending" for p in parts):
            return _pending("; ".join(p.reason for p in parts if p.state == "pending"))
        return _at_end("; ".join(p.reason for p in parts if p.state == "at_end"))

    def _order(self, rule: OrderRule, ctx: CallContext, depth: int) -> _Decision:
        parts = [self._decide(rule.first, depth + 1), self._decide(rule.then, depth + 1)]
        blocked = [p for p in parts if p.state == "at_end"]
        if blocked:
            return _at_end(blocked[0].reason)
        result = ctx.evaluate(rule)
        if self._ended:
            return self._final(result)
        first, then = ctx.events(rule.first), ctx.events(rule.then)
        if first and then:
            return self._final(result)
        if then and not any(not ln.final and ln.start < then[0].start for ln in self._lines):
            return self._final(result)  # `then` happened, and nothing before it can still grow
        return _pending(result.reason)
