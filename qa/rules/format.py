"""Scorecard file format: pydantic models and a YAML loader that keeps line numbers.

A site writes its scorecard as YAML, the way a Semgrep rule is written: each item has one
`rule`, rules combine with `all` / `any` / `not`, and a rule may carry an `id` so that
another rule can refer to it (an `order` check, or a window "after the greeting"). A bad
file is refused with the file, the line and the reason, never a traceback; `check_file`
lists every problem of a file at once (`qa scorecard validate`).

A scorecard comes from a site, not from us, so hostile input is refused before it can cost
much: files over `MAX_BYTES`, YAML aliases that expand past `MAX_NODES` values ("billion
laughs"), nesting past `MAX_DEPTH`, bytes that are not UTF-8, and regular expressions whose
counted repeats would compile to a huge program or that backtrack catastrophically on a probe
text as long as a long utterance (the matcher's run-time budget stays as the last guard).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import regex
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from qa.errors import ScorecardError
from qa.schema import Direction
from qa.scoring.metrics import METRICS

SpeakerSel = Literal["agent", "customer", "any"]
RoleSel = Literal["agent", "customer"]
Op = Literal["<", "<=", ">", ">=", "=="]
BUILTIN_EVENTS = frozenset({"hold"})  # every announced (or long) hold, from the call metrics
ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_BYTES = 512 * 1024  # the bundled scorecards are ~10 KB
MAX_NODES = 100_000  # YAML values once aliases are expanded
MAX_DEPTH = 50  # nesting of YAML values (rules nest 5-10 deep)
MAX_PROBLEMS = 100  # listed per file
MAX_PATTERN = 2000  # characters of one regular expression
MAX_REPEAT = 10_000  # atoms a pattern's counted repeats may compile to (a{1000000000})
PROBE_LENGTH = 1000  # characters of the probe texts: a long utterance
PROBE_TIMEOUT = 0.2  # seconds one probe may take
PROBE_BUDGET = 5.0  # seconds of probing per file; beyond it the run-time budget guards


class Spec(BaseModel):
    """Base of every scorecard model: unknown keys are errors, so a typo is reported."""

    model_config = ConfigDict(extra="forbid")


def _ref_or_rule(value: Any) -> Any:
    """`first: identity_verification` is shorthand for `{type: ref, ref: identity_verification}`."""
    if isinstance(value, str):
        return {"type": "ref", "ref": value}
    return value


class Window(Spec):
    """Where in the call a rule looks: the first or last N seconds, or around events.

    `after` / `before` name an event: a rule or item id (its first match) or `hold` (each
    hold in turn; the rule must hold around every one). With both, the window runs from the
    end of `after` to the start of `before`; `within` bounds a one-sided window.
    """

    first: float | None = Field(default=None, gt=0)
    last: float | None = Field(default=None, gt=0)
    after: Annotated[Rule | None, BeforeValidator(_ref_or_rule)] = None
    before: Annotated[Rule | None, BeforeValidator(_ref_or_rule)] = None
    within: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> Window:
        timed = self.first is not None or self.last is not None
        evented = self.after is not None or self.before is not None
        if self.first is not None and self.last is not None:
            raise ValueError("use either `first` or `last`, not both")
        if timed and evented:
            raise ValueError("use either first/last seconds or after/before events, not both")
        if self.within is not None and not evented:
            raise ValueError("`within` needs `after` or `before`")
        if not timed and not evented:
            raise ValueError("a window needs first, last, after or before")
        return self


class RuleBase(Spec):
    id: str | None = Field(default=None, pattern=ID_PATTERN)
    description: str = ""


class PhraseRule(RuleBase):
    """Any of the phrases said (or never said) by the speaker, fuzzy to tolerate ASR errors."""

    type: Literal["phrase"]
    phrases: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    mode: Literal["present", "absent"] = "present"
    speaker: SpeakerSel = "agent"
    window: Window | None = None
    min_count: int = Field(default=1, ge=1)
    # rapidfuzz ratio 0-100 a fuzzy match must reach; None: the scorecard's fuzzy_threshold
    threshold: float | None = Field(default=None, ge=50, le=100)
    fuzzy: bool = True
    # Mandarin: also match homophones in toneless pinyin (位您服务 for 为您服务), phrases of
    # 3+ Han characters, at `threshold` on the pinyin; None: as `fuzzy`
    by_sound: bool | None = None


class RegexRule(RuleBase):
    """A pattern over each utterance's text; run with a timeout (catastrophic backtracking)."""

    type: Literal["regex"]
    ignore_case: bool = True  # before `pattern`: its validator compiles with the flag
    pattern: str = Field(min_length=1)
    mode: Literal["present", "absent"] = "present"
    speaker: SpeakerSel = "agent"
    window: Window | None = None
    min_count: int = Field(default=1, ge=1)

    @field_validator("pattern")
    @classmethod
    def _safe(cls, value: str, info: ValidationInfo) -> str:
        problem = pattern_problem(
            value,
            bool(info.data.get("ignore_case", True)),
            (info.context or {}).get("probe_budget"),
        )
        if problem:
            raise ValueError(problem)
        return value


