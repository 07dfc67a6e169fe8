"""PII redaction in transcripts (and, optionally, the matching audio spans).

Calls carry PII the way people say it: "four five five six, double seven ...", "john dot
smith at example dot com", "身份证号一一零一...". Detection therefore works on a token
stream in which number words, digits and Chinese numerals all become digits, so a card
number split across words (or across Whisper's word tokens) is one candidate. Every
number is validated where a check exists (Luhn, ISO 7064 MOD 11-2, IBAN mod-97) and
otherwise needs a cue nearby ("security code", "account number"), so prices, dates and
"two minutes" stay readable.

Redaction replaces a span with a typed placeholder ("[CARD_NUMBER]") in the utterance
text and collapses the span's words into one placeholder word that keeps the span's start
and end, so the audio span can be silenced and the evidence timeline stays intact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qa.asr.utterances import join_text
from qa.errors import QAError
from qa.schema import Redaction, Transcript, Utterance, Word

KINDS = ("card_number", "cvv", "phone", "email", "national_id", "bank_account")
# Overlapping candidates: the more specific (validated) kind wins.
_PRIORITY = {k: i for i, k in enumerate(
    ("email", "national_id", "card_number", "bank_account", "phone", "cvv"))}


def placeholder(kind: str) -> str:
    return f"[{kind.upper()}]"


# --------------------------------------------------------------------------- validators


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_number_valid(digits: str) -> bool:
    """13-19 digits, a card network's leading digit (2-6) and a valid Luhn check digit."""
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


_CN_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CN_ID_CHECK = "10X98765432"


def chinese_id_check_char(first17: str) -> str:
    """ISO 7064 MOD 11-2 check character of a PRC resident identity number."""
    return _CN_ID_CHECK[sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS,
                                                        strict=True)) % 11]


def chinese_id_valid(value: str) -> bool:
    value = value.upper()
    if len(value) != 18 or not value[:17].isdigit() or value[0] == "0":
        return False
    month, day = int(value[10:12]), int(value[12:14])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return False
    return chinese_id_check_char(value[:17]) == value[17]


# Lengths per country (ISO 13616 registry, the common ones; others need 15-34 chars).
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "QA": 29, "RO": 24,
    "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}


