"""One Chinese script per transcript.

Whisper mixes Simplified and Traditional characters from one sentence to the next; phrase
rules and the sentence encoder then see two spellings of the same word. Every Chinese
transcript is converted to the configured script with OpenCC.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

Script = Literal["simplified", "traditional"]

# Whisper language codes written with Chinese characters.
CHINESE_LANGUAGES = frozenset({"zh", "yue"})


@lru_cache(maxsize=2)
def _converter(script: Script):
    from opencc import OpenCC

    return OpenCC("t2s" if script == "simplified" else "s2t")


def to_script(text: str, script: Script = "simplified") -> str:
    """Convert Chinese characters to one script; other characters pass through unchanged."""
    if not text:
        return text
    return _converter(script).convert(text)


def words_to_script(texts: list[str], script: Script = "simplified") -> list[str]:
    """Each word in one script, converted as one text: OpenCC's phrase table needs the
    neighbours (計畫 is 计划, but 畫 alone is 画), and Whisper splits Chinese words into
    tokens. Falls back to word by word if the conversion changed the length."""
    joined = to_script("".join(texts), script)
    if len(joined) != sum(map(len, texts)):
        return [to_script(t, script) for t in texts]
    out, k = [], 0
    for t in texts:
        out.append(joined[k : k + len(t)])
        k += len(t)
    return out


def is_chinese(language: str | None) -> bool:
    return bool(language) and language.split("-")[0].lower() in CHINESE_LANGUAGES