def _counted_weight(pattern: str) -> int:
    """Roughly how many atoms compiling `pattern` lays out: the compiler copies an atom once
    per counted repeat (`a{1000}`), and nested counts multiply (`(a{1000}){1000}`); a
    million copies take gigabytes. Alternatives add up (an over-estimate)."""
    cap = MAX_REPEAT + 1
    stack = [[0, 0]]  # per open group: [weight so far, weight of the last atom]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        atom = 1
        if c == "\\":
            i += 2
        elif c == "[":
            j = i + 1
            j += pattern[j : j + 1] == "^"
            j += pattern[j : j + 1] == "]"
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
        elif c == "(":
            stack.append([0, 0])
            i += 1
            continue
        elif c == ")":
            if len(stack) > 1:
                atom = max(stack.pop()[0], 1)
            i += 1
        elif c == "{" and (m := _COUNT.match(pattern, i)) and (m.group(1) or m.group(2)):
            count = max(
                min(int(d), cap) if len(d) < 10 else cap
                for d in (m.group(1) or "0", m.group(2) or "0")
            )
            top = stack[-1]
            top[0] = min(top[0] + top[1] * (count - 1), cap)
            top[1] = min(top[1] * count, cap)
            i = m.end()
            continue
        else:
            i += 1
        top = stack[-1]
        top[0] = min(top[0] + atom, cap)
        top[1] = atom
    return min(sum(w for w, _ in stack), cap)


_COUNT = re.compile(r"\{(\d*)(?:,(\d*))?\}")


def pattern_problem(
    pattern: str, ignore_case: bool = True, budget: list[float] | None = None
) -> str | None:
    """Why a scorecard's regular expression cannot be used, or None.

    Besides syntax: a pattern that would compile to a huge program, and one that backtracks
    catastrophically (`(a+)+$`) on a probe text: runs of each letter the pattern names, of
    `a`, `1` and spaces, and its letters in turn, each as long as a long utterance and ending
    in a character nothing matches. `budget` holds the probing seconds left for the file.
    """
    if len(pattern) > MAX_PATTERN:
        return f"regular expression of {len(pattern)} characters; at most {MAX_PATTERN}"
    if _counted_weight(pattern) > MAX_REPEAT:
        return (
            f"regular expression {_short(pattern)} repeats too much: its counted repeats "
            f"({{n}}) come to over {MAX_REPEAT} copies"
        )
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE if ignore_case else 0)
    except regex.error as exc:
        return f"bad regular expression {_short(pattern)}: {exc}"
    except (RecursionError, OverflowError, MemoryError):
        return f"regular expression {_short(pattern)} is nested too deeply"
    letters = [c for c in pattern if c.isalnum()]
    runs = list(dict.fromkeys([*letters, "a", "1", " "]))[:16]
    mixed = ("".join(dict.fromkeys(letters)) or "a1 ") * PROBE_LENGTH
    probes = [c * PROBE_LENGTH for c in runs] + [mixed[:PROBE_LENGTH]]
    budget = budget if budget is not None else [PROBE_BUDGET]
    for probe in probes:
        if budget[0] <= 0:
            return None  # the file's probing time is spent: the run-time budget guards
        start = time.perf_counter()
        try:
            compiled.search(probe + "\u00a7", timeout=PROBE_TIMEOUT)
        except TimeoutError:
            return (
                f"regular expression {_short(pattern)} backtracks catastrophically: over "
                f"{PROBE_TIMEOUT:g} s on {PROBE_LENGTH} characters "
                f"({probe[:6]!r}...); avoid nested repeats such as (a+)+"
            )
        finally:
            budget[0] -= time.perf_counter() - start
    return None


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class OrderRule(RuleBase):
    """Event `first` happens before event `then` (identity verified before account details)."""

    type: Literal["order"]
    first: Annotated[Rule, BeforeValidator(_ref_or_rule)]
    then: Annotated[Rule, BeforeValidator(_ref_or_rule)]
    # outcome when `then` never happens (nothing to be out of order)
    when_then_absent: Literal["na", "pass"] = "na"


