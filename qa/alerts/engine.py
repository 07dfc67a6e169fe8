"""Evaluating alert rules on a published result and delivering what fires through apprise.

Each rule looks at one `CallResult` (the spike rule also at the weekly counts of the call's
label); the rules about what is said and when are also checked while the call goes on
(`qa.live.rules`), with the helpers here (`PhraseMatcher`, `sentiment_drop`,
`silence_reason`), so a rule means the same live and after the call. What fires is
claimed in the workflow database first, so a call processed again, a restarted pipeline
or a second `qa alerts run` sends nothing twice; then each recipient is tried up to
`attempts` times with a doubling wait, and the outcome is stored (sent, failed, or logged
when nobody is configured to hear it). Delivery problems are logged and stored, never
raised: the pipeline does not wait for alerts or fail because of them (`AlertDispatcher`
runs them on a thread of their own). Live alerts are claimed under the
same key (the call id), so an alert sent during the call is not sent again when the stored
call is evaluated.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, timedelta
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from qa.alerts.mask import MASK, mask_text, mask_url
from qa.alerts.rules import (
    ENV_RE,
    AlertRule,
    AlertRules,
    CriticalFailRule,
    DriverSpikeRule,
    LowScoreRule,
    MissingPhraseRule,
    NegativeEndingRule,
    PhraseRule,
    SentimentDropRule,
    SilenceRule,
    apprise_asset,
    expand,
    load_rules,
)
from qa.errors import QAError
from qa.rules.text import is_cjk, normalize
from qa.schema import CallResult, FlagCode, ItemOutcome, Role

log = logging.getLogger("qa.alerts")


class Hit(BaseModel):
    """A rule that fired: on which call, for which team, and why (one line)."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    rule_name: str
    rule_type: str
    key: str  # what makes it once-only: the call id, or label@week for a spike
    call_id: str
    team: str | None = None
    agent_id: str | None = None
    reason: str
    recipients: list[str] = Field(default_factory=list)  # URL templates, not masked


class Delivery(BaseModel):
    """How an alert went, as stored in the alert log."""

    model_config = ConfigDict(extra="forbid")

    hit: Hit
    status: str  # sent / failed / logged / skipped (sent before: nothing to do)
    attempts: int = 0
    error: str | None = None


class LabelHistory(Protocol):
    """Weekly counts of a label, for the spike rule (the workflow database in production)."""

    def record_label(self, call_id: str, field: str, label: str, week: date) -> None: ...

    def label_counts(self, field: str, label: str | None, weeks: list[date]) -> dict[date, int]: ...


class MemoryHistory:
    """`LabelHistory` in memory, for dry runs that must not write the database."""

    def __init__(self) -> None:
        self.labels: dict[tuple[str, str], tuple[str, date]] = {}

    def record_label(self, call_id: str, field: str, label: str, week: date) -> None:
        self.labels[(call_id, field)] = (label, week)

    def label_counts(self, field: str, label: str | None, weeks: list[date]) -> dict[date, int]:
        counts = dict.fromkeys(weeks, 0)
        for (_, f), (lab, week) in self.labels.items():
            if f == field and label in (None, lab) and week in counts:
                counts[week] += 1
        return counts


# --------------------------------------------------------------------------- evaluation


_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_CHAR = rf"[^\W{_HAN}]"  # a letter or digit that is not a Han character


def phrase_pattern(phrase: str, cjk: bool = False) -> re.Pattern[str] | None:
    """The phrase in the scorecard's normal form (`qa.rules.text.normalize`: case,
    punctuation, apostrophes and Chinese script aside); one that starts with a letter or
    digit starts a word ("lawyer" in "my lawyers", not in "flawyer"), also after Han
    characters; Han text needs no boundary. None for a phrase with nothing to match."""
    words = [re.escape(w) for w in normalize(phrase, cjk).split()]
    if not words:
        return None
    start = rf"(?<!{_WORD_CHAR})" if re.match(_WORD_CHAR, words[0]) else ""
    return re.compile(start + r"\s+".join(words))