def iban_valid(value: str) -> bool:
    value = value.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", value):
        return False
    expected = _IBAN_LENGTHS.get(value[:2])
    if expected is not None and len(value) != expected:
        return False
    rearranged = value[4:] + value[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_valid(digits: str) -> bool:
    """US SSN rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return (len(digits) == 9 and digits.isdigit() and digits[:3] not in ("000", "666")
            and digits[0] != "9" and digits[3:5] != "00" and digits[5:] != "0000")


# --------------------------------------------------------------------------- tokens

_DIGIT_WORDS = {
    "zero": "0", "oh": "0", "o": "0", "nought": "0", "nil": "0", "one": "1", "two": "2",
    "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9",
}
_CN_DIGITS = {"零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2",
              "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_REPEAT = {"double": 2, "triple": 3}
_SEPARATORS = frozenset("-,./()+")
_TOKEN_RE = re.compile(r"\d+|[A-Za-z]+|[零〇洞一幺二两三四五六七八九叉]|\S")


@dataclass
class _Token:
    start: int
    end: int
    text: str


@dataclass
class _Unit:
    """A run element: its digits and where it lies in the text."""

    digits: str
    start: int
    end: int
    sep_before: str  # separator characters between this unit and the previous one


@dataclass
class _Span:
    kind: str
    start: int  # character offsets in the detection text
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(text)]


def _digit_value(token: _Token) -> str | None:
    if token.text.isdigit() and token.text.isascii():
        return token.text
    if token.text in _CN_DIGITS:
        return _CN_DIGITS[token.text]
    return _DIGIT_WORDS.get(token.text.lower())


def _numeric_runs(text: str) -> list[list[_Unit]]:
    """Maximal runs of spoken or written digits, separators allowed between them.

    "o" and "oh" count as zero only next to other digits, so "oh, I see" stays text.
    A trailing X/x after 17 digits is kept for Chinese resident IDs.
    """
    tokens = _tokens(text)
    runs: list[list[_Unit]] = []
    current: list[_Unit] = []
    sep = ""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        low = tok.text.lower()
        value = _digit_value(tok)
        nxt = _digit_value(tokens[i + 1]) if i + 1 < len(tokens) else None
        if low in _REPEAT and nxt is not None and len(nxt) == 1:
            current.append(_Unit(nxt * _REPEAT[low], tok.start, tokens[i + 1].end, sep))
            sep = ""
            i += 2
            continue
        if value is not None:
            current.append(_Unit(value, tok.start, tok.end, sep))
            sep = ""
        elif low in ("x", "叉") and current and sum(len(u.digits) for u in current) >= 17:
            current.append(_Unit("X", tok.start, tok.end, sep))
            sep = ""
        elif tok.text in _SEPARATORS and current:
            sep += tok.text
        else:
            if current:
                runs.append(current)
            current, sep = [], ""
        i += 1
    if current:
        runs.append(current)
    trimmed = [_trim_oh(text, run) for run in runs]
    return [run for run in trimmed if run]


def _trim_oh(text: str, run: list[_Unit]) -> list[_Unit]:
    """'oh'/'o' alone, or opening a run before a comma ("oh, four five..."), is an
    interjection, not a zero."""
    def is_oh(u: _Unit) -> bool:
        return text[u.start : u.end].lower() in ("o", "oh")

    if len(run) == 1:
        return [] if is_oh(run[0]) else run
    while len(run) > 1 and is_oh(run[0]) and "," in run[1].sep_before:
        run = run[1:]
    return run


def _windows(run: list[_Unit]) -> Iterable[tuple[int, int, str]]:
    """Contiguous sub-runs (i, j, digits), longest first, for validated kinds."""
    n = len(run)
    subs = []
    for i in range(n):
        digits = ""
        for j in range(i, n):
            digits += run[j].digits
            if len(digits) > 19:
                break
            subs.append((i, j + 1, digits))
    return sorted(subs, key=lambda s: (-len(s[2]), s[0]))


# --------------------------------------------------------------------------- cues

_CVV_CUE = re.compile(
    r"security code|security number|\bcv[cv]2?\b|\bcvv2\b|card verification|"
    r"(?:three|3|four|4)[- ]digits?\b[^.?!]{0,20}\bback|digits on the back|back of (?:the|your) "
    r"card|安全码|验证码|卡背面|背面的?(?:三|3)位", re.IGNORECASE)
_PHONE_CUE = re.compile(
    r"\b(?:phone|mobile|cell|telephone|landline|callback|call ?back|call me|reach me|"
    r"contact number|my number|your number|best number|number to call|fax)\b|电话|手机|联系方式",
    re.IGNORECASE)
_ACCOUNT_CUE = re.compile(
    r"\b(?:account|acct|a/c)\s*(?:number|no\b|#)|\biban\b|\brouting(?: number)?\b|"
    r"\bsort code\b|\bbank account\b|账号|账户|帐号|帐户|银行卡号?|卡号",
    re.IGNORECASE)
_SSN_CUE = re.compile(r"\bsocial security\b|\bssn\b|\bsocial\b", re.IGNORECASE)
_CN_ID_CUE = re.compile(r"身份证|\bID number\b|\bidentity\b|\bID card\b", re.IGNORECASE)

CUE_WINDOW = 60  # characters before a number in which its cue must appear


def _cue_before(pattern: re.Pattern[str], text: str, start: int, context: str) -> bool:
    """A cue in the text just before `start`, or at the end of the previous utterance
    when the number opens this one (the agent asks, the customer answers)."""
    if pattern.search(text[max(0, start - CUE_WINDOW) : start]):
        return True
    return start <= 20 and bool(context) and bool(pattern.search(context[-120:]))


# --------------------------------------------------------------------------- detectors

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TLDS = ("com|net|org|edu|gov|co|uk|us|ca|au|de|fr|es|it|nl|pt|br|cn|jp|in|io|info|biz|me|"
         "ie|ch|at|be|se|no|dk|fi|pl|mx|nz")
_SPOKEN_SEP = r"(?:\s*\.\s*|\s+(?:dot|point)\s+)"
_SPOKEN_EMAIL_RE = re.compile(
    r"\b[a-z0-9]+(?:(?:\s*[._-]\s*|\s+(?:dot|underscore|dash|hyphen)\s+)[a-z0-9]+)*"
    r"(?:\s*@\s*|\s+at\s+)"
    rf"[a-z0-9-]+(?:{_SPOKEN_SEP}[a-z0-9-]+)*{_SPOKEN_SEP}(?:{_TLDS})\b",
    re.IGNORECASE)
_SSN_RE = re.compile(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b")
_NINO_RE = re.compile(
    r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")
_IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,32}")
_PHONE_FORMAT_RE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}(?!\w)")


def _regex_spans(text: str) -> list[_Span]:
    spans: list[_Span] = []
    for m in _EMAIL_RE.finditer(text):
        spans.append(_Span("email", m.start(), m.end()))
    for m in _SPOKEN_EMAIL_RE.finditer(text):
        spans.append(_Span("email", m.start(), m.end()))
    for m in _SSN_RE.finditer(text):
        if ssn_valid("".join(m.groups())):
            spans.append(_Span("national_id", m.start(), m.end()))
    for m in _NINO_RE.finditer(text):
        spans.append(_Span("national_id", m.start(), m.end()))
    for m in _IBAN_RE.finditer(text):
        # the pattern may run into following capitals; take the longest valid prefix
        raw = m.group()
        for end in range(len(raw), 14, -1):
            if raw[end - 1] != " " and iban_valid(raw[:end]):
                spans.append(_Span("bank_account", m.start(), m.start() + end))
                break
    return spans


def _number_spans(text: str, context: str) -> list[_Span]:
    spans: list[_Span] = []
    for run in _numeric_runs(text):
        taken = [False] * len(run)

        def free(i: int, j: int, taken: list[bool] = taken) -> bool:
            return not any(taken[i:j])

        def take(kind: str, i: int, j: int, run: list[_Unit] = run,
                 taken: list[bool] = taken, start: int | None = None) -> None:
            spans.append(_Span(kind, run[i].start if start is None else start, run[j - 1].end))
            for k in range(i, j):
                taken[k] = True

        windows = list(_windows(run))
        # validated kinds first: Chinese resident ID, then payment cards
        for i, j, digits in windows:
            if free(i, j) and len(digits) == 18 and chinese_id_valid(digits):
                take("national_id", i, j)
        for i, j, digits in windows:
            if free(i, j) and card_number_valid(digits):
                take("card_number", i, j)
        # the remaining parts of the run, grouped back into contiguous pieces
        pieces: list[tuple[int, int]] = []
        k = 0
        while k < len(run):
            if taken[k]:
                k += 1
                continue
            m = k
            while m < len(run) and not taken[m]:
                m += 1
            pieces.append((k, m))
            k = m
        for i, j in pieces:
            digits = "".join(u.digits for u in run[i:j]).replace("X", "")
            start = run[i].start
            if start > 0 and text[start - 1] in "(+":
                start -= 1  # "+44 ..." and "(555) ..." belong to the number
            raw = text[start : run[j - 1].end]
            n = len(digits)
            if n == 9 and ssn_valid(digits) and _cue_before(_SSN_CUE, text, start, context):
                take("national_id", i, j)
            elif 3 <= n <= 4 and _cue_before(_CVV_CUE, text, start, context):
                take("cvv", i, j)
            elif 6 <= n <= 20 and _cue_before(_ACCOUNT_CUE, text, start, context):
                take("bank_account", i, j)
            elif _is_phone(digits, raw) or (7 <= n <= 15 and _cue_before(
                    _PHONE_CUE, text, start, context)):
                take("phone", i, j, start=start)
            elif n == 18 and _cue_before(_CN_ID_CUE, text, start, context):
                take("national_id", i, j)  # an ID said with a slip in its check digit
    return spans


def _is_phone(digits: str, raw: str) -> bool:
    """Phone numbers recognisable without a cue: international, Chinese mobile, NANP, formatted."""
    n = len(digits)
    if raw.lstrip().startswith("+") and 8 <= n <= 15:
        return True
    if n == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        return True  # Chinese mobile
    if n == 11 and digits[0] == "0" and digits[1] in "1235789":
        return True  # UK national format 07xxx / 01xxx / 02xxx
    if n == 10 and re.fullmatch(r"[2-9]\d{2}[2-9]\d{6}", digits):
        return bool(_PHONE_FORMAT_RE.search(raw))  # NANP written with separators
    return bool(10 <= n <= 13 and _PHONE_FORMAT_RE.fullmatch(raw.strip()))


def find_pii(text: str, *, context: str = "", kinds: Iterable[str] | None = None
             ) -> list[tuple[str, int, int]]:
    """(kind, start, end) character spans of PII in `text`, non-overlapping, in order.

    `context` is the previous utterance: a cue there ("what's the security code?") applies
    to a number that opens this one.
    """
    wanted = set(KINDS if kinds is None else kinds)
    candidates = [s for s in _regex_spans(text) + _number_spans(text, context)
                  if s.kind in wanted]
    candidates.sort(key=lambda s: (_PRIORITY[s.kind], -s.length, s.start))
    chosen: list[_Span] = []
    for span in candidates:
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    return [(s.kind, s.start, s.end) for s in sorted(chosen, key=lambda s: s.start)]


# --------------------------------------------------------------------------- transcripts


def _replace_text(text: str, spans: list[tuple[str, int, int]]) -> str:
    for kind, start, end in sorted(spans, key=lambda s: -s[1]):
        text = text[:start] + placeholder(kind) + text[end:]
    return text


def _redact_words(words: list[Word], spans: list[tuple[str, int, int]]
                  ) -> tuple[list[Word], list[tuple[str, float, float]]]:
    """Collapse the words each span touches into one placeholder word with the span's times."""
    offsets = []
    pos = 0
    for w in words:
        offsets.append((pos, pos + len(w.text)))
        pos += len(w.text)
    out: list[Word] = []
    times: list[tuple[str, float, float]] = []
    i = 0
    span_iter = iter(sorted(spans, key=lambda s: s[1]))
    span = next(span_iter, None)
    while i < len(words):
        if span is None or offsets[i][1] <= span[1]:
            out.append(words[i])
            i += 1
            continue
        kind, s_start, s_end = span
        j = i
        while j < len(words) and offsets[j][0] < s_end:
            j += 1
        group = words[i:j]
        first_off, last_off = offsets[i], offsets[j - 1]
        # text of the first and last words outside the span (a leading space, "is:", ".")
        prefix = words[i].text[: max(0, s_start - first_off[0])]
        suffix = words[j - 1].text[max(0, s_end - last_off[0]):] if s_end < last_off[1] else ""
        text = f"{prefix}{placeholder(kind)}{suffix}"
        out.append(Word(start=group[0].start, end=max(w.end for w in group), text=text,
                        probability=min(w.probability for w in group),
                        speaker=group[0].speaker, channel=group[0].channel))
        times.append((kind, group[0].start, max(w.end for w in group)))
        i = j
        span = next(span_iter, None)
        while span is not None and offsets[i - 1][1] > span[1]:
            span = next(span_iter, None)  # a second span inside the same words
    return out, times


def redact_utterance(utterance: Utterance, index: int, *, context: str = "",
                     kinds: Iterable[str] | None = None) -> tuple[Utterance, list[Redaction]]:
    """A redacted copy of one utterance and the redactions it recorded."""
    kinds = list(KINDS if kinds is None else kinds)
    if not utterance.words:
        spans = find_pii(utterance.text, context=context, kinds=kinds)
        records = [Redaction(kind=k, start=utterance.start, end=utterance.end,
                             utterance_index=index, placeholder=placeholder(k))
                   for k, _, _ in spans]
        return utterance.model_copy(update={"text": _replace_text(utterance.text, spans)}), records
    raw = "".join(w.text for w in utterance.words)
    spans = find_pii(raw, context=context, kinds=kinds)
    words, times = _redact_words(utterance.words, spans)
    if join_text(utterance.words) == utterance.text:
        text = join_text(words)
    else:  # text was edited after ASR (e.g. script conversion): redact it on its own
        text = _replace_text(utterance.text, find_pii(utterance.text, context=context,
                                                      kinds=kinds))
    records = [Redaction(kind=k, start=s, end=e, utterance_index=index,
                         placeholder=placeholder(k)) for k, s, e in times]
    return utterance.model_copy(update={"text": text, "words": words}), records


def redact_transcript(transcript: Transcript, *, kinds: Iterable[str] | None = None
                      ) -> Transcript:
    """A new transcript with PII replaced in text and words, and the redactions recorded."""
    kinds = list(KINDS if kinds is None else kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise QAError(f"unknown redaction kind(s) {unknown}; known: {list(KINDS)}")
    utterances: list[Utterance] = []
    redactions = list(transcript.redactions)
    previous = ""
    for index, utterance in enumerate(transcript.utterances):
        redacted, records = redact_utterance(utterance, index, context=previous, kinds=kinds)
        utterances.append(redacted)
        redactions.extend(records)
        previous = utterance.text
    return transcript.model_copy(update={"utterances": utterances, "redactions": redactions},
                                 deep=True)


def redact_audio(samples: np.ndarray, sample_rate: int, redactions: Iterable[Redaction],
                 pad: float = 0.1, *, axis: int = -1) -> np.ndarray:
    """A copy of `samples` with each redacted span (plus `pad` seconds) silenced.

    `axis` is the time axis for multi-channel arrays; the input is never modified.
    """
    if sample_rate <= 0:
        raise QAError(f"sample rate must be positive, got {sample_rate}")
    out = np.array(samples, copy=True)
    n = out.shape[axis]
    for r in redactions:
        a = max(0, int(np.floor((r.start - pad) * sample_rate)))
        b = min(n, int(np.ceil((r.end + pad) * sample_rate)))
        if b > a:
            index = [slice(None)] * out.ndim
            index[axis] = slice(a, b)
            out[tuple(index)] = 0
    return out
