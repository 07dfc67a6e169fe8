"""Alert rule files: what is worth hearing about at once, and who hears it.

A site writes its alert rules as YAML, like its scorecard, and a bad file is refused the
same way: the file, the line and the reason, every problem at once (`qa alerts test`),
never a traceback. Rules about what is said and when (phrase, missing_phrase, silence,
sentiment_drop) are checked while a call goes on (`qa.live.rules`) and again on the stored
result, so one file serves both; the rest need the scored call. Recipients are apprise
URLs per team (`"*"`: every team); a URL may name environment variables (`${SLACK_HOOK}`)
so secrets stay out of the file. A rule without recipients only writes to the alert log.

```yaml
version: 1
recipients:                      # the default for every rule; team -> apprise URLs
  customer_care: ["jsons://hooks.example.com/qa/${HOOK_TOKEN}"]
  "*": ["mailtos://qa:${MAIL_PASSWORD}@mail.example.com?to=qa-leads@example.com"]
rules:
  - id: critical_fail
    type: critical_fail          # a critical item failed (items: only these ids)
  - id: negative_ending
    type: negative_ending        # customer sentiment at the end below `below`, or the flag
    below: -0.3
  - id: legal_threat
    type: phrase                 # any phrase said (live, and in the stored transcript)
    phrases: ["cancel", "lawyer", "投诉"]
    speaker: customer            # agent | customer | any
  - id: recording_disclosure
    type: missing_phrase         # none of the phrases said in the first `within` seconds
    phrases: ["this call may be recorded", "本次通话可能会被录音"]
    speaker: agent
    within: 30
  - id: dead_air
    type: silence                # nobody spoke for more than `over` seconds
    over: 30
    holds: false                 # silences of an announced hold do not count
  - id: customer_souring
    type: sentiment_drop         # the customer's last utterances turned negative
    last: 3
    below: -0.3
    drop: 0.4
  - id: low_score
    type: low_score
    below: 50
  - id: driver_spike
    type: driver_spike           # this week's calls of one label > factor x trailing mean
    field: driver                # the per-call label; `meta.queue` works today
    factor: 2
    weeks: 4
    min_calls: 5
```
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qa.errors import QAError
from qa.rules.format import MAX_BYTES, MAX_PROBLEMS, Problem, line_of, parse_mapping

PACKAGE_RULES = Path(__file__).resolve().parent / "default.yaml"
ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
ALL_TEAMS = "*"
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
FIELD_RE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,3}$")
MAX_URLS = 50  # recipients of one team in one rule


class AlertRulesError(QAError):
    """An alert rule file is invalid; `problems` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        more = len(problems) - 1
        reason = first.reason + (
            f" (and {more} more problem{'s' * (more > 1)}; `qa alerts test` lists them)"
            if more
            else ""
        )
        where = f"{first.file}:{first.line}" if first.line else first.file
        super().__init__(reason, file=where)
        self.problems = problems


class Spec(BaseModel):
    """Unknown keys are errors, so a typo is reported instead of silently ignored."""

    model_config = ConfigDict(extra="forbid")


Recipients = dict[
    str, Annotated[list[Annotated[str, Field(min_length=1)]], Field(max_length=MAX_URLS)]
]


class RuleBase(Spec):
    id: str = Field(pattern=ID_PATTERN)
    name: str = ""
    description: str = ""
    enabled: bool = True
    teams: list[str] | None = None  # only calls of these teams; None: every team
    recipients: Recipients | None = None  # None: the file's recipients

    @property
    def title(self) -> str:
        return self.name or self.id.replace("_", " ").capitalize()


class CriticalFailRule(RuleBase):
    """A critical scorecard item failed (held-for-a-person items are not failures yet)."""

    type: Literal["critical_fail"]
    items: list[str] | None = None  # only these item ids; None: any critical item


class NegativeEndingRule(RuleBase):
    """The customer ended the call unhappy: their end sentiment below `below`, or the
    scorer's negative_ending flag (when `flag`)."""

    type: Literal["negative_ending"]
    below: float = Field(default=-0.3, ge=-1.0, le=1.0)
    flag: bool = True