class SemanticRule(RuleBase):
    """Some utterance of the speaker means the same as one of the examples (encoder cosine)."""

    type: Literal["semantic"]
    examples: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    mode: Literal["present", "absent"] = "present"
    speaker: SpeakerSel = "agent"
    window: Window | None = None
    threshold: float = Field(default=0.6, gt=0, le=1)


class MetricRule(RuleBase):
    """A call metric compared with a threshold: `dead_air <= 30`, `interruptions <= 2`."""

    type: Literal["metric"]
    metric: str  # a name in qa.scoring.metrics.METRICS
    op: Op
    threshold: float
    role: RoleSel | None = None  # for the per-role metrics (interruptions, talk_ratio, ...)

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)}")
        return value

    @model_validator(mode="after")
    def _role_fits(self) -> MetricRule:
        if self.role is not None and not METRICS[self.metric].per_role:
            raise ValueError(f"metric {self.metric!r} is not per role; remove `role`")
        return self


class SentimentRule(RuleBase):
    """An aggregate of one role's utterance sentiment (-1..1) compared with a threshold."""

    type: Literal["sentiment"]
    role: RoleSel = "customer"
    window: Window | None = None
    aggregate: Literal["mean", "min", "max", "last", "negative_share"] = "mean"
    op: Op
    threshold: float


class RefRule(RuleBase):
    """Another rule or item, by id; `hold` is the built-in event of the call's holds."""

    type: Literal["ref"]
    ref: str = Field(min_length=1)


class AllRule(RuleBase):
    type: Literal["all"]
    rules: list[Annotated[Rule, BeforeValidator(_ref_or_rule)]] = Field(min_length=1)


class AnyRule(RuleBase):
    type: Literal["any"]
    rules: list[Annotated[Rule, BeforeValidator(_ref_or_rule)]] = Field(min_length=1)


class NotRule(RuleBase):
    type: Literal["not"]
    rule: Annotated[Rule, BeforeValidator(_ref_or_rule)]


# The rule types of the format: a new one is a model above and one entry here (and its
# evaluator in qa.rules.matchers, which refuses to load without one).
Rule = Annotated[
    PhraseRule
    | RegexRule
    | OrderRule
    | SemanticRule
    | MetricRule
    | SentimentRule
    | RefRule
    | AllRule
    | AnyRule
    | NotRule,
    Field(discriminator="type"),
]
RULE_MODELS: tuple[type[RuleBase], ...] = get_args(get_args(Rule)[0])
RULE_TYPES: tuple[str, ...] = tuple(
    get_args(m.model_fields["type"].annotation)[0] for m in RULE_MODELS
)


class AppliesWhen(Spec):
    """Conditions for an item to count; otherwise it is N/A (not a pass, not a fail)."""

    queue: list[str] | None = None
    direction: Direction | None = None
    language: list[str] | None = None
    min_duration: float | None = Field(default=None, ge=0)
    max_duration: float | None = Field(default=None, gt=0)
    hold: bool | None = None  # True: only calls with a hold; False: only calls without
    rule: Annotated[Rule | None, BeforeValidator(_ref_or_rule)] = None  # must pass


