"""PII redaction in transcripts (and, optionally, the matching audio spans).

Calls carry PII the way people say it and the way Whisper writes it down: "4532, one, four,
double eight ...", "oh seven seven double oh", "john dot smith at gmail dot com", "G B eight
two W E S T ...", "身份证号一一零一...". Detection therefore works on token streams in which
number words ("twenty-seven" included), digits and Chinese numerals become digits, and
spelled letters become letters, so a number split across words, commas, hesitations or
Whisper's word tokens is one candidate. Every number is validated where a check exists
(Luhn, ISO 7064 MOD 11-2, IBAN mod-97) and otherwise needs a cue nearby ("security code",
"card number"); the nearest cue decides the kind, and a nearer "order number" or
"reference" keeps the number readable, so prices, dates and order numbers stay.

A card read aloud often fails Luhn once transcribed (one misheard digit), so after a card
cue any 12-19 digit run is a card. A redacted read-out must leave nothing of itself
readable: digit groups left over next to it ("453, sorry, 4532 ...") join its span.
`redact_transcript` reads a speaker's consecutive utterances as one text (skipping the
other party's "okay" in between), so a number split over two utterances is found, and each
utterance it touches gets its own `Redaction` with the times of its own words.

Redaction replaces a span with a typed placeholder ("[CARD_NUMBER]") in the utterance
text and collapses the span's words into one placeholder word that keeps the span's start
and end, so the audio span can be silenced and the evidence timeline stays intact.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from qa.asr.utterances import join_text
from qa.errors import QAError
from qa.schema import Redaction, Transcript, Utterance, Word

KINDS = ("card_number", "card_expiry", "cvv", "phone", "email", "national_id", "bank_account")
# Kinds whose read-out is long: digit groups left readable next to one are absorbed.
LONG_KINDS = frozenset({"card_number", "phone", "national_id", "bank_account"})

# Strength of a detection: overlapping candidates go to the stronger, then the longer.
_EMAIL, _CHECKSUM, _VALID, _CUED, _PATTERN = range(5)


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
    return _CN_ID_CHECK[sum(int(c) * w for c, w in zip(first17, _CN_ID_WEIGHTS, strict=True)) % 11]


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
    "AD": 24,
    "AE": 23,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BR": 29,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "SA": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
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
    return (
        len(digits) == 9
        and digits.isdigit()
        and digits[:3] not in ("000", "666")
        and digits[0] != "9"
        and digits[3:5] != "00"
        and digits[5:] != "0000"
    )


def expiry_valid(digits: str) -> bool:
    """A card expiry said as M YY, MM YY or MM YYYY ("oh nine twenty-seven" -> 0927)."""
    if not digits.isdigit() or len(digits) not in (3, 4, 6):
        return False
    split = 1 if len(digits) == 3 else 2
    month, year = int(digits[:split]), digits[split:]
    return 1 <= month <= 12 and (len(year) == 2 or year.startswith("20"))


_NINO_STRICT = re.compile(r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]")
_NINO_LOOSE = re.compile(r"[A-Z]{2}\d{6}[A-D]?")  # after a cue: "QQ 12 34 56 C", letter lost


# --------------------------------------------------------------------------- word tables

_DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "nought": "0",
    "nil": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
_TEEN_WORDS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_TENS_WORDS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
# every English word that says a number here (other modules treat them as not a topic)
SPOKEN_NUMBER_WORDS = frozenset([*_DIGIT_WORDS, *_TEEN_WORDS, *_TENS_WORDS])
_CN_DIGITS = {
    "零": "0",
    "〇": "0",
    "洞": "0",
    "一": "1",
    "幺": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}
_REPEAT = {"double": 2, "triple": 3}
# Words Whisper writes for a digit it heard; digits only between two other digits.
_HOMOPHONES = {"for": "4", "to": "2", "too": "2"}
# Between the digits of one read-out: punctuation, spoken separators and hesitations.
_SEPARATORS = frozenset("-,./()+:，、。．：")
_SEPARATOR_WORDS = frozenset(
    {
        "dash",
        "hyphen",
        "slash",
        "um",
        "umm",
        "uh",
        "uhm",
        "er",
        "erm",
        "ah",
        "hmm",
        "mm",
        "嗯",
        "呃",
        "额",
    }
)
# Words a caller drops into a read-out ("453, sorry, I mean 4532 ..."): a digit group
# separated from a long redacted number by these alone is the same read-out.
_ASIDES = (
    "i'm",
    "im",
    "i",
    "mean",
    "sorry",
    "it's",
    "its",
    "it",
    "is",
    "that's",
    "thats",
    "and",
    "then",
    "so",
    "wait",
    "no",
    "yes",
    "yeah",
    "okay",
    "ok",
    "right",
    "the",
    "rest",
    "again",
    "let",
    "me",
    "start",
    "actually",
    "oops",
    "number",
    "um",
    "uh",
    "er",
    "erm",
    "ah",
    "hmm",
    "不对",
    "不是",
    "对",
    "是",
    "嗯",
    "呃",
    "那个",
    "就是",
    "然后",
    "我再说一遍",
    "再说一遍",
    "重新说",
    "重来",
)
_ASIDE_RE = re.compile(
    "|".join(
        sorted(
            (rf"\b{re.escape(w)}\b" if w.isascii() else re.escape(w) for w in _ASIDES),
            key=len,
            reverse=True,
        )
    ),
    re.IGNORECASE,
)
ASIDE_MAX_WORDS = 4
# Letter names Whisper writes when a caller spells ("queue queue one two ... see").
_LETTER_WORDS = {
    "queue": "Q",
    "cue": "Q",
    "bee": "B",
    "see": "C",
    "sea": "C",
    "dee": "D",
    "gee": "G",
    "jay": "J",
    "kay": "K",
    "pea": "P",
    "pee": "P",
    "tea": "T",
    "zed": "Z",
    "zee": "Z",
    "ex": "X",
    "aitch": "H",
    "ess": "S",
    "eff": "F",
}
# Short replies by the other party that do not end a read-out ("okay", "mm-hmm").
_ACKS = frozenset(
    {
        "okay",
        "ok",
        "yes",
        "yeah",
        "yep",
        "mhm",
        "mm",
        "hmm",
        "uh-huh",
        "mm-hmm",
        "right",
        "sure",
        "go",
        "on",
        "ahead",
        "got",
        "it",
        "thanks",
        "thank",
        "you",
        "alright",
        "great",
        "perfect",
        "carry",
        "嗯",
        "好",
        "好的",
        "对",
        "是",
        "是的",
        "哦",
        "嗯嗯",
        "行",
        "请讲",
        "您说",
        "请继续",
        "继续",
    }
)
READOUT_GAP = 10.0  # seconds between two utterances of one read-out, at most

# "2,000": a quantity as Whisper writes "two thousand" (a date's year, an amount), one token
# that ends a read-out rather than three digits of it.
_TOKEN_RE = re.compile(
    r"\d{1,3}(?:,\d{3})+(?![\d,])|\d+|[A-Za-z]+(?:'[A-Za-z]+)?|"
    r"[零〇洞一幺二两三四五六七八九叉]|\S"
)


# --------------------------------------------------------------------------- cues

_CUES: tuple[tuple[str, str], ...] = (
    # (kind, pattern); "reference" marks a number that is not personal data
    (
        "card_number",
        r"(?<!sim )\bcard(?:'s)?[- ]?(?:number|no\b|num\b|details|digits|is\b)|"
        r"long[- ](?:card[- ])?number|number on (?:the|your|my) card|"
        r"\b(?:debit|credit|visa|mastercard|master card|amex|american express)\b|"
        r"\b(?:sixteen|16)[- ]digits?\b|卡号|银行卡|信用卡|借记卡|储蓄卡",
    ),
    (
        "cvv",
        r"security (?:code|number)|\bcv[cv]2?\b|card verification|"
        r"(?:three|free|3|four|4)[- ]digits?\b[^.?!]{0,40}\b(?:back|mac)\b|"
        r"digits on the (?:back|mac)|(?:back|mac) of (?:the|your) card|安全码|"
        r"卡背面|背面的?(?:三|3)位|\bcvv码",
    ),
    (
        "card_expiry",
        r"(?<!contract )(?<!plan )(?<!offer )\b(?:expiry|expiration|expires|exp)\b|"
        r"valid (?:until|till|thru|through|to)\b|有效期|"
        # how Whisper tiny writes "expiry (date)" / "it expires" on a phone line
        r"\bfiery (?:base|bait|date)\b|\b(?:next,? (?:i really|fire)|then fire)\b|\blet's fire\b|"
        r"\b[xs]-(?:pir|fir)\w*|\badvisory date",
    ),
    (
        "phone",
        r"\b(?:phone|mobile|cell|telephone|landline|callback|call ?back|call me|reach me|"
        r"contact number|my number|your number|best number|number to call|fax)\b|电话|手机|"
        r"联系方式",
    ),
    (
        "bank_account",
        r"\b(?:account|acct|a/c)\s*(?:number|no\b|#)|\biban\b|\brouting(?: number)?\b|"
        r"\b(?:sort|thought) code\b|\bbank account\b|\bcurrent (?:account )?number\b|"
        r"账号|账户|帐号|帐户",
    ),
    ("ssn", r"\bsocial security\b|\bssn\b|\bsocial\b"),
    ("cn_id", r"身份证|证件号|\bID number\b|\bidentity\b|\bID card\b"),
    ("nino", r"national insurance|\bN\.? ?I\.? (?:number|no)\b|\bNINO\b"),
    (
        "reference",
        r"\b(?:order|reference|ref|ticket|invoice|tracking|booking|parcel)\b|\b(?:case|"
        r"confirmation|policy|serial|model|sim|complaint|customer|membership)\s+(?:number|no\b|"
        r"id\b)|订单|单号|工单|编号",
    ),
)
_CUE_RE = {kind: re.compile(pattern, re.IGNORECASE) for kind, pattern in _CUES}
# A cued kind: the redaction kind, the digit counts it may have, and a check, if any.
_CUED_KINDS: dict[str, tuple[str, int, int, Callable[[str], bool] | None]] = {
    "card_number": ("card_number", 12, 19, None),
    "cvv": ("cvv", 2, 4, None),  # ASR often loses one of three digits
    # after its cue, "oh four three(-three)" with a digit lost, or the year alone ("two,
    # zero, three, three": the month lost), is still the expiry
    "card_expiry": (
        "card_expiry",
        3,
        6,
        lambda d: expiry_valid(d) or d[0] == "0" or re.fullmatch(r"20\d\d", d) is not None,
    ),
    "phone": ("phone", 7, 15, None),
    "bank_account": ("bank_account", 6, 34, None),
    "ssn": ("national_id", 7, 11, None),  # ASR adds or drops a digit: no check after a cue
    "cn_id": ("national_id", 15, 18, None),
    "nino": ("national_id", 6, 12, None),  # letters lost by ASR: "three, two, three, ..."
}

# A read-out this long with a card network's leading digit is a card even when a digit was
# misheard and the cue lost ("What's the color down there?"): no phone number is as long.
CARD_SHAPE_MIN = 16
CUE_WINDOW = 60  # characters before a number in which its cue must appear
# A number starting this early may take its cue from the context (the agent's question):
# ASR puts mangled words before a short answer ("See me, he's too big, he's 3, 2, 1").
CONTEXT_OPENING = 40


def _cues_before(text: str, start: int, context: str) -> list[str]:
    """Cue kinds before `start`, nearest first; the context (what was said just before,
    e.g. the agent's question) counts when the number opens the text, or is the first
    number in it after a few mangled words."""
    found: list[tuple[int, str]] = []
    window_start = max(0, start - CUE_WINDOW)
    window = text[window_start:start]
    for kind, pattern in _CUE_RE.items():
        ends = [m.end() for m in pattern.finditer(window)]
        if ends:
            found.append((window_start + ends[-1], kind))
    if (
        start <= CONTEXT_OPENING
        and context
        and (
            start <= 20
            or (  # the answer's first number
                not re.search(r"[.?!。？！]", text[:start])
                and all(len(d) < 3 for d in digit_runs(text[:start]))
            )
        )
    ):
        tail = context[-120:]
        for kind, pattern in _CUE_RE.items():
            ends = [m.end() for m in pattern.finditer(tail)]
            if ends:
                found.append((ends[-1] - len(tail) - 1, kind))  # before anything in `text`
    return [kind for _, kind in sorted(found, reverse=True)]


def _cued_kind(digits: str, cues: list[str]) -> str | None:
    """The nearest cue that fits the number; a nearer reference cue keeps it readable."""
    for cue in cues:
        if cue == "reference":
            return None
        if cue not in _CUED_KINDS:
            continue
        kind, lo, hi, check = _CUED_KINDS[cue]
        plain = digits.replace("X", "")
        if lo <= len(plain) <= hi and (check is None or check(plain)):
            return kind
    return None


# --------------------------------------------------------------------------- tokens


@dataclass
class _Token:
    start: int
    end: int
    text: str


@dataclass
class _Unit:
    """A run element: its digits (or letters) and where it lies in the text."""

    value: str
    start: int
    end: int
    sep_before: str  # separators between this unit and the previous one
    written: bool = False  # a digit group as written ("4532"), not a spoken digit


@dataclass
class _Span:
    kind: str
    start: int  # character offsets in the detection text
    end: int
    rank: int

    @property
    def length(self) -> int:
        return self.end - self.start


def _tokens(text: str) -> list[_Token]:
    return [_Token(m.start(), m.end(), m.group()) for m in _TOKEN_RE.finditer(text)]


def _number_value(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """Digits of the number word(s) at token i and how many tokens they take."""
    text = tokens[i].text
    low = text.lower()
    if text.isdigit() and text.isascii():
        return text, 1
    if text in _CN_DIGITS:
        return _CN_DIGITS[text], 1
    if low in _DIGIT_WORDS:
        return _DIGIT_WORDS[low], 1
    if low in _TEEN_WORDS:
        return _TEEN_WORDS[low], 1
    if low in _TENS_WORDS:
        # "twenty-seven" / "twenty seven" -> 27; "twenty" alone -> 20
        for k in (i + 1, i + 2):
            if k < len(tokens) and (k == i + 1 or tokens[i + 1].text == "-"):
                unit = tokens[k].text.lower()
                if unit in _DIGIT_WORDS and _DIGIT_WORDS[unit] != "0":
                    return _TENS_WORDS[low] + _DIGIT_WORDS[unit], k - i + 1
        return _TENS_WORDS[low] + "0", 1
    return None


def _digit_follows(tokens: list[_Token], i: int) -> bool:
    """A digit (or another homophone) comes next, separators aside."""
    while i < len(tokens) and tokens[i].text in _SEPARATORS:
        i += 1
    return i < len(tokens) and (
        _number_value(tokens, i) is not None or tokens[i].text.lower() in _HOMOPHONES
    )


def _single_value(tokens: list[_Token], i: int, letters: bool) -> str | None:
    """One character after "double"/"triple": a digit, or a spelled letter."""
    if i >= len(tokens):
        return None
    found = _number_value(tokens, i)
    if found is not None:
        return found[0] if len(found[0]) == 1 else None
    text = tokens[i].text
    return text.upper() if letters and len(text) == 1 and text.isalpha() else None


def _letter_value(text: str) -> str | None:
    """Spelled letters in an alphanumeric read-out: "G", "WEST", "queue"."""
    if not text.isascii() or not text.isalpha():
        return None
    if len(text) == 1 or (text.isupper() and len(text) <= 4):
        return text.upper()
    return _LETTER_WORDS.get(text.lower())


def _runs(text: str, *, letters: bool = False) -> list[list[_Unit]]:
    """Maximal runs of spoken or written digits (and, with `letters`, spelled letters),
    separators and hesitations allowed between them.

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
        value: str | None = None
        taken = 1
        written = tok.text.isdigit() and tok.text.isascii()
        # "double 9", and "double, 9" as Whisper writes it after a comma-separated read-out
        nxt = i + 2 if i + 2 < len(tokens) and tokens[i + 1].text == "," else i + 1
        if low in _REPEAT and (single := _single_value(tokens, nxt, letters)) is not None:
            value, taken = single * _REPEAT[low], nxt - i + 1
        elif (number := _number_value(tokens, i)) is not None:
            value, taken = number
        elif low in _HOMOPHONES and current and _digit_follows(tokens, i + 1):
            value = _HOMOPHONES[low]
        elif (
            low in ("x", "叉")
            and current
            and sum(u.value.isdigit() * len(u.value) for u in current) >= 17
        ):
            value = "X"
        elif letters:
            value = _letter_value(tok.text)
        if value is not None:
            current.append(_Unit(value, tok.start, tokens[i + taken - 1].end, sep, written))
            sep = ""
        elif current and (
            tok.text in _SEPARATORS
            or low in _SEPARATOR_WORDS
            or (low == "and" and _digit_follows(tokens, i + 1))
        ):
            sep += tok.text  # "4, 3, 10, and 0, 3, 5": ASR joins groups with "and"
        else:
            if current:
                runs.append(current)
            current, sep = [], ""
        i += taken
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

    def spoken_digit(k: int) -> bool:
        return len(run) > k and len(run[k].value) == 1 and not run[k].written

    # "oh, seven, oh, four" is a number said digit by digit, not an interjection
    while (
        len(run) > 1
        and is_oh(run[0])
        and "," in run[1].sep_before
        and not (spoken_digit(1) and spoken_digit(2) and "," in run[2].sep_before)
    ):
        run = run[1:]
    return run


def digit_runs(text: str) -> list[str]:
    """The digits of every spoken or written number in `text` ("four, 53" -> "453"):
    what a reader could still recover from a redacted transcript."""
    return ["".join(u.value for u in run).replace("X", "") for run in _runs(text)]


def _groups(run: list[_Unit]) -> list[int]:
    """Digit counts of the groups a number was said or written in ("555, 234, 5678")."""
    sizes: list[int] = []
    for k, u in enumerate(run):
        starts_group = k == 0 or bool(u.sep_before) or u.written or run[k - 1].written
        if starts_group:
            sizes.append(len(u.value))
        else:
            sizes[-1] += len(u.value)
    return sizes


# --------------------------------------------------------------------------- detectors

_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_TLDS = (
    "com|net|org|edu|gov|co|uk|us|ca|au|de|fr|es|it|nl|pt|br|cn|jp|in|io|info|biz|me|"
    "ie|ch|at|be|se|no|dk|fi|pl|mx|nz"
)
_NUMBER_WORDS = "|".join(sorted([*_DIGIT_WORDS, *_TEEN_WORDS, *_TENS_WORDS], key=len, reverse=True))
_SPELLED = r"[a-z0-9](?:\s+[a-z0-9]\b)+"  # j o h n
_LOCAL_ATOM = rf"(?:{_SPELLED}|[a-z0-9]+)(?:[\s-]+(?:{_NUMBER_WORDS}|\d+)\b)*"
_LOCAL_SEP = r"(?:\s*[._-]\s*|\s+(?:dot|underscore|under score|dash|hyphen|point)\s+)"
_DOMAIN_SEP = r"(?:\s*\.\s*|\s+(?:dot|point)\s+|\s*点\s*)"
_SPOKEN_EMAIL_RE = re.compile(
    rf"(?<![\w']){_LOCAL_ATOM}(?:{_LOCAL_SEP}{_LOCAL_ATOM})*(?:\s*@\s*|\s+at\s+|\s*艾特\s*)"
    rf"[a-z0-9-]+(?:{_DOMAIN_SEP}[a-z0-9-]+)*{_DOMAIN_SEP}(?:{_TLDS})\b",
    re.IGNORECASE | re.ASCII,
)
# A spoken address as Whisper mishears it on a phone line: "dot" as "not", "at" as
# "that", "com" as "come" ("Robert not Ken, that example not come").
_MISHEARD_EMAIL_RE = re.compile(
    r"(?<![\w'])(?:[a-z']+,?\s+(?:dot|not|underscore)\s+)?[a-z']+,?\s+(?:at|that)\s+"
    r"(?:the\s+)?[a-z]+(?:\s+(?:dot|not)\s+(?:co|go)\b)?[\s-]+(?:dot|not)\s+"
    r"(?:com|come|uk)\b",
    re.IGNORECASE | re.ASCII,
)
# Characters spelled one by one with hyphens, as Whisper writes a spelled IBAN or account
# ("C-B-A-T-E-R-N-F-D-W-5-A-T-2-0-2-8-1-1-4-1-3-3"): whatever its cue became, it is a code.
_SPELLED_CHAIN_RE = re.compile(r"(?<![\w-])(?:[A-Za-z0-9]{1,2}-){11,}[A-Za-z0-9]{1,2}(?![\w-])")
SPELLED_CHAIN_DIGITS = 6
_SSN_RE = re.compile(r"\b(\d{3})[- ](\d{2})[- ](\d{4})\b")
_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_EXPIRY_MONTH_RE = re.compile(
    rf"\b(?:{_MONTHS})\b,?\s+(?:of\s+)?(?:20\d\d|2,? 0,? \d,? \d|\d\d|twenty[- ](?:{_NUMBER_WORDS})"
    rf"(?:[- ](?:{_NUMBER_WORDS}))?)\b",
    re.IGNORECASE,
)
_CN_NUM = "零〇一幺二两三四五六七八九十"
_EXPIRY_CN_RE = re.compile(
    rf"(?:\d{{2,4}}|[{_CN_NUM}]{{2,4}})\s*年\s*"
    rf"(?:\d{{1,2}}|[{_CN_NUM}]{{1,3}})\s*月(?:份)?"
)
_PHONE_FORMAT_RE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}(?!\w)"
)


