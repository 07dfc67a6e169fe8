"""PII redaction on a generated corpus of what Whisper writes when callers read PII aloud.

The corpus is made in code from a fixed seed, never stored: card numbers, security codes,
expiry dates, phone numbers, e-mail addresses, IBANs and national IDs in English and
Mandarin, in the forms ASR output takes on real calls ("4532, one, four, eight ...",
"double 5", "oh seven seven double oh", "j o h n underscore ...", "四五三二 幺四八八",
a card with a misheard digit, a read-out split by the agent's "okay"), next to look-alikes
that must stay readable: money, dates, order and reference numbers, times, counts,
durations, plan names. Each case is a short exchange of agent and customer turns; each
turn becomes an utterance with Whisper-style words (leading spaces, punctuation attached,
Mandarin in one- and two-character pieces) and fixed word times.

Scoring follows what the pipeline stores. A positive is recalled when every word of it lies
inside a `Redaction` of its kind in its own utterance (so the times that silence the audio
are checked too); it is hidden when every word lies inside a redaction of any kind. A
redaction is true when it overlaps a positive of its kind. Negatives are utterances with no
PII: any redaction in one is a false redaction. After redaction no utterance holding a card
may keep a run of four or more digits (spoken or written) readable.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Callable
from typing import Any

from pydantic import Field

from qa.schema import Record, Redaction, Role, Transcript, Utterance, Word
from qa.scoring.redact import KINDS, chinese_id_check_char, digit_runs, redact_transcript

SEED = 20261130
WORD_SECONDS = 0.35

_EN_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_EN_TENS = {
    "2": "twenty",
    "3": "thirty",
    "4": "forty",
    "5": "fifty",
    "6": "sixty",
    "7": "seventy",
    "8": "eighty",
    "9": "ninety",
}
_EN_TEENS = (
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_ZH_DIGITS = "零一二三四五六七八九"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Mark(Record):
    kind: str
    turn: int
    start: int  # character offsets in the turn's text
    end: int


class Turn(Record):
    role: Role
    text: str


class Case(Record):
    """A short exchange; `form` names how the PII (or the look-alike) is written."""

    form: str
    language: str
    turns: list[Turn]
    marks: list[Mark] = Field(default_factory=list)


class KindRow(Record):
    kind: str
    positives: int = 0
    recalled: int = 0
    hidden: int = 0  # no part readable, whatever the placeholder
    redactions: int = 0
    true_redactions: int = 0

    @property
    def recall(self) -> float | None:
        return self.recalled / self.positives if self.positives else None

    @property
    def precision(self) -> float | None:
        return self.true_redactions / self.redactions if self.redactions else None


class Report(Record):
    cases: int
    utterances: int
    rows: list[KindRow]
    negatives: int  # utterances without PII
    falsely_redacted: int  # ... that got a redaction anyway
    card_leaks: list[str] = Field(default_factory=list)  # card utterances with 4+ digits left
    misses: list[str] = Field(default_factory=list)  # "form: redacted text" of each miss
    false_redactions: list[str] = Field(default_factory=list)

    @property
    def precision(self) -> float:
        total = sum(r.redactions for r in self.rows)
        return sum(r.true_redactions for r in self.rows) / total if total else 1.0

    @property
    def false_redaction_rate(self) -> float:
        return self.falsely_redacted / self.negatives if self.negatives else 0.0

    def row(self, kind: str) -> KindRow:
        return next(r for r in self.rows if r.kind == kind)


# --------------------------------------------------------------------------- building cases


class _Builder:
    """Turns with marked spans: `say(role, "It's ", ("card_number", "4532 ..."), ".")`."""

    def __init__(self, form: str, language: str) -> None:
        self.case = Case(form=form, language=language, turns=[])

    def say(self, role: Role, *parts: str | tuple[str, str]) -> _Builder:
        text = ""
        for part in parts:
            if isinstance(part, tuple):
                kind, value = part
                self.case.marks.append(
                    Mark(
                        kind=kind,
                        turn=len(self.case.turns),
                        start=len(text),
                        end=len(text) + len(value),
                    )
                )
                text += value
            else:
                text += part
        self.case.turns.append(Turn(role=role, text=text))
        return self


A, C = Role.AGENT, Role.CUSTOMER


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
            for i, d in enumerate(int(c) for c in reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


def card(rng: random.Random) -> tuple[str, list[int]]:
    """A Luhn-valid card number of a common network and how it is printed in groups."""
    network = rng.choice(
        ["visa", "visa", "mastercard", "mastercard", "amex", "unionpay", "unionpay19", "discover"]
    )
    prefix, length, groups = {
        "visa": ("4", 16, [4, 4, 4, 4]),
        "mastercard": (rng.choice(["51", "52", "53", "54", "55", "2221"]), 16, [4, 4, 4, 4]),
        "amex": (rng.choice(["34", "37"]), 15, [4, 6, 5]),
        "unionpay": ("62", 16, [4, 4, 4, 4]),
        "unionpay19": ("62", 19, [4, 4, 4, 4, 3]),
        "discover": ("6011", 16, [4, 4, 4, 4]),
    }[network]
    return _luhn_complete(prefix, length, rng), groups


def misheard(digits: str, rng: random.Random) -> str:
    """One digit heard wrong, so Luhn fails (as on real ASR output)."""
    k = rng.randrange(1, len(digits))
    wrong = rng.choice([d for d in string.digits if d != digits[k]])
    return digits[:k] + wrong + digits[k + 1 :]


def _split(digits: str, groups: list[int]) -> list[str]:
    out, k = [], 0
    for g in groups:
        out.append(digits[k : k + g])
        k += g
    if k < len(digits):
        out.append(digits[k:])
    return out


def en_words(
    digits: str,
    rng: random.Random,
    *,
    zero: str | None = None,
    repeats: bool = True,
    sep: str = " ",
) -> str:
    """Digits said one by one: "oh"/"zero", and "double"/"triple" for repeats."""
    zero = zero or rng.choice(["oh", "zero"])
    out, k = [], 0
    while k < len(digits):
        d = digits[k]
        run = len(digits[k:]) - len(digits[k:].lstrip(d))
        word = zero if d == "0" else _EN_DIGITS[int(d)]
        if repeats and run >= 3 and rng.random() < 0.6:
            out.append(f"triple {word}")
            k += 3
        elif repeats and run >= 2 and rng.random() < 0.6:
            out.append(f"double {word}")
            k += 2
        else:
            out.append(word)
            k += 1
    return sep.join(out)


def en_pairs(digits: str) -> str:
    """Digits said in pairs: "forty-five, thirty-two, oh three"."""
    out = []
    for k in range(0, len(digits), 2):
        pair = digits[k : k + 2]
        if len(pair) == 1:
            out.append(_EN_DIGITS[int(pair)])
        elif pair[0] == "0":
            out.append(f"oh {_EN_DIGITS[int(pair[1])]}")
        elif pair[0] == "1":
            out.append(_EN_TEENS[int(pair[1])])
        else:
            tens = _EN_TENS[pair[0]]
            out.append(tens if pair[1] == "0" else f"{tens}-{_EN_DIGITS[int(pair[1])]}")
    return ", ".join(out)


def zh_digits(digits: str, rng: random.Random, *, yao: bool | None = None) -> str:
    """Digits in Chinese numerals; 幺 for one as on the phone, 两 now and then."""
    yao = rng.random() < 0.5 if yao is None else yao
    out = []
    for d in digits:
        ch = "X" if d == "X" else _ZH_DIGITS[int(d)]
        if d == "1" and yao:
            ch = "幺"
        elif d == "2" and rng.random() < 0.15:
            ch = "两"
        out.append(ch)
    return "".join(out)


def speak_en(digits: str, groups: list[int], rng: random.Random, style: str) -> str:
    """A long number as Whisper writes it when a caller reads it out."""
    parts = _split(digits, groups)
    if style == "grouped":
        return " ".join(parts)
    if style == "comma_groups":
        return ", ".join(parts)
    if style == "dash":
        return "-".join(parts)
    if style == "plain":
        return digits
    if style == "period_groups":
        return ". ".join(parts)
    if style == "mixed":  # first group written, the rest as words: "4532, one, four, ..."
        return ", ".join(
            [parts[0], *en_words("".join(parts[1:]), rng, repeats=False, sep=", ").split(", ")]
        )
    if style == "words_groups":
        return ", ".join(en_words(p, rng) for p in parts)
    if style == "words_commas":
        return en_words(digits, rng, repeats=False, sep=", ")
    if style == "digits_commas":
        return ", ".join(digits)
    if style == "double_digits":  # "4532, 1488" with "double 8" said and written as such
        return ", ".join(
            re.sub(r"(\d)\1", lambda m: f" double {m.group(1)} ", p).strip().replace("  ", " ")
            for p in parts
        )
    if style == "pairs":
        return en_pairs(digits)
    if style == "hesitation":
        return ", um, ".join(", ".join(parts[k : k + 2]) for k in range(0, len(parts), 2))
    if style == "half_words":
        half = len(parts) // 2
        return " ".join(parts[:half]) + ", " + ", ".join(en_words(p, rng) for p in parts[half:])
    if style == "restart":  # "453, sorry, 4532 1488 ..."
        return f"{parts[0][:3]}, sorry, " + " ".join(parts)
    raise ValueError(style)


def speak_zh(digits: str, groups: list[int], rng: random.Random, style: str) -> str:
    parts = _split(digits, groups)
    if style == "arabic_groups":
        return " ".join(parts)
    if style == "arabic_plain":
        return digits
    if style == "numerals":
        return zh_digits(digits, rng)
    if style == "numeral_groups":
        yao = rng.random() < 0.5
        return rng.choice(["，", " ", "、"]).join(zh_digits(p, rng, yao=yao) for p in parts)
    if style == "mixed":
        return "，".join([parts[0], *(zh_digits(p, rng, yao=True) for p in parts[1:])])
    raise ValueError(style)


EN_CARD_STYLES = (
    "grouped",
    "comma_groups",
    "dash",
    "plain",
    "period_groups",
    "mixed",
    "words_groups",
    "words_commas",
    "digits_commas",
    "double_digits",
    "pairs",
    "hesitation",
    "half_words",
    "restart",
)
ZH_CARD_STYLES = ("arabic_groups", "arabic_plain", "numerals", "numeral_groups", "mixed")


# --------------------------------------------------------------------------- positives


def _card_cases(rng: random.Random) -> list[Case]:
    out = []
    leads = [
        "My card number is ",
        "My card number in ",
        "Yeah, the card number is ",
        "It's a Visa, the long number is ",
        "The number on the card is ",
        "OK, so the card number, it's ",
        "Right, my debit card number is ",
    ]
    asks = [
        "Can I take the long card number, please?",
        "Go ahead with the sixteen digit number on the front of the card.",
        "What's the card number?",
        "Please go ahead with the long card number when you're ready.",
    ]
    answers = [("Yes, it's ", "."), ("", "."), ("Sure, ", "."), ("Yeah, it's ", ", thanks.")]
    for n, style in enumerate(EN_CARD_STYLES * 4):
        digits, groups = card(rng)
        slip = n % 3 == 2  # a third of them with a misheard digit: Luhn fails
        if slip:
            digits = misheard(digits, rng)
        said = speak_en(digits, groups, rng, style)
        form = f"en card {style}{' (Luhn fails)' if slip else ''}"
        b = _Builder(form, "en")
        if n % 2:
            b.say(A, rng.choice(asks))
            pre, post = rng.choice(answers)
            b.say(C, pre, ("card_number", said), post)
        else:
            b.say(C, rng.choice(leads), ("card_number", said), rng.choice([".", "", ", okay?"]))
            b.say(A, "Thank you.")
        out.append(b.case)
    # read across two utterances, the agent acknowledging in between
    for n in range(10):
        digits, groups = card(rng)
        if n % 2:
            digits = misheard(digits, rng)
        style = ("mixed", "words_commas", "comma_groups", "words_groups", "digits_commas")[n % 5]
        parts = speak_en(digits, groups, rng, style).split(", ")
        cut = len(parts) // 2
        b = _Builder(f"en card split over utterances, {style}", "en")
        b.say(A, rng.choice(asks))
        b.say(C, "It's ", ("card_number", ", ".join(parts[:cut])), ",")
        b.say(A, rng.choice(["Okay.", "Mm-hmm.", "Yep.", "Okay, go on."]))
        b.say(C, ("card_number", ", ".join(parts[cut:])), ".")
        out.append(b.case)
    # what ASR does to a read-out on a real line
    for n in range(12):
        digits, groups = card(rng)
        parts = _split(digits, groups)
        variant = ("homophone", "digit lost", "aside", "read back")[n % 4]
        b = _Builder(f"en card {variant}", "en")
        b.say(A, rng.choice(asks))
        if variant == "homophone":  # "four" heard as "for", "two" as "to"
            said = ", ".join(en_words(p, rng, repeats=False) for p in parts)
            said = re.sub(r"(?<=\w )four(?= \w)", "for", said, count=1)
            said = re.sub(r"(?<=\w )two(?= \w)", "to", said, count=1)
            b.say(C, "Yeah, it's ", ("card_number", said), ".")
        elif variant == "digit lost":  # a digit swallowed: 15 of 16, Luhn fails
            k = rng.randrange(len(digits))
            b.say(
                C,
                "It's ",
                ("card_number", " ".join(_split(digits[:k] + digits[k + 1 :], groups))),
                ".",
            )
        elif variant == "aside":  # "453, I'm 4532 1488 ..."
            b.say(C, ("card_number", f"{parts[0][:3]}, I'm {' '.join(parts)}"), ".")
        else:  # the agent reads the first groups back
            b.say(C, "It's ", ("card_number", ", ".join(parts)), ".")
            b.say(
                A,
                ("card_number", ", ".join(parts[:2])),
                ", and then ",
                ("card_number", ", ".join(parts[2:])),
                ", is that right?",
            )
            b.say(C, "Yes.")
        out.append(b.case)
    zh_leads = ["我的卡号是", "银行卡号是", "卡号是", "我的银行卡是", "信用卡号码是"]
    for n, style in enumerate(ZH_CARD_STYLES * 5):
        digits, groups = card(rng)
        slip = n % 3 == 1
        if slip:
            digits = misheard(digits, rng)
        said = speak_zh(digits, groups, rng, style)
        b = _Builder(f"zh card {style}{' (Luhn fails)' if slip else ''}", "zh")
        if n % 2:
            b.say(A, "好的，请您提供一下银行卡号。")
            b.say(C, "好的，", ("card_number", said), "。")
        else:
            b.say(C, rng.choice(zh_leads), ("card_number", said), "。")
        out.append(b.case)
    for _ in range(4):
        digits, groups = card(rng)
        parts = _split(digits, groups)
        b = _Builder("zh card split over utterances", "zh")
        b.say(A, "请说一下您的卡号。")
        b.say(C, ("card_number", "，".join(zh_digits(p, rng) for p in parts[:2])), "，")
        b.say(A, rng.choice(["嗯。", "好的。", "嗯，您说。"]))
        b.say(C, ("card_number", "，".join(zh_digits(p, rng) for p in parts[2:])), "。")
        out.append(b.case)
    return out


def _cvv_cases(rng: random.Random) -> list[Case]:
    out = []
    for n in range(28):
        code = "".join(rng.choice(string.digits) for _ in range(4 if n % 7 == 6 else 3))
        said = rng.choice(
            [
                code,
                en_words(code, rng, repeats=False),
                en_words(code, rng, repeats=False, sep=", "),
                ", ".join(code),
            ]
        )
        b = _Builder("en cvv", "en")
        if n % 3 == 0:
            b.say(
                A,
                rng.choice(
                    [
                        "And the three digit security code on the back?",
                        "And the CVV, please?",
                        "Lastly the last three digits on the back of the card.",
                    ]
                ),
            )
            b.say(C, ("cvv", said[:1].upper() + said[1:]), ".")
        else:
            lead = rng.choice(
                [
                    "The security code is ",
                    "CVV is ",
                    "The CVV is ",
                    "The three digits on the back are ",
                    "Security number's ",
                ]
            )
            b.say(C, lead, ("cvv", said), ".")
        out.append(b.case)
    for _ in range(10):
        code = "".join(rng.choice(string.digits) for _ in range(3))
        said = rng.choice([code, zh_digits(code, rng)])
        b = _Builder("zh cvv", "zh")
        b.say(C, rng.choice(["安全码是", "卡背面后三位是", "CVV码是"]), ("cvv", said), "。")
        out.append(b.case)
    return out


def _expiry_cases(rng: random.Random) -> list[Case]:
    out = []
    for n in range(26):
        month, year = rng.randint(1, 12), rng.randint(25, 33)
        mm, yy = f"{month:02d}", f"{year}"
        said = [
            f"{en_pairs(mm)} {en_pairs(yy)}",
            f"{mm}/{yy}",
            f"{mm} {yy}",
            f"{en_words(mm, rng)}, {en_words(yy, rng)}",
            f"{_MONTHS[month - 1]} 20{yy}",
            f"{mm} slash {yy}",
        ][n % 6]
        b = _Builder("en expiry", "en")
        if n % 3 == 0:
            b.say(A, "And the expiry date on the card?")
            b.say(C, "The expiry is ", ("card_expiry", said), ".")
        else:
            lead = rng.choice(
                ["It expires ", "The expiry date is ", "Expiry ", "It's valid until "]
            )
            b.say(C, lead, ("card_expiry", said), ".")
        out.append(b.case)
    for n in range(10):
        month, year = rng.randint(1, 12), rng.randint(25, 33)
        said = [f"{month:02d}/{year}", zh_digits(f"{month:02d}{year}", rng), f"{year}年{month}月"][
            n % 3
        ]
        b = _Builder("zh expiry", "zh")
        b.say(C, rng.choice(["有效期是", "有效期", "卡的有效期到"]), ("card_expiry", said), "。")
        out.append(b.case)
    return out


def _phone_cases(rng: random.Random) -> list[Case]:
    out = []

    def uk_mobile() -> str:
        return "07" + "".join(rng.choice(string.digits) for _ in range(9))

    def us() -> str:
        return (
            str(rng.randint(2, 9))
            + "".join(rng.choice(string.digits) for _ in range(2))
            + str(rng.randint(2, 9))
            + "".join(rng.choice(string.digits) for _ in range(6))
        )

    forms: list[tuple[str, Callable[[], str]]] = [
        ("uk mobile written", lambda: (d := uk_mobile())[:5] + " " + d[5:]),
        ("uk mobile plain", uk_mobile),
        (
            "uk mobile spoken",
            lambda: (
                lambda d: (
                    en_words(d[:5], rng, zero="oh")
                    + ", "
                    + en_words(d[5:8], rng, zero="oh")
                    + ", "
                    + en_words(d[8:], rng, zero="oh")
                )
            )(uk_mobile()),
        ),
        ("uk landline", lambda: "0161 " + f"{rng.randint(200, 999)} {rng.randint(1000, 9999)}"),
        (
            "uk international",
            lambda: "+44 7" + f"{rng.randint(100, 999)} {rng.randint(100000, 999999)}",
        ),
        ("us formatted", lambda: (lambda d: f"({d[:3]}) {d[3:6]}-{d[6:]}")(us())),
        ("us dashes", lambda: (lambda d: f"{d[:3]}-{d[3:6]}-{d[6:]}")(us())),
        (
            "us spoken",
            lambda: (
                lambda d: f"{en_words(d[:3], rng)}, {en_words(d[3:6], rng)}, {en_words(d[6:], rng)}"
            )(us()),
        ),
        ("us toll free", lambda: f"1-800-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}"),
    ]
    leads = [
        "My mobile number is ",
        "You can reach me on ",
        "Call me back on ",
        "My phone number is ",
        "It's ",
        "The best number is ",
    ]
    for n in range(36):
        name, make = forms[n % len(forms)]
        said = make()
        b = _Builder(f"en phone {name}", "en")
        lead = rng.choice(leads)
        if lead == "It's ":
            b.say(A, "What's the best number to call you back on?")
        b.say(C, lead, ("phone", said), rng.choice([".", ", thanks.", ""]))
        out.append(b.case)
    for n in range(14):
        digits = "1" + rng.choice("3456789") + "".join(rng.choice(string.digits) for _ in range(9))
        said = [
            digits,
            f"{digits[:3]} {digits[3:7]} {digits[7:]}",
            zh_digits(digits, rng, yao=True),
            " ".join(zh_digits(p, rng, yao=True) for p in (digits[:3], digits[3:7], digits[7:])),
        ][n % 4]
        b = _Builder("zh mobile", "zh")
        lead = rng.choice(["我的手机号是", "电话是", "您打这个号码", "手机"])
        b.say(C, lead, ("phone", said), "。")
        out.append(b.case)
    return out


def _email_cases(rng: random.Random) -> list[Case]:
    first = ["john", "sarah", "robert", "emma", "david", "lucy", "mark", "anna"]
    last = ["smith", "jones", "chen", "taylor", "brown", "wilson", "patel", "evans"]
    domains = [
        ("gmail", "com"),
        ("hotmail", "co dot uk"),
        ("yahoo", "com"),
        ("outlook", "com"),
        ("btinternet", "com"),
        ("example", "co dot uk"),
    ]
    out = []
    for n in range(24):
        f, la = rng.choice(first), rng.choice(last)
        dom, tld = rng.choice(domains)
        num = str(rng.randint(1, 99))
        said = [
            f"{f}.{la}@{dom}.{tld.replace(' dot ', '.')}",
            f"{f} dot {la} at {dom} dot {tld}",
            f"{' '.join(f)} underscore {' '.join(la)} at {dom} dot {tld}",
            f"{f}.{la} at {dom}.{tld.replace(' dot ', '.')}",
            f"{f} underscore {la} {en_pairs(num.zfill(2)).replace(',', '')} at {dom} dot {tld}",
            f"{f}{la}{num} at {dom} dot {tld}",
        ][n % 6]
        b = _Builder("en email", "en")
        if n % 2:
            b.say(A, "Where should I e-mail the receipt?")
            b.say(C, rng.choice(["To ", "It's ", ""]), ("email", said), ", please.")
        else:
            b.say(
                C,
                rng.choice(["My e-mail is ", "Yes, it's ", "E-mail me at "]),
                ("email", said),
                ".",
            )
        out.append(b.case)
    for n in range(8):
        name = rng.choice(["zhangwei", "wangfang", "lili", "liuyang"]) + str(rng.randint(1, 99))
        said = [
            f"{name}@qq.com",
            f"{name}@163.com",
            f"{name} at qq dot com",
            f"{name} 艾特 qq 点 com",
        ][n % 4]
        b = _Builder("zh email", "zh")
        b.say(C, "我的邮箱是 ", ("email", said), "。")
        out.append(b.case)
    return out


def iban_gb(rng: random.Random) -> str:
    bank = "".join(rng.choice(string.ascii_uppercase) for _ in range(4))
    bban = bank + "".join(rng.choice(string.digits) for _ in range(14))
    number = "".join(str(int(ch, 36)) for ch in bban + "GB00")
    return f"GB{98 - int(number) % 97:02d}{bban}"


def _account_cases(rng: random.Random) -> list[Case]:
    out = []
    for n in range(16):
        iban = iban_gb(rng)
        groups = [iban[k : k + 4] for k in range(0, len(iban), 4)]
        said = [
            " ".join(groups),
            ", ".join(
                [
                    " ".join(iban[:2]) + " " + en_words(iban[2:4], rng),
                    " ".join(iban[4:8]),
                    *(en_words(g, rng) for g in [iban[k : k + 4] for k in range(8, 22, 4)]),
                ]
            ),
            f"{iban[:4]} {' '.join(iban[4:8])} " + " ".join(groups[2:]),
            iban,
        ][n % 4]
        b = _Builder("en IBAN", "en")
        b.say(
            C, rng.choice(["My IBAN is ", "The IBAN, it's ", "It's "]), ("bank_account", said), "."
        )
        out.append(b.case)
    for n in range(10):
        acct = "".join(rng.choice(string.digits) for _ in range(8))
        sort = "".join(rng.choice(string.digits) for _ in range(6))
        b = _Builder("en account and sort code", "en")
        b.say(
            C,
            "My account number is ",
            ("bank_account", [acct, en_words(acct, rng)][n % 2]),
            ", and the sort code is ",
            (
                "bank_account",
                [f"{sort[:2]}-{sort[2:4]}-{sort[4:]}", en_words(sort, rng, sep=", ")][n % 2],
            ),
            ".",
        )
        out.append(b.case)
    for _ in range(4):
        acct = "".join(rng.choice(string.digits) for _ in range(16))
        b = _Builder("zh account", "zh")
        b.say(C, "我的账号是", ("bank_account", zh_digits(acct, rng)), "。")
        out.append(b.case)
    return out


def cn_id(rng: random.Random) -> str:
    area = rng.choice(["110105", "310101", "440305", "510104", "320102"])
    body = (
        area
        + f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        + f"{rng.randint(0, 999):03d}"
    )
    return body + chinese_id_check_char(body)


def _id_cases(rng: random.Random) -> list[Case]:
    out = []
    for n in range(14):
        letters = rng.choice(["QQ", "AB", "JG", "CE", "NP", "SH"])
        digits = "".join(rng.choice(string.digits) for _ in range(6))
        suffix = rng.choice("ABCD")
        said = [
            f"{letters} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}",
            f"{' '.join(letters)} {en_words(digits[:2], rng)}, {en_words(digits[2:4], rng)},"
            f" {en_words(digits[4:], rng)}, {suffix}",
            f"{letters}{digits}{suffix}",
            f"{', '.join(letters)}, {', '.join(digits)}, {suffix}",
        ][n % 4]
        b = _Builder("en national insurance", "en")
        b.say(
            C,
            rng.choice(
                [
                    "My national insurance number is ",
                    "NI number is ",
                    "My National Insurance number, it's ",
                ]
            ),
            ("national_id", said),
            ".",
        )
        out.append(b.case)
    for n in range(10):
        while True:
            ssn = f"{rng.randint(1, 899):03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
            if ssn[:3] != "666":
                break
        said = [
            f"{ssn[:3]}-{ssn[3:5]}-{ssn[5:]}",
            f"{en_words(ssn[:3], rng)}, {en_words(ssn[3:5], rng)}, {en_words(ssn[5:], rng)}",
            f"{ssn[:3]} {ssn[3:5]} {ssn[5:]}",
        ][n % 3]
        b = _Builder("en social security number", "en")
        b.say(
            C,
            rng.choice(["My social security number is ", "Social is ", "SSN "]),
            ("national_id", said),
            ".",
        )
        out.append(b.case)
    for n in range(14):
        value = cn_id(rng)
        if n % 4 == 3:
            value = value[:17] + "X"
            body = value[:17]
            # make the X the real check character: search a sequence number that gives it
            for seq in range(1000):
                body = value[:14] + f"{seq:03d}"
                if chinese_id_check_char(body) == "X":
                    break
            value = body + "X"
        said = [
            value,
            zh_digits(value.replace("X", ""), rng) + ("叉" if "X" in value else ""),
            f"{value[:6]} {value[6:14]} {value[14:]}",
        ][n % 3]
        b = _Builder("zh resident id", "zh")
        b.say(
            C, rng.choice(["我的身份证号是", "身份证号码", "身份证是"]), ("national_id", said), "。"
        )
        out.append(b.case)
    return out


# --------------------------------------------------------------------------- negatives


def _negative_cases(rng: random.Random) -> list[Case]:
    """Numbers that are not personal data, many of them in a card or phone conversation."""

    def r(a: int, b: int) -> int:
        return rng.randint(a, b)

    en: list[Callable[[], str]] = [
        lambda: (
            f"That's {_EN_DIGITS[r(1, 9)]} hundred and {_EN_TENS[str(r(2, 9))]} "
            f"{_EN_DIGITS[r(1, 9)]} pounds."
        ),
        lambda: (
            f"Your outstanding balance is {_EN_TENS[str(r(2, 9))]}-{_EN_DIGITS[r(1, 9)]} "
            "pounds fifty."
        ),
        lambda: f"The payment of £{r(10, 999)}.{r(10, 99)} has been approved.",
        lambda: f"It was ${r(1, 9)},{r(100, 999)}.{r(10, 99)} on the last bill.",
        lambda: f"It's {r(20, 129)} pounds a month on the card.",
        lambda: (
            f"It went out on the {rng.choice(['twenty-third', 'first', 'fifth', 'tenth'])} "
            f"of {rng.choice(_MONTHS)} {r(2019, 2025)}."
        ),
        lambda: f"The bill dated {r(1, 28):02d}/{r(1, 12):02d}/{r(2022, 2025)} is wrong.",
        lambda: (
            f"I was born on the fifth of June, nineteen {_EN_TENS[str(r(5, 9))]}-"
            f"{_EN_DIGITS[r(1, 9)]}."
        ),
        lambda: "Order number " + " ".join(str(r(0, 9)) for _ in range(6)) + ".",
        lambda: f"My order number is {r(10000000, 99999999)}.",
        lambda: f"Reference ABC {r(100, 999)}.",
        lambda: f"The ticket number is {r(2019, 2025)}-{r(1, 9999):04d}.",
        lambda: f"The reference is {r(1000000000, 9999999999)}.",
        lambda: f"The engineer comes at half past {_EN_DIGITS[r(1, 9)]}.",
        lambda: (
            f"He said {_EN_DIGITS[r(1, 9)]} {_EN_TENS[str(r(2, 5))]} "
            f"{_EN_DIGITS[r(1, 9)]}, so quarter to five."
        ),
        lambda: f"Between {r(8, 10)} and {r(4, 6)}, at {r(1, 9)}:{r(10, 59)}.",
        lambda: f"I've called {rng.choice(['three', 'four', 'five', '6', '10'])} times this week.",
        lambda: f"We have {rng.choice(['two', 'three', '4'])} phones on the account.",
        lambda: f"I've been waiting {_EN_TENS[str(r(2, 5))]}-five minutes.",
        lambda: f"It took {rng.choice(['two', 'three', '6'])} weeks to sort out.",
        lambda: f"I'm on the Unlimited 5G plan with {r(10, 100)} GB.",
        lambda: f"The Premium {r(100, 900)} broadband, {r(60, 900)} megabits.",
        lambda: (
            f"I've had this phone for {rng.choice(['two', 'three', '5'])} years, "
            f"it's an iPhone {r(11, 16)}."
        ),
        lambda: f"My contract expires in {rng.choice(_MONTHS)} {r(2025, 2027)}.",
        lambda: f"Press {r(1, 9)} for billing, then {r(1, 9)}.",
        lambda: f"I've been a customer since {r(2001, 2020)}.",
        lambda: "Oh, I see, okay.",
        lambda: f"That's {r(2, 9)} out of 10, version {r(1, 9)}.{r(0, 9)}.{r(0, 9)}.",
        lambda: f"The card payment of {_EN_TENS[str(r(2, 9))]} pounds went through twice.",
        lambda: f"You'll get {r(10, 50)} percent off for {r(3, 24)} months.",
        lambda: f"I got the phone on {r(1, 28):02d}/{r(1, 12):02d}/{r(2020, 2025)}.",
        lambda: f"The phone cost ${r(1, 9)},{r(100, 999)}.{r(10, 99)} on my card.",
        lambda: (
            f"The card payment of £{r(1, 9)},{r(100, 999)}.00 went through on "
            f"{r(1, 28)}.{r(1, 12)}.{r(2022, 2025)}."
        ),
        lambda: f"The last four digits of the card are {r(1000, 9999)}.",
    ]
    zh: list[Callable[[], str]] = [
        lambda: f"一共是¥{r(1, 9)},{r(100, 999)}。",
        lambda: f"这个月话费{r(30, 300)}块。",
        lambda: f"{r(2019, 2025)}年{r(1, 12)}月{r(1, 28)}日扣的款。",
        lambda: f"订单号是{r(100000, 999999)}。",
        lambda: f"工单号{r(20240000, 20259999)}。",
        lambda: "我下午三点半有空。",
        lambda: f"我等了{rng.choice(['四十五', '二十', '三十'])}分钟了。",
        lambda: f"我办的是{r(99, 299)}元的套餐。",
        lambda: "我打了三次电话了。",
        lambda: f"一共{rng.choice(['两', '三', '五'])}个月。",
        lambda: "那个一共是三百块钱，一九九五年开的户。",
        lambda: f"流量包是{r(10, 100)}G的。",
    ]
    out = []
    for n in range(150):
        make = en[n % len(en)]
        b = _Builder("en negative", "en")
        if n % 5 == 0:
            b.say(
                A,
                rng.choice(
                    [
                        "Can I take the long card number, please?",
                        "What's the best number to call you back on?",
                        "And the expiry date?",
                    ]
                ),
            )
            b.say(C, "Sorry, one moment.")
        b.say(C, make())
        out.append(b.case)
    for n in range(48):
        b = _Builder("zh negative", "zh")
        b.say(C, zh[n % len(zh)]())
        out.append(b.case)
    return out


def corpus(seed: int = SEED) -> list[Case]:
    """Every case, the same for the same seed."""
    rng = random.Random(seed)
    return (
        _card_cases(rng)
        + _cvv_cases(rng)
        + _expiry_cases(rng)
        + _phone_cases(rng)
        + _email_cases(rng)
        + _account_cases(rng)
        + _id_cases(rng)
        + _negative_cases(rng)
    )


# --------------------------------------------------------------------------- scoring

_CJK = "\u4e00-\u9fff"
_WORD_RE = re.compile(rf"\s*(?:[{_CJK}]{{1,2}}|[^\s{_CJK}]+)")


def _words(
    text: str, language: str, start: float, speaker: str
) -> tuple[list[Word], list[tuple[int, int]]]:
    """Whisper-style words of `text` and the text range each one's letters cover."""
    words, ranges = [], []
    for k, m in enumerate(_WORD_RE.finditer(text)):
        piece = m.group()
        if language != "zh" and not piece.startswith(" "):
            piece = " " + piece
        t = start + k * WORD_SECONDS
        words.append(
            Word(
                start=round(t, 3),
                end=round(t + WORD_SECONDS * 0.85, 3),
                text=piece,
                speaker=speaker,
            )
        )
        ranges.append((m.start() + len(m.group()) - len(m.group().lstrip()), m.end()))
    return words, ranges