class Item(Spec):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    description: str = ""
    points: float | None = Field(default=None, gt=0)  # deduction scoring
    weight: float | None = Field(default=None, gt=0)  # weighted scoring
    critical: bool = False  # a fail fails the whole call (auto-fail)
    applies_when: AppliesWhen | None = None
    rule: Annotated[Rule, BeforeValidator(_ref_or_rule)]


class Section(Spec):
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1)
    items: list[Item] = Field(min_length=1)


class FlagThresholds(Spec):
    """When a call is routed to a person besides failing: thresholds a site may tune."""

    low_role_confidence: float = Field(default=0.6, ge=0, le=1)
    low_asr_confidence: float = Field(default=0.5, ge=0, le=1)
    negative_ending: float = Field(default=-0.3, ge=-1, le=1)  # customer mean at the end below
    ending_seconds: float = Field(default=60.0, gt=0)


def _version_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class Scorecard(Spec):
    id: str = Field(pattern=ID_PATTERN)
    version: Annotated[str, BeforeValidator(_version_text)] = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    languages: list[str] = Field(min_length=1)
    pass_mark: float = Field(ge=0, le=100)
    scoring: Literal["deduction", "weighted"] = "deduction"
    auto_fail_zeroes_total: bool = True  # a critical fail scores 0, as on most paper forms
    fuzzy_threshold: float = Field(default=85.0, ge=50, le=100)
    flags: FlagThresholds = Field(default_factory=FlagThresholds)
    sections: list[Section] = Field(min_length=1)

    _source: str | None = PrivateAttr(default=None)
    _cache: dict = PrivateAttr(default_factory=dict)  # per-scorecard caches (example vectors)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Scorecard:
        if info.context and info.context.get("defer_checks"):
            return self
        problems = check_scorecard(self)
        if problems:
            raise ValueError(problems[0][1])
        return self

    @property
    def source(self) -> str | None:
        """The file it was loaded from, if any."""
        return self._source

    @property
    def items(self) -> list[tuple[Section, Item]]:
        return [(s, i) for s in self.sections for i in s.items]

    def named_rules(self) -> dict[str, Any]:
        """Every rule reachable by id: items by their id, inner rules by their own `id`."""
        named: dict[str, Any] = {}
        for _, item in self.items:
            named[item.id] = item.rule
            for _, rule in walk_rules(item.rule, ()):
                if rule.id:
                    named[rule.id] = rule
            if item.applies_when and item.applies_when.rule is not None:
                for _, rule in walk_rules(item.applies_when.rule, ()):
                    if rule.id:
                        named[rule.id] = rule
        return named


for _model in (Window, OrderRule, AllRule, AnyRule, NotRule, AppliesWhen, Item, Section, Scorecard):
    _model.model_rebuild()


def walk_rules(rule: Any, path: tuple) -> Iterator[tuple[tuple, Any]]:
    """Every rule inside `rule` (itself included) with its path of keys from `rule`."""
    yield path, rule
    if isinstance(rule, AllRule | AnyRule):
        for i, child in enumerate(rule.rules):
            yield from walk_rules(child, (*path, "rules", i))
    elif isinstance(rule, NotRule):
        yield from walk_rules(rule.rule, (*path, "rule"))
    elif isinstance(rule, OrderRule):
        yield from walk_rules(rule.first, (*path, "first"))
        yield from walk_rules(rule.then, (*path, "then"))
    window = getattr(rule, "window", None)
    if window is not None:
        for key in ("after", "before"):
            event = getattr(window, key)
            if event is not None:
                yield from walk_rules(event, (*path, "window", key))


