"""`qa live serve` and `qa live replay`: the live endpoint, and a platform's stream of a
recorded call to it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from qa.config import get_settings
from qa.errors import QAError

live_app = typer.Typer(
    help="Live monitoring: calls transcribed and checked while they happen.",
    no_args_is_help=True,
)
console = Console()


def _platform_params(*values: str | None) -> dict[str, str]:
    """The custom parameters a platform sends with a call (agent id, team, queue, language)."""
    names = ("agent_id", "team", "queue", "language")
    return {name: value for name, value in zip(names, values, strict=True) if value}


@live_app.command("serve")
def live_serve(
    host: str = typer.Option(None, help="address to listen on (default: QA_LIVE_HOST)"),
    port: int = typer.Option(None, help="port (default: QA_LIVE_PORT, 8765)"),
) -> None:
    """Accept calls streamed over WebSocket (Twilio Media Streams at /twilio) until Ctrl-C.

    Each source authenticates with its token from QA_LIVE_TOKENS; supervisors follow the
    calls on the dashboard's Live page, and every finished call is stored for `qa run`.
    """
    import logging

    from qa.live.server import run
    from qa.store import open_store
    from qa.workflow import open_workflow

    settings = get_settings()
    if not settings.live_tokens:
        raise QAError(
            "no live source tokens: set QA_LIVE_TOKENS, e.g. "
            'QA_LIVE_TOKENS=\'{"twilio-main": "<a long random secret>"}\''
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per decode
    host = host or settings.live_host
    port = settings.live_port if port is None else port
    console.print(
        f"live endpoint: ws://{host}:{port}/twilio  (sources: {', '.join(settings.live_tokens)})"
    )
    run(settings, host, port, open_workflow(settings), open_store(settings))


@live_app.command("replay")
def live_replay(
    file: Path = typer.Argument(..., help="a stereo recording, one channel per party"),
    url: str = typer.Option(None, help="endpoint (default: ws://QA_LIVE_HOST:QA_LIVE_PORT/twilio)"),
    speed: float = typer.Option(1.0, help="1: real time; 2: twice as fast; 0: no pacing"),
    token: str = typer.Option(
        None, help="the source's token (default: the first of QA_LIVE_TOKENS)"
    ),
    call_id: str = typer.Option(None, "--call-id", help="default: live-<file name>-<time>"),
    agent_channel: int = typer.Option(0, "--agent-channel", help="the agent's channel: 0 or 1"),
    agent: str = typer.Option(None, "--agent", help="agent id the platform would send"),
    team: str = typer.Option(None, help="the agent's team"),
    queue: str = typer.Option(None, help="the call's queue"),
    language: str = typer.Option(None, help="language code, e.g. en or zh"),
) -> None:
    """Stream a recorded call to the live endpoint the way Twilio streams a call."""
    import time

    from qa.live.replay import replay
    from qa.progress import progress_bar

    settings = get_settings()
    if speed < 0:
        raise QAError(f"--speed {speed:g}: expected 0 or more")
    if not file.is_file():
        raise QAError("no such file", file=str(file))
    token = token or next(iter(settings.live_tokens.values()), None)
    if not token:
        raise QAError("no token: pass --token or set QA_LIVE_TOKENS")
    url = url or f"ws://{settings.live_host}:{settings.live_port}/twilio"
    call_id = call_id or f"live-{file.stem}-{time.strftime('%Y%m%d%H%M%S')}"
    params = _platform_params(agent, team, queue, language)
    with progress_bar() as bar:
        task = bar.add_task(f"replaying {file.name} (s of audio)", total=None)

        def show(sent: float, total: float) -> None:
            bar.update(task, completed=round(sent), total=round(total))

        try:
            report = asyncio.run(
                replay(
                    file,
                    url,
                    token=token,
                    call_id=call_id,
                    speed=speed,
                    agent_channel=agent_channel,
                    params=params,
                    progress=show,
                )
            )
        except OSError as exc:
            raise QAError(f"cannot reach the live endpoint {url}: {exc}") from exc
    if report.close_code not in (1000, None):
        raise QAError(
            f"the endpoint closed the stream ({report.close_code}): {report.close_reason}"
        )
    console.print(
        f"call {report.call_id}: {report.seconds:.0f} s of audio sent in "
        f"{report.wall_seconds:.0f} s; {report.close_reason or 'closed'}"
    )


@live_app.command("demo")
def live_demo(
    file: Path = typer.Argument(..., help="a stereo recording, agent on channel 0"),
    agent: str = typer.Option(None, "--agent", help="agent id the platform would send"),
    team: str = typer.Option(None, help="the agent's team"),
    queue: str = typer.Option(None, help="the call's queue"),
    language: str = typer.Option(None, help="language code, e.g. en or zh"),
    delay: float = typer.Option(10.0, help="seconds before the first play"),
    pause: float = typer.Option(60.0, help="seconds between plays"),
    rounds: int = typer.Option(0, help="plays, then stop (0: until interrupted)"),
    port: int = typer.Option(None, help="port (default: QA_LIVE_PORT)"),
) -> None:
    """Serve the live endpoint and stream FILE to it, again and again, for the dashboard's
    Live page (`qa demo` starts this beside the dashboard with a sample call)."""
    import logging
    import secrets
    import time

    from qa.live.replay import replay
    from qa.live.server import LiveServer, ServerThread
    from qa.store import open_store
    from qa.workflow import open_workflow

    if not file.is_file():
        raise QAError("no such file", file=str(file))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    token = secrets.token_urlsafe(24)  # this process is the only source
    settings = get_settings().model_copy(update={"live_tokens": {"demo": token}})
    workflow, store = open_workflow(settings), open_store(settings)
    server = LiveServer(settings, workflow=workflow, store=store, tokens={"demo": token})
    running = ServerThread(server, settings.live_host, settings.live_port if port is None else port)
    running.start()
    params = _platform_params(agent, team, queue, language)
    played = 0
    try:
        time.sleep(delay)
        while rounds == 0 or played < rounds:
            played += 1
            call_id = f"live-{file.stem.replace('_', '-')}-{time.strftime('%H%M%S')}"
            console.print(f"live demo: streaming {call_id} to {running.url}")
            report = asyncio.run(
                replay(file, running.url, token=token, call_id=call_id, params=params)
            )
            console.print(f"live demo: {report.call_id} {report.close_reason}")
            if rounds == 0 or played < rounds:
                time.sleep(pause)
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
