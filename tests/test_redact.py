"""PII redaction: each kind, validation against false positives, word times, audio."""

from __future__ import annotations

import numpy as np
import pytest

from qa.errors import QAError
from qa.schema import Redaction, Role, Transcript, Utterance, Word
from qa.scoring.redact import (
    chinese_id_check_char,
    chinese_id_valid,
    find_pii,
    iban_valid,
    luhn_valid,
    redact_audio,
    redact_transcript,
)


def _redacted(text: str, context: str = "") -> str:
    out = text
    for kind, start, end in sorted(find_pii(text, context=context), key=lambda s: -s[1]):
        out = out[:start] + f"[{kind.upper()}]" + out[end:]
    return out


def _utterance(text: str, start: float = 0.0, step: float = 0.4, speaker: str = "S1",
               role: Role = Role.CUSTOMER) -> Utterance:
    """Whisper-style words: each carries its leading space and a fixed duration."""
    words = [Word(start=start + i * step, end=start + i * step + step * 0.8, text=f" {w}",
                  speaker=speaker) for i, w in enumerate(text.split())]
    return Utterance(speaker=speaker, role=role, start=words[0].start, end=words[-1].end,
                     text=text, words=words)


def _transcript(*utterances: Utterance) -> Transcript:
    return Transcript(call_id="c1", language="en", duration=60.0, utterances=list(utterances))


def test_validators() -> None:
    assert luhn_valid("4556737586899855")
    assert not luhn_valid("4556737586899856")
    assert chinese_id_check_char("11010519491231002") == "X"
    assert chinese_id_valid("11010519491231002X")
    assert not chinese_id_valid("110105194912310021")
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card number is 4556 7375 8689 9855 thanks", "my card number is [CARD_NUMBER] thanks"),
        ("it's 4556-7375-8689-9855.", "it's [CARD_NUMBER]."),
        ("four five five six seven three seven five eight six eight nine nine eight five five",
         "[CARD_NUMBER]"),
        ("four five five six, seven three seven five, eight six eight nine, nine eight double "
         "five", "[CARD_NUMBER]"),
        ("the security code is four one two", "the security code is [CVV]"),
        ("CVV 123, and the total is 45 dollars", "CVV [CVV], and the total is 45 dollars"),
        ("it's the three digits on the back, 7 3 9", "it's the three digits on the back, [CVV]"),
        ("call me on 07700 900123 please", "call me on [PHONE] please"),
        ("my phone number is five five five one two three four oh six seven",
         "my phone number is [PHONE]"),
        ("(555) 234-5678 or +44 20 7946 0958", "[PHONE] or [PHONE]"),
        ("我的手机是13812345678", "我的手机是[PHONE]"),
        ("email me at john.smith@example.com.", "email me at [EMAIL]."),
        ("yes it's john dot smith at example dot com", "yes it's [EMAIL]"),
        ("my social is 123-45-6789", "my social is [NATIONAL_ID]"),
        ("social security number one two three four five six seven eight nine",
         "social security number [NATIONAL_ID]"),
        ("NI number AB 12 34 56 C", "NI number [NATIONAL_ID]"),
        ("我的身份证号码是11010519491231002X", "我的身份证号码是[NATIONAL_ID]"),
        ("身份证一一零一零五一九四九一二三一零零二叉", "身份证[NATIONAL_ID]"),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [BANK_ACCOUNT] thanks"),
        ("my account number is 12345678", "my account number is [BANK_ACCOUNT]"),
    ],
)
def test_each_kind(text: str, expected: str) -> None:
    assert _redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my card is 4556 7375 8689 9856 thanks",  # Luhn check fails
        "four five five six seven three seven five eight six eight nine nine eight five six",
        "It costs $1,234.56 and was ordered on 12/25/2024, it took two minutes",
        "Oh, I see. Order 2024 arrived on the 3rd at 3:45, about 20 minutes",
        "the reference is 1234567890",
        "那个一共是三百块钱，两分钟，一九九五年开的户",
        "订单110105194912310021",  # 18 digits, wrong check digit, no ID cue
        "the code 123 is on the screen",  # three digits without a card-security cue
        "reference GB82 WEST 1234 5698 7654 33",  # IBAN shape, mod-97 fails, no cue
        "look at the website for the details",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert find_pii(text) == []