def check_scorecard(card: Scorecard) -> list[tuple[tuple, str]]:
    """Checks across items that a field type cannot express; each with the path it concerns."""
    problems: list[tuple[tuple, str]] = []
    seen_items: dict[str, tuple] = {}
    seen_rules: dict[str, tuple] = {}
    seen_sections: set[str] = set()
    total = 0.0
    for si, section in enumerate(card.sections):
        if section.id in seen_sections:
            problems.append((("sections", si, "id"), f"duplicate section id {section.id!r}"))
        seen_sections.add(section.id)
        for ii, item in enumerate(section.items):
            base = ("sections", si, "items", ii)
            if item.id in seen_items:
                problems.append(((*base, "id"), f"duplicate item id {item.id!r}"))
            seen_items[item.id] = base
            if card.scoring == "deduction":
                if item.points is None:
                    problems.append((base, f"item {item.id!r}: deduction scoring needs `points`"))
                if item.weight is not None:
                    problems.append(
                        (
                            (*base, "weight"),
                            f"item {item.id!r}: `weight` is for weighted scoring; use `points`",
                        )
                    )
                total += item.points or 0.0
            else:
                if item.weight is None:
                    problems.append((base, f"item {item.id!r}: weighted scoring needs `weight`"))
                if item.points is not None:
                    problems.append(
                        (
                            (*base, "points"),
                            f"item {item.id!r}: `points` is for deduction scoring; use `weight`",
                        )
                    )
            roots = [((*base, "rule"), item.rule)]
            if item.applies_when and item.applies_when.rule is not None:
                roots.append(((*base, "applies_when", "rule"), item.applies_when.rule))
            for root_path, root in roots:
                for path, rule in walk_rules(root, root_path):
                    if rule.id:
                        if rule.id in seen_rules or rule.id in seen_items:
                            problems.append(((*path, "id"), f"duplicate rule id {rule.id!r}"))
                        seen_rules[rule.id] = path
    for rule_id, path in seen_rules.items():
        if rule_id in seen_items and seen_items[rule_id] != path[:4]:
            problems.append(((*path, "id"), f"rule id {rule_id!r} is also an item id"))
    if card.scoring == "deduction" and abs(total - 100.0) > 1e-6 and not problems:
        problems.append(
            (
                ("sections",),
                f"deduction scoring: item points must sum to 100, they sum to {total:g}",
            )
        )
    known = set(seen_items) | set(seen_rules) | BUILTIN_EVENTS
    named = card.named_rules()
    for si, section in enumerate(card.sections):
        for ii, item in enumerate(section.items):
            base = ("sections", si, "items", ii)
            roots = [((*base, "rule"), item.rule)]
            if item.applies_when and item.applies_when.rule is not None:
                roots.append(((*base, "applies_when", "rule"), item.applies_when.rule))
            for root_path, root in roots:
                for path, rule in walk_rules(root, root_path):
                    if isinstance(rule, RefRule):
                        if rule.ref not in known:
                            problems.append(
                                ((*path, "ref"), f"unknown rule or item id {rule.ref!r}")
                            )
                        elif _cycle(rule.ref, named, ()):
                            problems.append((path, f"reference {rule.ref!r} refers to itself"))
    return problems


def _cycle(ref: str, named: dict[str, Any], stack: tuple[str, ...]) -> bool:
    if ref in stack:
        return True
    rule = named.get(ref)
    if rule is None:
        return False
    return any(
        isinstance(r, RefRule) and _cycle(r.ref, named, (*stack, ref))
        for _, r in walk_rules(rule, ())
    )


# --------------------------------------------------------------------------- YAML with lines


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that notes duplicate keys (PyYAML silently keeps the last one).

    The pure-Python loader, not libyaml's: deep nesting raises RecursionError here, where
    libyaml's composer overflows the C stack and kills the process.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: PyYAML's own error says so
                continue
            if first != line:
                self.duplicates.append((line, f"duplicate key {key!r} (first on line {first})"))
        return super().construct_mapping(node, deep=deep)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return node.value if isinstance(node, yaml.SequenceNode) else []


