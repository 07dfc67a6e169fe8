from qa.asr.utterances import group_words, merge_speaker_words
from qa.schema import Role, Word


def w(start, end, text, speaker):
    return Word(start=start, end=end, text=text, speaker=speaker)


def test_group_words_splits_on_speaker_and_long_gap():
    words = [
        w(0, 0.4, " Hello", "A"),
        w(0.5, 0.9, " there", "A"),
        w(1.0, 1.3, " Hi", "B"),
        w(5.0, 5.5, " Later", "B"),
    ]
    utts = group_words(words, roles={"A": Role.AGENT})
    assert [(u.speaker, u.text) for u in utts] == [
        ("A", "Hello there"),
        ("B", "Hi"),
        ("B", "Later"),
    ]
    assert utts[0].role is Role.AGENT and utts[1].role is Role.UNKNOWN


def test_merge_keeps_overlapping_speech_and_marks_it():
    agent = [w(0, 0.5, " I", "A"), w(0.6, 2.0, " understand", "A")]
    customer = [w(1.5, 1.9, " yes", "B"), w(4.0, 4.5, " ok", "B")]
    utts = merge_speaker_words([agent, customer])
    assert [u.text for u in utts] == ["I understand", "yes", "ok"]
    assert [u.overlap for u in utts] == [True, True, False]
    assert sum(len(u.words) for u in utts) == 4  # nothing dropped


def test_mono_utterances_take_their_times_from_the_diarization_turns():
    """Under overtalk the one-channel ASR writes one voice and the customer's words stop
    where the agent cuts in; the turns still show the customer talking, so the utterance
    does too (and the overtalk is marked), without growing over the speaker's next one."""
    from qa.asr.utterances import fit_to_turns, mark_overlap
    from qa.schema import SpeakerTurn

    words = [
        w(0.1, 0.5, " So", "C"),
        w(0.6, 3.0, " what now", "C"),
        w(3.1, 5.4, " I'll send one", "A"),
        w(7.0, 7.5, " Thanks", "C"),
        w(9.2, 9.6, " lost", "C"),
    ]
    turns = [
        SpeakerTurn(start=0.0, end=4.2, speaker="C"),  # the customer talks until 4.2
        SpeakerTurn(start=3.0, end=5.6, speaker="A"),
        SpeakerTurn(start=6.9, end=12.0, speaker="C"),
    ]  # runs into the next utterance
    utts = group_words(words)
    fit_to_turns(utts, turns)
    mark_overlap(utts)
    assert [(u.speaker, u.start, u.end) for u in utts] == [
        ("C", 0.0, 4.2),
        ("A", 3.0, 5.6),
        ("C", 6.9, 9.2),
        ("C", 9.2, 12.0),
    ]
    assert [u.overlap for u in utts] == [True, True, False, False]
    assert [wd.start for u in utts for wd in u.words] == [0.1, 0.6, 3.1, 7.0, 9.2]
