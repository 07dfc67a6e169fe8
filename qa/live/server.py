"""`qa live serve`: the WebSocket endpoint platforms stream calls to.

One asyncio loop takes every connection (`websockets`); decoding runs on the decode
pools' worker threads, and everything that touches the database, the store or a
recipient runs on small executors, so a slow store or alert recipient never stalls the
audio of other calls. Each stream is authenticated by a token per source (platform
account): an `Authorization: Bearer` header where the platform can send one, or the
`token` custom parameter of the start message where it cannot (Twilio). Limits are
explicit: message size, queued messages per connection, concurrent calls, call length,
and decode backlog per track (qa.live.stream); a stream that breaks them is closed with a
code and a reason that says which.

Once a second, each call's new words are checked by its `LiveChecker` and written to the
workflow database for the Live page, and alerts go through the alert engine's
once-only delivery. When a call ends its two tracks are stored as a normal stereo call
(`qa run` scores it with the batch decoder) and the live transcript and alerts are kept
beside it under `Keys.live`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from websockets.exceptions import ConnectionClosed

from qa.config import Settings
from qa.errors import QAError
from qa.live.models import LiveCallInfo, LiveEvent, LiveStatus
from qa.live.protocol import (
    ADAPTERS,
    CLOSE_BUSY,
    CLOSE_ERROR,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    MAX_FRAME_BYTES,
    ProtocolError,
    StreamMedia,
    StreamStart,
    StreamStop,
)
from qa.live.session import LiveCall, LiveRecord
from qa.schema import Direction, Role

log = logging.getLogger("qa.live")

START_TIMEOUT_S = 10.0  # a connection must start a call (and prove its token) by then
PUBLISH_EVERY_S = 0.5
MAX_MESSAGE_BYTES = MAX_FRAME_BYTES * 2  # base64 and JSON around the largest frame
MAX_QUEUED_MESSAGES = 256  # per connection: about 2.5 s of two-track Twilio audio
LOST_AFTER = timedelta(minutes=2)
# the track names Twilio gives: inbound is what the caller's side says, outbound what the
# call centre sends them, i.e. the agent
TWILIO_ROLES = {"inbound": Role.CUSTOMER, "outbound": Role.AGENT}


def token_source(tokens: dict[str, str], token: str | None) -> str | None:
    """The source whose token this is (compared in constant time), or None."""
    if not token:
        return None
    found = None
    for source, secret in tokens.items():
        if hmac.compare_digest(secret.encode(), token.encode()):
            found = source
    return found


def call_info(start: StreamStart, source: str, protocol: str, now: datetime) -> LiveCallInfo:
    """The call as the platform described it: custom parameters name the agent, team,
    queue, language and direction, and which track is the agent's (default: outbound)."""
    p = start.params
    agent_track = p.get("agent_track", "outbound")
    if agent_track not in start.tracks:
        raise ProtocolError(f"agent_track {agent_track!r} is not one of the stream's tracks")
    tracks = {
        name: Role.AGENT if name == agent_track else TWILIO_ROLES.get(name, Role.CUSTOMER)
        for name in start.tracks
    }
    if len(start.tracks) == 2 and len(set(tracks.values())) == 1:
        tracks = {name: Role.AGENT if name == agent_track else Role.CUSTOMER for name in tracks}
    try:
        return LiveCallInfo(
            call_id=p.get("call_id") or start.call_id,
            source=source,
            protocol=protocol,
            agent_id=p.get("agent_id") or None,
            team=p.get("team") or None,
            queue=p.get("queue") or None,
            language=p.get("language") or None,
            direction=Direction(p.get("direction", "inbound")),
            started_at=now,
            tracks=tracks,
        )
    except (ValidationError, ValueError) as exc:
        raise ProtocolError(f"start parameters: {exc}".replace("\n", " ")) from exc


