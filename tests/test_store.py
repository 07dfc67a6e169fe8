"""The store contract, run against the local directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3

from qa.config import Settings
from qa.schema import CallMeta, ErrorRecord
from qa.store import (
    BucketNotFoundError,
    CorruptObjectError,
    InvalidKeyError,
    LocalStore,
    ObjectExistsError,
    ObjectNotFoundError,
    S3Store,
    Store,
    StoreAuthError,
    StoreError,
    StoreUnavailableError,
    keys,
    open_store,
    validate_key,
)

pytest_plugins = ["s3server"]


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def store(request, tmp_path) -> Store:
    if request.param == "local":
        return open_store(Settings(home=tmp_path / "home"))
    s3_settings = request.getfixturevalue("s3_settings")
    return open_store(s3_settings, retries=2, backoff=0.05)


# --------------------------------------------------------------------------- contract


def test_bytes_round_trip_and_overwrite(store: Store):
    store.put_bytes("a/b/c.bin", b"one")
    assert store.get_bytes("a/b/c.bin") == b"one"
    store.put_bytes("a/b/c.bin", b"two")  # overwrite=True is the default
    assert store.get_bytes("a/b/c.bin") == b"two"
    assert store.stat("a/b/c.bin").size == 3


def test_create_only_refuses_existing(store: Store):
    store.put_bytes("x/once.json", b"{}", overwrite=False)
    with pytest.raises(ObjectExistsError) as err:
        store.put_bytes("x/once.json", b'{"a": 1}', overwrite=False)
    assert "x/once.json" in str(err.value)
    assert store.get_bytes("x/once.json") == b"{}"


def test_create_only_race_has_one_winner(store: Store):
    """Concurrent creators of one key: exactly one succeeds, the rest get ObjectExistsError."""
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer(i: int) -> None:
        barrier.wait()
        try:
            store.put_bytes("race/key", f"writer {i}".encode(), overwrite=False)
            outcomes.append("won")
        except ObjectExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "won"]
    assert store.get_bytes("race/key").startswith(b"writer ")


def test_json_with_models(store: Store):
    meta = CallMeta(
        call_id="c-1",
        agent_id="a7",
        team="blue",
        started_at=datetime(2025, 3, 3, 9, 30, tzinfo=UTC),
    )
    store.put_json(keys.meta("c-1"), meta)
    assert store.get_json(keys.meta("c-1"), model=CallMeta) == meta
    store.put_json("plain.json", {"n": 1, "when": datetime(2025, 1, 1, tzinfo=UTC)})
    assert store.get_json("plain.json") == {"n": 1, "when": "2025-01-01T00:00:00Z"}
    store.put_bytes("bad.json", b"{not json")
    with pytest.raises(CorruptObjectError):
        store.get_json("bad.json")
    with pytest.raises(CorruptObjectError):
        store.get_json("plain.json", model=ErrorRecord)


def test_missing_key_is_typed(store: Store):
    with pytest.raises(ObjectNotFoundError) as err:
        store.get_bytes("nope/missing.json")
    assert "nope/missing.json" in str(err.value)
    with pytest.raises(ObjectNotFoundError):
        store.stat("nope/missing.json")
    with pytest.raises(ObjectNotFoundError):
        store.get_file("nope/missing.json", Path("/tmp/never-written"))
    assert not store.exists("nope/missing.json")
    store.delete("nope/missing.json")  # idempotent


def test_exists_and_delete(store: Store):
    store.put_bytes("d/k", b"1")
    assert store.exists("d/k")
    assert not store.exists("d")  # a prefix is not an object
    store.delete("d/k")
    assert not store.exists("d/k")
    assert list(store.list("d/")) == []


def test_list_is_sorted_recursive_and_prefix_exact(store: Store):
    for key in [
        "calls/b/meta.json",
        "calls/a/audio.wav",
        "calls/a/meta.json",
        "calls/ab/meta.json",
        "results/a/1/s@1.json",
        "top",
    ]:
        store.put_bytes(key, b"x")
    assert list(store.list("calls/")) == [
        "calls/a/audio.wav",
        "calls/a/meta.json",
        "calls/ab/meta.json",
        "calls/b/meta.json",
    ]
    assert list(store.list("calls/a/")) == ["calls/a/audio.wav", "calls/a/meta.json"]
    assert list(store.list("calls/a")) == [
        "calls/a/audio.wav",
        "calls/a/meta.json",
        "calls/ab/meta.json",
    ]
    assert len(list(store.list())) == 6
    assert list(store.list("zzz/")) == []


def test_files_stream_round_trip(store: Store, tmp_path: Path):
    src = tmp_path / "big.wav"
    payload = bytes(range(256)) * 20_000  # ~5 MB
    src.write_bytes(payload)
    store.put_file("calls/c1/audio.wav", src, "audio/wav", overwrite=False)
    with pytest.raises(ObjectExistsError):
        store.put_file("calls/c1/audio.wav", src, overwrite=False)
    out = store.get_file("calls/c1/audio.wav", tmp_path / "out" / "copy.wav")
    assert out.read_bytes() == payload
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".tmp")]


def test_url_serves_the_object(store: Store):
    store.put_bytes("calls/c2/audio.wav", b"RIFFdata", "audio/wav")
    url = store.url("calls/c2/audio.wav", expires=timedelta(minutes=5))
    if url.startswith("file://"):
        assert Path(url.removeprefix("file://")).read_bytes() == b"RIFFdata"
    else:
        resp = urllib3.request("GET", url)
        assert resp.status == 200 and resp.data == b"RIFFdata"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/abs",
        "a/../b",
        "..",
        "a//b",
        "a/",
        "a/.hidden",
        "a b",
        "a/b\\c",
        "ü",
        "a/%2e%2e",
        "a/b?c",
    ],
)
def test_bad_keys_are_refused(store: Store, bad: str):
    with pytest.raises(InvalidKeyError):
        store.put_bytes(bad, b"x")
    with pytest.raises(InvalidKeyError):
        store.get_bytes(bad)


# --------------------------------------------------------------------------- layout


def test_key_layout():
    assert keys.audio("c1", ".WAV") == "originals/c1/audio.wav"  # restricted prefix
    assert keys.playable("c1", "4") == "playback/c1/4.flac"
    assert keys.parse_result(keys.playable("c1", "4")) is None
    assert keys.meta("c1") == "calls/c1/meta.json"
    assert keys.result("c1", "0.1.0", "en_cs", "3") == "results/c1/0.1.0/en_cs@3.json"
    assert keys.parse_result("results/c1/0.1.0/en_cs@3.json") == ("c1", "0.1.0", "en_cs", "3")
    assert keys.parse_result("results/c1/x.json") is None
    assert keys.error("c1", "0.1.0") == "errors/c1/0.1.0.json"
    assert keys.content_hash("a" * 64) == "calls/_hashes/" + "a" * 64
    assert keys.parse_meta("calls/c1/meta.json") == "c1"
    assert keys.parse_meta(keys.content_hash("b" * 64)) is None
    for bad in ("../x", "-lead", "a/b", "x" * 200):
        with pytest.raises(InvalidKeyError):
            keys.meta(bad)
    with pytest.raises(InvalidKeyError):
        keys.result("c1", "../v", "s", "1")
    with pytest.raises(InvalidKeyError):
        keys.audio("c1", "w/av")
    assert validate_key("index/calls/part-1.parquet")


def test_open_store_urls(tmp_path: Path):
    s = open_store(Settings(home=tmp_path))
    assert isinstance(s, LocalStore) and s.root == (tmp_path / "store").resolve()
    s = open_store(Settings(home=tmp_path, store_url=f"file://{tmp_path}/other"))
    assert isinstance(s, LocalStore) and s.root == tmp_path / "other"
    s = open_store(
        Settings(
            home=tmp_path,
            store_url="s3://bucket/pre/fix",
            s3_endpoint="h:9000",
            s3_access_key="a",
            s3_secret_key="b",
        )
    )
    assert isinstance(s, S3Store) and (s.bucket, s.prefix, s.endpoint) == (
        "bucket",
        "pre/fix",
        "h:9000",
    )
    with pytest.raises(StoreError, match="QA_S3_ENDPOINT"):
        open_store(Settings(home=tmp_path, store_url="s3://bucket"))
    with pytest.raises(StoreError, match="unsupported"):
        open_store(Settings(home=tmp_path, store_url="ftp://x/y"))


def test_local_publish_leaves_no_partial_object(tmp_path: Path, monkeypatch):
    """A write that dies mid-way leaves neither a half object nor a visible temp file."""
    store = LocalStore(tmp_path / "s")
    store.put_bytes("k/v", b"old")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr("qa.store.os.replace", boom)
    with pytest.raises(OSError):
        store.put_bytes("k/v", b"new")
    monkeypatch.undo()
    assert store.get_bytes("k/v") == b"old"
    assert list(store.list()) == ["k/v"]
    assert [p.name for p in (tmp_path / "s" / "k").iterdir()] == ["v"]


# --------------------------------------------------------------------------- S3 failures


@pytest.mark.integration
def test_s3_missing_bucket_and_bad_credentials(s3_server, s3_settings):
    missing = open_store(
        s3_settings.model_copy(update={"store_url": "s3://no-such-bucket-qa"}), retries=0
    )
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-qa"):
        missing.check()
    with pytest.raises(BucketNotFoundError):
        missing.put_bytes("k", b"x")
    bad = open_store(s3_settings.model_copy(update={"s3_secret_key": "wrong-secret"}), retries=0)
    with pytest.raises(StoreAuthError, match="QA_S3_SECRET_KEY"):
        bad.get_bytes("k")
    open_store(s3_settings).check()


@pytest.mark.integration
def test_s3_unreachable_endpoint_is_bounded(s3_settings):
    from s3server import free_ports

    (port,) = free_ports(1)
    store = open_store(
        s3_settings.model_copy(update={"s3_endpoint": f"127.0.0.1:{port}"}), retries=2, backoff=0.05
    )
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="3 attempts"):
        store.get_bytes("k")
    assert time.monotonic() - t0 < 5


@pytest.mark.integration
def test_s3_survives_a_restart(s3_server, s3_settings):
    """Objects persist across a server restart, and a call made while the server is down
    succeeds once it is back within the retry window."""
    store = open_store(s3_settings, retries=8, backoff=0.5, max_backoff=2.0)
    store.put_bytes("calls/c9/meta.json", b"{}")
    s3_server.stop()
    with pytest.raises(StoreUnavailableError):
        open_store(s3_settings, retries=0).get_bytes("calls/c9/meta.json")
    restarter = threading.Timer(1.0, s3_server.start)
    restarter.start()
    try:
        assert store.get_bytes("calls/c9/meta.json") == b"{}"
        store.put_bytes("calls/c9/after.json", b"[]", overwrite=False)
    finally:
        restarter.join()
    assert list(store.list("calls/c9/")) == ["calls/c9/after.json", "calls/c9/meta.json"]


@pytest.mark.integration
def test_s3_retried_create_is_not_a_false_conflict(s3_settings, monkeypatch):
    """The first PUT lands but its reply is lost: the retry must not report 'exists'."""
    import urllib3.exceptions

    store = open_store(s3_settings, retries=2, backoff=0.01)
    real = store.client._put_object
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 1:
            raise urllib3.exceptions.ProtocolError("connection reset after the write")
        return result

    monkeypatch.setattr(store.client, "_put_object", flaky)
    store.put_bytes("k/once", b"payload", overwrite=False)
    assert calls["n"] == 2 and store.get_bytes("k/once") == b"payload"
    with pytest.raises(ObjectExistsError):
        store.put_bytes("k/once", b"other", overwrite=False)
