"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent.

The workflow database runs on SQLite and on a real Postgres: `database_url` is parametrized
over both, and the Postgres server (the `pgserver` wheel's binaries) is started once per
session in a temporary directory, listening on a unix socket only.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("QA_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """`qa.config.get_settings` is cached per process; a test that sets QA_* variables must
    not see the settings an earlier test left behind."""
    from qa.config import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set QA_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def settings(tmp_path):
    """Settings isolated to a temporary home, so tests never touch .qa/ of the checkout."""
    from qa.config import Settings

    return Settings(home=tmp_path / "home")


# --------------------------------------------------------------------------- Postgres

DATABASES = ["sqlite", "postgres"]


class PostgresServer:
    """A throwaway Postgres cluster in a temporary directory, reached over a unix socket.

    Postgres refuses to run as root, so under root the cluster belongs to `nobody`. Durability
    is switched off (fsync, full-page writes): a test database is never recovered.
    """

    def __init__(self) -> None:
        # the wheel's binaries only: importing the package would set up its own server state
        spec = importlib.util.find_spec("pgserver")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("pgserver is not installed: run `make setup` (dev dependencies)")
        self.bin = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
        root = os.geteuid() == 0
        # under root in /tmp, whatever TMPDIR says: `nobody` must reach it, and a unix
        # socket's path must stay short
        self.dir = Path(tempfile.mkdtemp(prefix="qa-pg-", dir="/tmp" if root else None))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._run_as: dict[str, int] = {}
        if root:
            owner = pwd.getpwnam("nobody")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._run_as = {"user": owner.pw_uid, "group": owner.pw_gid}
        self._counter = itertools.count()

    def _tool(self, *args: str) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=120,
            **self._run_as,
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}\n{log}")

    def start(self) -> None:
        self._tool(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        )
        options = (
            f"-h '' -k {self.dir} -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=300"
        )
        self._tool(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "120",
            "start",
        )

    def stop(self) -> None:
        try:
            self._tool("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.dir}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host=str(self.dir), user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def create_database(self, prefix: str = "qa") -> str:
        """A new empty database; its name."""
        name = f"{prefix}_{next(self._counter)}"
        self._admin(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        """Drop it, closing what connections a test's engines still hold."""
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Databases:
    """Fresh workflow databases of either kind; the Postgres server starts on first use."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._server: PostgresServer | None = None
        self._names: dict[str, str] = {}

    def new(self, kind: str, directory: Path) -> str:
        """The URL of a new empty database ("sqlite": a file in `directory`)."""
        if kind == "sqlite":
            return f"sqlite:///{Path(directory) / 'workflow.db'}"
        if kind != "postgres":
            raise ValueError(f"unknown database kind {kind!r}")
        if self._server is None:
            self._server = self._request.getfixturevalue("postgres_server")
        name = self._server.create_database()
        url = self._server.url(name)
        self._names[url] = name
        return url

    def drop(self, url: str) -> None:
        """Drop a Postgres database (and its open connections); SQLite files go with tmp."""
        name = self._names.pop(url, None)
        if name is not None and self._server is not None:
            self._server.drop_database(name)

    @contextmanager
    def fresh(self, kind: str, directory: Path) -> Iterator[str]:
        url = self.new(kind, directory)
        try:
            yield url
        finally:
            self.drop(url)


@pytest.fixture(scope="session")
def databases(request: pytest.FixtureRequest) -> Databases:
    return Databases(request)


@pytest.fixture(params=DATABASES)
def database_url(request, databases: Databases, tmp_path: Path) -> Iterator[str]:
    """A fresh workflow database URL per test, on SQLite and on Postgres."""
    with databases.fresh(request.param, tmp_path) as url:
        yield url