def _regex_spans(text: str, context: str = "") -> list[_Span]:
    spans = [_Span("email", m.start(), m.end(), _EMAIL) for m in _EMAIL_RE.finditer(text)]
    spans += [_Span("email", m.start(), m.end(), _EMAIL) for m in _SPOKEN_EMAIL_RE.finditer(text)]
    spans += [_Span("email", m.start(), m.end(), _CUED) for m in _MISHEARD_EMAIL_RE.finditer(text)]
    spans += [
        _Span("bank_account", m.start(), m.end(), _PATTERN)
        for m in _SPELLED_CHAIN_RE.finditer(text)
        if sum(ch.isdigit() for ch in m.group()) >= SPELLED_CHAIN_DIGITS
        and _cues_before(text, m.start(), "")[:1] != ["reference"]
    ]
    spans += [
        _Span("national_id", m.start(), m.end(), _VALID)
        for m in _SSN_RE.finditer(text)
        if ssn_valid("".join(m.groups()))
    ]
    # a card expiry said with the month's name, after an expiry cue
    for cue in _CUE_RE["card_expiry"].finditer(text):
        after = text[cue.end() : cue.end() + 40]
        m = _EXPIRY_MONTH_RE.search(after) or _EXPIRY_CN_RE.search(after)
        if m:
            spans.append(_Span("card_expiry", cue.end() + m.start(), cue.end() + m.end(), _CUED))
    # ... or after the agent's question about it, early in the answer
    if _CUE_RE["card_expiry"].search(context[-120:]):
        m = _EXPIRY_MONTH_RE.search(text)
        if m and m.start() <= CONTEXT_OPENING:
            spans.append(_Span("card_expiry", m.start(), m.end(), _CUED))
    return spans