def transcript_of(
    case: Case, call_id: str = "corpus"
) -> tuple[Transcript, list[list[tuple[int, int]]]]:
    """The case as a transcript, and each utterance's word ranges in its turn's text."""
    utterances, ranges = [], []
    t = 0.0
    for turn in case.turns:
        speaker = "A" if turn.role == A else "C"
        words, spans = _words(turn.text, case.language, t, speaker)
        utterances.append(
            Utterance(
                speaker=speaker,
                role=turn.role,
                start=words[0].start,
                end=words[-1].end,
                text=turn.text,
                words=words,
            )
        )
        ranges.append(spans)
        t = words[-1].end + 0.6
    return (
        Transcript(call_id=call_id, language=case.language, duration=t, utterances=utterances),
        ranges,
    )


def _inside(word: Word, r: Redaction) -> bool:
    return r.start <= word.start + 1e-6 and word.end <= r.end + 1e-6


def evaluate(cases: list[Case]) -> Report:
    rows = {kind: KindRow(kind=kind) for kind in KINDS}
    report = Report(cases=len(cases), utterances=0, rows=[], negatives=0, falsely_redacted=0)
    for n, case in enumerate(cases):
        transcript, ranges = transcript_of(case, f"case{n}")
        out = redact_transcript(transcript)
        report.utterances += len(transcript.utterances)
        for u, utt in enumerate(transcript.utterances):
            redactions = [r for r in out.redactions if r.utterance_index == u]
            marks = [m for m in case.marks if m.turn == u]
            mark_words = [
                [
                    w
                    for w, (a, b) in zip(utt.words, ranges[u], strict=True)
                    if a < m.end and b > m.start
                ]
                for m in marks
            ]
            for m, words in zip(marks, mark_words, strict=True):
                row = rows[m.kind]
                row.positives += 1
                right = [r for r in redactions if r.kind == m.kind]
                if all(any(_inside(w, r) for r in right) for w in words):
                    row.recalled += 1
                else:
                    report.misses.append(f"{case.form}: {out.utterances[u].text}")
                if all(any(_inside(w, r) for r in redactions) for w in words):
                    row.hidden += 1
            for r in redactions:
                rows[r.kind].redactions += 1
                if any(
                    m.kind == r.kind and any(w.start < r.end and w.end > r.start for w in words)
                    for m, words in zip(marks, mark_words, strict=True)
                ):
                    rows[r.kind].true_redactions += 1
                else:
                    report.false_redactions.append(
                        f"{case.form}: {utt.text} -> {out.utterances[u].text}"
                    )
            if not marks:
                report.negatives += 1
                report.falsely_redacted += bool(redactions)
            if any(m.kind == "card_number" for m in marks):
                left = [d for d in digit_runs(out.utterances[u].text) if len(d) >= 4]
                if left:
                    report.card_leaks.append(f"{case.form}: {out.utterances[u].text}")
    report.rows = [rows[k] for k in KINDS]
    return report