class PhraseRule(RuleBase):
    """Words worth a lead's attention (a customer's "cancel", an agent's "calm down"),
    matched in the scorecard's normal form (case, punctuation and Chinese script aside); a
    phrase starting with a letter or digit matches at a word start ("cancel" in
    "cancelled", not in "precancel")."""

    type: Literal["phrase"]
    phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1)
    speaker: Literal["agent", "customer", "any"] = "any"


class MissingPhraseRule(RuleBase):
    """A phrase the `speaker` must say early (a recording disclosure): fires once the call
    passes `within` seconds without an utterance starting before then that says one of
    them (matched as `phrase` rules match)."""

    type: Literal["missing_phrase"]
    phrases: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1)
    speaker: Literal["agent", "customer", "any"] = "agent"
    within: float = Field(default=30.0, gt=0)


class SilenceRule(RuleBase):
    """Nobody spoke for more than `over` seconds (between speech, as the call metrics
    count silence). With `holds: false` a silence right after the agent announced a hold
    does not count (dead air only)."""

    type: Literal["silence"]
    over: float = Field(gt=0)
    holds: bool = True


class SentimentDropRule(RuleBase):
    """The customer is turning against the call: the mean sentiment of their `last`
    utterances is below `below` and at least `drop` under the mean of their utterances
    before (under 0 while there are fewer than `last` of those). Checked after every
    customer utterance, so a dip that recovers by the end still counts."""

    type: Literal["sentiment_drop"]
    last: int = Field(default=3, ge=1, le=50)
    below: float = Field(default=-0.3, ge=-1.0, le=1.0)
    drop: float = Field(default=0.4, gt=0.0, le=2.0)


class LowScoreRule(RuleBase):
    """The automatic total is below `below` (on the card's own scale)."""

    type: Literal["low_score"]
    below: float = Field(ge=0)


class DriverSpikeRule(RuleBase):
    """More calls of one label this week than `factor` times its mean over the `weeks`
    before. The label is read from the result at `field` (`driver`, `meta.queue`); results
    without it skip the rule with a note in the log."""

    type: Literal["driver_spike"]
    field: str = "driver"
    factor: float = Field(default=2.0, gt=1.0)
    weeks: int = Field(default=4, ge=1, le=52)
    min_calls: int = Field(default=5, ge=1)

    @field_validator("field")
    @classmethod
    def _dotted(cls, value: str) -> str:
        if not FIELD_RE.match(value):
            raise ValueError(f"{value!r} is not a field name like `driver` or `meta.queue`")
        return value


AlertRule = (
    CriticalFailRule
    | NegativeEndingRule
    | PhraseRule
    | MissingPhraseRule
    | SilenceRule
    | SentimentDropRule
    | LowScoreRule
    | DriverSpikeRule
)
RULE_MODELS: dict[str, type[RuleBase]] = {
    "critical_fail": CriticalFailRule,
    "negative_ending": NegativeEndingRule,
    "phrase": PhraseRule,
    "missing_phrase": MissingPhraseRule,
    "silence": SilenceRule,
    "sentiment_drop": SentimentDropRule,
    "low_score": LowScoreRule,
    "driver_spike": DriverSpikeRule,
}

# Rule types decided on what is said and when, so checked live as well as after the call.
LIVE_TYPES = frozenset({"phrase", "missing_phrase", "silence", "sentiment_drop"})


class _FileHead(Spec):
    version: Literal[1] = 1
    recipients: Recipients = Field(default_factory=dict)
    rules: list[Any] = Field(default_factory=list)


@dataclass(frozen=True)
class AlertRules:
    """A validated rule file."""

    source: str
    rules: tuple[AlertRule, ...]
    recipients: dict[str, list[str]]

    def recipients_for(self, rule: RuleBase, team: str | None) -> list[str]:
        """The URLs (templates, `${VAR}` unexpanded) that hear about a call of `team`."""
        table = self.recipients if rule.recipients is None else rule.recipients
        own = table.get(team, []) if team else []
        return list(dict.fromkeys([*own, *table.get(ALL_TEAMS, [])]))

    @property
    def active(self) -> tuple[AlertRule, ...]:
        return tuple(r for r in self.rules if r.enabled)