def test_cue_covers_numbers_that_fail_their_check() -> None:
    """Said next to its cue, a number with a slip in its check digit is still PII."""
    assert _redacted("身份证110105194912310021") == "身份证[NATIONAL_ID]"
    assert _redacted("IBAN GB82 WEST 1234 5698 7654 33") == "IBAN GB82 WEST [BANK_ACCOUNT]"


def test_cue_in_previous_utterance() -> None:
    t = _transcript(
        _utterance("what are the three digits on the back of the card", speaker="A",
                   role=Role.AGENT),
        _utterance("four one two", start=5.0),
        _utterance("and it was delivered four one two days ago", start=9.0),
    )
    out = redact_transcript(t)
    assert out.utterances[1].text == "[CVV]"
    assert [r.kind for r in out.redactions] == ["cvv"]
    assert "four one two" in out.utterances[2].text


def test_words_collapse_and_times() -> None:
    u0 = _utterance("hello there", start=0.0)
    u1 = _utterance("my card is four five five six seven three seven five eight six eight "
                    "nine nine eight double five okay", start=10.0)
    t = _transcript(u0, u1)
    out = redact_transcript(t)
    redacted = out.utterances[1]
    assert redacted.text == "my card is [CARD_NUMBER] okay"
    assert [w.text for w in redacted.words] == [" my", " card", " is", " [CARD_NUMBER]", " okay"]
    card_word = redacted.words[3]
    # the span runs from "four" (4th word) to "five" after "double" (19th word)
    assert card_word.start == pytest.approx(u1.words[3].start)
    assert card_word.end == pytest.approx(u1.words[18].end)
    assert out.redactions == [Redaction(kind="card_number", start=card_word.start,
                                        end=card_word.end, utterance_index=1,
                                        placeholder="[CARD_NUMBER]")]
    # a new object: the input transcript is untouched
    assert "four five" in t.utterances[1].text and not t.redactions
    assert out.utterances[0] == u0


def test_partial_word_keeps_punctuation() -> None:
    u = _utterance("mail john.smith@example.com, thanks")
    out = redact_transcript(_transcript(u))
    assert out.utterances[0].text == "mail [EMAIL], thanks"
    assert out.utterances[0].words[1].text == " [EMAIL],"


def test_kinds_filter_and_unknown_kind() -> None:
    t = _transcript(_utterance("card 4556 7375 8689 9855 mail a@b.com"))
    out = redact_transcript(t, kinds=["email"])
    assert out.utterances[0].text == "card 4556 7375 8689 9855 mail [EMAIL]"
    with pytest.raises(QAError, match="unknown redaction kind"):
        redact_transcript(t, kinds=["passport"])


def test_utterance_without_words_uses_its_times() -> None:
    u = Utterance(speaker="S1", start=3.0, end=6.0, text="我的手机是13812345678")
    out = redact_transcript(Transcript(call_id="c", language="zh", duration=9, utterances=[u]))
    assert out.utterances[0].text == "我的手机是[PHONE]"
    assert (out.redactions[0].start, out.redactions[0].end) == (3.0, 6.0)


def test_redact_audio_silences_spans_on_a_copy() -> None:
    sr = 8000
    audio = np.ones((2, sr * 4), dtype=np.float32)  # stereo, time on the last axis
    spans = [Redaction(kind="cvv", start=1.0, end=2.0, utterance_index=0, placeholder="[CVV]")]
    out = redact_audio(audio, sr, spans, pad=0.1)
    assert audio.min() == 1.0  # input untouched
    assert out[:, int(0.95 * sr) : int(2.05 * sr)].max() == 0.0
    assert out[:, : int(0.85 * sr)].min() == 1.0 and out[:, int(2.15 * sr) :].min() == 1.0
    mono = redact_audio(np.ones(sr, dtype=np.int16), sr,
                        [Redaction(kind="cvv", start=0.9, end=1.5, utterance_index=0,
                                   placeholder="[CVV]")], pad=0.0)
    assert mono[: int(0.89 * sr)].min() == 1 and mono[int(0.91 * sr) :].max() == 0