def _expansion_problem(root: yaml.Node) -> tuple[int, str] | None:
    """Line and reason when the document, aliases expanded, is too big or too deep.

    An alias is the anchored node itself, so sizes are counted once per node (memo) and a
    node that contains itself is found by the path being walked.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_NODES + 1)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            continue
        if key in size:
            continue
        if key in on_path:
            return node.start_mark.line + 1, "a YAML alias refers to a value that contains it"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    if size[id(root)] <= MAX_NODES and depth[id(root)] <= MAX_DEPTH:
        return None
    node = root
    if depth[id(root)] > MAX_DEPTH:  # the value at the level too many
        for _ in range(MAX_DEPTH):
            node = max(_children(node), key=lambda c: depth[id(c)])
        return node.start_mark.line + 1, f"values nested deeper than {MAX_DEPTH} levels"
    while True:  # the smallest value that is too big: where the alias bomb sits
        big = next((c for c in _children(node) if size[id(c)] > MAX_NODES), None)
        if big is None:
            break
        node = big
    return (
        node.start_mark.line + 1,
        f"YAML aliases expand this value to over {MAX_NODES:,} values (an alias bomb?); "
        "write the values out",
    )


RULE_FIELDS = frozenset({"rule", "first", "then", "after", "before"})


def _strip_tags(loc: tuple) -> tuple:
    """A pydantic error location without the parts that name no YAML node: the rule type
    a discriminated union adds after a rule-valued key (`rule.metric.metric` is the
    `metric` key of a metric rule) and validator names (`function-after[...]`)."""
    out: list = []
    tagged = False  # the rule slot at the end of `out` already had its tag skipped
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function")):
            continue
        rule_slot = bool(out) and (
            out[-1] in RULE_FIELDS
            or (isinstance(out[-1], int) and len(out) > 1 and out[-2] == "rules")
        )
        if isinstance(part, str) and part in RULE_TYPES and rule_slot and not tagged:
            tagged = True
            continue
        out.append(part)
        tagged = False
    return tuple(out)


def line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """The line of the YAML node that a pydantic error location (or a check's path) names;
    a missing key reports its parent's line."""
    if root is None:
        return None
    node = root
    line = node.start_mark.line + 1
    for part in _strip_tags(loc):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        elif isinstance(node, yaml.ScalarNode):
            return line  # a string shorthand (`first: greeting`) validated as a rule
        else:
            return line
    return line


def _loc_text(loc: tuple) -> str:
    return ".".join(str(p) for p in _strip_tags(loc))


def _deep_line(text: str) -> int | None:
    """Line where flow brackets (`[[[...`) first nest past `MAX_DEPTH`: nesting too deep for
    the parser itself can only be written that way (block style needs a wider indent per
    level). Brackets in quoted text are counted too, which only moves the line."""
    depth = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth += 1 if match.group() in "[{" else -1
        if depth > MAX_DEPTH:
            return text.count("\n", 0, match.start()) + 1
    return None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a scorecard file: `file:line: reason`."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.file}:{self.line}: {self.reason}"
            if self.line
            else f"{self.file}: {self.reason}"
        )


def _pydantic_reason(error: dict) -> str:
    loc = tuple(error["loc"])
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = f"unknown key {str(loc[-1])!r}"
    elif error["type"] == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        named = f" {tag!r}" if tag is not None else ""
        msg = f"unknown rule type{named}; use one of {', '.join(RULE_TYPES)}"
    elif error["type"] == "union_tag_not_found":
        msg = f"a rule needs a `type`: one of {', '.join(RULE_TYPES)}"
    where = _loc_text(loc)
    return f"{where}: {msg}" if where else msg


def parse_mapping(
    text: str, source: str, shape: str
) -> tuple[yaml.Node | None, dict[str, Any], list[Problem]]:
    """One YAML mapping with its line numbers kept, for files people write (scorecards,
    alert rules): (root node, data, problems). A syntax error stops at the first and gives
    no root; duplicate keys are listed. `shape` says what the mapping should be."""

    def problem(line: int | None, reason: str) -> Problem:
        return Problem(source, line, reason)

    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)  # checks the characters first
        root = loader.get_single_node()
        if root is None:
            return None, {}, [problem(1, f"the file is empty; {shape}")]
        if too_big := _expansion_problem(root):
            return None, {}, [problem(*too_big)]
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        return (
            None,
            {},
            [
                problem(
                    mark.line + 1 if mark else None,
                    f"not valid YAML: {exc.problem or exc.context or exc}",
                )
            ],
        )
    except yaml.reader.ReaderError as exc:
        return (
            None,
            {},
            [
                problem(
                    text.count("\n", 0, exc.position) + 1,
                    f"not valid YAML: character {chr(exc.character)!r} "
                    f"(U+{exc.character:04X}) is not allowed",
                )
            ],
        )
    except yaml.YAMLError as exc:
        return None, {}, [problem(None, f"not valid YAML: {exc}")]
    except RecursionError:
        return (
            None,
            {},
            [problem(_deep_line(text), f"values nested deeper than {MAX_DEPTH} levels")],
        )
    finally:
        if loader is not None:
            loader.dispose()
    problems = [problem(line, reason) for line, reason in loader.duplicates]
    if not isinstance(data, dict):
        return None, {}, [*problems, problem(root.start_mark.line + 1, shape)]
    return root, data, problems