def _alnum_spans(text: str, context: str) -> list[_Span]:
    """IBANs and UK National Insurance numbers, written or spelled letter by letter."""
    spans: list[_Span] = []
    for run in _runs(text, letters=True):
        values = [u.value for u in run]
        for i, u in enumerate(run):
            rest = "".join(values[i:])
            # positions in `rest` of a zero said as "oh": in an IBAN it may be the letter O
            said_oh, pos = [], 0
            for v in run[i:]:
                if text[v.start : v.end].lower() in ("o", "oh"):
                    said_oh.append(pos)
                pos += len(v.value)
            cues = _cues_before(text, u.start, context)
            account_cue = bool(cues) and cues[0] == "bank_account"
            # IBAN: the country's length, ending on a unit's edge (or inside the last unit)
            if re.match(r"[A-Z]{2}\d{2}", rest):
                lengths = (
                    [_IBAN_LENGTHS[rest[:2]]] if rest[:2] in _IBAN_LENGTHS else range(34, 14, -1)
                )
                for n in lengths:
                    if len(rest) < n:
                        continue
                    candidate = rest[:n]
                    valid = any(
                        iban_valid(c)
                        for c in _letter_o_variants(candidate, [p for p in said_oh if 4 <= p < n])
                    )
                    if valid or (
                        account_cue
                        and rest[:2] in _IBAN_LENGTHS
                        and re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", candidate)
                    ):
                        j = _unit_at(values, i, n)
                        spans.append(
                            _Span(
                                "bank_account", u.start, run[j].end, _CHECKSUM if valid else _CUED
                            )
                        )
                        break
            # NINO: two letters, six digits, a letter A-D
            nino_cue = "nino" in cues[:2]
            for pattern, rank in ((_NINO_STRICT, _VALID), (_NINO_LOOSE, _CUED)):
                m = pattern.match(rest)
                if m and (rank == _VALID or nino_cue):
                    end = _unit_end(values, i, m.end())
                    if end is not None:
                        spans.append(_Span("national_id", u.start, run[end].end, rank))
                        break
    return spans


