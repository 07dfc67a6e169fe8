"""Evaluating scorecard rules on one call, each result with the evidence a reviewer checks.

`CallContext` holds what every rule of a call shares, built lazily and once: the speech of
each party as one normalised text (phrase search runs over it in one pass per phrase), the
utterance vectors for semantic rules, the utterance sentiment, and the results of rules
other rules refer to.

Phrase matching: an exact search first (fast), then, for ASR errors, the phrase with word
breaks ignored (ASR splits and glues words, names most: "north wind", "northwindcalicam")
and rapidfuzz's partial-ratio alignment ("recorder for quality"); a fuzzy hit is snapped to
whole words (characters for Chinese), must lie in one utterance and reach the threshold.
Mandarin phrases of 3 or more Han characters are then also looked for by sound (`by_sound`),
for Whisper's homophones (位您服务 for 为您服务): in toneless pinyin with the usual confusions
folded (see `qa.rules.text`), over windows of the phrase's length in characters. A 3-character
phrase must sound the same; a longer one may differ by a few initials or finals (never both of
one character), as far as the threshold allows. Two-character phrases never match by sound:
too many words sound alike.

Regular expressions run under the `regex` module over each utterance on its own (a match
never spans two turns, let alone two speakers) with one time budget per rule and call, so a
pattern with catastrophic backtracking turns the rule N/A with a reason instead of hanging
the batch. Validation (`qa.rules.format`) already refuses patterns that are slow on a probe
text; the budget bounds whatever slips through.
"""

from __future__ import annotations

import math
import operator
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice, pairwise
from typing import Any

import numpy as np
import regex
from rapidfuzz import fuzz

from qa.rules.format import (
    RULE_TYPES,
    AllRule,
    AnyRule,
    MetricRule,
    NotRule,
    OrderRule,
    PhraseRule,
    RefRule,
    RegexRule,
    Scorecard,
    SemanticRule,
    SentimentRule,
    Window,
)
from qa.rules.text import (
    han_count,
    is_cjk,
    is_mandarin,
    kept_chars,
    normalize,
    normalize_many,
    phrase_sound_keys,
    role_of,
    sound_key,
    to_simplified,
)
from qa.schema import CallMetrics, Evidence, ItemOutcome, Role, Sentiment, Transcript, Utterance
from qa.scoring.metrics import METRICS

PASS, FAIL, NA = ItemOutcome.PASS, ItemOutcome.FAIL, ItemOutcome.NA
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
NEGATED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<", "==": "!="}
REGEX_TIMEOUT = 0.05  # seconds per regex rule and call, all utterances together
MAX_HITS = 20  # evidence entries kept per rule
# Shorter phrases match exactly only: one wrong letter in "hell" is "hello".
MIN_FUZZY, MIN_FUZZY_CJK = 8, 4
# Han characters a phrase needs to match by sound; a 3-character one only when it sounds the same.
MIN_SOUND, MIN_SOUND_NEAR = 3, 4
INF = math.inf
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])\s*|\s+$")


@dataclass
class RuleResult:
    outcome: ItemOutcome
    reason: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    # where the rule's condition occurred (a phrase said, a pattern found): the rule as an
    # event for windows and `order`, whatever the outcome
    hits: list[Evidence] = field(default_factory=list)
    # a fail only because something required was not heard (a phrase, a sentence): on a
    # transcript that may have lost or garbled words this is no proof it was not said
    missing: bool = False


def _fmt(t: float) -> str:
    return f"{t:.1f} s"


