from qa.asr.utterances import group_words, merge_speaker_words
from qa.schema import Role, Word


def w(start, end, text, speaker):
    return Word(start=start, end=end, text=text, speaker=speaker)


def test_group_words_splits_on_speaker_and_long_gap():
    words = [w(0, 0.4, " Hello", "A"), w(0.5, 0.9, " there", "A"), w(1.0, 1.3, " Hi", "B"),
             w(5.0, 5.5, " Later", "B")]
    utts = group_words(words, roles={"A": Role.AGENT})
    assert [(u.speaker, u.text) for u in utts] == [
        ("A", "Hello there"), ("B", "Hi"), ("B", "Later")]
    assert utts[0].role is Role.AGENT and utts[1].role is Role.UNKNOWN


def test_merge_keeps_overlapping_speech_and_marks_it():
    agent = [w(0, 0.5, " I", "A"), w(0.6, 2.0, " understand", "A")]
    customer = [w(1.5, 1.9, " yes", "B"), w(4.0, 4.5, " ok", "B")]
    utts = merge_speaker_words([agent, customer])
    assert [u.text for u in utts] == ["I understand", "yes", "ok"]
    assert [u.overlap for u in utts] == [True, True, False]
    assert sum(len(u.words) for u in utts) == 4  # nothing dropped