def _letter_o_variants(value: str, positions: list[int]) -> Iterable[str]:
    """`value` with each combination of the zeros at `positions` read as the letter O."""
    positions = positions[:6]
    for mask in range(1 << len(positions)):
        chars = list(value)
        for bit, p in enumerate(positions):
            if mask >> bit & 1:
                chars[p] = "O"
        yield "".join(chars)


def _unit_at(values: list[str], i: int, n: int) -> int:
    """Index of the unit holding character n-1 of values[i:] joined."""
    total = 0
    for j in range(i, len(values)):
        total += len(values[j])
        if total >= n:
            return j
    return len(values) - 1


def _unit_end(values: list[str], i: int, n: int) -> int | None:
    """Index of the unit ending exactly after n characters of values[i:], if one does."""
    total = 0
    for j in range(i, len(values)):
        total += len(values[j])
        if total == n:
            return j
        if total > n:
            return None
    return None


def _number_spans(text: str, context: str) -> list[_Span]:
    spans: list[_Span] = []
    runs = _runs(text)
    opening = 0  # where the read-out holding this run began ("378, sorry, 3782 ...")
    for n, run in enumerate(runs):
        if n == 0 or not _only_asides(text[runs[n - 1][-1].end : run[0].start]):
            opening = run[0].start
        taken: list[_Span | None] = [None] * len(run)

        def take(
            kind: str,
            i: int,
            j: int,
            rank: int,
            start: int | None = None,
            run: list[_Unit] = run,
            taken: list[_Span | None] = taken,
        ) -> None:
            span = _Span(kind, run[i].start if start is None else start, run[j - 1].end, rank)
            spans.append(span)
            for k in range(i, j):
                taken[k] = span

        # the whole read-out first; then checksummed parts; then each remaining part
        if not _classify(text, context, run, 0, len(run), take, opening):
            for i, j, digits in _windows(run):
                if any(taken[i:j]):
                    continue
                if len(digits) == 18 and chinese_id_valid(digits):
                    take("national_id", i, j, _CHECKSUM)
                elif card_number_valid(digits) and _cues_before(text, run[i].start, context)[
                    :1
                ] not in (["reference"], ["bank_account"]):
                    take("card_number", i, j, _VALID)
            for i, j in _free_pieces(taken):
                _classify(text, context, run, i, j, take, opening if i == 0 else None)
        # what is left of a read-out next to a long number is part of it
        for i, j in _free_pieces(taken):
            neighbour = taken[i - 1] if i > 0 else None
            if neighbour is None or neighbour.kind not in LONG_KINDS:
                neighbour = taken[j] if j < len(run) else None
            if neighbour is not None and neighbour.kind in LONG_KINDS:
                neighbour.start = min(neighbour.start, run[i].start)
                neighbour.end = max(neighbour.end, run[j - 1].end)
    return spans


