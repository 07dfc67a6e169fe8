"""PII redaction: each kind, validation against false positives, word times, audio."""

from __future__ import annotations

import numpy as np
import pytest

from qa.errors import QAError
from qa.schema import Redaction, Role, Transcript, Utterance, Word
from qa.scoring.redact import (
    chinese_id_check_char,
    chinese_id_valid,
    digit_runs,
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


def _utterance(
    text: str,
    start: float = 0.0,
    step: float = 0.4,
    speaker: str = "S1",
    role: Role = Role.CUSTOMER,
) -> Utterance:
    """Whisper-style words: each carries its leading space and a fixed duration."""
    words = [
        Word(
            start=start + i * step, end=start + i * step + step * 0.8, text=f" {w}", speaker=speaker
        )
        for i, w in enumerate(text.split())
    ]
    return Utterance(
        speaker=speaker, role=role, start=words[0].start, end=words[-1].end, text=text, words=words
    )


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
        (
            "four five five six seven three seven five eight six eight nine nine eight five five",
            "[CARD_NUMBER]",
        ),
        (
            "four five five six, seven three seven five, eight six eight nine, nine eight double "
            "five",
            "[CARD_NUMBER]",
        ),
        ("the security code is four one two", "the security code is [CVV]"),
        ("CVV 123, and the total is 45 dollars", "CVV [CVV], and the total is 45 dollars"),
        ("it's the three digits on the back, 7 3 9", "it's the three digits on the back, [CVV]"),
        ("call me on 07700 900123 please", "call me on [PHONE] please"),
        (
            "my phone number is five five five one two three four oh six seven",
            "my phone number is [PHONE]",
        ),
        ("(555) 234-5678 or +44 20 7946 0958", "[PHONE] or [PHONE]"),
        ("我的手机是13812345678", "我的手机是[PHONE]"),
        ("email me at john.smith@example.com.", "email me at [EMAIL]."),
        ("yes it's john dot smith at example dot com", "yes it's [EMAIL]"),
        ("my social is 123-45-6789", "my social is [NATIONAL_ID]"),
        (
            "social security number one two three four five six seven eight nine",
            "social security number [NATIONAL_ID]",
        ),
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


@pytest.mark.parametrize(
    "text",
    [
        "the number is 4556 7375 8689 9856 thanks",
        "four five five six seven three seven five eight six eight nine nine eight five six",
    ],
)
def test_sixteen_digits_are_a_card_without_cue_or_luhn(text: str) -> None:
    """ASR mishears a digit (Luhn fails) and the cue ("What's the color down there?"); no
    phone number has 16 digits."""
    assert "[CARD_NUMBER]" in _redacted(text) and not digit_runs(_redacted(text))


def test_cue_covers_numbers_that_fail_their_check() -> None:
    """Said next to its cue, a number with a slip in its check digit is still PII."""
    assert _redacted("身份证110105194912310021") == "身份证[NATIONAL_ID]"
    assert _redacted("IBAN GB82 WEST 1234 5698 7654 33") == "IBAN [BANK_ACCOUNT]"
    assert _redacted("my card is 4556 7375 8689 9856 thanks") == "my card is [CARD_NUMBER] thanks"


def test_cue_in_previous_utterance() -> None:
    t = _transcript(
        _utterance(
            "what are the three digits on the back of the card", speaker="A", role=Role.AGENT
        ),
        _utterance("four one two", start=5.0),
        _utterance("and it was delivered four one two days ago", start=9.0),
    )
    out = redact_transcript(t)
    assert out.utterances[1].text == "[CVV]"
    assert [r.kind for r in out.redactions] == ["cvv"]
    assert "four one two" in out.utterances[2].text


def test_words_collapse_and_times() -> None:
    u0 = _utterance("hello there", start=0.0)
    u1 = _utterance(
        "my card is four five five six seven three seven five eight six eight "
        "nine nine eight double five okay",
        start=10.0,
    )
    t = _transcript(u0, u1)
    out = redact_transcript(t)
    redacted = out.utterances[1]
    assert redacted.text == "my card is [CARD_NUMBER] okay"
    assert [w.text for w in redacted.words] == [" my", " card", " is", " [CARD_NUMBER]", " okay"]
    card_word = redacted.words[3]
    # the span runs from "four" (4th word) to "five" after "double" (19th word)
    assert card_word.start == pytest.approx(u1.words[3].start)
    assert card_word.end == pytest.approx(u1.words[18].end)
    assert out.redactions == [
        Redaction(
            kind="card_number",
            start=card_word.start,
            end=card_word.end,
            utterance_index=1,
            placeholder="[CARD_NUMBER]",
        )
    ]
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
    mono = redact_audio(
        np.ones(sr, dtype=np.int16),
        sr,
        [Redaction(kind="cvv", start=0.9, end=1.5, utterance_index=0, placeholder="[CVV]")],
        pad=0.0,
    )
    assert mono[: int(0.89 * sr)].min() == 1 and mono[int(0.91 * sr) :].max() == 0


# --------------------------------------------------------------------------- real ASR forms


def test_card_digits_and_number_words_mixed_with_commas() -> None:
    """Whisper wrote the first group as digits and the rest as words, each after a comma;
    the card (Luhn fails: a misheard digit) must not stay readable."""
    text = (
        "My card number in 4532, one, four, eight, eight, zero, three, four, three, six, "
        "four, six, seven"
    )
    assert _redacted(text) == "My card number in [CARD_NUMBER]"
    assert digit_runs(_redacted(text)) == []


def test_no_leftover_group_next_to_a_redacted_card() -> None:
    """'453, I'm [PHONE]' left the first digits readable: a group of the same read-out,
    separated only by an aside, joins the span."""
    for text in (
        "card number 453, I'm 4556 7375 8689 9855",
        "It's 455, sorry, 4556 7375 8689 9855, thanks",
        "卡号是四五五，不对，四五五六七三七五八六八九九八五五",
    ):
        out = _redacted(text)
        assert "[CARD_NUMBER]" in out and not [d for d in digit_runs(out) if len(d) >= 3], out


@pytest.mark.parametrize(
    "lead",
    [
        "my card number is ",
        "the long number is ",
        "the number on the card is ",
        "卡号是",
        "银行卡 ",
        "Please go ahead with the long card number. Yes, it's ",
    ],
)
def test_card_that_fails_luhn_is_redacted_after_a_card_cue(lead: str) -> None:
    assert _redacted(lead + "4556 7375 8689 9856") == lead + "[CARD_NUMBER]"
    assert (
        _redacted(
            lead + "four five five six, seven three seven five, eight six eight "
            "nine, nine eight five"
        )
        == lead + "[CARD_NUMBER]"
    )  # a digit lost too


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "It's four five five six, seven three seven five, eight six eight nine, nine eight "
            "double five.",
            "It's [CARD_NUMBER].",
        ),
        ("card number 4556, 7375, 8689, 9855", "card number [CARD_NUMBER]"),
        ("card number 4556. 7375. 8689. 9855.", "card number [CARD_NUMBER]."),
        (
            "card number forty-five fifty-six, seventy-three seventy-five, eighty-six eighty-nine,"
            " ninety-eight fifty-five",
            "card number [CARD_NUMBER]",
        ),
        (
            "yeah it's four five five six, seven three seven five, eight six eight nine, nine "
            "eight five five",
            "yeah it's [CARD_NUMBER]",
        ),
        (
            "card is four five five six, seven three seven for, eight six eight nine, nine eight "
            "five five",
            "card is [CARD_NUMBER]",
        ),  # "four" heard as "for"
        ("卡号是四五五六 七三七五 八六八九 九八五五", "卡号是[CARD_NUMBER]"),
        (
            "The expiry is oh nine twenty-seven, and the security code is seven three one.",
            "The expiry is [CARD_EXPIRY], and the security code is [CVV].",
        ),
        ("it expires 09/27", "it expires [CARD_EXPIRY]"),
        ("valid until March 2027", "valid until [CARD_EXPIRY]"),
        ("有效期是27年9月", "有效期是[CARD_EXPIRY]"),
        ("有效期零九二七", "有效期[CARD_EXPIRY]"),
        ("卡背面后三位是七六九", "卡背面后三位是[CVV]"),
        (
            "my mobile is oh seven seven double oh, nine double oh, one two three",
            "my mobile is [PHONE]",
        ),
        ("five five five, two three four, five six seven eight", "[PHONE]"),
        ("我的手机号是幺三八 幺二三四 五六七八", "我的手机号是[PHONE]"),
        ("call me on +44 7700 900123", "call me on [PHONE]"),
        ("yes it's j o h n underscore s m i t h at hotmail dot co dot uk", "yes it's [EMAIL]"),
        ("john dot smith eighty four at gmail dot com", "[EMAIL]"),
        ("我的邮箱是 wang dot fang 艾特 qq 点 com", "我的邮箱是 [EMAIL]"),
        (
            "G B eight two, W E S T, one two three four, five six nine eight, seven six five four, "
            "three two",
            "[BANK_ACCOUNT]",
        ),
        ("GB29 N W B K 6016 1331 9268 19", "[BANK_ACCOUNT]"),
        (
            "my national insurance number is Q Q one two, three four, five six, C",
            "my national insurance number is [NATIONAL_ID]",
        ),
        ("the sort code is oh, seven, oh, four, six, seven", "the sort code is [BANK_ACCOUNT]"),
        ("身份证号是一一零一零五一九四九一二三一零零二叉", "身份证号是[NATIONAL_ID]"),
    ],
)
def test_spoken_forms(text: str, expected: str) -> None:
    assert _redacted(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "four hundred and fifty two pounds",
        "the twenty-third of March 2024",
        "2024年3月5日扣的款",
        "一共是¥3,200",
        "order number 4 5 1 2 9 8",
        "reference ABC 123",
        "at half past four, or four forty five",
        "I've called three times in two weeks",
        "I'm on the Unlimited 5G plan with 30 GB",
        "my contract expires in March 2025",
        "I got the phone on 12/03/2024",
        "the card payment of £1,250.00 went through",
        "the last four digits of the card are 4421",
        "Oh, I see, okay.",
        "in that case I'll pay by card",
    ],
)
def test_look_alikes_are_kept(text: str) -> None:
    assert find_pii(text) == []