class LiveServer:
    """Calls in progress and the machinery around them; `serve` runs it."""

    def __init__(
        self,
        settings: Settings,
        *,
        workflow: Any,
        store: Any,
        tokens: dict[str, str],
        decode_workers: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not tokens:
            raise QAError(
                'no live source tokens: set QA_LIVE_TOKENS, e.g. \'{"twilio-main": "<secret>"}\''
            )
        from qa.alerts.engine import AlertEngine
        from qa.pipeline import Models

        self.settings = settings
        self.workflow = workflow
        self.store = store
        self.tokens = tokens
        self.clock = clock
        self.models = Models(settings)
        self.workers = decode_workers or settings.live_decode_workers or _cores()
        self.calls: dict[str, _Open] = {}
        self.pools: dict[str, Any] = {}
        self.spool = Path(tempfile.mkdtemp(prefix="qa-live-", dir=_spool_root(settings)))
        self.io = ThreadPoolExecutor(1, thread_name_prefix="qa-live-db")
        self.storing = ThreadPoolExecutor(2, thread_name_prefix="qa-live-store")
        self.alerting = ThreadPoolExecutor(1, thread_name_prefix="qa-live-alerts")
        try:
            self.alerts: Any = AlertEngine.from_settings(settings, workflow)
        except QAError as exc:
            log.error("live alerts are off: %s", exc)
            self.alerts = None
        self.finished: list[LiveRecord] = []  # calls ended since start (tests, the log)
        self._publisher: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committed: asyncio.Event | None = None

    # ---------------------------------------------------------------- lifecycle

    async def serve(self, host: str, port: int, ready: Callable[[int], None] | None = None) -> None:
        """Accept streams until cancelled; `ready` gets the bound port."""
        from websockets.asyncio.server import serve

        await asyncio.get_running_loop().run_in_executor(self.io, self._recover)
        async with serve(
            self._connection,
            host,
            port,
            max_size=MAX_MESSAGE_BYTES,
            max_queue=MAX_QUEUED_MESSAGES,
            process_request=self._handshake,
            compression=None,
        ) as server:
            bound = next(iter(server.sockets)).getsockname()[1]
            log.info("live endpoint listening on ws://%s:%d/twilio", host, bound)
            self._loop, self._committed = asyncio.get_running_loop(), asyncio.Event()
            self._publisher = asyncio.create_task(self._publish_loop())
            if ready is not None:
                ready(bound)
            try:
                await asyncio.Future()
            finally:
                self._publisher.cancel()
                await self._drain()

    def _recover(self) -> None:
        lost = self.workflow.live_lost(LOST_AFTER)
        if lost:
            log.warning("%d live call(s) of an earlier run marked lost", lost)

    async def _drain(self) -> None:
        """On shutdown: end every call still open, storing what was received."""
        for call_id in list(self.calls):
            await self._end(call_id, "the live server stopped")
        for pool in self.pools.values():
            pool.close()
        self.io.shutdown(wait=True)
        self.storing.shutdown(wait=True)
        self.alerting.shutdown(wait=True)
        shutil.rmtree(self.spool, ignore_errors=True)

    # ---------------------------------------------------------------- a connection

    def _handshake(self, connection: Any, request: Any) -> Any:
        """Refuse unknown paths, and a bearer token that matches no source, before the
        upgrade; a request without a header proves its token in the start message."""
        path = request.path.split("?", 1)[0].rstrip("/") or "/twilio"
        if path.lstrip("/") not in ADAPTERS:
            return connection.respond(404, f"no live protocol at {path}\n")
        header = request.headers.get("Authorization", "")
        if header and token_source(self.tokens, header.removeprefix("Bearer ").strip()) is None:
            return connection.respond(401, "unknown token\n")
        return None

    async def _connection(self, ws: Any) -> None:
        path = ws.request.path.split("?", 1)[0].rstrip("/") or "/twilio"
        adapter = ADAPTERS[path.lstrip("/")]()
        header = ws.request.headers.get("Authorization", "")
        source = token_source(self.tokens, header.removeprefix("Bearer ").strip())
        call: LiveCall | None = None
        code, reason = CLOSE_NORMAL, "call ended"
        try:
            deadline = self.clock() + START_TIMEOUT_S
            while True:
                # until a call starts, the next message must come before the start deadline
                wait = None if call else max(0.0, deadline - self.clock())
                try:
                    message = await asyncio.wait_for(ws.recv(), wait)
                except ConnectionClosed:
                    break
                for event in adapter.parse(message):
                    if isinstance(event, StreamStart):
                        call = await self._start(event, source, adapter.name)
                    elif isinstance(event, StreamMedia):
                        self._media(call, event)
                    elif isinstance(event, StreamStop):
                        reason = event.reason
                        raise _Stopped
            if call is None:
                raise ProtocolError("the stream closed before its start message", CLOSE_POLICY)
            reason = "the stream closed without a stop message"
        except _Stopped:
            pass
        except TimeoutError:
            code, reason = CLOSE_POLICY, f"no start message within {START_TIMEOUT_S:g} s"
        except ProtocolError as exc:
            code, reason = exc.code, exc.reason
        except Exception:
            log.exception("live stream failed")
            code, reason = CLOSE_ERROR, "the live server failed; the call is kept as received"
        if call is not None:
            try:
                await self._end(call.info.call_id, reason)
            except Exception:
                log.exception("live call %s did not end cleanly", call.info.call_id)
                code, reason = CLOSE_ERROR, "the live server failed to finish the call"
        if code != CLOSE_NORMAL:
            log.warning("live stream closed (%d): %s", code, reason)
        await ws.close(code, reason[:120])

    async def _start(self, start: StreamStart, source: str | None, protocol: str) -> LiveCall:
        source = source or token_source(self.tokens, start.params.get("token"))
        if source is None:
            raise ProtocolError("unknown or missing token", CLOSE_POLICY)
        if len(self.calls) >= self.settings.live_max_calls:
            raise ProtocolError(
                f"at capacity ({self.settings.live_max_calls} calls); try again later",
                CLOSE_BUSY,
            )
        info = call_info(start, source, protocol, datetime.now(UTC))
        if info.call_id in self.calls:
            raise ProtocolError(f"call {info.call_id} is already streaming", CLOSE_POLICY)
        if info.language is None:
            info = info.model_copy(update={"language": self.settings.default_language or "en"})
        loop = asyncio.get_running_loop()
        pool, checker = await loop.run_in_executor(self.io, self._prepare, info)
        call = LiveCall(
            info,
            self.spool / info.call_id,
            lambda _: self._transcriber(pool.model, info, start.rate),
            rate=start.rate,
        )
        self.calls[info.call_id] = _Open(call, checker, pool)
        for name, track in call.tracks.items():
            pool.add((info.call_id, name), track.asr)
        log.info("live call %s from %s started (%s)", info.call_id, source, info.team or "no team")
        return call

    def _prepare(self, info: LiveCallInfo) -> tuple[Any, Any]:
        """The decode pool for the call's language and its checker (models load once)."""
        from qa.asr.whisper import select_model_key
        from qa.live.decode import DecodePool, load_live_model
        from qa.live.rules import LiveChecker

        key = select_model_key(info.language, self.settings)
        if key not in self.pools:
            self.pools[key] = DecodePool(
                load_live_model(self.settings, info.language, self.workers),
                self.workers,
                self._on_commit,
            )
        self.workflow.live_start(info)
        checker = LiveChecker(
            info,
            scorecard=self.models.scorecard(info.language or "en"),
            alerts=self.alerts.rules if self.alerts else None,
            sentiment=self._sentiment(),
        )
        return self.pools[key], checker

    def _sentiment(self) -> Any:
        try:
            return self.models.sentiment
        except QAError as exc:  # a missing model turns the sentiment rule off, not the call
            log.warning("live sentiment is off: %s", exc)
            return None

    def _transcriber(self, model: Any, info: LiveCallInfo, rate: int) -> Any:
        from qa.live.stream import StreamOptions, TrackTranscriber

        options = StreamOptions(**self.settings.live_stream)
        return TrackTranscriber(
            model,
            language=info.language,
            rate=rate,
            options=options,
            prompt=self.settings.asr_prompt,
        )

    def _media(self, call: LiveCall | None, media: StreamMedia) -> None:
        if call is None:
            raise ProtocolError("media before the start message")
        if call.seconds > self.settings.max_duration:
            raise ProtocolError(f"call longer than {self.settings.max_duration:g} s", CLOSE_POLICY)
        call.feed(media.track, media.samples, media.offset_ms, self.clock())
        self.calls[call.info.call_id].pool.wake()

    def _on_commit(self, key: tuple[str, str], commits: list) -> None:
        live = self.calls.get(key[0])
        if live is not None:
            live.call.commit(key[1], commits)
            if self._loop is not None and self._committed is not None:  # check new words now
                self._loop.call_soon_threadsafe(self._committed.set)

    # ---------------------------------------------------------------- publishing

    async def _publish_loop(self) -> None:
        """Publish as soon as words are committed (an alert should not wait for a timer),
        and at least every PUBLISH_EVERY_S (deadlines, silences, the page's heartbeat)."""
        loop = asyncio.get_running_loop()
        assert self._committed is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._committed.wait(), PUBLISH_EVERY_S)
            self._committed.clear()
            for call_id in list(self.calls):
                try:
                    await loop.run_in_executor(self.io, self._publish, call_id, False)
                except Exception:
                    log.exception("live call %s: publishing failed", call_id)

    def _publish(self, call_id: str, final: bool) -> list[LiveEvent]:
        """Check the call's words and write what changed for the Live page (a call with
        nothing new only every PUBLISH_EVERY_S, the page's heartbeat); alerts go out on
        their own thread."""
        live = self.calls.get(call_id)
        if live is None:
            return []
        call, checker = live.call, live.checker
        changed, lines = call.take_changes()
        if final:
            events = checker.finish(lines, call.seconds)
        else:
            events = checker.update(lines, call.seconds, call.voice_until())
        now = time.monotonic()
        if changed or events or (not final and now - live.written >= PUBLISH_EVERY_S):
            self.workflow.live_update(call_id, elapsed=call.seconds, lines=changed, events=events)
            live.written = now
        hits = checker.hits(events) if self.alerts else []
        if hits:
            self.alerting.submit(self._deliver, hits)
        call.events.extend(events)
        return events

    def _deliver(self, hits: list) -> None:
        try:
            self.alerts.deliver(hits)
        except Exception:
            log.exception("live alerts not delivered")

    # ---------------------------------------------------------------- the end of a call

    async def _end(self, call_id: str, reason: str) -> None:
        live = self.calls.get(call_id)
        if live is None:
            return
        loop, call = asyncio.get_running_loop(), live.call
        for name in call.tracks:
            last: Future = live.pool.finish((call_id, name))
            commits = await asyncio.wrap_future(last)
            call.commit(name, commits)
        try:
            await loop.run_in_executor(self.io, self._publish, call_id, True)
            await loop.run_in_executor(
                self.io, self.workflow.live_end, call_id, LiveStatus.ENDED, reason
            )
        finally:
            self.calls.pop(call_id, None)
        loop.run_in_executor(self.storing, self._store, call, reason)

    def _store(self, call: LiveCall, reason: str) -> None:
        """The recording as a normal stereo call, and the live record beside it."""
        from qa.audio import write_wav
        from qa.ingest import MappedCall, ingest_mapped
        from qa.schema import CallMeta
        from qa.store import Keys

        info = call.info
        p50, p95 = call.latency()
        record = LiveRecord(
            info=info,
            lines=call.lines,
            events=[e.model_dump(mode="json") for e in call.events],
            latency_p50=p50,
            latency_p95=p95,
            words=len(call.words),
            lost_seconds=call.lost_seconds,
            ended=reason,
        )
        status, why = LiveStatus.STORED, reason
        try:
            wav = write_wav(call.spool / "call.wav", call.stereo(), call.rate)
            meta = CallMeta(
                call_id=info.call_id,
                agent_id=info.agent_id,
                team=info.team,
                queue=info.queue,
                direction=info.direction,
                started_at=info.started_at,
                language=info.language,
                channel_roles=call.channel_roles(),
                source=info.source,
            )
            report = ingest_mapped(self.store, [MappedCall(path=wav, meta=meta)], self.settings)
            if report.rejected:
                status, why = LiveStatus.FAILED, report.rejected[0].reason
            elif report.duplicates:
                why = f"{reason}; the recording was stored before"
            self.store.put_json(Keys.live(info.call_id), record, overwrite=True)
        except Exception as exc:
            log.exception("live call %s not stored", info.call_id)
            status, why = LiveStatus.FAILED, f"not stored: {exc}"[:500]
        finally:
            call.close()
            shutil.rmtree(call.spool, ignore_errors=True)
        self.finished.append(record)
        self.workflow.live_end(info.call_id, status, why)
        log.info("live call %s %s: %s", info.call_id, status.value, why)