def _free_pieces(taken: Sequence[object]) -> list[tuple[int, int]]:
    """Contiguous [i, j) stretches of a run not yet taken by a span."""
    pieces: list[tuple[int, int]] = []
    k = 0
    while k < len(taken):
        if taken[k] is not None:
            k += 1
            continue
        m = k
        while m < len(taken) and taken[m] is None:
            m += 1
        pieces.append((k, m))
        k = m
    return pieces


def _windows(run: list[_Unit]) -> list[tuple[int, int, str]]:
    """Contiguous sub-runs (i, j, digits) of 13-19 digits, longest first."""
    subs = []
    for i in range(len(run)):
        digits = ""
        for j in range(i, len(run)):
            digits += run[j].value
            if len(digits) > 19:
                break
            if len(digits) >= 13:
                subs.append((i, j + 1, digits))
    return sorted(subs, key=lambda s: (-len(s[2]), s[0]))


def _classify(
    text: str,
    context: str,
    run: list[_Unit],
    i: int,
    j: int,
    take: Callable[..., None],
    opening: int | None = None,
) -> bool:
    """Give run[i:j] a kind if it has one: checksum, then the nearest fitting cue, then a
    phone number's shape."""
    digits = "".join(u.value for u in run[i:j])
    start = run[i].start
    if start > 0 and text[start - 1] in "(+":
        start -= 1  # "+44 ..." and "(555) ..." belong to the number
    if _is_date_or_money(text, start, run[j - 1].end):
        return False
    plus = text[max(0, start - 5) : start].lower().rstrip().endswith("plus")
    cues = _cues_before(text, start if opening is None else min(start, opening), context)
    plain = digits.replace("X", "")
    if len(digits) == 18 and chinese_id_valid(digits):
        take("national_id", i, j, _CHECKSUM)
    elif "X" in digits and not (len(digits) == 18 and "cn_id" in cues):
        return False
    elif card_number_valid(plain) and cues[:1] not in (["reference"], ["bank_account"]):
        take("card_number", i, j, _VALID)
    elif (kind := _cued_kind(digits, cues)) is not None:
        take(kind, i, j, _CUED, start=start if kind == "phone" else None)
    elif (
        CARD_SHAPE_MIN <= len(plain) <= 19
        and plain[0] in "23456"
        and cues[:1] not in (["reference"], ["bank_account"])
    ):
        take("card_number", i, j, _PATTERN)  # longer than any phone: a card, Luhn or not
    elif cues[:1] != ["reference"] and _is_phone(
        plain, text[start : run[j - 1].end], _groups(run[i:j]), plus
    ):
        take("phone", i, j, _PATTERN, start=start)
    else:
        return False
    return True