# --------------------------------------------------------------------------- output


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def table_rows(report: Report) -> list[list[str]]:
    """kind, positives, recall, hidden, redactions, precision; then the negatives and all."""
    rows = [
        [
            r.kind,
            str(r.positives),
            _pct(r.recall),
            _pct(r.hidden / r.positives if r.positives else None),
            str(r.redactions),
            _pct(r.precision),
        ]
        for r in report.rows
    ]
    rows.append(
        [
            "negatives (no PII)",
            str(report.negatives),
            f"{report.falsely_redacted} falsely redacted",
            f"{report.false_redaction_rate:.1%} rate",
            "",
            "",
        ]
    )
    rows.append(
        [
            "all redactions",
            "",
            "",
            "",
            str(sum(r.redactions for r in report.rows)),
            _pct(report.precision),
        ]
    )
    return rows


HEADER = ["kind", "positives", "recall", "hidden", "redactions", "precision"]


def markdown(report: Report) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    return "\n".join(lines)


def rich_table(report: Report) -> Any:
    from rich.table import Table

    table = Table(
        *HEADER,
        title=f"redaction on {report.cases} generated cases, {report.utterances} utterances",
    )
    for row in table_rows(report):
        table.add_row(*row)
    return table


# --------------------------------------------------------------------------- through real ASR
#
# The text corpus holds the forms the detector was written for. What is stored, though, is
# what Whisper writes: digits lost or turned into "for"/"to", cues misheard ("expiry" ->
# "the next I really"), a code's last digit in the next utterance. The round trip below
# speaks a sample of the corpus with espeak-ng as two-channel 8 kHz calls, runs the
# pipeline's own transcription and redaction, and asks what a reader can still recover.

