"""Object store: one contract, a local directory (embedded default) and S3 (MinIO, SeaweedFS, AWS).

Every stage reads and writes through `Store`, so the same code runs on a laptop and against
a production bucket. Guarantees both backends keep:

- **Atomic publish.** A reader sees the whole old object or the whole new one, never half.
  Local: the bytes go to a temporary file in the destination directory, are fsynced, then
  `os.replace`d (or hard-linked, for create-only writes) into place. S3: a single PUT is
  atomic by the protocol; a multipart upload (large files) becomes visible only when it
  completes, and an aborted one leaves nothing behind.
- **Create-only writes.** `overwrite=False` raises `ObjectExistsError` instead of replacing.
  Local: `os.link` of the temporary file fails if the name exists (atomic). S3: the PUT
  carries `If-None-Match: *` (honoured by AWS since 2024, SeaweedFS and current MinIO); a
  server that ignores the header degrades to check-then-put, so two writers racing on the
  same key within milliseconds could both succeed there. Multipart uploads (over
  `SINGLE_PUT_MAX`) always use check-then-put.
- **Typed errors.** Missing key, missing bucket, bad credentials and an unreachable
  endpoint each raise their own `StoreError` subclass naming the store and key.
- **Retries.** The S3 store retries transient failures (connection refused/reset, timeouts,
  5xx, SlowDown) with bounded exponential backoff, then raises `StoreUnavailableError`.

Keys are relative, '/'-separated, from a safe alphabet; the layout lives in `keys`.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from qa.errors import StoreError
from qa.schema import validate_call_id

if TYPE_CHECKING:
    from qa.config import Settings

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

CHUNK = 1 << 20
SINGLE_PUT_MAX = 64 << 20  # larger files go multipart (create-only becomes check-then-put)
DEFAULT_URL_EXPIRY = timedelta(hours=1)


# --------------------------------------------------------------------------- errors


class InvalidKeyError(StoreError):
    """A key that could escape the store or is not portable between backends."""


class ObjectNotFoundError(StoreError):
    pass


class ObjectExistsError(StoreError):
    """A create-only write found the key already taken."""


class BucketNotFoundError(StoreError):
    pass


class StoreAuthError(StoreError):
    """Credentials rejected or not allowed to do this."""


class StoreUnavailableError(StoreError):
    """The endpoint did not answer (or kept failing) after the bounded retries."""


class CorruptObjectError(StoreError):
    """The object exists but does not parse as the record it should be."""


# --------------------------------------------------------------------------- keys

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_@=+-][A-Za-z0-9._@=+-]{0,254}$")
_EXT_RE = re.compile(r"^[a-z0-9]{1,8}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def validate_key(key: str) -> str:
    """Keys become file paths and URLs: no traversal, no absolute paths, no odd characters.

    Segments may not start with '.', which keeps the local store's temporary files private.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKeyError(f"invalid object key {key!r}: empty")
    if key.startswith("/") or key.endswith("/") or "//" in key:
        raise InvalidKeyError(f"invalid object key {key!r}: no leading, trailing or double '/'")
    for seg in key.split("/"):
        if ".." in seg or not _SEGMENT_RE.match(seg):
            raise InvalidKeyError(
                f"invalid object key {key!r}: segment {seg!r} must be letters, digits or "
                "'._@=+-', not start with '.', and not contain '..'"
            )
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, a key, a key ending in '/', or the start of a segment."""
    if prefix == "":
        return prefix
    body = prefix[:-1] if prefix.endswith("/") else prefix
    validate_key(body)
    return prefix


def _version_segment(value: str, what: str) -> str:
    if not value or not _SEGMENT_RE.match(value) or ".." in value or "@" in value:
        raise InvalidKeyError(f"invalid {what} {value!r} for an object key")
    return value


def _call(call_id: str) -> str:
    try:
        return validate_call_id(call_id)
    except ValueError as exc:
        raise InvalidKeyError(str(exc)) from exc


class Keys:
    """Where each record lives. Change the layout here, nowhere else."""

    CALLS = "calls/"
    ORIGINALS = "originals/"  # uploaded recordings: restricted, never played
    PLAYBACK = "playback/"  # redacted copies: the only audio people hear
    RESULTS = "results/"
    ERRORS = "errors/"
    HASHES = "calls/_hashes/"
    INDEX = "index/calls/"
    LIVE = "live/"

    @staticmethod
    def call_prefix(call_id: str) -> str:
        return f"calls/{_call(call_id)}/"

    @staticmethod
    def audio(call_id: str, ext: str) -> str:
        """The uploaded original, under a prefix a site can lock down (bucket policy)."""
        ext = ext.lower().lstrip(".")
        if not _EXT_RE.match(ext):
            raise InvalidKeyError(f"invalid audio extension {ext!r}")
        return f"{Keys.original_prefix(call_id)}audio.{ext}"

    @staticmethod
    def original_prefix(call_id: str) -> str:
        return f"{Keys.ORIGINALS}{_call(call_id)}/"

    @staticmethod
    def playable(call_id: str, pipeline_version: str) -> str:
        """The redacted copy made from one pipeline version's transcript."""
        version = _version_segment(pipeline_version, "pipeline version")
        return f"{Keys.playable_prefix(call_id)}{version}.flac"

    @staticmethod
    def playable_prefix(call_id: str) -> str:
        return f"{Keys.PLAYBACK}{_call(call_id)}/"

    @staticmethod
    def meta(call_id: str) -> str:
        return f"calls/{_call(call_id)}/meta.json"

    @staticmethod
    def live(call_id: str) -> str:
        """What the live monitor saw of a call (its transcript, alerts, word latency)."""
        return f"{Keys.LIVE}{_call(call_id)}.json"

    @staticmethod
    def content_hash(sha256: str) -> str:
        if not _SHA256_RE.match(sha256):
            raise InvalidKeyError(f"invalid sha256 {sha256!r}")
        return f"{Keys.HASHES}{sha256}"

    @staticmethod
    def result(
        call_id: str, pipeline_version: str, scorecard_id: str, scorecard_version: str
    ) -> str:
        return (
            f"results/{_call(call_id)}/{_version_segment(pipeline_version, 'pipeline version')}"
            f"/{_version_segment(scorecard_id, 'scorecard id')}"
            f"@{_version_segment(scorecard_version, 'scorecard version')}.json"
        )

    @staticmethod
    def results_prefix(call_id: str | None = None, pipeline_version: str | None = None) -> str:
        if call_id is None:
            return Keys.RESULTS
        prefix = f"results/{_call(call_id)}/"
        if pipeline_version is not None:
            prefix += _version_segment(pipeline_version, "pipeline version") + "/"
        return prefix

    @staticmethod
    def error(call_id: str, pipeline_version: str) -> str:
        version = _version_segment(pipeline_version, "pipeline version")
        return f"errors/{_call(call_id)}/{version}.json"

    @staticmethod
    def index_part(name: str) -> str:
        return validate_key(f"{Keys.INDEX}{name}")

    @staticmethod
    def parse_result(key: str) -> tuple[str, str, str, str] | None:
        """(call_id, pipeline_version, scorecard_id, scorecard_version) or None."""
        parts = key.split("/")
        if len(parts) != 4 or parts[0] != "results" or not parts[3].endswith(".json"):
            return None
        sid, sep, sver = parts[3][: -len(".json")].partition("@")
        if not sep or not sid or not sver:
            return None
        return parts[1], parts[2], sid, sver

    @staticmethod
    def parse_meta(key: str) -> str | None:
        """The call id of a `calls/<id>/meta.json` key, else None."""
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "calls" and parts[2] == "meta.json":
            return parts[1]
        return None