_DATE_RE = re.compile(r"\d{1,2}([/.])\d{1,2}\1(?:\d{4}|\d{2})|\d{1,2}-\d{1,2}-\d{4}")
_YEAR_AFTER = re.compile(r"[-/.]\d{1,3},\d{3}")  # "23-12-2,000-25": a date, the year in words
_CURRENCY_AFTER = re.compile(
    r"\s*(?:pounds?|quid|dollars?|euros?|pence|cents?|p\b|%|percent|"
    r"块|元|角)",
    re.IGNORECASE,
)


def _is_date_or_money(text: str, start: int, end: int) -> bool:
    """ "12/03/2024", "£1,049.99", "45 pounds": written dates and amounts are no one's PII."""
    return (
        bool(_DATE_RE.fullmatch(text[start:end]))
        or bool(_YEAR_AFTER.match(text, end))
        or text[:start].rstrip()[-1:] in ("£", "$", "€", "¥", "￥")
        or bool(_CURRENCY_AFTER.match(text, end))
    )


def _is_phone(digits: str, raw: str, groups: list[int], plus: bool) -> bool:
    """Phone numbers recognisable without a cue: international, Chinese mobile, UK, NANP."""
    n = len(digits)
    nanp = re.fullmatch(r"1?[2-9]\d{2}[2-9]\d{6}", digits) is not None
    if (plus or raw.lstrip().startswith("+")) and 8 <= n <= 15:
        return True
    if n == 11 and re.fullmatch(r"1[3-9]\d{9}", digits):
        return True  # Chinese mobile
    if n == 11 and digits[0] == "0" and digits[1] in "1235789":
        return True  # UK national format 07xxx / 01xxx / 02xxx / 0800
    if nanp and (groups in ([3, 3, 4], [1, 3, 3, 4]) or _PHONE_FORMAT_RE.search(raw)):
        return True  # NANP said or written in its groups
    return bool(10 <= n <= 13 and _PHONE_FORMAT_RE.fullmatch(raw.strip()))