ASR_SEED = 20261130
# Digits of the true value that must stay readable (in a row) for a leak: a card's last four
# identify it; two of a three-digit code are most of it; "9, 27" is an expiry.
LEAK_DIGITS = {"cvv": 2, "card_expiry": 3}
LEAK_DIGITS_DEFAULT = 4
# What the agent asks before a read-out: every positive exchange carries a cue in the
# question, as on a real call.
_ASK_EN = {
    "card_number": "Please go ahead with the long card number when you're ready.",
    "cvv": "And the three digit security code on the back of the card?",
    "card_expiry": "And the expiry date on the card?",
    "phone": "What's the best number to call you back on?",
    "email": "Where should I e-mail the receipt?",
    "bank_account": "Can I take your account number, please?",
    "national_id": "Can I take your national insurance number, please?",
}
_ASK_ZH = {
    "card_number": "好的，请您提供一下银行卡号。",
    "cvv": "请提供一下卡背面的安全码。",
    "card_expiry": "请问卡的有效期是多少？",
    "phone": "请问您的手机号码是多少？",
    "email": "请问您的邮箱是什么？",
    "bank_account": "请提供一下您的银行账号。",
    "national_id": "请提供一下您的身份证号码。",
}
_NEUTRAL_ASK = {"en": "How can I help you today?", "zh": "请问有什么可以帮您？"}
_EMAIL_FILLERS = frozenset(
    {
        "dot",
        "at",
        "underscore",
        "under",
        "score",
        "dash",
        "hyphen",
        "point",
        "com",
        "co",
        "uk",
        "net",
        "org",
        "qq",
    }
)