@dataclass
class _Open:
    """A call in progress: its state, its rules and the decode pool of its language."""

    call: LiveCall
    checker: Any  # qa.live.rules.LiveChecker
    pool: Any  # qa.live.decode.DecodePool
    written: float = 0.0  # when its row was last written (time.monotonic)


class _Stopped(Exception):
    """The platform sent stop: leave the message loop."""


def _cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _spool_root(settings: Settings) -> Path:
    root = settings.home / "live"
    root.mkdir(parents=True, exist_ok=True)
    return root


def run(settings: Settings, host: str, port: int, workflow: Any, store: Any) -> None:
    """Serve until interrupted (Ctrl-C ends every open call and stores it)."""
    server = LiveServer(settings, workflow=workflow, store=store, tokens=settings.live_tokens)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(host, port))


class ServerThread:
    """The live server on a thread of its own (the demo, tests): `start` returns once it
    listens, `stop` ends its calls, stores them and returns."""

    def __init__(self, server: LiveServer, host: str = "127.0.0.1", port: int = 0) -> None:
        import threading

        self.server, self.host, self.port = server, host, port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="qa-live-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await self.server.serve(self.host, self.port, ready=self._bound)

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._ready.set()

    def _bound(self, port: int) -> None:
        self.port = port
        self._ready.set()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/twilio"

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise QAError(f"the live server did not start: {self._error}")
        return self

    def stop(self, timeout: float = 300.0) -> None:
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)
