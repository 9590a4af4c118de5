"""The ``voxbus`` command (typer)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from processors.replay.report import Report

app = typer.Typer(help="voxbus: an event-driven voice AI pipeline on Kafka.", no_args_is_help=True)
kb_app = typer.Typer(help="Knowledge-base commands.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
analytics_app = typer.Typer(help="Analytics: the windowed processor, and reading topics back.",
                            no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")
shadow_app = typer.Typer(help="Shadow runs of voxbus replay.", no_args_is_help=True)
app.add_typer(shadow_app, name="shadow")
console = Console(stderr=True)

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"

Bootstrap = Annotated[str | None,
                      typer.Option("--bootstrap", help="Kafka bootstrap servers (default: embedded).")]
Url = Annotated[str, typer.Option("--url", help="Ingress WebSocket URL.")]


def _configure(bootstrap: str | None = None, **env: object) -> None:
    """Write CLI options into ``VOXBUS_*`` variables (read by this process and its children)."""
    if bootstrap:
        os.environ["VOXBUS_KAFKA_BOOTSTRAP"] = bootstrap
    for key, value in env.items():
        if value is not None:
            os.environ[f"VOXBUS_{key.upper()}"] = str(value)
    from streams.settings import get_settings

    get_settings.cache_clear()
    logging.basicConfig(level=get_settings().log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def up(
    bootstrap: Bootstrap = None,
    port: Annotated[int | None, typer.Option(help="Ingress port (default 8765).")] = None,
    llm_url: Annotated[str | None, typer.Option("--llm-url", help="OpenAI-compatible URL (…/v1).")] = None,
) -> None:
    """Run everything: embedded broker (unless --bootstrap), LLM server, six stages, analytics, ingress."""
    _configure(bootstrap, port=port, llm_url=llm_url)
    from streams.settings import get_settings
    from voxbus.supervisor import Supervisor

    settings = get_settings()
    supervisor = Supervisor(settings)
    started, stop = threading.Event(), threading.Event()

    def on_signal(*_: object) -> None:
        if started.is_set():
            stop.set()  # up and watching: leave the watch loop
        else:
            raise KeyboardInterrupt  # still starting: abandon start(), then stop what did start

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        with console.status("starting broker, LLM server, stages and ingress…"):
            supervisor.start()
        started.set()
        console.print(f"[bold green]voxbus is up[/]: open http://{settings.host}:{settings.port}/ "
                      f"or run: voxbus call tests/data/jfk.wav   (Ctrl-C stops; logs in {supervisor.logs})")
        supervisor.watch(stop)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping…")
        supervisor.stop()


@app.command()
def worker(stage: Annotated[str, typer.Argument(help="vad | asr | intent | retrieval | generation | tts")],
           bootstrap: Bootstrap = None,
           standby: Annotated[bool, typer.Option(
               help="load the models, then wait for a line on stdin before joining the group "
                    "(voxbus up's warm standby)")] = False) -> None:
    """Run one stage as its own consumer group (what Kubernetes runs)."""
    _configure(bootstrap)
    from processors import priority

    nice = priority.lower() if standby else None  # before the imports: every thread inherits it
    from processors.runtime import STAGES, run_worker

    if stage not in STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    run_worker(stage, standby, nice)


@app.command()
def archive(bootstrap: Bootstrap = None) -> None:
    """Run the archive (consumer group voxbus-archive): the VOXBUS_ARCHIVE_TOPICS to Parquet files."""
    _configure(bootstrap)
    from processors.archive.writer import run

    run()


@app.command()
def suggest(bootstrap: Bootstrap = None) -> None:
    """Run agent assist (consumer group voxbus-suggest): suggested replies for the agents' held calls."""
    _configure(bootstrap)
    from processors.generation.suggest import run_worker

    run_worker()


@app.command()
def recording(
    session: Annotated[str, typer.Argument(help="The session id.")],
    out: Annotated[Path, typer.Option("--out", dir_okay=False, help="Stereo WAV to write.")],
    source: Annotated[str, typer.Option("--source", help="auto, archive or topics.")] = "auto",
    bootstrap: Bootstrap = None,
) -> None:
    """Write a session as a stereo WAV: the caller on the left, assistant and agent on the right."""
    _configure(bootstrap)
    from processors.archive.recording import NoAudio, RecordingRefused, build, session_reads
    from streams.settings import get_settings

    try:
        made = build(asyncio.run(session_reads(get_settings(), session, source)), session)
        made.write(out)
    except (RecordingRefused, NoAudio, ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"wrote {out}: {made.samples.shape[0] / 16000:.1f} s (caller {made.caller_s:.1f} s, "
                  f"voxbus {made.voxbus_s:.1f} s)")