class AsrExchange(Record):
    """One exchange spoken, transcribed by the pipeline and redacted."""

    kind: str  # the PII kind, or "negative"
    language: str
    form: str
    spoken: list[str]  # what each turn said
    value: str = ""  # digits of the PII (numbers) or its name parts (e-mail), space-separated
    call: int  # index of its call in the report's transcripts
    start: float = 0.0  # where it was spoken in that call (s)
    end: float = 0.0
    utterances: list[int] = Field(default_factory=list)  # its utterances in that call
    heard: list[str] = Field(default_factory=list)  # utterance texts as transcribed
    redacted: list[str] = Field(default_factory=list)  # utterance texts as stored
    kept: bool = False  # ASR output still holds the value
    leaked: bool = False  # the stored (redacted) text still holds it
    redacted_any: bool = False  # anything at all was redacted


class AsrRow(Record):
    kind: str
    spoken: int = 0
    kept: int = 0
    leaked: int = 0
    redacted: int = 0  # exchanges with a redaction (of any kind)


class AsrReport(Record):
    exchanges: list[AsrExchange]
    rows: list[AsrRow]
    negatives: int
    falsely_redacted: int
    transcripts: list[Transcript] = Field(default_factory=list)  # as transcribed, per call
    seconds: float = 0.0

    def row(self, kind: str) -> AsrRow:
        return next(r for r in self.rows if r.kind == kind)


