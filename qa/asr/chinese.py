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


def is_chinese(language: str | None) -> bool:
    return bool(language) and language.split("-")[0].lower() in CHINESE_LANGUAGES