class PhraseMatcher:
    """The phrases of one alert rule, compiled once per normal form (spaced or Chinese)."""

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = list(phrases)
        self._patterns: dict[bool, list[tuple[str, re.Pattern[str]]]] = {}

    def patterns(self, cjk: bool) -> list[tuple[str, re.Pattern[str]]]:
        if cjk not in self._patterns:
            compiled = [(p, phrase_pattern(p, cjk)) for p in self.phrases]
            self._patterns[cjk] = [(p, c) for p, c in compiled if c is not None]
        return self._patterns[cjk]

    def search(self, text: str, cjk: bool) -> tuple[str, float] | None:
        """The first listed phrase found in `text`, and where its match ends as a fraction
        of the (normalised) text: with the utterance's times, about when it was said."""
        norm = normalize(text, cjk)
        for phrase, pattern in self.patterns(cjk):
            found = pattern.search(norm)
            if found:
                return phrase, found.end() / max(len(norm), 1)
        return None


def said_reason(role: str, phrase: str, at: float) -> str:
    return f"{role} said {phrase!r} at {at:.0f} s"


def missing_reason(rule: MissingPhraseRule) -> str:
    who = "nobody" if rule.speaker == "any" else f"the {rule.speaker}"
    listed = ", ".join(repr(p) for p in rule.phrases)
    return f"{who} said none of {listed} in the first {rule.within:g} s"


def silence_reason(start: float, end: float) -> str:
    return f"nobody spoke for {end - start:.0f} s from {start:.0f} s"


def sentiment_drop(
    scores: Sequence[float], rule: SentimentDropRule
) -> tuple[int, float, float] | None:
    """The first utterance (index into `scores`, one role's in call order) after which the
    mean of the last `rule.last` is below `rule.below` and `rule.drop` under the mean
    before them (0 while fewer than `rule.last` came before), with both means; or None."""
    n = rule.last
    sums = [0.0]
    for value in scores:
        sums.append(sums[-1] + value)
    for k in range(n, len(scores) + 1):
        mean = (sums[k] - sums[k - n]) / n
        before = k - n
        base = sums[before] / before if before >= n else 0.0
        if mean < rule.below and base - mean >= rule.drop:
            return k - 1, mean, base
    return None


def drop_reason(rule: SentimentDropRule, mean: float, base: float, at: float) -> str:
    return (
        f"customer sentiment {mean:+.2f} over their last {rule.last} utterances to {at:.0f} s, "
        f"{base - mean:.2f} under {base:+.2f}"
    )


def label_of(result: CallResult, field: str) -> str | None:
    """The per-call label at `field` (`driver`, `meta.queue`, `score.driver`), or None."""
    value: Any = result
    for part in field.split("."):
        value = getattr(value, part, None)
        if value is None:
            break
    if value is None and "." not in field:  # `driver` may live on the meta or the score
        for holder in (result.meta, result.score):
            value = getattr(holder, field, None)
            if value is not None:
                break
    if value is None or value == "":
        return None
    return str(getattr(value, "value", value))


def week_of(result: CallResult) -> date:
    when = result.meta.started_at or result.created_at
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    day = when.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