def _absorb_leftovers(text: str, chosen: list[_Span]) -> None:
    """A digit group next to a long redacted number, with only separators or asides
    ("sorry", "I'm") between them, is part of the same read-out: widen the span over it."""
    for run in _runs(text):
        for unit in run:
            if any(s.start <= unit.start < s.end for s in chosen):
                continue
            for span in chosen:
                if span.kind not in LONG_KINDS:
                    continue
                gap = (
                    text[unit.end : span.start]
                    if unit.end <= span.start
                    else text[span.end : unit.start]
                )
                if len(gap) <= 40 and _only_asides(gap):
                    span.start, span.end = min(span.start, unit.start), max(span.end, unit.end)
                    break


def _only_asides(gap: str) -> bool:
    asides = _ASIDE_RE.findall(gap)
    rest = _ASIDE_RE.sub(" ", gap)
    return len(asides) <= ASIDE_MAX_WORDS and all(
        ch.isspace() or ch in _SEPARATORS or ch in "'!?;\"" for ch in rest
    )


def find_pii(
    text: str, *, context: str = "", kinds: Iterable[str] | None = None
) -> list[tuple[str, int, int]]:
    """(kind, start, end) character spans of PII in `text`, non-overlapping, in order.

    `context` is what was said just before (the agent's question): a cue there ("what's
    the security code?") applies to a number that opens `text`.
    """
    wanted = set(KINDS if kinds is None else kinds)
    candidates = [
        s
        for s in (
            _regex_spans(text, context) + _alnum_spans(text, context) + _number_spans(text, context)
        )
        if s.kind in wanted
    ]
    candidates.sort(key=lambda s: (s.rank, -s.length, s.start))
    chosen: list[_Span] = []
    for span in candidates:
        if all(span.end <= c.start or span.start >= c.end for c in chosen):
            chosen.append(span)
    before = None
    while before != [(s.start, s.end) for s in chosen]:  # widening may reach another group
        before = [(s.start, s.end) for s in chosen]
        _absorb_leftovers(text, chosen)
    merged: list[_Span] = []
    for span in sorted(chosen, key=lambda s: s.start):
        if merged and span.start < merged[-1].end:  # two read-outs widened into each other
            merged[-1].end = max(merged[-1].end, span.end)
            continue
        merged.append(span)
    return [(s.kind, s.start, s.end) for s in merged]


# --------------------------------------------------------------------------- transcripts


def _replace_text(text: str, spans: list[tuple[str, int, int]]) -> str:
    for kind, start, end in sorted(spans, key=lambda s: -s[1]):
        text = text[:start] + placeholder(kind) + text[end:]
    return text


def _redact_words(
    words: list[Word], spans: list[tuple[str, int, int]]
) -> tuple[list[Word], list[tuple[str, float, float]]]:
    """Collapse the words each span touches into one placeholder word; each span's record
    keeps the times of its own words. Spans sharing a word become one word with both
    placeholders."""
    offsets = []
    pos = 0
    for w in words:
        offsets.append((pos, pos + len(w.text)))
        pos += len(w.text)
    touched = []  # (first word, last word + 1, span)
    for span in sorted(spans, key=lambda s: s[1]):
        _, start, end = span
        idx = [k for k, (a, b) in enumerate(offsets) if a < end and b > start]
        if idx:
            touched.append((idx[0], idx[-1] + 1, span))
    times = [
        (kind, words[i].start, max(w.end for w in words[i:j])) for i, j, (kind, _, _) in touched
    ]
    clusters: list[list[tuple[int, int, tuple[str, int, int]]]] = []
    for item in touched:
        if clusters and item[0] < clusters[-1][-1][1]:
            clusters[-1].append(item)
        else:
            clusters.append([item])
    out: list[Word] = []
    k = 0
    for cluster in clusters:
        i, j = cluster[0][0], max(c[1] for c in cluster)
        out.extend(words[k:i])
        base = offsets[i][0]
        text = "".join(w.text for w in words[i:j])
        local = [(kind, s - base, e - base) for _, _, (kind, s, e) in cluster]
        group = words[i:j]
        out.append(
            Word(
                start=group[0].start,
                end=max(w.end for w in group),
                text=_replace_text(text, local),
                probability=min(w.probability for w in group),
                speaker=group[0].speaker,
                channel=group[0].channel,
            )
        )
        k = j
    out.extend(words[k:])
    return out, times


def _raw(utterance: Utterance) -> str:
    return "".join(w.text for w in utterance.words) if utterance.words else utterance.text


def _apply(
    utterance: Utterance,
    index: int,
    spans: list[tuple[str, int, int]],
    context: str,
    kinds: list[str],
) -> tuple[Utterance, list[Redaction]]:
    """The utterance with `spans` (offsets in its words' text, or its text when it has no
    words) replaced, and one record per span."""
    if not utterance.words:
        records = [
            Redaction(
                kind=k,
                start=utterance.start,
                end=utterance.end,
                utterance_index=index,
                placeholder=placeholder(k),
            )
            for k, _, _ in spans
        ]
        return utterance.model_copy(update={"text": _replace_text(utterance.text, spans)}), records
    words, times = _redact_words(utterance.words, spans)
    text = join_text(words)
    if join_text(utterance.words) != utterance.text:
        # text was edited after ASR (e.g. script conversion): redact it on its own, unless
        # that finds less than the words did
        own = find_pii(utterance.text, context=context, kinds=kinds)
        if len(own) >= len(spans):
            text = _replace_text(utterance.text, own)
    records = [
        Redaction(kind=k, start=s, end=e, utterance_index=index, placeholder=placeholder(k))
        for k, s, e in times
    ]
    return utterance.model_copy(update={"text": text, "words": words}), records