def _case_kind(case: Case) -> str:
    return case.marks[0].kind if case.marks else "negative"


def asr_sample(n: int = 15, seed: int = ASR_SEED, cases: list[Case] | None = None) -> list[Case]:
    """A fixed sample: per kind `n` positive exchanges (a fifth Mandarin where the corpus
    has Mandarin forms), and twice as many negatives the same way."""
    cases = corpus(seed) if cases is None else cases
    rng = random.Random(seed)
    out: list[Case] = []
    for kind in (*KINDS, "negative"):
        m = 2 * n if kind == "negative" else n
        zh = [c for c in cases if _case_kind(c) == kind and c.language == "zh"]
        en = [c for c in cases if _case_kind(c) == kind and c.language == "en"]
        n_zh = min(len(zh), m // 5)
        out += rng.sample(en, min(len(en), m - n_zh)) + rng.sample(zh, n_zh)
    return out


def _spoken_turn(case: Case, t: int) -> str:
    """A turn as a caller says it: digits inside PII one by one ("4532" -> "four five three
    two", 四五三二), as people read numbers out; everything else as written."""
    text = case.turns[t].text
    marks = sorted((m for m in case.marks if m.turn == t), key=lambda m: -m.start)
    for m in marks:
        if case.language == "zh":
            said = re.sub(r"\d", lambda d: _ZH_DIGITS[int(d.group())], text[m.start : m.end])
        else:  # letters spelled too ("GB82WEST" -> "G B eight two W E S T")
            said = text[m.start : m.end]
            if m.kind != "email":
                said = re.sub(r"[A-Z]{2,}", lambda w: " ".join(w.group()), said)
            said = re.sub(
                r"\d+", lambda d: " " + " ".join(_EN_DIGITS[int(c)] for c in d.group()) + " ", said
            )
            said = re.sub(r" +", " ", said).strip()
            said = re.sub(r" (?=[,.])", "", said)
        text = text[: m.start] + said + text[m.end :]
    return text


def exchange_turns(case: Case, k: int = 0) -> list[Turn]:
    """The turns to speak: the case's own, after an agent question when it opens with the
    customer (a cue for positives; for negatives, every other one a PII question)."""
    turns = [Turn(role=t.role, text=_spoken_turn(case, i)) for i, t in enumerate(case.turns)]
    if turns[0].role == A:
        return turns
    asks = _ASK_ZH if case.language == "zh" else _ASK_EN
    kind = _case_kind(case)
    if kind == "negative":
        ask = _NEUTRAL_ASK[case.language] if k % 2 else asks[KINDS[k // 2 % len(KINDS)]]
    elif kind == "national_id" and case.language == "en" and "social" in case.form:
        ask = "And your social security number, please?"
    elif kind == "bank_account" and "IBAN" in case.form:
        ask = "Can I take your IBAN, please?"
    else:
        ask = asks[kind]
    return [Turn(role=A, text=ask), *turns]


def secret_value(case: Case) -> str:
    """What must not stay readable: the digits of the customer's read-out (all its marks
    joined), or for an e-mail the names in it ("robert chen example")."""
    kind = _case_kind(case)
    texts = [
        case.turns[m.turn].text[m.start : m.end]
        for m in case.marks
        if m.kind == kind and case.turns[m.turn].role == C
    ]
    if kind == "email":
        names: list[str] = []
        for text in texts:
            text = re.sub(r"\b([a-z]) (?=[a-z]\b)", r"\1", text.lower())  # j o h n -> john
            names += [
                w
                for w in re.findall(r"[a-z]+", text)
                if len(w) >= 3 and w not in _EMAIL_FILLERS and not digit_runs(w)
            ]
        return " ".join(dict.fromkeys(names))
    return "".join("".join(digit_runs(t)) for t in texts)


def readable(value: str, kind: str, texts: list[str]) -> bool:
    """Whether `value` can be read back from `texts`: a run of LEAK_DIGITS of its digits in
    a row (number words and numerals count as digits), or a name of an e-mail as a word."""
    if not value:
        return False
    if kind == "email":  # "emmabrown" is read in "Emma Brown" too
        words = [re.findall(r"[a-z]+", text.lower()) for text in texts]
        seen = {w for ws in words for w in ws} | {
            a + b for ws in words for a, b in zip(ws, ws[1:], strict=False)
        }
        return any(name in seen for name in value.split())
    k = min(len(value), LEAK_DIGITS.get(kind, LEAK_DIGITS_DEFAULT))
    runs = [run for text in texts for run in digit_runs(text)]
    return any(value[i : i + k] in run for i in range(len(value) - k + 1) for run in runs)


CALL_EXCHANGES = 4  # exchanges of one kind spoken in one call (Whisper reads 30 s windows)
EXCHANGE_PAUSE = 2.0  # seconds of silence between two exchanges of a call


def render_exchanges(
    cases: list[Case], first: int, out_dir: Any
) -> tuple[Any, list[tuple[int, int]]]:
    """Exchanges of one language as a two-channel 8 kHz call (agent left, customer right),
    rendered the way `qa synth` renders calls; the `SynthCall` and each exchange's turns."""
    from qa.synth import DEFAULT_PAUSE, ScriptTurn, SynthScript, render_call

    turns: list[ScriptTurn] = []
    bounds = []
    for k, case in enumerate(cases):
        said = exchange_turns(case, first + k)
        bounds.append((len(turns), len(turns) + len(said)))
        turns += [
            ScriptTurn(
                role=t.role,
                text=t.text,
                pause_before=EXCHANGE_PAUSE if turns and n == 0 else DEFAULT_PAUSE,
            )
            for n, t in enumerate(said)
        ]
    script = SynthScript(
        call_id=f"redact_{_case_kind(cases[0])}_{cases[0].language}_{first}",
        language=cases[0].language,
        turns=turns,
    )
    return render_call(script, out_dir, rates=(8000,)), bounds


OWNER_MARGIN = 1.0  # s: Whisper's utterance times may stray this far from the speech


def _owner(start: float, end: float, exchanges: list[AsrExchange]) -> int:
    """The exchange an utterance was heard in: the one it overlaps most (each widened by
    OWNER_MARGIN), else the nearest."""

    def fit(ex: AsrExchange) -> tuple[float, float]:
        a, b = ex.start - OWNER_MARGIN, ex.end + OWNER_MARGIN
        return min(end, b) - max(start, a), -abs((start + end) / 2 - (a + b) / 2)

    return max(range(len(exchanges)), key=lambda e: fit(exchanges[e]))


def score_call(transcript: Transcript, exchanges: list[AsrExchange]) -> list[AsrExchange]:
    """Redact a call's ASR transcript as the pipeline does and judge, per exchange, what
    stays readable in the utterances heard while it was spoken."""
    out = redact_transcript(transcript)
    owners = [_owner(u.start, u.end, exchanges) for u in transcript.utterances]
    scored = []
    for e, ex in enumerate(exchanges):
        ex = ex.model_copy(update={"utterances": [i for i, o in enumerate(owners) if o == e]})
        heard = [transcript.utterances[i].text for i in ex.utterances]
        stored = [out.utterances[i].text for i in ex.utterances]
        scored.append(
            ex.model_copy(
                update={
                    "heard": heard,
                    "redacted": stored,
                    "kept": readable(ex.value, ex.kind, heard),
                    "leaked": readable(ex.value, ex.kind, stored),
                    "redacted_any": any(r.utterance_index in ex.utterances for r in out.redactions),
                }
            )
        )
    return scored


def asr_report(
    exchanges: list[AsrExchange], transcripts: list[Transcript], seconds: float = 0.0
) -> AsrReport:
    rows = {kind: AsrRow(kind=kind) for kind in KINDS}
    negatives = falsely = 0
    for ex in exchanges:
        if ex.kind == "negative":
            negatives += 1
            falsely += ex.redacted_any
            continue
        row = rows[ex.kind]
        row.spoken += 1
        row.kept += ex.kept
        row.leaked += ex.leaked
        row.redacted += ex.redacted_any
    return AsrReport(
        exchanges=exchanges,
        rows=[rows[k] for k in KINDS],
        negatives=negatives,
        falsely_redacted=falsely,
        transcripts=transcripts,
        seconds=round(seconds, 1),
    )


def run_asr(
    settings: Any = None,
    n: int = 15,
    *,
    seed: int = ASR_SEED,
    saved: Any = None,
    progress: Callable[[str], None] | None = None,
) -> AsrReport:
    """Speak the sample, transcribe each call with the pipeline's transcription stage and
    the default models (tiny.en for English, the multilingual model for Mandarin), redact
    as the pipeline does and score. With `saved`, the report so far is written after each
    call, so a run stopped early (a Mandarin call can loop for many minutes) still counts."""
    import tempfile
    import time
    from pathlib import Path

    from qa.config import get_settings
    from qa.pipeline import Models, transcribe_stage

    models = Models(settings or get_settings())
    t0 = time.perf_counter()
    sample = asr_sample(n, seed)
    chunks: list[list[int]] = []
    for k, case in enumerate(sample):
        if (
            chunks
            and len(chunks[-1]) < CALL_EXCHANGES
            and _case_kind(sample[chunks[-1][0]]) == _case_kind(case)
            and sample[chunks[-1][0]].language == case.language
        ):
            chunks[-1].append(k)
        else:
            chunks.append([k])
    exchanges: list[AsrExchange] = []
    transcripts: list[Transcript] = []
    with tempfile.TemporaryDirectory(prefix="qa-redact-asr-") as tmp:
        for chunk in chunks:
            cases = [sample[k] for k in chunk]
            call, bounds = render_exchanges(cases, chunk[0], Path(tmp))
            transcript = transcribe_stage(Path(call.files["stereo_8k"]), call.meta, models)
            found = [
                AsrExchange(
                    kind=_case_kind(case),
                    language=case.language,
                    form=case.form,
                    spoken=[t.text for t in call.turns[a:b]],
                    value=secret_value(case) if case.marks else "",
                    call=len(transcripts),
                    start=call.turns[a].start,
                    end=call.turns[b - 1].end,
                )
                for case, (a, b) in zip(cases, bounds, strict=True)
            ]
            transcripts.append(transcript)
            exchanges += score_call(transcript, found)
            if saved is not None:
                report = asr_report(exchanges, transcripts, time.perf_counter() - t0)
                Path(saved).write_text(report.model_dump_json(), encoding="utf-8")
            if progress is not None:
                for ex in exchanges[-len(found) :]:
                    progress(f"{ex.kind} {ex.language}: {' | '.join(ex.redacted)}")
    return asr_report(exchanges, transcripts, time.perf_counter() - t0)


def rescore(report: AsrReport) -> AsrReport:
    """Score saved ASR transcripts again with the current redaction (no audio, no ASR)."""
    out = []
    for c, transcript in enumerate(report.transcripts):
        out += score_call(transcript, [ex for ex in report.exchanges if ex.call == c])
    return asr_report(out, report.transcripts, report.seconds)


ASR_HEADER = ["kind", "spoken", "ASR kept the value", "leaks after redaction", "leaks of kept"]


def asr_table_rows(report: AsrReport) -> list[list[str]]:
    rows = []
    for r in report.rows:

        def share(count: int, total: int) -> str:
            return f"{count} ({_pct(count / total if total else None)})"

        rows.append(
            [
                r.kind,
                str(r.spoken),
                share(r.kept, r.spoken),
                share(r.leaked, r.spoken),
                f"{r.leaked}/{r.kept}",
            ]
        )
    rows.append(
        [
            "negatives (no PII)",
            str(report.negatives),
            "",
            f"{report.falsely_redacted} falsely redacted",
            "",
        ]
    )
    return rows


def asr_markdown(report: AsrReport) -> str:
    lines = ["| " + " | ".join(ASR_HEADER) + " |", "|" + "---|" * len(ASR_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in asr_table_rows(report)]
    return "\n".join(lines)


def asr_details(report: AsrReport) -> list[str]:
    """Each leak and each false redaction: what was said, what ASR wrote, what is stored."""
    lines = []
    for ex in report.exchanges:
        bad = ex.leaked or (ex.kind == "negative" and ex.redacted_any)
        if bad:
            label = "LEAK" if ex.leaked else "FALSE"
            lines.append(
                f"{label} {ex.kind} {ex.language} ({ex.form}) value={ex.value!r}\n"
                f"  said: {' | '.join(ex.spoken)}\n"
                f"  asr:  {' | '.join(ex.heard)}\n"
                f"  kept: {' | '.join(ex.redacted)}"
            )
    return lines


def asr_evaluate(
    settings: Any = None,
    n: int = 15,
    *,
    seed: int = ASR_SEED,
    saved: Any = None,
    progress: Callable[[str], None] | None = None,
) -> AsrReport:
    """`qa eval redaction --asr`: the round trip, or, when `saved` holds the transcripts of
    an earlier run, those scored again with the current redaction (seconds, no models)."""
    from pathlib import Path

    path = Path(saved) if saved else None
    if path is not None and path.is_file():
        return rescore(AsrReport.model_validate_json(path.read_text(encoding="utf-8")))
    return run_asr(settings, n, seed=seed, saved=path, progress=progress)