def test_card_split_over_utterances_with_an_okay_between() -> None:
    """Each utterance the read-out touches gets its own record, with its own words' times."""
    t = _transcript(
        _utterance("Can I take the long card number please?", speaker="A", role=Role.AGENT),
        _utterance("Yes, it's 4532, one, four, eight, eight,", start=4.0),
        _utterance("Okay.", start=8.0, speaker="A", role=Role.AGENT),
        _utterance("zero, three, four, three, six, four, six, seven.", start=9.0),
        _utterance("Thank you.", start=14.0, speaker="A", role=Role.AGENT),
    )
    out = redact_transcript(t)
    assert [u.text for u in out.utterances] == [
        t.utterances[0].text,
        "Yes, it's [CARD_NUMBER],",
        "Okay.",
        "[CARD_NUMBER].",
        "Thank you.",
    ]
    first, second = out.redactions
    assert (first.kind, first.utterance_index) == ("card_number", 1)
    assert (second.kind, second.utterance_index) == ("card_number", 3)
    u1, u3 = t.utterances[1], t.utterances[3]
    assert (first.start, first.end) == (u1.words[2].start, u1.words[-1].end)
    assert (second.start, second.end) == (u3.words[0].start, u3.words[-1].end)


def test_a_real_reply_ends_the_read_out() -> None:
    """Only acknowledgements are skipped: a question in between ends the read-out."""
    t = _transcript(
        _utterance("it's 4532, 1488,", start=0.0),
        _utterance("sorry, how many pounds?", start=3.0, speaker="A", role=Role.AGENT),
        _utterance("0343, 6467", start=6.0),
    )
    out = redact_transcript(t)
    assert out.utterances[0].text == "it's 4532, 1488," and not out.redactions