def check_text(text: str, source: str = "<scorecard>") -> tuple[Scorecard | None, list[Problem]]:
    """The scorecard in `text` and every problem found, sorted by line; the card is None when
    there is any. YAML syntax stops at its first error; everything after parsing (types,
    unknown keys, ids, points) is listed in full, up to `MAX_PROBLEMS`."""

    def problem(line: int | None, reason: str) -> Problem:
        return Problem(source, line, reason)

    root, data, problems = parse_mapping(
        text, source, "a scorecard is a mapping with id, version, name, sections..."
    )
    if root is None:
        return None, problems
    card = None
    try:
        card = Scorecard.model_validate(
            data, context={"defer_checks": True, "probe_budget": [PROBE_BUDGET]}
        )
    except ValidationError as exc:
        problems += [
            problem(line_of(root, tuple(e["loc"])), _pydantic_reason(e)) for e in exc.errors()
        ]
    except RecursionError:
        problems.append(problem(None, "values nested too deeply"))
    if card is not None:
        problems += [
            problem(line_of(root, path), f"{_loc_text(path)}: {msg}")
            for path, msg in check_scorecard(card)
        ]
    if not problems:
        card._source = source  # type: ignore[union-attr]
        return card, []
    problems.sort(key=lambda p: p.line or 0)
    if len(problems) > MAX_PROBLEMS:
        rest = len(problems) - MAX_PROBLEMS
        problems = [*problems[:MAX_PROBLEMS], problem(None, f"... and {rest} more problems")]
    return None, problems


def check_file(path: str | Path) -> tuple[Scorecard | None, list[Problem]]:
    """`check_text` on a file, after refusing what is no scorecard text at all: a file too
    big, or bytes that are not UTF-8 (the line and column of the first bad byte)."""
    path = Path(path)
    source = str(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return None, [Problem(source, None, f"cannot read scorecard: {exc.strerror or exc}")]
    if len(data) > MAX_BYTES:
        size = path.stat().st_size
        return None, [
            Problem(
                source,
                None,
                f"file is {size / 1024:,.0f} KB; a scorecard may be at most {MAX_BYTES // 1024} KB",
            )
        ]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            Problem(
                source,
                line,
                f"not UTF-8: byte 0x{data[exc.start]:02x} at "
                f"column {column}; save the file as UTF-8",
            )
        ]
    return check_text(text, source)


def _raise_first(problems: list[Problem]) -> None:
    first = problems[0]
    more = len(problems) - 1
    reason = first.reason + (
        f" (and {more} more problem{'s' * (more > 1)}; `qa scorecard validate` lists them)"
        if more
        else ""
    )
    error = ScorecardError(reason, file=first.file, line=first.line)
    error.problems = problems  # type: ignore[attr-defined]
    raise error


def parse_scorecard(text: str, *, source: str = "<scorecard>") -> Scorecard:
    """Validate scorecard YAML text; a problem raises ScorecardError with file and line (the
    first problem; all of them in its `problems`)."""
    card, problems = check_text(text, source)
    if problems or card is None:
        _raise_first(problems)
    return card  # type: ignore[return-value]


def load_scorecard(path: str | Path) -> Scorecard:
    """Read and validate a scorecard file (the format is described in this module)."""
    card, problems = check_file(path)
    if problems or card is None:
        _raise_first(problems)
    return card  # type: ignore[return-value]
