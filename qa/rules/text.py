"""Text normalisation shared by phrase matching and metrics.

English (and other space-separated languages) is compared as lower-case word tokens
without punctuation or apostrophes, so "That's" and "thats" agree. Chinese is compared
character by character with spaces and punctuation removed, after Traditional to Simplified
conversion (OpenCC), so a phrase written in either script matches speech in the other.
"""

from __future__ import annotations

import re
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
    marks = [cp for cp in range(0x10000)
             if unicodedata.category(chr(cp))[0] in "PS" or chr(cp) == "_"]
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