@app.command()
def replay(
    stage: Annotated[str, typer.Option("--stage", help="asr, intent, vad, retrieval or tts.")],
    run: Annotated[str, typer.Option("--run", help="Run name: shadow topics voxbus.shadow.<run>.*.")],
    start: Annotated[str | None, typer.Option("--from", help="Start: ISO 8601 (UTC unless offset), epoch s.")]
    = None,
    end: Annotated[str | None, typer.Option("--to", help="End (excluded), as --from.")] = None,
    sessions: Annotated[str | None, typer.Option("--sessions", help="Comma-separated session ids.")] = None,
    assignments: Annotated[list[str] | None, typer.Option("--set", help="VOXBUS_NAME=value")] = None,
    live: Annotated[bool, typer.Option("--live", help="Follow the live topic from its end, not the archive.")]
    = False,
    seconds: Annotated[float | None, typer.Option("--for", help="With --live: stop after this many seconds.")]
    = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Run a candidate configuration of one stage over archived inputs into shadow topics (no caller hears).

    Each --set VOXBUS_NAME=value is one setting of the candidate; the rest are production's.
    --from and --to bound the archived inputs; --live follows the live input topic instead
    (consumer group voxbus-shadow-<run>) until Ctrl-C or --for SECONDS.
    """
    if (start is not None or end is not None) if live else (start is None or end is None):
        raise typer.BadParameter("either --from and --to, or --live")
    _configure(bootstrap)
    from processors.archive.reader import parse_time
    from processors.replay.run import overrides
    from processors.replay.run import replay as run_replay
    from streams.settings import get_settings

    try:
        chosen = [s for s in sessions.split(",") if s] if sessions else None
        changes = overrides(assignments or [])
        times = (0.0, 0.0) if live else (parse_time(start), parse_time(end))
        manifest = asyncio.run(run_replay(get_settings(), stage, run, *times, chosen, changes, live=live,
                                          seconds=seconds))
    except (ValueError, KeyError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"run {run}: {manifest.inputs} inputs, outputs {manifest.outputs}, {manifest.seconds} s")


@shadow_app.command("report")
def shadow_report(run: Annotated[str, typer.Argument(help="The run name.")],
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                  refs: Annotated[Path | None, typer.Option("--refs", help="Reference transcripts (JSON).")]
                  = None,
                  plot: Annotated[Path | None, typer.Option("--plot", help="Also draw it (PNG).")] = None,
                  bootstrap: Bootstrap = None) -> None:
    """Compare a replay's candidate with production, record by record (WER, intents, latency, CPU).

    --refs is {session_id: {turn_id: text}} or a list of {session_id, turn_id, text}: both sides'
    transcripts are then scored against it.
    """
    _configure(bootstrap)
    from processors.replay.report import build_report, load_references
    from streams.settings import get_settings

    try:
        references = load_references(refs) if refs is not None else None
        report = asyncio.run(build_report(get_settings(), run, references))
        if plot is not None:
            from processors.replay.plot import plot_report

            plot_report(report, plot)
    except (FileNotFoundError, LookupError, ValueError, OSError) as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(report.as_json(), default=str))
        return
    table = Table(title=f"run {run}: {report.stage} with {report.overrides}")
    columns = ["topic", "session", "turn", "production", "candidate", "WER", "intents", "ms prod/cand"]
    for column in columns + ["CPU ms"] + (["reference"] if references is not None else []):
        table.add_column(column)
    for p in report.pairs:
        intents = f"{p.production_intent} / {p.candidate_intent}" if p.production_intent else ""
        wer = "" if p.wer is None else f"{p.wer:.2f}"
        table.add_row(p.topic, p.session_id, f"{p.turn_id}#{p.index}", p.production or "–",
                      p.candidate or "–", wer, intents, f"{p.production_ms} / {p.candidate_ms}",
                      str(p.candidate_cpu_ms), *([p.reference or "–"] if references is not None else []))
    Console().print(table)
    if report.replies:
        _print_replies(report)
    Console().print(f"counts {report.counts}; WER {report.wer}; intent agreement {report.intent_agreement}; "
                    f"latency ms {report.latency_ms}; CPU ms per input {report.cpu_ms}"
                    + (f"; WER against references {report.reference_wer}" if references is not None else ""))


def _print_replies(report: Report) -> None:
    """A generation replay's whole replies per turn, their difference and grounded-answer rates."""
    table = Table(title="replies per turn (grounded: K-Precision against the cited passages)")
    for column in ("session", "turn", "production", "candidate", "WER", "grounded prod/cand",
                   "K-P prod/cand"):
        table.add_column(column)
    for p in report.replies:
        wer = "" if p.wer is None else f"{p.wer:.2f}"
        table.add_row(p.session_id, p.turn_id, p.production or "–", p.candidate or "–", wer,
                      f"{p.production_grounded} / {p.candidate_grounded}",
                      f"{p.production_k_precision} / {p.candidate_k_precision}")
    Console().print(table)
    Console().print(f"reply difference {report.reply_difference}; grounded answers {report.grounded}")


@app.command()
def ingress(bootstrap: Bootstrap = None,
            port: Annotated[int | None, typer.Option(help="Port (default 8765).")] = None,
            standby: Annotated[bool, typer.Option(
                help="import and build the app, then wait for a line on stdin before connecting and "
                     "listening (voxbus up's warm standby)")] = False) -> None:
    """Run the ingress (WebSocket server) alone."""
    _configure(bootstrap, port=port)
    from ingress.server import run

    run(standby=standby)


@app.command()
def broker(
    kafka: Annotated[bool, typer.Option("--kafka", help="Apache Kafka (needs Java 17+).")] = False,
    tansu: Annotated[bool, typer.Option("--tansu", help="Tansu (no Java; memory only).")] = False,
    fetch: Annotated[bool, typer.Option(
        "--fetch", help="Only fetch Kafka's jars with Maven, then exit.")] = False,
) -> None:
    """Run the embedded broker alone until Ctrl-C: Apache Kafka when Java 17+ is here, else Tansu."""
    if kafka and tansu:
        raise typer.BadParameter("--kafka or --tansu, not both")
    _configure(broker="kafka" if kafka else "tansu" if tansu else None)
    from streams import kafka_server
    from streams.broker import broker_kind, start_embedded_broker, stop_process
    from streams.settings import get_settings

    settings = get_settings()
    if fetch:
        jars = kafka_server.fetch_jars(settings.kafka_home)
        console.print(f"Apache Kafka {kafka_server.KAFKA_VERSION} jars in {jars}")
        return
    kind = broker_kind(settings)
    # for sigwait: stop the broker too
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    proc = start_embedded_broker(settings.bootstrap, kind=kind, data_dir=settings.data_dir / "kafka",
                                 settings=settings)
    where = (f"storage in {settings.data_dir / 'kafka'}" if kind == "kafka"
             else "memory only: a restart loses everything")
    name = "Apache Kafka" if kind == "kafka" else "Tansu"
    console.print(f"embedded broker ({name}) on {settings.bootstrap} ({where})")
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stop_process(proc)


def _print_turns(turns: list, as_json: bool, out: Path | None) -> None:
    from voxbus.client import write_wav

    audio = bytearray()
    rate = 0
    for turn in turns:
        audio.extend(turn.reply_audio)
        rate = rate or turn.reply_sample_rate
    if out is not None and rate:
        write_wav(out, bytes(audio), rate)
    for turn in turns:
        summary = turn.summary(str(out) if out is not None and rate else None)
        if as_json:
            print(json.dumps(summary))
            continue
        table = Table(show_header=False, title=f"turn {turn.turn_id}")
        for key in ("transcript", "intent", "reply_text"):
            table.add_row(key, str(summary[key]))
        reply = summary["reply_audio"]
        table.add_row("reply_audio", f"{reply['seconds']} s -> {reply['path']}")
        table.add_row("latency_ms", ", ".join(f"{k}={v}" for k, v in summary["latency_ms"].items()))
        if turn.errors:
            table.add_row("errors", "; ".join(turn.errors))
        Console().print(table)


@app.command()
def call(
    audio_file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="WAV or FLAC recording.")],
    url: Url = DEFAULT_URL,
    out: Annotated[Path | None, typer.Option("--out", help="Write the spoken reply here (WAV).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per turn.")] = False,
    fast: Annotated[bool, typer.Option("--fast", help="Send faster than real time.")] = False,
) -> None:
    """Stream a recording as a caller and print each turn's transcript, reply and latencies."""
    from voxbus.client import call as run_call

    turns = asyncio.run(run_call(url, audio_file, realtime=not fast))
    if not turns:
        console.print("[yellow]no turn was answered (no speech detected?)[/]")
        raise typer.Exit(1)
    _print_turns(turns, as_json, out)