class _Speech:
    """One party's utterances as one normalised text, with offsets back to utterances."""

    def __init__(self, utts: list[tuple[Utterance, Role]], norms: list[str], cjk: bool) -> None:
        self.cjk = cjk
        self.sep = "\n" if cjk else " \n "
        self.utts = utts
        self.norms = norms
        self.offsets: list[int] = []
        pos = 0
        for n in self.norms:
            self.offsets.append(pos)
            pos += len(n) + len(self.sep)
        self.text = self.sep.join(self.norms)
        self.starts = [u.start for u, _ in utts]
        self.max_len = max((u.end - u.start for u, _ in utts), default=0.0)
        self._unit_times: dict[int, list[tuple[float, float]] | None] = {}
        self._squashed: str | None = None
        self._letters: list[int] | None = None
        self._sound: str | None = None

    def region(self, t0: float, t1: float) -> tuple[int, int]:
        """Character range of the utterances that overlap [t0, t1]."""
        lo = bisect_left(self.starts, t0 - self.max_len) if t0 > -INF else 0
        hi = bisect_right(self.starts, t1) if t1 < INF else len(self.utts)
        while lo < hi and self.utts[lo][0].end < t0:
            lo += 1
        if lo >= hi:
            return 0, 0
        end = self.offsets[hi - 1] + len(self.norms[hi - 1])
        return self.offsets[lo], end

    def _units(self, i: int) -> list[tuple[float, float]] | None:
        """Times of each normalised unit (word, or Chinese character) of utterance i."""
        if i not in self._unit_times:
            u = self.utts[i][0]
            norm = self.norms[i]
            expected = len(norm) if self.cjk else norm.count(" ") + 1 if norm else 0
            if not self.cjk and len(u.words) == expected:  # one token per word: the usual
                self._unit_times[i] = [(w.start, w.end) for w in u.words]
                return self._unit_times[i]
            times: list[tuple[float, float]] = []
            for w in u.words:
                count = kept_chars(w.text) if self.cjk else len(normalize(w.text, False).split())
                if count == 1:
                    times.append((w.start, w.end))
                elif self.cjk and count:
                    step = (w.end - w.start) / count
                    times.extend(
                        (w.start + k * step, w.start + (k + 1) * step) for k in range(count)
                    )
                else:
                    times.extend([(w.start, w.end)] * count)
            self._unit_times[i] = times if times and len(times) == expected else None
        return self._unit_times[i]

    def evidence(self, start: int, end: int, matched: str, score: float) -> Evidence:
        i = bisect_right(self.offsets, start) - 1
        u, role = self.utts[i]
        local_start, local_end = start - self.offsets[i], end - self.offsets[i]
        norm = self.norms[i]
        units = self._units(i)
        if units:
            if self.cjk:
                a, b = local_start, max(local_start, local_end - 1)
            else:
                a = norm.count(" ", 0, local_start)
                b = norm.count(" ", 0, max(local_start, local_end - 1))
            t0, t1 = units[min(a, len(units) - 1)][0], units[min(b, len(units) - 1)][1]
        else:
            span = u.end - u.start
            t0 = u.start + span * local_start / max(len(norm), 1)
            t1 = u.start + span * local_end / max(len(norm), 1)
        return Evidence(
            start=round(t0, 3),
            end=round(t1, 3),
            speaker=u.speaker,
            role=role,
            text=u.text,
            matched=matched,
            similarity=round(score / 100.0, 3),
        )

    # ---------------------------------------------------------------- phrase search

    def _bounded(self, i: int, j: int) -> bool:
        text = self.text
        return (i == 0 or text[i - 1] in " \n") and (j == len(text) or text[j] in " \n")

    def _snap(
        self, phrase: str, ds: int, de: int, threshold: float
    ) -> tuple[int, int, float] | None:
        """A fuzzy alignment snapped to whole words inside one utterance, re-scored."""
        text = self.text
        if self.cjk:
            if "\n" in text[ds:de]:
                return None
            return ds, de, fuzz.ratio(phrase, text[ds:de])
        left, right = ds, de
        while left > 0 and text[left - 1] not in " \n":
            left -= 1
        while right < len(text) and text[right] not in " \n":
            right += 1
        lefts = {left}
        rights = {right}
        if ds > left:
            nxt = text.find(" ", ds, de)
            if nxt != -1:
                lefts.add(nxt + 1)
        if de < right:
            prv = text.rfind(" ", ds, de)
            if prv != -1:
                rights.add(prv)
        best: tuple[int, int, float] | None = None
        for a in lefts:
            for b in rights:
                if b <= a or "\n" in text[a:b]:
                    continue
                score = fuzz.ratio(phrase, text[a:b])
                if score >= threshold and (best is None or score > best[2]):
                    best = (a, b, score)
        return best

    def find_exact(
        self, phrases: list[str], region: tuple[int, int], limit: int, stop_after: int | None = None
    ) -> list[tuple[int, int, str]]:
        """Exact whole-word occurrences of the normalised phrases, in text order; with
        `stop_after`, phrases after the one that brings that many are not searched."""
        lo, hi = region
        text = self.text
        out: list[tuple[int, int, str]] = []
        for phrase in phrases:
            if stop_after is not None and len(out) >= stop_after:
                break
            pos, n = lo, 0
            while n < limit:
                i = text.find(phrase, pos, hi)
                if i == -1:
                    break
                j = i + len(phrase)
                if self.cjk or self._bounded(i, j):
                    out.append((i, j, phrase))
                    n += 1
                pos = i + 1
        out.sort(key=lambda m: (m[0], -m[1]))  # the longest phrase at a position wins
        kept: list[tuple[int, int, str]] = []
        for m in out:
            if not kept or m[0] >= kept[-1][1]:
                kept.append(m)
        return kept

    def find_unspaced(
        self, phrase: str, region: tuple[int, int]
    ) -> Iterator[tuple[int, int, float]]:
        """The phrase's letters in a row with the word breaks ignored, from the start of a word
        to the end of one; a one-word phrase (a name) may run on into a glued word.

        Whisper writes a name it does not know as pieces or glued to the next word
        ("north wind", "northwindcalicam"); the letters are right, only the spacing is not,
        so this is an exact match, not a guess.
        """
        if self.cjk:
            return  # no word breaks to get wrong
        text = self.text
        if self._squashed is None:
            self._squashed = text.replace(" ", "")
        squashed = self._squashed
        target = phrase.replace(" ", "")
        glued_ok = " " not in phrase
        lo, hi = region
        k = squashed.find(target, lo - text.count(" ", 0, lo))
        while k != -1:
            a = self._unsquash(k)
            if a >= hi:
                break
            b = self._unsquash(k + len(target) - 1) + 1
            if b <= hi and (a == 0 or text[a - 1] in " \n"):
                while glued_ok and b < len(text) and text[b] not in " \n":
                    b += 1
                if b == len(text) or text[b] in " \n":
                    yield a, b, 100.0
            k = squashed.find(target, k + 1)

    def _unsquash(self, k: int) -> int:
        """Position in the text of the k-th letter of the text without spaces (built on the
        first hit only: most phrases are not there)."""
        if self._letters is None:
            self._letters = [i for i, ch in enumerate(self.text) if ch != " "]
        return self._letters[k]

    def find_by_sound(
        self, phrase: str, region: tuple[int, int], threshold: float
    ) -> Iterator[tuple[int, int, float]]:
        """Windows of the phrase's length in characters, inside one utterance, that sound like
        the normalised Mandarin phrase (see module docstring), left to right per reading.

        Sounds are compared position by position (initial with initial, final with final):
        a shifted window ("我们公司不" in "在我们公司") must not pass for a mishearing. Every
        character must keep its initial or its final (您 nin for 你 ni, not 理 li for 呀 ya),
        and the symbols that differ must leave the similarity at `threshold`. Candidates come
        from exact searches for parts of the phrase's sound: with k symbols wrong, one of k + 1
        parts is intact (cheap str.find, no window missed). Only asked for once the exact
        search has come up short, so the sound of the text is built here, once per party and
        call. Windows that are the phrase itself are left to the exact search.
        """
        if self._sound is None:
            self._sound = sound_key(self.text)
        sound, text = self._sound, self.text
        lo, hi = region
        n = len(phrase)
        size = 2 * n
        wrong = int(size * (100 - threshold) / 100 + 1e-9)
        if han_count(phrase) < MIN_SOUND_NEAR:
            wrong = 0  # a 3-character phrase must sound the same
        cuts = [size * k // (wrong + 1) for k in range(wrong + 2)]
        for key in phrase_sound_keys(phrase):
            starts: set[int] = set()
            for c0, c1 in pairwise(cuts):
                part = key[c0:c1]
                k = sound.find(part, 2 * lo + c0, 2 * hi - (size - c1))
                while k != -1:
                    if (k - c0) % 2 == 0:
                        starts.add((k - c0) // 2)
                    k = sound.find(part, k + 1, 2 * hi - (size - c1))
            for a in sorted(starts):
                window = text[a : a + n]
                if "\n" in window or window == phrase:
                    continue
                heard = sound[2 * a : 2 * a + size]
                differ = 0
                for c in range(0, size, 2):
                    same_initial, same_final = key[c] == heard[c], key[c + 1] == heard[c + 1]
                    if not (same_initial or same_final):
                        differ = size
                        break
                    differ += (not same_initial) + (not same_final)
                if differ <= wrong:
                    yield a, a + n, 100.0 * (1 - differ / size)

    def find_fuzzy(
        self, phrase: str, region: tuple[int, int], threshold: float
    ) -> Iterator[tuple[int, int, float]]:
        """Approximate occurrences of one normalised phrase, left to right."""
        pos, hi = region
        tries = 0
        while tries < 50 and hi - pos >= len(phrase):
            tries += 1
            res = fuzz.partial_ratio_alignment(phrase, self.text[pos:hi], score_cutoff=threshold)
            if res is None:
                return
            ds, de = pos + res.dest_start, pos + res.dest_end
            snapped = self._snap(phrase, ds, de, threshold)
            if snapped is not None:
                yield snapped
            pos = max(de, ds + 1)


class CallContext:
    """Everything the rules of one call share; see the module docstring."""

    def __init__(
        self,
        transcript: Transcript,
        scorecard: Scorecard,
        metrics: CallMetrics,
        *,
        encoder: Any = None,
        sentiment: Any = None,
    ) -> None:
        self.transcript = transcript
        self.scorecard = scorecard
        self.metrics = metrics
        self.encoder = encoder
        self.sentiment_model = sentiment
        self.cjk = is_cjk(transcript.language)
        self.mandarin = is_mandarin(transcript.language)
        self.duration = max(metrics.duration, transcript.duration)
        self.utts = sorted(
            ((u, role_of(u, transcript)) for u in transcript.utterances),
            key=lambda p: (p[0].start, p[0].end),
        )
        self._cache = scorecard._cache  # (pydantic's private-attribute access is slow)
        named = self._cache.get("named")
        if named is None:
            named = self._cache["named"] = scorecard.named_rules()
        self.named = named
        self._norms: list[str] | None = None
        self._speech: dict[Any, Any] = {}
        self._memo: dict[int, RuleResult] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._sentences: list[tuple[int, int, int]] | None = None
        self._sentiments: list[Sentiment] | None | bool = False  # False: not looked yet
        self._stack: list[int] = []

    # ---------------------------------------------------------------- shared, lazily

    def speech(self, speaker: str) -> _Speech:
        if speaker not in self._speech:
            if self._norms is None:
                self._norms = normalize_many([u.text for u, _ in self.utts], self.cjk)
            keep = [i for i, p in enumerate(self.utts) if speaker == "any" or p[1] == speaker]
            self._speech[speaker] = _Speech(
                [self.utts[i] for i in keep], [self._norms[i] for i in keep], self.cjk
            )
        return self._speech[speaker]

    def sentences(self) -> list[tuple[int, int, int]]:
        """(utterance index, start, end character) of every sentence of the call.

        Semantic rules compare sentences, not whole turns: an apology inside a long turn
        about something else is otherwise diluted below any useful threshold.
        """
        if self._sentences is None:
            self._sentences = []
            for i, (u, _) in enumerate(self.utts):
                pos = 0
                for m in _SENTENCE_END.finditer(u.text + " "):
                    if u.text[pos : m.start()].strip():
                        self._sentences.append((i, pos, m.start()))
                    pos = m.end()
        return self._sentences

    def vectors(self, rows: list[int]) -> np.ndarray:
        """Vectors of the given sentences (indices into `sentences()`); each sentence is
        encoded at most once per call, and only when some rule needs it."""
        todo = [k for k in rows if k not in self._vectors]
        if todo:
            sentences = self.sentences()
            texts = [
                self.utts[sentences[k][0]][0].text[sentences[k][1] : sentences[k][2]].strip()
                for k in todo
            ]
            vecs = np.asarray(self.encoder.encode(texts), dtype=np.float32)
            self._vectors.update(zip(todo, vecs, strict=True))
        return np.stack([self._vectors[k] for k in rows])

    def example_vectors(self, examples: list[str]) -> np.ndarray:
        key = ("examples", tuple(examples))
        cached = self._cache.get(key)
        if cached is None or cached[0] is not self.encoder:
            vecs = np.asarray(self.encoder.encode(list(examples)), dtype=np.float32)
            self._cache[key] = cached = (self.encoder, vecs)
        return cached[1]

    def sentiments(self) -> list[Sentiment] | None:
        """Per-utterance sentiment (aligned with self.utts): stored on the utterances, or
        computed once with the supplied model; None when neither is available."""
        if self._sentiments is False:
            stored = [u.sentiment for u, _ in self.utts]
            if all(s is not None for s in stored):
                self._sentiments = stored  # type: ignore[assignment]
            elif self.sentiment_model is not None:
                self._sentiments = list(
                    self.sentiment_model.score(
                        [u.text for u, _ in self.utts], self.transcript.language
                    )
                )
            else:
                self._sentiments = None
        return self._sentiments  # type: ignore[return-value]

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, rule: Any) -> RuleResult:
        key = id(rule)
        if key in self._memo:
            return self._memo[key]
        if key in self._stack:  # validation refuses cycles; this guards hand-built cards
            return RuleResult(NA, "rule refers to itself")
        self._stack.append(key)
        try:
            result = self._dispatch(rule)
        finally:
            self._stack.pop()
        if rule.id and result.reason and not isinstance(rule, AllRule | AnyRule):
            result.reason = f"{rule.id}: {result.reason}"
        self._memo[key] = result
        return result

    def _dispatch(self, rule: Any) -> RuleResult:
        evaluator = EVALUATORS.get(getattr(rule, "type", ""))
        if evaluator is None:
            raise TypeError(f"unknown rule {type(rule).__name__}")
        return evaluator(self, rule)

    def events(self, rule: Any) -> list[Evidence]:
        return sorted(self.evaluate(rule).hits, key=lambda e: e.start)

    def ranges(self, window: Window | None) -> list[tuple[float, float]] | str:
        """The time ranges a rule looks in, or the reason it cannot apply (N/A)."""
        if window is None:
            return [(-INF, INF)]
        if window.first is not None:
            return [(0.0, window.first)]
        if window.last is not None:
            return [(self.duration - window.last, INF)]
        within = window.within or INF
        each = isinstance(window.after or window.before, RefRule) and (
            (window.after or window.before).ref == "hold"
        )
        if window.after is not None and window.before is not None:
            starts = self.events(window.after)
            if not starts:
                return f"{_event_name(window.after)} did not happen"
            a = starts[0]
            ends = [e for e in self.events(window.before) if e.start >= a.end]
            if not ends:
                return (
                    f"{_event_name(window.before)} did not happen after {_event_name(window.after)}"
                )
            return [(a.end, ends[0].start)]
        event = window.after if window.after is not None else window.before
        occurrences = self.events(event)
        if not occurrences:
            return f"{_event_name(event)} did not happen"
        if not each:
            occurrences = occurrences[:1]
        if window.after is not None:
            return [(e.end, e.end + within) for e in occurrences]
        return [(e.start - within, e.start) for e in occurrences]

    def _range_evidence(self, t0: float, t1: float, note: str) -> Evidence:
        start = max(0.0, t0)
        end = min(self.duration, t1)
        return Evidence(start=round(start, 3), end=round(max(start, end), 3), note=note)

    def _presence(
        self,
        rule: Any,
        per_range: list[tuple[tuple[float, float], list[Evidence]]],
        what: str,
        example: str,
    ) -> RuleResult:
        """Outcome of a present/absent search given the hits in each range.

        `what` names the kind of match ("agent phrase"), `example` the first alternative, so
        a reason reads: no agent phrase like "thank you for calling" in the last 60 s.
        """
        hits = [e for _, found in per_range for e in found][:MAX_HITS]
        if rule.mode == "absent":
            if hits:
                more = f" and {len(hits) - 1} more" if len(hits) > 1 else ""
                return RuleResult(
                    FAIL, f'{what} "{hits[0].matched}" at {_fmt(hits[0].start)}{more}', hits, hits
                )
            return RuleResult(PASS, f"no {what} of the {len(_alternatives(rule))} listed", [], hits)
        need = getattr(rule, "min_count", 1)
        missing = [(rng, found) for rng, found in per_range if len(found) < need]
        if not missing:
            first = hits[0] if hits else None
            reason = f'{what} "{first.matched}" at {_fmt(first.start)}' if first else what
            return RuleResult(PASS, reason, hits[: max(need, 1) * len(per_range)], hits)
        evidence = []
        for (t0, t1), found in missing:
            where = (
                ""
                if t0 == -INF and t1 == INF
                else f" between {_fmt(max(0.0, t0))} and {_fmt(min(self.duration, t1))}"
            )
            count = f" (needed {need} times, found {len(found)})" if need > 1 else ""
            note = f'no {what} like "{example}"{where}{count}'
            evidence.append(self._range_evidence(t0, t1, note))
            evidence.extend(found)
        return RuleResult(FAIL, evidence[0].note or f"no {what}", evidence, hits, missing=True)

    def _phrase(self, rule: PhraseRule) -> RuleResult:
        ranges = self.ranges(rule.window)
        if isinstance(ranges, str):
            return RuleResult(NA, ranges)
        speech = self.speech(rule.speaker)
        threshold = rule.threshold or self.scorecard.fuzzy_threshold
        limit = MAX_HITS if rule.mode == "absent" else rule.min_count
        by_norm = self._phrase_norms(rule)
        per_range = []
        for t0, t1 in ranges:
            region = speech.region(t0, t1)
            found: list[Evidence] = []
            spans: list[tuple[int, int]] = []
            # exact first (str.find per phrase); a present rule stops at the first phrase
            # that satisfies it, and looks again through all phrases only if needed
            quick = rule.mode == "present"
            for stop_after in (limit, None) if quick else (None,):
                found, spans = [], []
                for a, b, norm in speech.find_exact(list(by_norm), region, limit, stop_after):
                    ev = speech.evidence(a, b, by_norm[norm], 100.0)
                    if ev.end >= t0 and ev.start <= t1:
                        found.append(ev)
                        spans.append((a, b))
                        if len(found) >= limit:
                            break
                if len(found) >= limit:
                    break
            by_sound = self.mandarin and (rule.fuzzy if rule.by_sound is None else rule.by_sound)
            if (rule.fuzzy or by_sound) and len(found) < limit:
                for norm, phrase in by_norm.items():
                    if len(found) >= limit:
                        break
                    hits: Iterator[tuple[int, int, float, str]] = iter(())
                    if rule.fuzzy and len(norm) >= (MIN_FUZZY_CJK if self.cjk else MIN_FUZZY):
                        hits = (
                            (a, b, score, phrase)
                            for a, b, score in chain(
                                speech.find_unspaced(norm, region),
                                speech.find_fuzzy(norm, region, threshold),
                            )
                        )
                    if by_sound and han_count(norm) >= MIN_SOUND:
                        # lazily: only asked for while the text matches leave the rule short
                        hits = chain(
                            hits,
                            (
                                (a, b, score, f"{phrase} (by sound: {speech.text[a:b]})")
                                for a, b, score in speech.find_by_sound(norm, region, threshold)
                            ),
                        )
                    for a, b, score, matched in hits:
                        if any(x < b and a < y for x, y in spans):
                            continue
                        ev = speech.evidence(a, b, matched, score)
                        if ev.end >= t0 and ev.start <= t1:
                            found.append(ev)
                            spans.append((a, b))
                            if len(found) >= limit:
                                break
            found.sort(key=lambda e: e.start)
            per_range.append(((t0, t1), found))
        who = "" if rule.speaker == "any" else f"{rule.speaker} "
        return self._presence(rule, per_range, f"{who}phrase", rule.phrases[0])

    def _phrase_norms(self, rule: PhraseRule) -> dict[str, str]:
        """Normalised phrase -> phrase as written, cached per scorecard."""
        key = ("phrases", id(rule), self.cjk)
        cached = self._cache.get(key)
        if cached is None:
            cached = {}
            for phrase in rule.phrases:
                cached.setdefault(normalize(phrase, self.cjk), phrase)
            cached.pop("", None)
            self._cache[key] = cached
        return cached

    def _regex(self, rule: RegexRule) -> RuleResult:
        """Matches inside single utterances: a match never runs on into the next turn, so
        another speaker's words cannot become this speaker's evidence. One time budget
        (`REGEX_TIMEOUT`) bounds the rule over the whole call."""
        ranges = self.ranges(rule.window)
        if isinstance(ranges, str):
            return RuleResult(NA, ranges)
        key = ("regex", rule.pattern, rule.ignore_case)
        pattern = self._cache.get(key)
        if pattern is None:
            flags = regex.IGNORECASE if rule.ignore_case else 0
            pattern = self._cache[key] = regex.compile(rule.pattern, flags)
        texts, utts = self._raw(rule.speaker)
        deadline = time.perf_counter() + REGEX_TIMEOUT
        matches: dict[int, list[tuple[int, int, str]]] = {}  # per utterance, searched once
        per_range = []
        for t0, t1 in ranges:
            found: list[Evidence] = []
            for i, (u, role) in enumerate(utts):
                if u.end < t0 or u.start > t1:
                    continue
                if i not in matches:
                    left = deadline - time.perf_counter()
                    try:
                        if left <= 0:
                            raise TimeoutError
                        matches[i] = [
                            (m.start(), m.end(), m.group(0))
                            for m in islice(pattern.finditer(texts[i], timeout=left), MAX_HITS)
                        ]
                    except TimeoutError:
                        return RuleResult(
                            NA,
                            f"pattern {rule.pattern!r} took too long "
                            "(catastrophic backtracking?); rewrite it",
                        )
                n = max(len(u.text), 1)
                for a, b, matched in matches[i]:
                    found.append(
                        Evidence(
                            start=round(_time_at(u, a / n), 3),
                            end=round(_time_at(u, b / n), 3),
                            speaker=u.speaker,
                            role=role,
                            text=u.text,
                            matched=matched,
                        )
                    )
                if len(found) >= MAX_HITS:
                    break
            per_range.append(((t0, t1), found[:MAX_HITS]))
        return self._presence(rule, per_range, "pattern match", rule.pattern)

    def _raw(self, speaker: str) -> tuple[list[str], list[tuple[Utterance, Role]]]:
        """A party's utterance texts (Chinese in Simplified), one string per utterance."""
        key = ("raw", speaker)
        if key not in self._speech:
            utts = [p for p in self.utts if speaker == "any" or p[1] == speaker]
            texts = [
                (to_simplified(u.text) if self.cjk else u.text).replace("\n", " ") for u, _ in utts
            ]
            self._speech[key] = (texts, utts)  # type: ignore[assignment]
        return self._speech[key]  # type: ignore[return-value]

    def _ref(self, rule: RefRule) -> RuleResult:
        if rule.ref == "hold":
            holds = [
                Evidence(start=h.start, end=h.end, note=f"hold {h.duration:.1f} s")
                for h in self.metrics.holds
            ]
            if not holds:
                return RuleResult(NA, "no hold in this call")
            return RuleResult(PASS, f"{len(holds)} hold(s)", holds, holds)
        target = self.named.get(rule.ref)
        if target is None:
            return RuleResult(NA, f"unknown rule {rule.ref!r}")
        return self.evaluate(target)

    def _order(self, rule: OrderRule) -> RuleResult:
        first, then = self.events(rule.first), self.events(rule.then)
        a_name, b_name = _event_name(rule.first), _event_name(rule.then)
        if not then:
            outcome = PASS if rule.when_then_absent == "pass" else NA
            return RuleResult(outcome, f"{b_name} did not happen")
        b = then[0]
        if not first:
            ev = b.model_copy(update={"note": f"{b_name} at {_fmt(b.start)} without {a_name}"})
            return RuleResult(FAIL, ev.note, [ev], [], missing=True)
        a = first[0]
        if a.start < b.start:
            return RuleResult(
                PASS,
                f"{a_name} at {_fmt(a.start)} before {b_name} at {_fmt(b.start)}",
                [a, b],
                [a, b],
            )
        ev = b.model_copy(
            update={"note": f"{b_name} at {_fmt(b.start)} before {a_name} at {_fmt(a.start)}"}
        )
        return RuleResult(FAIL, ev.note, [ev, a], [a, b])

    def _semantic(self, rule: SemanticRule) -> RuleResult:
        if self.encoder is None:
            return RuleResult(NA, "no sentence encoder supplied for semantic rules")
        ranges = self.ranges(rule.window)
        if isinstance(ranges, str):
            return RuleResult(NA, ranges)
        sentences = self.sentences()
        idx = [
            k
            for k, (i, _, _) in enumerate(sentences)
            if rule.speaker == "any" or self.utts[i][1] == rule.speaker
        ]
        what = "sentence similar to an example"
        if not idx:
            return self._presence(rule, [(rng, []) for rng in ranges], what, rule.examples[0])
        sims = self.vectors(idx) @ self.example_vectors(rule.examples).T
        best = sims.argmax(axis=1)
        per_range = []
        closest: Evidence | None = None
        for t0, t1 in ranges:
            found = []
            for row, k in enumerate(idx):
                i, a, b = sentences[k]
                u, role = self.utts[i]
                n = max(len(u.text), 1)
                start, end = _time_at(u, a / n), _time_at(u, b / n)
                if end < t0 or start > t1:
                    continue
                sim = float(sims[row, best[row]])
                ev = Evidence(
                    start=round(start, 3),
                    end=round(end, 3),
                    speaker=u.speaker,
                    role=role,
                    text=u.text,
                    matched=rule.examples[best[row]],
                    similarity=round(sim, 3),
                )
                if sim >= rule.threshold:
                    found.append(ev)
                elif closest is None or sim > (closest.similarity or 0.0):
                    closest = ev
            per_range.append(((t0, t1), found))
        result = self._presence(rule, per_range, what, rule.examples[0])
        if result.outcome == FAIL and rule.mode == "present" and closest is not None:
            result.evidence.append(
                closest.model_copy(
                    update={
                        "note": f"closest sentence: similarity {closest.similarity:.2f} < "
                        f"{rule.threshold:.2f}"
                    }
                )
            )
        return result

    def _metric(self, rule: MetricRule) -> RuleResult:
        metric = METRICS[rule.metric]
        role = rule.role or "agent"
        value = metric.value(self.metrics, role)
        segments = metric.segments(self.metrics, role)
        label = metric.label + (f" ({role})" if metric.per_role else "")
        if value is None:
            return RuleResult(NA, f"{label}: not measurable in this call")
        ok = OPS[rule.op](value, rule.threshold)
        sign = rule.op if ok else NEGATED[rule.op]
        note = f"{label} {value:g} {sign} {rule.threshold:g}"
        if metric.longest and rule.op in ("<", "<="):
            shown = [s for s in segments if not OPS[rule.op](s.duration, rule.threshold)]
        else:
            shown = list(segments)
        kind = metric.kind or metric.label
        evidence = [
            Evidence(start=s.start, end=s.end, note=f"{kind} {s.duration:.1f} s")
            for s in shown[:MAX_HITS]
        ]
        if not evidence or ok:
            evidence.insert(0, Evidence(start=0.0, end=round(self.duration, 3), note=note))
        return RuleResult(PASS if ok else FAIL, note, evidence, evidence)

    def _sentiment(self, rule: SentimentRule) -> RuleResult:
        scores = self.sentiments()
        if scores is None:
            return RuleResult(NA, "no sentiment available (no model supplied, none stored)")
        ranges = self.ranges(rule.window)
        if isinstance(ranges, str):
            return RuleResult(NA, ranges)
        chosen = [
            (u, r, s)
            for (u, r), s in zip(self.utts, scores, strict=True)
            if r == rule.role and any(u.end >= t0 and u.start <= t1 for t0, t1 in ranges)
        ]
        if not chosen:
            return RuleResult(NA, f"no {rule.role} speech in the window")
        values = [s.score for _, _, s in chosen]
        agg = rule.aggregate
        if agg == "mean":
            value = sum(values) / len(values)
        elif agg == "min":
            value = min(values)
        elif agg == "max":
            value = max(values)
        elif agg == "last":
            value = values[-1]
        else:
            value = sum(1 for _, _, s in chosen if s.label == "negative") / len(chosen)
        ok = OPS[rule.op](value, rule.threshold)
        note = (
            f"{rule.role} sentiment {agg} {value:.2f} "
            f"{rule.op if ok else NEGATED[rule.op]} {rule.threshold:g}"
        )
        ordered = sorted(chosen, key=lambda c: c[2].score, reverse=rule.op in ("<", "<="))
        evidence = [
            Evidence(
                start=u.start,
                end=u.end,
                speaker=u.speaker,
                role=r,
                text=u.text,
                note=f"sentiment {s.score:+.2f} ({s.label})",
            )
            for u, r, s in ordered[:3]
        ]
        evidence.insert(0, Evidence(start=chosen[0][0].start, end=chosen[-1][0].end, note=note))
        return RuleResult(PASS if ok else FAIL, note, evidence, evidence)

    def _all(self, rule: AllRule) -> RuleResult:
        results = [self.evaluate(r) for r in rule.rules]
        hits = [h for r in results for h in r.hits]
        failed = [r for r in results if r.outcome == FAIL]
        if failed:
            return RuleResult(
                FAIL,
                "; ".join(r.reason for r in failed),
                [e for r in failed for e in r.evidence],
                hits,
                missing=all(r.missing for r in failed),
            )
        passed = [r for r in results if r.outcome == PASS]
        if not passed:
            return RuleResult(NA, "; ".join(r.reason for r in results), [], hits)
        return RuleResult(
            PASS, "; ".join(r.reason for r in passed), [e for r in passed for e in r.evidence], hits
        )

    def _any(self, rule: AnyRule) -> RuleResult:
        results = [self.evaluate(r) for r in rule.rules]
        hits = [h for r in results for h in r.hits]
        for r in results:
            if r.outcome == PASS:
                return RuleResult(PASS, r.reason, r.evidence, hits)
        failed = [r for r in results if r.outcome == FAIL]
        if failed:
            return RuleResult(
                FAIL,
                "; ".join(r.reason for r in failed),
                [e for r in failed for e in r.evidence],
                hits,
                missing=all(r.missing for r in failed),
            )
        return RuleResult(NA, "; ".join(r.reason for r in results), [], hits)

    def _not(self, rule: NotRule) -> RuleResult:
        inner = self.evaluate(rule.rule)
        if inner.outcome == NA:
            return RuleResult(NA, inner.reason)
        outcome = FAIL if inner.outcome == PASS else PASS
        return RuleResult(
            outcome, f"not ({inner.reason})", inner.evidence if outcome == FAIL else [], []
        )


# Rule type (the `type` key of the format) -> its evaluator: a new rule type is one entry.
EVALUATORS: dict[str, Callable[[CallContext, Any], RuleResult]] = {
    "phrase": CallContext._phrase,
    "regex": CallContext._regex,
    "order": CallContext._order,
    "semantic": CallContext._semantic,
    "metric": CallContext._metric,
    "sentiment": CallContext._sentiment,
    "ref": CallContext._ref,
    "all": CallContext._all,
    "any": CallContext._any,
    "not": CallContext._not,
}
if set(EVALUATORS) != set(RULE_TYPES):  # a rule type the format accepts but none evaluates
    raise RuntimeError(
        f"rule types without an evaluator: "
        f"{sorted(set(RULE_TYPES) - set(EVALUATORS))}; evaluators of no rule "
        f"type: {sorted(set(EVALUATORS) - set(RULE_TYPES))}"
    )


def _alternatives(rule: Any) -> list[str]:
    return getattr(rule, "phrases", None) or getattr(rule, "examples", None) or [rule.pattern]


def _event_name(rule: Any) -> str:
    if isinstance(rule, RefRule):
        return rule.ref
    return rule.id or f"{rule.type} rule"


def _time_at(u: Utterance, frac: float) -> float:
    """Time at a fraction of an utterance's text, by its words' characters when known."""
    if u.words:
        total = sum(len(w.text) for w in u.words) or 1
        target = frac * total
        acc = 0
        for w in u.words:
            if acc + len(w.text) >= target:
                inside = (target - acc) / max(len(w.text), 1)
                return w.start + (w.end - w.start) * inside
            acc += len(w.text)
        return u.words[-1].end
    return u.start + (u.end - u.start) * frac