def _check_kinds(kinds: Iterable[str] | None) -> list[str]:
    kinds = list(KINDS if kinds is None else kinds)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise QAError(f"unknown redaction kind(s) {unknown}; known: {list(KINDS)}")
    return kinds


def redact_utterance(
    utterance: Utterance, index: int, *, context: str = "", kinds: Iterable[str] | None = None
) -> tuple[Utterance, list[Redaction]]:
    """A redacted copy of one utterance and the redactions it recorded."""
    kinds = _check_kinds(kinds)
    spans = find_pii(_raw(utterance), context=context, kinds=kinds)
    return _apply(utterance, index, spans, context, kinds)


def _is_ack(utterance: Utterance) -> bool:
    words = re.findall(r"[\w'-]+", utterance.text.lower())
    if not words or len(words) > 4:
        return False
    return all(
        w in _ACKS
        or (
            not w.isascii()
            and all(
                part in _ACKS for part in re.findall("好的|嗯嗯|是的|请讲|您说|请继续|继续|.", w)
            )
        )
        for w in words
    )


def readouts(utterances: Sequence[Utterance]) -> list[list[int]]:
    """Utterance indices read as one text: a speaker's consecutive utterances, with only
    the other party's acknowledgements ("okay", "嗯") between them and short pauses."""
    groups: list[list[int]] = []
    assigned: set[int] = set()
    for i, first in enumerate(utterances):
        if i in assigned:
            continue
        group = [i]
        k = i + 1
        while k < len(utterances):
            u = utterances[k]
            if u.speaker == first.speaker and u.start - utterances[group[-1]].end <= READOUT_GAP:
                group.append(k)
            elif u.speaker == first.speaker or not _is_ack(u):
                break
            k += 1
        assigned.update(group)
        groups.append(group)
    return sorted(groups)


def redact_transcript(transcript: Transcript, *, kinds: Iterable[str] | None = None) -> Transcript:
    """A new transcript with PII replaced in text and words, and the redactions recorded.

    A span that runs over two utterances of one read-out is recorded once per utterance.
    """
    kinds = _check_kinds(kinds)
    utts = transcript.utterances
    spans: dict[int, list[tuple[str, int, int]]] = {i: [] for i in range(len(utts))}
    contexts: dict[int, str] = {}
    for group in readouts(utts):
        first = group[0]
        context = " ".join(u.text for u in utts[max(0, first - 2) : first])
        pieces, bounds, pos = [], [], 0
        for idx in group:
            raw = _raw(utts[idx])
            pieces.append(raw)
            bounds.append((pos, pos + len(raw)))
            pos += len(raw) + 1
            contexts[idx] = context
        for kind, start, end in find_pii(" ".join(pieces), context=context, kinds=kinds):
            for idx, raw, (a, b) in zip(group, pieces, bounds, strict=True):
                lo, hi = max(start, a) - a, min(end, b) - a
                while lo < hi and (raw[lo].isspace() or raw[lo] in _SEPARATORS):
                    lo += 1
                while hi > lo and (raw[hi - 1].isspace() or raw[hi - 1] in _SEPARATORS):
                    hi -= 1
                if lo < hi:
                    spans[idx].append((kind, lo, hi))
    _add_echoes(utts, spans)
    out: list[Utterance] = []
    redactions = list(transcript.redactions)
    for index, utterance in enumerate(utts):
        redacted, records = _apply(utterance, index, spans[index], contexts[index], kinds)
        out.append(redacted)
        redactions.extend(records)
    return transcript.model_copy(update={"utterances": out, "redactions": redactions}, deep=True)


ECHO_MIN_DIGITS = 4


def _add_echoes(utts: Sequence[Utterance], spans: dict[int, list[tuple[str, int, int]]]) -> None:
    """Digit groups that repeat part of a redacted long number anywhere in the call (the
    agent reading it back, a caller starting again) are redacted as that number."""
    secrets: list[tuple[str, str]] = []
    for idx, found in spans.items():
        raw = _raw(utts[idx])
        secrets += [
            (kind, digits)
            for kind, s, e in found
            if kind in LONG_KINDS
            for digits in digit_runs(raw[s:e])
        ]
    if not secrets:
        return
    for idx, utterance in enumerate(utts):
        raw = _raw(utterance)
        for n, (kind, s, e) in enumerate(spans[idx]):
            # a read-back taken for another kind ("0791 9604 166" looks like a UK phone)
            runs = digit_runs(raw[s:e])
            other = next(
                (
                    kd
                    for kd, secret in secrets
                    if kd != kind
                    and kind in LONG_KINDS
                    and sum(map(len, runs)) >= ECHO_MIN_DIGITS
                    and all(r in secret for r in runs)
                ),
                None,
            )
            if other is not None:
                spans[idx][n] = (other, s, e)
        for run in _runs(raw):
            k = 0
            while k < len(run):
                best = None
                digits = ""
                for j in range(k, len(run)):
                    digits += run[j].value
                    kind = next((kd for kd, secret in secrets if digits in secret), None)
                    if kind is None:
                        break
                    if len(digits) >= ECHO_MIN_DIGITS:
                        best = (kind, j + 1)
                if best is None:
                    k += 1
                    continue
                start, end = run[k].start, run[best[1] - 1].end
                if not any(s < end and start < e for _, s, e in spans[idx]):
                    spans[idx].append((best[0], start, end))
                k = best[1]


def redact_audio(
    samples: np.ndarray,
    sample_rate: int,
    redactions: Iterable[Redaction],
    pad: float = 0.1,
    *,
    axis: int = -1,
) -> np.ndarray:
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