class Evaluator:
    """Which rules fire on a result; `notes` says which rules could not be evaluated."""

    def __init__(self, rules: AlertRules, history: LabelHistory) -> None:
        self.rules = rules
        self.history = history
        self.matchers = {
            r.id: PhraseMatcher(r.phrases)
            for r in rules.active
            if isinstance(r, PhraseRule | MissingPhraseRule)
        }
        self.noted: set[str] = set()

    def evaluate(self, result: CallResult) -> list[Hit]:
        hits = []
        for rule in self.rules.active:
            if rule.teams is not None and result.meta.team not in rule.teams:
                continue
            found = self._check(rule, result)
            if found is None:
                continue
            key, reason = found
            hits.append(
                Hit(
                    rule_id=rule.id,
                    rule_name=rule.title,
                    rule_type=rule.type,
                    key=key,
                    call_id=result.meta.call_id,
                    team=result.meta.team,
                    agent_id=result.meta.agent_id,
                    reason=reason,
                    recipients=self.rules.recipients_for(rule, result.meta.team),
                )
            )
        return hits

    def _check(self, rule: AlertRule, result: CallResult) -> tuple[str, str] | None:
        call_id, score = result.meta.call_id, result.score
        if isinstance(rule, CriticalFailRule):
            failed = [
                i
                for i in score.items
                if i.critical
                and i.outcome is ItemOutcome.FAIL
                and (rule.items is None or i.item_id in rule.items)
            ]
            if failed:
                names = ", ".join(i.name or i.item_id for i in failed)
                return call_id, f"critical item failed: {names}"
        elif isinstance(rule, NegativeEndingRule):
            customer = next((s for s in score.sentiment if s.role is Role.CUSTOMER), None)
            if customer is not None and customer.end < rule.below:
                return call_id, (
                    f"customer sentiment at the end {customer.end:+.2f} < {rule.below:+.2f}"
                )
            flag = next((f for f in score.flags if f.code is FlagCode.NEGATIVE_ENDING), None)
            if rule.flag and flag is not None:
                return call_id, f"negative ending: {flag.reason}"
        elif isinstance(rule, PhraseRule):
            cjk = is_cjk(result.transcript.language)
            for u in result.transcript.utterances:
                if rule.speaker != "any" and u.role.value != rule.speaker:
                    continue
                if found := self.matchers[rule.id].search(u.text, cjk):
                    return call_id, said_reason(u.role.value, found[0], u.start)
        elif isinstance(rule, MissingPhraseRule):
            return self._missing(rule, result)
        elif isinstance(rule, SilenceRule):
            return self._silence(rule, result)
        elif isinstance(rule, SentimentDropRule):
            return self._drop(rule, result)
        elif isinstance(rule, LowScoreRule):
            if score.total < rule.below:
                return call_id, f"score {score.total:g} < {rule.below:g}"
        elif isinstance(rule, DriverSpikeRule):
            return self._spike(rule, result)
        return None

    def _missing(self, rule: MissingPhraseRule, result: CallResult) -> tuple[str, str] | None:
        transcript = result.transcript
        if max(transcript.duration, result.meta.duration or 0.0) < rule.within:
            return None  # the call ended before the deadline
        cjk = is_cjk(transcript.language)
        matcher = self.matchers[rule.id]
        for u in transcript.utterances:
            if u.start >= rule.within:
                break
            if rule.speaker in ("any", u.role.value) and matcher.search(u.text, cjk):
                return None
        return result.meta.call_id, missing_reason(rule)

    def _silence(self, rule: SilenceRule, result: CallResult) -> tuple[str, str] | None:
        metrics = result.score.metrics
        if metrics is None:
            self._note(rule.id, "results carry no call metrics", result.meta.call_id)
            return None
        spans = metrics.silences if rule.holds else metrics.dead_air
        longest = max(spans, key=lambda s: s.duration, default=None)
        if longest is None or longest.duration <= rule.over:
            return None
        return result.meta.call_id, silence_reason(longest.start, longest.end)

    def _drop(self, rule: SentimentDropRule, result: CallResult) -> tuple[str, str] | None:
        said = [u for u in result.transcript.utterances if u.role is Role.CUSTOMER]
        if said and any(u.sentiment is None for u in said):
            self._note(rule.id, "utterances carry no sentiment", result.meta.call_id)
            return None
        found = sentiment_drop([u.sentiment.score for u in said if u.sentiment], rule)
        if found is None:
            return None
        k, mean, base = found
        return result.meta.call_id, drop_reason(rule, mean, base, said[k].end)

    def _note(self, rule_id: str, why: str, call_id: str) -> None:
        if rule_id not in self.noted:  # once per run, not once per call
            self.noted.add(rule_id)
            log.info("alert rule %s skipped: %s (call %s)", rule_id, why, call_id)

    def _spike(self, rule: DriverSpikeRule, result: CallResult) -> tuple[str, str] | None:
        label = label_of(result, rule.field)
        lookup = getattr(self.history, "driver_name_of", None)
        if label is None and rule.field == "driver" and lookup is not None:
            label = lookup(result.meta.call_id)  # call drivers live in the workflow database
        if label is None:
            if rule.id not in self.noted:  # once per run, not once per call
                self.noted.add(rule.id)
                log.info(
                    "alert rule %s skipped: calls carry no %r label (call %s)",
                    rule.id,
                    rule.field,
                    result.meta.call_id,
                )
            return None
        week = week_of(result)
        self.history.record_label(result.meta.call_id, rule.field, label, week)
        weeks = [week - timedelta(weeks=n) for n in range(rule.weeks + 1)]
        counts = self.history.label_counts(rule.field, label, weeks)
        now = counts[week]
        mean = sum(counts[w] for w in weeks[1:]) / rule.weeks
        if now < rule.min_calls or now <= rule.factor * mean:
            return None
        # a label new this week spikes only against a history of other labels: the first
        # weeks after alerts are switched on have nothing to compare with
        if mean == 0 and not sum(self.history.label_counts(rule.field, None, weeks[1:]).values()):
            return None
        return f"{label}@{week.isoformat()}", (
            f"{rule.field} {label!r}: {now} calls in the week of {week.isoformat()}, "
            f"over {rule.factor:g} x the mean of the {rule.weeks} weeks before ({mean:.1f})"
        )


