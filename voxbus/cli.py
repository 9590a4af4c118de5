"""The ``voxbus`` command (typer)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="voxbus: an event-driven voice AI pipeline on Kafka.", no_args_is_help=True)
kb_app = typer.Typer(help="Knowledge-base commands.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
console = Console(stderr=True)

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"

Bootstrap = Annotated[str | None, typer.Option("--bootstrap", help="Kafka bootstrap servers (default: embedded).")]
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
    """Run everything: embedded broker (unless --bootstrap), LLM server, six stages, ingress."""
    _configure(bootstrap, port=port, llm_url=llm_url)
    from streams.settings import get_settings
    from voxbus.supervisor import Supervisor

    settings = get_settings()
    supervisor = Supervisor(settings)
    try:
        with console.status("starting broker, LLM server, stages and ingress…"):
            supervisor.start()
        console.print(f"[bold green]voxbus is up[/]: open http://{settings.host}:{settings.port}/ "
                      f"or run: voxbus call tests/data/jfk.wav   (Ctrl-C stops; logs in {supervisor.logs})")
        supervisor.watch()
    finally:
        console.print("stopping…")
        supervisor.stop()


@app.command()
def worker(stage: Annotated[str, typer.Argument(help="vad | asr | intent | retrieval | generation | tts")],
           bootstrap: Bootstrap = None) -> None:
    """Run one stage as its own consumer group (what Kubernetes runs)."""
    _configure(bootstrap)
    from processors.runtime import STAGES, run_worker

    if stage not in STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    run_worker(stage)


@app.command()
def ingress(bootstrap: Bootstrap = None,
            port: Annotated[int | None, typer.Option(help="Port (default 8765).")] = None) -> None:
    """Run the ingress (WebSocket server) alone."""
    _configure(bootstrap, port=port)
    from ingress.server import run

    run()


@app.command()
def broker() -> None:
    """Run the embedded broker (Tansu, memory only) alone, until Ctrl-C."""
    _configure()
    import signal

    from streams.broker import start_embedded_broker, stop_process
    from streams.settings import get_settings

    proc = start_embedded_broker(get_settings().bootstrap)
    console.print(f"embedded broker on {get_settings().bootstrap} (memory only: a restart loses everything)")
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
        table.add_row("reply_audio", f"{summary['reply_audio']['seconds']} s -> {summary['reply_audio']['path']}")
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
    count = ingest(directory, open_client(settings), Embedder.from_settings(settings), settings.qdrant_collection)
    console.print(f"ingested {count} passages into {settings.qdrant_collection}")