@app.command()
def ask(text: Annotated[str, typer.Argument(help="What the caller types.")], url: Url = DEFAULT_URL,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Send one turn through the text channel (no vad/asr/tts)."""
    from voxbus.client import ask as run_ask

    _print_turns([asyncio.run(run_ask(url, text))], as_json, None)


@kb_app.command("ingest")
def kb_ingest(directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)]) -> None:
    """Chunk, embed and upsert a directory of Markdown articles into Qdrant."""
    _configure()
    from processors.embeddings import Embedder
    from processors.retrieval.kb import ingest, open_client
    from streams.settings import get_settings

    settings = get_settings()
    count = ingest(directory, open_client(settings), Embedder.from_settings(settings),
                   settings.qdrant_collection)
    console.print(f"ingested {count} passages into {settings.qdrant_collection}")


@analytics_app.command("worker")
def analytics_worker(bootstrap: Bootstrap = None) -> None:
    """Run the analytics processor (consumer group voxbus-analytics): voxbus.turns -> voxbus.analytics.*."""
    _configure(bootstrap)
    from processors.analytics.stage import run_worker

    run_worker()


def _jsonable(value: object) -> object:
    """``value`` with bytes as base64 text, recursively (for JSON output)."""
    import base64

    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _brief(value: object, limit: int = 80) -> str:
    """``value`` on one short line (bytes as their length)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    text = value if isinstance(value, str) else json.dumps(_jsonable(value), separators=(",", ":"))
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@analytics_app.command("tail")
def analytics_tail(
    topic: Annotated[str, typer.Argument(help="Full or short name (latency: voxbus.analytics.latency).")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record.")] = False,
    count: Annotated[int | None, typer.Option("--count", min=1, help="Stop after this many records.")] = None,
    bootstrap: Bootstrap = None,
) -> None:
    """Print the decoded records of a topic as they arrive (Ctrl-C stops).

    Analytics topics are upserts: a record replaces earlier ones with the same key.
    """
    _configure(bootstrap)
    from processors.analytics.io import read_topic, resolve_topic
    from streams.settings import get_settings

    name = resolve_topic(topic)

    async def run() -> None:
        seen = 0
        async for read in read_topic(get_settings(), name, from_beginning=from_beginning, follow=True):
            m = read.message
            key = m.key.decode(errors="replace") if isinstance(m.key, bytes) else None
            if as_json:
                out: dict[str, object] = {"topic": m.topic, "partition": m.partition, "offset": m.offset,
                                          "timestamp_ms": m.timestamp, "key": key}
                if read.record is None:
                    out["error"] = read.error
                else:
                    out["record"] = _jsonable(read.record.model_dump(mode="python"))
                print(json.dumps(out, ensure_ascii=False), flush=True)
            elif read.record is None:
                print(f"{m.topic}[{m.partition}]@{m.offset} key={key} UNDECODABLE: {read.error}", flush=True)
            else:
                fields = read.record.model_dump(mode="python")
                tag, _v = fields.pop("type"), fields.pop("v")
                body = " ".join(f"{k}={_brief(v)}" for k, v in fields.items())
                print(f"{m.topic}[{m.partition}]@{m.offset} key={key} {tag}: {body}", flush=True)
            seen += 1
            if count is not None and seen >= count:
                return

    try:
        asyncio.run(run())
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@analytics_app.command("export")
def analytics_export(
    to: Annotated[Path, typer.Option("--to", dir_okay=False, help="Parquet file to write.")],
    topic: Annotated[str, typer.Option("--topic", help="Topic (full or short name).")] = "voxbus.turns",
    bootstrap: Bootstrap = None,
) -> None:
    """Write a topic, from its beginning to its current end, to a Parquet file (one row per record).

    Turn records get one column per latency span (latency_<span>_ms); marks stay a map column.
    """
    _configure(bootstrap)
    from processors.analytics.io import export_parquet, resolve_topic
    from streams.settings import get_settings

    name = resolve_topic(topic)
    try:
        rows = asyncio.run(export_parquet(get_settings(), name, to))
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    console.print(f"wrote {rows} records of {name} to {to}")