# --------------------------------------------------------------------------- delivery


def _message(hit: Hit, dashboard_url: str | None) -> tuple[str, str]:
    title = f"QA alert: {hit.rule_name} on call {hit.call_id}"
    lines = [
        hit.reason,
        f"call {hit.call_id} · team {hit.team or '-'} · agent {hit.agent_id or '-'}",
    ]
    if dashboard_url:
        lines.append(f"{dashboard_url.rstrip('/')}/review?call={hit.call_id}")
    return title, "\n".join(lines)


def send_once(url: str, title: str, body: str) -> str | None:
    """One try to one recipient; the error (masked) or None when it was taken."""
    import apprise

    try:
        target = expand(url)
    except QAError as exc:
        return str(exc)
    secrets = ENV_RE.findall(url)

    def clean(text: str) -> str:
        for name in secrets:
            if os.environ.get(name):
                text = text.replace(os.environ[name], MASK)
        return mask_text(text)

    sender = apprise.Apprise(asset=apprise_asset())
    if not sender.add(target):
        return f"{mask_url(url)} is not a recipient URL apprise understands"
    with apprise.LogCapture(level=logging.WARNING) as captured:
        try:
            ok = sender.notify(body=body, title=title)
        except Exception as exc:  # a plugin's own failure: stored, never raised
            return clean(f"{type(exc).__name__}: {exc}")
        lines = [ln for ln in captured.getvalue().splitlines() if ln.strip()]
    if ok:
        return None
    detail = lines[-1].split(" - ", 2)[-1] if lines else "the recipient refused the message"
    return clean(detail)


