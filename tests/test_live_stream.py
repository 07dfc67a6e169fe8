"""Live transcription of one track (real tiny.en, a real call), the mu-law codec, and the
decode pool's scheduling (with fake tracks: no model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from qa.live import g711
from qa.live.decode import DecodePool
from qa.live.models import Commit, LiveWord
from qa.live.stream import StreamOptions, TrackTranscriber

CALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "calls"
SWOZ = CALL / "swoz_SNG0072_stereo.flac"
RATE = 8000
FRAME = 160  # 20 ms


# ---------------------------------------------------------------- G.711


def test_mulaw_round_trip_is_close_and_stable() -> None:
    t = np.arange(8000) / 8000
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    data = g711.encode(x)
    assert len(data) == len(x)
    y = g711.decode(data)
    assert y.dtype == np.float32
    # mu-law keeps about 2 % relative error on a loud tone
    assert np.max(np.abs(y - x)) < 0.02
    assert g711.encode(y) == data  # decoded values are fixed points of the codec
    assert g711.decode(g711.encode(np.zeros(10))).max() < 1e-3  # silence stays near zero
    assert g711.decode(g711.encode(np.array([2.0, -2.0]))).tolist() == pytest.approx(
        [0.98, -0.98], abs=0.02
    )


def test_mulaw_matches_the_reference_codes() -> None:
    # G.711 mu-law: 0 -> 0xFF, +max -> 0x80, -max -> 0x00
    codes = g711.encode(np.array([0.0, 1.0, -1.0], dtype=np.float32))
    assert list(codes) == [0xFF, 0x80, 0x00]


# ---------------------------------------------------------------- the real track


@pytest.fixture(scope="module")
def model():
    from qa.config import Settings
    from qa.live.decode import load_live_model

    return load_live_model(Settings(), "en", workers=1)


@pytest.fixture(scope="module")
def agent_audio() -> np.ndarray:
    if not SWOZ.is_file():
        pytest.skip(f"the development calls are not here ({SWOZ.parent})")
    from qa.audio import load_audio

    audio = load_audio(SWOZ)
    assert audio.sample_rate == RATE
    return g711.decode(g711.encode(audio.samples[1][: 25 * RATE]))  # agent, 25 s


class Clock:
    """Audio time as wall time: the stream is fed as fast as it decodes, deterministically."""

    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def stream(model, audio: np.ndarray, options: StreamOptions, decode_every: int = 1):
    clock = Clock()
    tr = TrackTranscriber(model, language="en", options=options)
    commits: list[Commit] = []
    seen: list[list[LiveWord]] = []
    for k, i in enumerate(range(0, len(audio), FRAME)):
        clock.t = 1_000.0 + (i + FRAME) / RATE
        tr.feed(audio[i : i + FRAME], clock.t)
        if k % decode_every == 0 and tr.due():
            new = tr.step(clock)
            commits += new
            seen.append([w for c in commits for w in c.words])
    commits += tr.flush(clock)
    return tr, commits, seen


def test_track_commits_words_in_order_that_never_change(model, agent_audio) -> None:
    from qa.audio import resample
    from qa.evaluation.asr import normalize_text

    tr, commits, seen = stream(model, agent_audio, StreamOptions())
    words = [w for c in commits for w in c.words]
    assert len(words) >= 10
    assert commits[-1].final
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    assert all(w.start <= w.end for w in words)
    assert all(b.start >= a.end - 1e-6 for a, b in zip(words, words[1:], strict=False))
    # what was committed stays committed, word for word
    for earlier, later in zip(seen, seen[1:], strict=False):
        assert later[: len(earlier)] == earlier
    assert seen[-1] == words[: len(seen[-1])]
    # heard_at: the arrival of the audio holding the word's end; latency = decode cadence
    for w in words:
        assert w.heard_at == pytest.approx(1_000.0 + w.end, abs=0.03)
        assert 0.0 <= w.latency < 15.0
    assert tr.last_voice is not None and 0 < tr.last_voice <= tr.audio_seconds
    assert tr.lost_seconds == 0
    assert tr.audio_seconds == pytest.approx(25.0)

    segments, _ = model.transcribe(resample(agent_audio, RATE, 16000), language="en")
    plain = set(normalize_text("".join(s.text for s in segments)).split())
    live = normalize_text("".join(w.text for w in words)).split()
    assert plain
    overlap = len(set(live) & plain) / len(plain)
    assert overlap >= 0.5, (overlap, live, plain)


def test_silent_track_commits_nothing_and_never_decodes(model) -> None:
    rng = np.random.default_rng(0)
    hiss = (rng.standard_normal(30 * RATE) * 10 ** (-70 / 20)).astype(np.float32)
    tr, commits, _ = stream(model, g711.decode(g711.encode(hiss)), StreamOptions())
    assert commits == []
    assert tr.decodes == 0
    assert tr.last_voice is None
    assert tr.backlog_seconds < 1.5  # silence is forgotten, not buffered


def test_backlog_is_bounded_and_counted_as_lost(model, agent_audio) -> None:
    options = StreamOptions(max_backlog_s=5.0)
    tr = TrackTranscriber(model, language="en", options=options)
    for i in range(0, len(agent_audio), FRAME):  # 25 s arrive with no decoder running
        tr.feed(agent_audio[i : i + FRAME], 1_000.0 + i / RATE)
    assert tr.lost_seconds > 1  # speech dropped; silence is skipped, not lost
    assert tr.backlog_seconds <= 5.0 + 1e-9
    commits = tr.flush(lambda: 1_030.0)
    assert commits and commits[-1].final
    assert all(w.start >= 19.0 for c in commits for w in c.words)  # only the kept tail


# ---------------------------------------------------------------- the pool


class FakeTrack:
    """Due while it has steps left; records when each step ran."""

    def __init__(self, name: str, steps: int, log: list[str], lock: threading.Lock) -> None:
        self.name, self.left, self.log, self.lock = name, steps, log, lock
        self.flushed = False

    def due(self) -> bool:
        return self.left > 0

    def step(self, now=time.time) -> list[Commit]:
        with self.lock:
            self.log.append(self.name)
        self.left -= 1
        time.sleep(0.005)
        word = LiveWord(start=0, end=0.1, text=self.name, heard_at=now() - 0.5, committed_at=now())
        return [Commit(words=[word])]

    def flush(self, now=time.time) -> list[Commit]:
        self.flushed = True
        word = LiveWord(start=1, end=1.1, text="end", heard_at=now(), committed_at=now())
        return [Commit(words=[word], final=True)]


def test_pool_is_fair_across_tracks_and_finish_flushes() -> None:
    log: list[str] = []
    lock = threading.Lock()
    got: list[tuple[object, list[Commit]]] = []
    pool = DecodePool(object(), 1, lambda key, commits: got.append((key, commits)))
    tracks = {name: FakeTrack(name, 5, log, lock) for name in "abc"}
    try:
        with pool._cond:  # added together, so the first round sees them all
            for name, track in tracks.items():
                pool.add(name, track)
        deadline = time.time() + 5
        while len(log) < 15 and time.time() < deadline:
            time.sleep(0.01)
        assert sorted(log) == sorted("abc" * 5)
        # one worker, three always-due tracks: strictly round robin, nobody served twice
        # before the others once
        assert all(len(set(log[i : i + 3])) == 3 for i in range(0, 15, 3))
        assert {key for key, _ in got} == set("abc")
        assert all(commits for _, commits in got)
        assert pool.stats.steps == 15 and len(pool.stats.latencies) == 15
        assert pool.stats.latencies[0] == pytest.approx(0.5, abs=0.01)

        before = len(got)
        last = pool.finish("b").result(timeout=5)
        assert last[-1].final and last[-1].words[0].text == "end"
        assert tracks["b"].flushed
        assert len(got) == before  # the last commits come through the future only
        assert len(pool) == 2
        with pytest.raises(KeyError):
            pool.finish("b").result(timeout=1)
    finally:
        pool.close()


def test_pool_wakes_on_new_audio_without_polling() -> None:
    log: list[str] = []
    lock = threading.Lock()
    pool = DecodePool(object(), 2, lambda key, commits: None)
    track = FakeTrack("x", 0, log, lock)
    try:
        pool.add("x", track)
        time.sleep(0.05)
        assert log == []
        track.left = 2
        pool.wake()
        deadline = time.time() + 5
        while len(log) < 2 and time.time() < deadline:
            time.sleep(0.01)
        assert log == ["x", "x"]
    finally:
        pool.close()