def test_agent_reading_the_card_back_is_redacted_as_card() -> None:
    t = _transcript(
        _utterance("my card number is 4556 7375 8689 9855", start=0.0),
        _utterance(
            "that's 4556, 7375, and then 8689, 9855?", start=5.0, speaker="A", role=Role.AGENT
        ),
    )
    out = redact_transcript(t)
    assert out.utterances[1].text == "that's [CARD_NUMBER], and then [CARD_NUMBER]?"
    assert [r.kind for r in out.redactions] == ["card_number"] * 3


def test_two_spans_in_one_word_keep_both_placeholders() -> None:
    words = [Word(start=0.0, end=1.0, text="卡号4556737586899855有效期0927")]
    u = Utterance(speaker="S1", start=0.0, end=1.0, text=words[0].text, words=words)
    out = redact_transcript(_transcript(u))
    assert out.utterances[0].text == "卡号[CARD_NUMBER]有效期[CARD_EXPIRY]"
    assert [r.kind for r in out.redactions] == ["card_number", "card_expiry"]


# What Whisper tiny.en wrote in `qa eval redaction --asr` (espeak-ng voices, 8 kHz, two
# channels), the agent's question first; each must be stored exactly as given.
@pytest.mark.parametrize(
    ("question", "answer", "stored"),
    [
        # "and" between groups; the cue "sixteen digit number on the card" misheard
        (
            "Go ahead with the 15-digit number on the front on the card.",
            "Yes, it's 4, 3, 10, and 0, 3, 5, 1, 8, 10, and 3, 0, 2, 3, 0, 9, 8, 8,",
            "Yes, it's [CARD_NUMBER],",
        ),
        (
            "Please go ahead with the long card number when you're ready.",
            "My card number is 62, 10, 31, 23, 210 and 23, 94, 11.",
            "My card number is [CARD_NUMBER].",
        ),
        # "double, 9": the repeat word before a comma
        (
            "Please go ahead with the long card number when you're ready.",
            "It can be the long 4, 3, 6, 5, 10, 9, 10, and 0, 9, 8, 1, 1, 1, double, 9,",
            "It can be the long [CARD_NUMBER],",
        ),
        # the cue lost ("What's the card number?"), a digit misheard: 16 digits, no Luhn
        (
            "What's the color down there?",
            "6, 0, 1, 1, 9, 1, 6, 9, 2, 7, 1, 1, 9, 8, 8, 2.",
            "[CARD_NUMBER].",
        ),
        # "expiry (date)" and "it expires" as tiny.en hears them
        (
            "and the fiery base on the card.",
            "Next, fire is zero two, three two.",
            "Next, fire is [CARD_EXPIRY].",
        ),
        (
            "and the fiery base on the card.",
            "The next fire is 12.29.",
            "The next fire is [CARD_EXPIRY].",
        ),
        (
            "and the fiery base on the card.",
            "Let's fire in November 2, 0, 3, 3.",
            "Let's fire in [CARD_EXPIRY].",
        ),
        (
            "Thank you. And the expiry date and the three digit security code on the back?",
            "The next I really know 9, 27",
            "The next I really know [CARD_EXPIRY]",
        ),
        (
            "and the advisory date on the card.",
            "Next, I will November 2, 0, 3, 3.",
            "Next, I will [CARD_EXPIRY].",
        ),
        ("The X-pira rebates on the card", "The x-pirin is 0.43.", "The x-pirin is [CARD_EXPIRY]."),
        (
            "and then fire rebate on the card",
            "Next, we all got two, zero, three, three.",
            "Next, we all got [CARD_EXPIRY].",
        ),
        # "three digits ... on the back" heard as "free digits ... on the Mac"; the code is
        # the first number of the answer, after a few misheard words
        ("and the free digits that you already code on the Mac on the card.", "1 6, 9,", "[CVV],"),
        (
            "and the free digit security code on the Mac on the card",
            "See me, he's too big, he's 3, 2, 1",
            "See me, he's too big, he's [CVV]",
        ),
        # "seven" heard as "10 and"
        (
            "What's the mass number to call U-Mac on?",
            "My phone number is 0 10 and 1, 2, 10 and 5, 10 and 8, 6,",
            "My phone number is [PHONE],",
        ),
        (
            "Where should I e-mail the receipt?",
            "The Robert not Ken, that example not come,",
            "The [EMAIL],",
        ),
        # the letters of a National Insurance number lost; an SSN with a digit too many
        (
            "Can I take your national insurance number, please?",
            "three, two, three, six, nine, zero, three.",
            "[NATIONAL_ID].",
        ),
        (
            "And your social security number, please.",
            "Social in four eight ten one eight four two nine eight three",
            "Social in [NATIONAL_ID]",
        ),
        # "IBAN" heard as "ribbon", "account" as "current", "sort code" as "thought code"
        (
            "Can I take your ribbon, please?",
            "It's C-B-A-T-E-R-N-F-D-W-5-A-T-2-0-2-8-1-1-4-1-3-3.",
            "It's [BANK_ACCOUNT].",
        ),
        (
            "Can I take your ribbon, please?",
            "My current number in eight, five, six, nine, eight, eight, four, three. I'm the "
            "thought code in nine, three, eight, six, five, six.",
            "My current number in [BANK_ACCOUNT]. I'm the thought code in [BANK_ACCOUNT].",
        ),
        (
            "Can I take your account number please?",
            "It's Cb9 to measure HQ for 1, 3, 8, 9, 6, 4, 4, 6, 4, 1, 2, 2,",
            "It's Cb9 to measure HQ for [BANK_ACCOUNT],",
        ),
        # not PII: "2,000" is how Whisper writes the year of a date said in words
        (
            "How can I help you to make?",
            "The mail-gated 0.8-0.5-2,000-24 is wrong.",
            "The mail-gated 0.8-0.5-2,000-24 is wrong.",
        ),
        (
            "And the free digit security code on the Mac on the card.",
            "I got the phone on 23-12-2,000-25.",
            "I got the phone on 23-12-2,000-25.",
        ),
    ],
)
def test_real_asr_read_outs(question: str, answer: str, stored: str) -> None:
    agent = _utterance(question, speaker="A", role=Role.AGENT)
    customer = _utterance(answer, start=agent.end + 1.0, speaker="C")
    out = redact_transcript(_transcript(agent, customer))
    assert [u.text for u in out.utterances] == [question, stored]


def test_security_code_finished_in_the_next_utterance() -> None:
    """ "the security code is 7, 3," then "1." a moment later: one read-out."""
    first = _utterance("the security code is 7, 3,", speaker="C")
    second = _utterance("1.", start=first.end + 0.8, speaker="C")
    out = redact_transcript(_transcript(first, second))
    assert [u.text for u in out.utterances] == ["the security code is [CVV],", "[CVV]."]