class AlertEngine:
    """Evaluate, claim once, deliver with retries, record. Never raises for a delivery."""

    def __init__(
        self,
        rules: AlertRules,
        workflow: Any,
        *,
        attempts: int = 3,
        backoff_seconds: float = 2.0,
        dashboard_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        send: Callable[[str, str, str], str | None] = send_once,
    ) -> None:
        self.rules = rules
        self.workflow = workflow
        self.evaluator = Evaluator(rules, workflow)
        self.attempts = max(1, attempts)
        self.backoff = max(0.0, backoff_seconds)
        self.dashboard_url = dashboard_url
        self.sleep = sleep
        self.send = send

    @classmethod
    def from_settings(
        cls, settings: Any, workflow: Any, rules_path: str | None = None
    ) -> AlertEngine:
        """The engine for the configured rule file (raises AlertRulesError when it is bad)."""
        return cls(
            load_rules(rules_path or settings.alert_rules),
            workflow,
            attempts=settings.alert_attempts,
            backoff_seconds=settings.alert_backoff_seconds,
            dashboard_url=settings.dashboard_url,
        )

    def process(self, result: CallResult) -> list[Delivery]:
        """Every alert `result` fires, each sent at most once ever."""
        return self.deliver(self.evaluator.evaluate(result))

    def deliver(self, hits: list[Hit]) -> list[Delivery]:
        """Claim each hit once per (rule id, key), send it, record how it went; a hit
        claimed before (live during the call, or an earlier evaluation) is skipped."""
        from qa.workflow.alerts import AlertClaim, AlertStatus

        out = []
        for hit in hits:
            masked = [mask_url(u) for u in hit.recipients]
            claim = AlertClaim(**hit.model_dump(exclude={"recipients"}), recipients=masked)
            alert_id = self.workflow.claim_alert(claim)
            if alert_id is None:
                out.append(Delivery(hit=hit, status="skipped"))
                continue
            if not hit.recipients:
                log.info(
                    "alert %s on call %s (no recipients): %s", hit.rule_id, hit.call_id, hit.reason
                )
                self.workflow.finish_alert(alert_id, AlertStatus.LOGGED)
                out.append(Delivery(hit=hit, status=AlertStatus.LOGGED.value))
                continue
            delivery = self._deliver(hit)
            self.workflow.finish_alert(
                alert_id,
                AlertStatus(delivery.status),
                attempts=delivery.attempts,
                error=delivery.error,
            )
            out.append(delivery)
        return out

    def _deliver(self, hit: Hit) -> Delivery:
        """Each recipient until it takes the message or `attempts` run out, waiting
        backoff, 2 x backoff ... between tries."""
        title, body = _message(hit, self.dashboard_url)
        errors, most = [], 0
        for url in hit.recipients:
            error = None
            for attempt in range(1, self.attempts + 1):
                most = max(most, attempt)
                try:
                    error = self.send(url, title, body)
                except Exception as exc:  # stored as a failed try, never raised
                    error = mask_text(f"{type(exc).__name__}: {exc}")
                if error is None:
                    break
                log.warning(
                    "alert %s on call %s to %s: attempt %d of %d failed: %s",
                    hit.rule_id,
                    hit.call_id,
                    mask_url(url),
                    attempt,
                    self.attempts,
                    error,
                )
                if attempt < self.attempts:
                    self.sleep(self.backoff * 2 ** (attempt - 1))
            if error is not None:
                errors.append(f"{mask_url(url)}: {error}")
        status = "failed" if errors else "sent"
        return Delivery(hit=hit, status=status, attempts=most, error="; ".join(errors) or None)

    def process_safely(self, result: CallResult) -> list[Delivery]:
        """`process`, with any failure (the database, a rule) logged instead of raised."""
        try:
            return self.process(result)
        except Exception:
            log.exception("alerts for call %s not evaluated", result.meta.call_id)
            return []

    def dry_run(self, results: Iterable[CallResult]) -> list[Hit]:
        """What would fire on `results`, oldest first, without sending or writing anything."""
        evaluator = Evaluator(self.rules, MemoryHistory())
        ordered = sorted(results, key=lambda r: (r.meta.started_at or r.created_at, r.meta.call_id))
        return [h for r in ordered for h in evaluator.evaluate(r)]


class AlertDispatcher:
    """Alerts on a thread of their own, so publishing a result never waits for a recipient.

    `close` waits (bounded) for what is queued; whatever a killed process leaves undone is
    caught up by `qa alerts run`, which the once-only claim keeps from sending twice.
    """

    def __init__(self, engine: AlertEngine | None) -> None:
        self.engine = engine
        self._queue: queue.Queue[CallResult | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Any, workflow: Any) -> AlertDispatcher:
        """A dispatcher for the configured rules; a bad rule file disables alerts with an
        error in the log instead of stopping the pipeline."""
        try:
            return cls(AlertEngine.from_settings(settings, workflow))
        except QAError as exc:
            log.error("alerts are off: %s", exc)
            return cls(None)

    def submit(self, result: CallResult) -> None:
        if self.engine is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="qa-alerts", daemon=True)
            self._thread.start()
        self._queue.put(result)

    def _work(self) -> None:
        while (result := self._queue.get()) is not None:
            assert self.engine is not None
            self.engine.process_safely(result)

    def close(self, timeout: float = 60.0) -> None:
        """Finish the queued alerts, waiting at most `timeout` seconds."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "alerts still being delivered after %.0f s; `qa alerts run` finishes them", timeout
            )
        self._thread = None