keys = Keys()


# --------------------------------------------------------------------------- contract


class ObjectInfo(BaseModel):
    key: str
    size: int
    modified: datetime | None = None
    etag: str | None = None


def _encode_json(value: BaseModel | dict[str, Any] | list[Any]) -> bytes:
    if isinstance(value, BaseModel):
        return value.model_dump_json().encode()
    return to_json(value)


class Store(ABC):
    """What every stage may do with stored objects; both backends pass the same tests."""

    url_root: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url_root!r})"

    def _where(self, key: str) -> str:
        return f"{self.url_root.rstrip('/')}/{key}"

    @abstractmethod
    def put_bytes(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def put_file(
        self, key: str, path: str | Path, content_type: str | None = None, *, overwrite: bool = True
    ) -> None:
        """Streamed upload of a large file (audio) without loading it into memory."""

    @abstractmethod
    def get_file(self, key: str, path: str | Path) -> Path:
        """Streamed download; `path` appears complete or not at all."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with `prefix` (all depths), in lexicographic order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the key; deleting a missing key is not an error (S3 semantics)."""

    @abstractmethod
    def url(self, key: str, expires: timedelta = DEFAULT_URL_EXPIRY) -> str:
        """Where a player can fetch the object: presigned http(s) for S3, file:// locally."""

    def check(self) -> None:  # noqa: B027 - optional hook, a local directory needs none
        """Fail fast with a typed error when the store cannot be used (no-op if it can)."""

    def local_path(self, key: str) -> Path | None:
        """The object's file when the store is a local directory, else None."""
        return None

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def put_json(
        self,
        key: str,
        value: BaseModel | dict[str, Any] | builtins.list[Any],
        *,
        overwrite: bool = True,
    ) -> None:
        self.put_bytes(key, _encode_json(value), "application/json", overwrite=overwrite)

    def get_json(self, key: str, model: type[M] | None = None) -> Any:
        """Parsed JSON, or a validated `model` instance; a bad object is `CorruptObjectError`."""
        data = self.get_bytes(key)
        try:
            if model is not None:
                return model.model_validate_json(data)
            return json.loads(data)
        except (ValidationError, ValueError) as exc:
            raise CorruptObjectError(
                f"not a valid {model.__name__ if model else 'JSON'} object: {exc}",
                file=self._where(key),
            ) from exc


# --------------------------------------------------------------------------- local


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class LocalStore(Store):
    """A directory tree; the embedded default and the store tests run without a server."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url_root = self.root.as_uri()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def _publish(self, key: str, write: Callable[[IO[bytes]], None], overwrite: bool) -> None:
        dest = self._path(key)
        parent = dest.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidKeyError(
                "a parent of this key is an object", file=self._where(key)
            ) from exc
        if dest.is_dir():
            raise InvalidKeyError("key names a prefix, not an object", file=self._where(key))
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp, dest)
            else:
                try:
                    os.link(tmp, dest)  # fails if dest exists: atomic create-only
                except FileExistsError as exc:
                    raise ObjectExistsError(
                        "object exists and overwrite=False", file=self._where(key)
                    ) from exc
                tmp.unlink()
            _fsync_dir(parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def put_bytes(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> None:
        self._publish(key, lambda fh: fh.write(data), overwrite)

    def put_file(
        self, key: str, path: str | Path, content_type: str | None = None, *, overwrite: bool = True
    ) -> None:
        src = Path(path)

        def copy(fh: IO[bytes]) -> None:
            with src.open("rb") as inp:
                shutil.copyfileobj(inp, fh, CHUNK)

        try:
            self._publish(key, copy, overwrite)
        except FileNotFoundError as exc:
            raise StoreError(f"cannot read {src}: {exc.strerror}", file=str(src)) from exc

    def _open(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError("no such object", file=self._where(key)) from exc

    def get_bytes(self, key: str) -> bytes:
        with self._open(key) as fh:
            return fh.read()

    def get_file(self, key: str, path: str | Path) -> Path:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self._open(key) as src:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
                os.replace(tmp, dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return dest

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError("no such object", file=self._where(key)) from exc
        if not path.is_file():
            raise ObjectNotFoundError("no such object (a prefix)", file=self._where(key))
        return ObjectInfo(
            key=key,
            size=st.st_size,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
            etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir():
            return
        # Walk in sorted order so listings match S3's lexicographic order.
        found: builtins.list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        yield from sorted(found)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
        # Tidy empty directories up to the root, so listings of prefixes stay cheap.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def url(self, key: str, expires: timedelta = DEFAULT_URL_EXPIRY) -> str:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError("no such object", file=self._where(key))
        return path.as_uri()


# --------------------------------------------------------------------------- S3

# S3 error codes worth another try; everything else is the caller's problem.
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "OperationAborted",
    "XMinioServerNotInitialized",
}
_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}


class S3Store(Store):
    """A bucket (optionally under a prefix) on any S3-compatible server, via the minio client."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        secure: bool = False,
        region: str | None = None,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
    ) -> None:
        import urllib3
        from minio import Minio

        parsed = urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
        if parsed.scheme in ("http", "https"):
            secure = parsed.scheme == "https"
        if not parsed.netloc:
            raise StoreError(f"invalid S3 endpoint {endpoint!r}: expected host:port")
        self.endpoint = parsed.netloc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.url_root = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        # urllib3 does not retry: retries live in `_retry`, where they are bounded and typed.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            maxsize=10,
        )
        try:
            self.client = Minio(
                self.endpoint,
                access_key=access_key,
                secret_key=secret_key,
                secure=secure,
                region=region or "us-east-1",
                http_client=http,
            )
        except ValueError as exc:
            raise StoreError(f"invalid S3 settings: {exc}") from exc

    # ---- plumbing

    def _name(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _map(self, exc: Exception, key: str | None) -> StoreError | None:
        """A typed error for a permanent failure, None for a transient one."""
        from minio.error import InvalidResponseError, S3Error, ServerError

        where = self._where(key) if key else self.url_root
        if isinstance(exc, S3Error):
            code = exc.code or ""
            if code in _TRANSIENT_CODES:
                return None
            if code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return ObjectNotFoundError("no such object", file=where)
            if code == "NoSuchBucket":
                return BucketNotFoundError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint}", file=where
                )
            if code == "PreconditionFailed":
                return ObjectExistsError("object exists and overwrite=False", file=where)
            if code in _AUTH_CODES:
                return StoreAuthError(
                    f"credentials rejected by {self.endpoint} ({code}): "
                    "check QA_S3_ACCESS_KEY / QA_S3_SECRET_KEY",
                    file=where,
                )
            return StoreError(f"S3 error {code}: {exc.message}", file=where)
        if isinstance(exc, ServerError):
            return None if exc.status_code >= 500 else StoreError(str(exc), file=where)
        if isinstance(exc, InvalidResponseError):
            status = getattr(exc, "_code", None) or 0
            return None if int(status) >= 500 else StoreError(str(exc), file=where)
        return None  # connection-level failure: transient

    def _retry(self, what: str, key: str | None, fn: Callable[[], T]) -> T:
        import urllib3
        from minio.error import MinioException

        transient = (MinioException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except transient as exc:
                typed = self._map(exc, key)
                if typed is not None:
                    raise typed from exc
                last = exc
            if attempt < self.retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                time.sleep(delay * random.uniform(0.5, 1.0))
        raise StoreUnavailableError(
            f"S3 endpoint {self.endpoint} unavailable during {what} after "
            f"{self.retries + 1} attempts: {last}",
            file=self._where(key) if key else self.url_root,
        ) from last

    # ---- contract

    def check(self) -> None:
        found = self._retry("bucket check", None, lambda: self.client.bucket_exists(self.bucket))
        if not found:
            raise BucketNotFoundError(
                f"bucket {self.bucket!r} does not exist at {self.endpoint}", file=self.url_root
            )

    def _put_single(self, key: str, data: bytes, content_type: str | None, overwrite: bool) -> None:
        name = self._name(key)
        headers = {"Content-Type": content_type or "application/octet-stream"}
        if not overwrite:
            if self.exists(key):  # also covers servers that ignore If-None-Match
                raise ObjectExistsError("object exists and overwrite=False", file=self._where(key))
            headers["If-None-Match"] = "*"
        attempts = 0

        def put() -> None:
            nonlocal attempts
            attempts += 1
            # The public put_object turns unknown headers into user metadata, so the
            # conditional PUT goes through the client's own single-request call.
            self.client._put_object(self.bucket, name, data, headers=dict(headers))

        try:
            self._retry("put", key, put)
        except ObjectExistsError:
            # A retried create whose first PUT landed but whose reply was lost: ours if equal.
            if attempts > 1 and self._etag(key) == hashlib.md5(data).hexdigest():
                return
            raise

    def _etag(self, key: str) -> str | None:
        try:
            return (self.stat(key).etag or "").strip('"') or None
        except ObjectNotFoundError:
            return None

    def put_bytes(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> None:
        self._put_single(key, bytes(data), content_type, overwrite)

    def put_file(
        self, key: str, path: str | Path, content_type: str | None = None, *, overwrite: bool = True
    ) -> None:
        src = Path(path)
        try:
            size = src.stat().st_size
        except OSError as exc:
            raise StoreError(f"cannot read {src}: {exc.strerror}", file=str(src)) from exc
        if size <= SINGLE_PUT_MAX:
            self._put_single(key, src.read_bytes(), content_type, overwrite)
            return
        name = self._name(key)
        if not overwrite and self.exists(key):
            raise ObjectExistsError("object exists and overwrite=False", file=self._where(key))

        def upload() -> None:
            with src.open("rb") as fh:  # reopened per attempt: a retry starts from byte 0
                self.client.put_object(
                    self.bucket,
                    name,
                    fh,
                    size,
                    content_type=content_type or "application/octet-stream",
                    part_size=16 << 20,
                    num_parallel_uploads=2,
                )

        self._retry("multipart upload", key, upload)

    def _read(self, key: str, sink: Callable[[Iterator[bytes]], T]) -> T:
        name = self._name(key)

        def read() -> T:
            resp = self.client.get_object(self.bucket, name)
            try:
                return sink(resp.stream(CHUNK))
            finally:
                resp.close()
                resp.release_conn()

        return self._retry("get", key, read)

    def get_bytes(self, key: str) -> bytes:
        return self._read(key, lambda chunks: b"".join(chunks))

    def get_file(self, key: str, path: str | Path) -> Path:
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)

        def sink(chunks: Iterator[bytes]) -> Path:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                os.replace(tmp, dest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return dest

        return self._read(key, sink)

    def stat(self, key: str) -> ObjectInfo:
        name = self._name(key)
        obj = self._retry("stat", key, lambda: self.client.stat_object(self.bucket, name))
        return ObjectInfo(
            key=key,
            size=obj.size or 0,
            modified=obj.last_modified,
            etag=(obj.etag or "").strip('"') or None,
        )

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        after: str | None = None
        while True:  # a failure mid-listing resumes after the last key seen
            batch: builtins.list[str] = []

            def page(start: str | None = after, out: builtins.list[str] = batch) -> None:
                out.clear()
                extra = {"start_after": start} if start else {}
                for obj in self.client.list_objects(
                    self.bucket, prefix=full, recursive=True, **extra
                ):
                    out.append(obj.object_name)
                    if len(out) >= 1000:
                        break

            self._retry("list", prefix or None, page)
            for name in batch:
                yield name[strip:]
            if len(batch) < 1000:
                return
            after = batch[-1]

    def delete(self, key: str) -> None:
        name = self._name(key)
        self._retry("delete", key, lambda: self.client.remove_object(self.bucket, name))

    def url(self, key: str, expires: timedelta = DEFAULT_URL_EXPIRY) -> str:
        name = self._name(key)
        return self._retry(
            "presign",
            key,
            lambda: self.client.presigned_get_object(self.bucket, name, expires=expires),
        )


# --------------------------------------------------------------------------- factory


def open_store(settings: Settings, **s3_options: Any) -> Store:
    """The store named by `settings.resolved_store_url`: file:///path, a plain path, or s3://."""
    url = settings.resolved_store_url
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        path = unquote(parsed.path) if parsed.scheme == "file" else url
        if parsed.scheme == "file" and parsed.netloc not in ("", "localhost"):
            raise StoreError(f"invalid store URL {url!r}: use file:///absolute/path")
        return LocalStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"invalid store URL {url!r}: use s3://bucket[/prefix]")
        if not settings.s3_endpoint:
            raise StoreError(f"store URL {url} needs QA_S3_ENDPOINT (host:port)")
        region = parse_qs(parsed.query).get("region", [None])[0]
        return S3Store(
            parsed.netloc,
            parsed.path.strip("/"),
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=settings.s3_secure,
            region=region,
            **s3_options,
        )
    raise StoreError(f"unsupported store URL {url!r}: use file:///path or s3://bucket[/prefix]")


def sha256_file(path: str | Path) -> str:
    """Streamed content hash, the identity of a recording for de-duplication."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = [
    "BucketNotFoundError",
    "CorruptObjectError",
    "InvalidKeyError",
    "Keys",
    "LocalStore",
    "ObjectExistsError",
    "ObjectInfo",
    "ObjectNotFoundError",
    "S3Store",
    "Store",
    "StoreAuthError",
    "StoreError",
    "StoreUnavailableError",
    "keys",
    "open_store",
    "sha256_file",
    "validate_key",
]
