"""Text normalisation shared by phrase matching and metrics.

English (and other space-separated languages) is compared as lower-case word tokens
without punctuation or apostrophes, so "That's" and "thats" agree. Chinese is compared
character by character with spaces and punctuation removed, after Traditional to Simplified
conversion (OpenCC), so a phrase written in either script matches speech in the other.

Mandarin can also be compared by sound: Whisper writes a phrase it heard right with
homophones (为您服务 as 位您服务, 工号 as 公号), so each character becomes two symbols, its
toneless pinyin initial and final, with the confusions of ASR and of southern accents folded
together (zh/z, ch/c, sh/s, n/l, -ng/-n). Two symbols per character keep positions: character
k of a text is symbols 2k and 2k+1 of its sound key, so a match maps back to exact times.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

from qa.schema import Role, Transcript, Utterance

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_NOT_HAN_RE = re.compile(rf"[^{_CJK}]+")
_LATIN_RUN_RE = re.compile(rf"[^\W_{_CJK}]+")  # a Latin (or digit) word among Han characters


def is_cjk(language: str | None) -> bool:
    """Languages written without spaces between words (matched character by character)."""
    return bool(language) and language.split("-")[0].lower() in {"zh", "cmn", "yue", "ja"}


def is_mandarin(language: str | None) -> bool:
    """Languages whose characters sound as Mandarin pinyin (not Cantonese, not Japanese)."""
    return bool(language) and language.split("-")[0].lower() in {"zh", "cmn"}


@cache
def _converter():
    from opencc import OpenCC

    return OpenCC("t2s")


@cache
def _traditional_chars() -> frozenset[str]:
    """Characters that t2s would change; text without any of them is already Simplified."""
    import opencc

    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    chars = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, values = line.partition("\t")
        if key and values.split(" ")[0] != key:
            chars.add(key)
    return frozenset(chars)


def to_simplified(text: str) -> str:
    """Traditional to Simplified; the common all-Simplified case skips the slow converter."""
    if _traditional_chars().isdisjoint(text):
        return text
    return _converter().convert(text)


@cache
def _table() -> dict[int, str | None]:
    """str.translate table (fast, C): punctuation and symbols become word breaks;
    apostrophes vanish so "that's" is "thats"."""
    marks = [
        cp for cp in range(0x10000) if unicodedata.category(chr(cp))[0] in "PS" or chr(cp) == "_"
    ]
    spaced: dict[int, str | None] = {cp: " " for cp in marks}
    spaced.update({ord("'"): None, 0x2019: None})
    return spaced


# Chinese keeps only word characters (Han, Latin, digits); few matches, so a regex is fast.
_CJK_DROP_RE = re.compile(r"(?:[^\w\n]|_)+")


def normalize(text: str, cjk: bool) -> str:
    """The form phrases and speech are compared in (see module docstring)."""
    if cjk:
        return _CJK_DROP_RE.sub("", to_simplified(text).lower().replace("\n", ""))
    return " ".join(text.lower().translate(_table()).split())


def normalize_many(texts: list[str], cjk: bool) -> list[str]:
    """`normalize` of each text, in one pass over all of them (a call's utterances)."""
    if not texts:
        return []
    text = "\n".join(t.replace("\n", " ") for t in texts)
    if cjk:
        return _CJK_DROP_RE.sub("", to_simplified(text).lower()).split("\n")
    return [" ".join(line.split()) for line in text.lower().translate(_table()).split("\n")]


def count_units(text: str, cjk: bool) -> int:
    """Words, or for Chinese characters (plus any Latin words among them): the rate unit."""
    if not cjk:
        return len(_TOKEN_RE.findall(text))
    # Han characters counted by deleting everything else (no match object per character)
    return len(_NOT_HAN_RE.sub("", text)) + len(_LATIN_RUN_RE.findall(text))


@lru_cache(maxsize=65536)
def kept_chars(text: str) -> int:
    """How many characters of `text` the Chinese normal form keeps (t2s keeps lengths)."""
    return len(_CJK_DROP_RE.sub("", text.replace("\n", "")))


def role_of(utterance: Utterance, transcript: Transcript) -> Role:
    """The utterance's role, falling back to the transcript's speaker-to-role assignment."""
    if utterance.role != Role.UNKNOWN:
        return utterance.role
    return transcript.roles.speaker_roles.get(utterance.speaker, Role.UNKNOWN)


# --------------------------------------------------------------------------- sound (Mandarin)

# y and w count as initials (pypinyin's non-strict split): "wei" is w + ei, so a final is
# what a listener hears after the consonant, and zero-initial syllables still line up.
_INITIALS = (
    "zh",
    "ch",
    "sh",
    "b",
    "p",
    "m",
    "f",
    "d",
    "t",
    "n",
    "l",
    "g",
    "k",
    "h",
    "j",
    "q",
    "x",
    "r",
    "z",
    "c",
    "s",
    "y",
    "w",
)
_FOLD_INITIAL = {"zh": "z", "ch": "c", "sh": "s", "n": "l"}
_KEEP_NG = frozenset({"ong", "iong"})  # no -n counterpart to confuse them with
_SYMBOL_BASE = 0xE000  # Private Use Area: never survives `normalize`, so never text itself
_symbols: dict[str, str] = {}
_symbols_lock = threading.Lock()


def _symbol(part: str) -> str:
    """One character standing for an initial ("i:z") or a final ("f:an") in a sound key."""
    sym = _symbols.get(part)
    if sym is None:
        with _symbols_lock:
            sym = _symbols.setdefault(part, chr(_SYMBOL_BASE + len(_symbols)))
    return sym


@lru_cache(maxsize=4096)
def syllable_key(syllable: str) -> str:
    """Two symbols (folded initial, folded final) for a toneless pinyin syllable."""
    initial = next((i for i in _INITIALS if syllable.startswith(i) and len(syllable) > len(i)), "")
    final = syllable[len(initial) :]
    if final.endswith("ng") and final not in _KEEP_NG and len(final) > 2:
        final = final[:-1]  # ang/an, eng/en, ing/in, iang/ian, uang/uan
    return _symbol("i:" + _FOLD_INITIAL.get(initial, initial)) + _symbol("f:" + final)


class _SoundTable(dict[int, str]):
    """str.translate table: a Han character to the sound key of its most common reading,
    filled on first sight; anything else (Latin, digits, line breaks) to itself twice."""

    def __missing__(self, cp: int) -> str:
        from pypinyin.contrib.tone_convert import to_normal
        from pypinyin.pinyin_dict import pinyin_dict

        reading = pinyin_dict.get(cp)
        key = syllable_key(to_normal(reading.split(",")[0])) if reading else chr(cp) * 2
        self[cp] = key
        return key


_SOUND_TABLE = _SoundTable()


def sound_key(text: str) -> str:
    """The sound key of a normalised Chinese text, two symbols per character (see module
    docstring). One str.translate pass: cheap enough for a whole call's speech."""
    return text.translate(_SOUND_TABLE)


def han_count(text: str) -> int:
    """How many Han characters the text has."""
    return len(_NOT_HAN_RE.sub("", text))


@lru_cache(maxsize=16384)
def phrase_sound_keys(phrase: str) -> tuple[str, ...]:
    """Sound keys a normalised phrase may be heard as: its reading in context first (the
    phrase dictionary reads 行 in 银行 as hang), then character by character as speech is
    keyed (`sound_key`), so a heteronym the ASR wrote as itself still matches."""
    from pypinyin import Style, lazy_pinyin

    keys = [sound_key(phrase)]
    readings = lazy_pinyin(phrase, style=Style.NORMAL, errors=lambda s: list(s))
    if len(readings) == len(phrase):
        keys.insert(
            0,
            "".join(
                syllable_key(r) if r != ch and r.isascii() and r.isalpha() else ch * 2
                for ch, r in zip(phrase, readings, strict=True)
            ),
        )
    return tuple(dict.fromkeys(keys))