def expand(url: str) -> str:
    """A recipient URL with its `${VAR}`s from the environment; a missing one is an error
    that names the variable, not the secret."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise QAError(f"environment variable {name} is not set")
        return os.environ[name]

    return ENV_RE.sub(value, url)


def _url_problem(url: str) -> str | None:
    """Why apprise cannot send to `url`, or None; URLs naming variables are checked when
    sent (the variables may be set only where the pipeline runs)."""
    from qa.alerts.mask import mask_url

    if ENV_RE.search(url):
        return None
    import apprise

    apprise_log = logging.getLogger("apprise")
    level = apprise_log.level
    apprise_log.setLevel(logging.CRITICAL)  # its own "unparseable URL" would name the secret
    try:
        plugin = apprise.Apprise.instantiate(url, asset=apprise_asset(), suppress_exceptions=True)
    finally:
        apprise_log.setLevel(level)
    if plugin is None:
        return f"{mask_url(url)} is not a recipient URL apprise understands"
    return None


def apprise_asset() -> Any:
    """Apprise without plugins from disk or a persistent store: nothing but the URL given."""
    import apprise

    return apprise.AppriseAsset(plugin_paths=[], storage_mode="memory")


def _reason(loc: tuple, error: dict) -> str:
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = f"unknown key {str(loc[-1])!r}"
    where = ".".join(str(p) for p in loc)
    return f"{where}: {msg}" if where else msg


def check_text(text: str, source: str = "<alert rules>") -> tuple[AlertRules | None, list[Problem]]:
    """The rules in `text` and every problem found, sorted by line; None when there is any."""

    def problem(line: int | None, reason: str) -> Problem:
        return Problem(source, line, reason)

    root, data, problems = parse_mapping(text, source, "alert rules are a mapping with `rules`")
    if root is None:
        return None, problems

    def add(loc: tuple, reason: str) -> None:
        problems.append(problem(line_of(root, loc), reason))

    head = None
    try:
        head = _FileHead.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            add(tuple(e["loc"]), _reason(tuple(e["loc"]), e))
    rules: list[AlertRule] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(head.rules if head else []):
        loc: tuple = ("rules", i)
        kind = raw.get("type") if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            add(loc, f"rules.{i}: a rule is a mapping with id and type")
            continue
        if kind not in RULE_MODELS:
            named = f"unknown rule type {kind!r}" if kind is not None else "a rule needs a `type`"
            add((*loc, "type"), f"rules.{i}.type: {named}; use one of {', '.join(RULE_MODELS)}")
            continue
        try:
            rule = RULE_MODELS[kind].model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                full = (*loc, *e["loc"])
                add(full, _reason(full, e))
            continue
        if rule.id in seen:
            add((*loc, "id"), f"rules.{i}.id: {rule.id!r} is used by rules.{seen[rule.id]} too")
        seen.setdefault(rule.id, i)
        rules.append(rule)  # type: ignore[arg-type]
    tables: list[tuple[tuple, Recipients]] = [(("recipients",), head.recipients)] if head else []
    tables += [
        (("rules", n, "recipients"), r["recipients"])
        for n, r in enumerate(head.rules if head else [])
        if isinstance(r, dict) and isinstance(r.get("recipients"), dict)
    ]
    for loc, table in tables:
        for team, urls in table.items():
            for j, url in enumerate(urls if isinstance(urls, list) else []):
                if isinstance(url, str) and (why := _url_problem(url)):
                    add((*loc, team, j), f"{'.'.join(map(str, (*loc, team, j)))}: {why}")
    if problems or head is None:
        problems.sort(key=lambda p: p.line or 0)
        if len(problems) > MAX_PROBLEMS:
            rest = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], problem(None, f"... and {rest} more problems")]
        return None, problems
    return AlertRules(source=source, rules=tuple(rules), recipients=head.recipients), []


def check_file(path: str | Path) -> tuple[AlertRules | None, list[Problem]]:
    """`check_text` on a file, after refusing one too big or not UTF-8."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [Problem(source, None, f"cannot read alert rules: {exc.strerror or exc}")]
    if len(data) > MAX_BYTES:
        return None, [
            Problem(source, None, f"file is over {MAX_BYTES // 1024} KB; alert rules are smaller")
        ]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return None, [Problem(source, line, "not UTF-8; save the file as UTF-8")]
    return check_text(text, source)


def load_rules(path: str | Path | None = None) -> AlertRules:
    """Read and validate a rule file (default: the bundled example, which sends nothing)."""
    rules, problems = check_file(path or PACKAGE_RULES)
    if problems or rules is None:
        raise AlertRulesError(problems)
    return rules
