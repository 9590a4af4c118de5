"""What the bus costs per process, idle and under streaming callers, for each lever.

For each configuration (a set of ``VOXBUS_*`` settings) a whole voxbus stack is started on
private ports (:func:`benchmarks.latency.start_voxbus`: every stage, analytics, archive,
ingress, the embedded broker and the LLM server), then:

* **idle**: no caller, CPU of each process over ``--idle-s``;
* **streaming**: ``--callers`` callers stream quiet audio (digital silence) in real time
  through the ingress (:class:`benchmarks.caller.SimulatedCaller`) for ``--load-s``; no turn
  is ever taken, so what is measured is the cost of carrying audio: the ingress cutting and
  producing chunks, the broker, the vad worker (silero on every 32 ms window and the
  consumer's per-record handling) and the archive.

CPU is read from ``/proc`` for each process tree (:class:`benchmarks.cpu.CpuMeter`), so
other load on the machine changes the figures little (the benchmark still waits for a
quiet machine first).  Writes ``benchmarks/results/bus.json`` (``rows``: one per
configuration, cores per process idle and streaming) and ``bus.png``.

    python -m benchmarks.bus                # the levers of the default configuration
    python -m benchmarks.bus --callers 4 --load-s 30
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import typer

from benchmarks.caller import SimulatedCaller
from benchmarks.cpu import CpuMeter
from benchmarks.latency import (
    git_state,
    log,
    prepare_data_dir,
    start_voxbus,
    voxbus_roots,
    wait_for_quiet,
)

RESULTS = Path(__file__).parent / "results"
SETTLE_S = 20.0
"""Wait (s) after the stack reports healthy before measuring."""

LEVERS: list[tuple[str, dict[str, str]]] = [
    ("64 ms chunks, 0.5 s heartbeat, G1", {"chunk_ms": "64", "broker_heartbeat_interval": "0.5",
                                          "kafka_gc": "g1", "kafka_jit": "tiered"}),
    ("128 ms chunks", {"chunk_ms": "128", "broker_heartbeat_interval": "0.5", "kafka_gc": "g1",
                       "kafka_jit": "tiered"}),
    ("+ 1 s consumer heartbeat", {"chunk_ms": "128", "broker_heartbeat_interval": "1.0", "kafka_gc": "g1",
                                  "kafka_jit": "tiered"}),
    ("+ serial GC", {"kafka_jit": "tiered"}),
    ("+ C1 JIT only (defaults)", {}),
]
"""(label, settings) per configuration, each lever added to the one before; the last is the defaults."""


def cores(seconds_by_process: dict[str, float], window_s: float) -> dict[str, float]:
    """CPU seconds per process over ``window_s`` -> cores per process (3 decimals), with ``total``."""
    by = {name: round(cpu / window_s, 3) for name, cpu in seconds_by_process.items()}
    return {**by, "total": round(sum(seconds_by_process.values()) / window_s, 3)}


async def stream_silence(url: str, callers: int, seconds: float, meter: CpuMeter) -> dict[str, float]:
    """Stream silence from ``callers`` callers; CPU seconds per process over ``seconds`` of it.

    Raises:
        RuntimeError: a caller's session failed.
    """
    async def caller() -> None:
        async with SimulatedCaller("voxbus", url) as call:
            await call.silence_for(seconds + 6.0)
            if call.errors:
                raise RuntimeError(f"caller error: {call.errors[0]}")

    tasks = [asyncio.create_task(caller()) for _ in range(callers)]
    await asyncio.sleep(3.0)  # every session admitted and streaming
    meter.start()
    await asyncio.sleep(seconds)
    used = meter.stop()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, BaseException):
            raise RuntimeError(f"a streaming caller failed: {result!r}") from result
    return used


def measure(label: str, env: dict[str, str], callers: int, idle_s: float, load_s: float,
            work: Path) -> dict[str, Any]:
    """Start a stack with ``env``, measure it idle and streaming; one row of ``bus.json``."""
    for _, lever in LEVERS:  # start_voxbus sets os.environ: an earlier configuration's levers must not stay
        for key in lever:
            os.environ.pop(f"VOXBUS_{key.upper()}", None)
    supervisor, settings = start_voxbus(prepare_data_dir(work, "bus"), extra_env=env)
    try:
        roots = voxbus_roots(supervisor)
        time.sleep(SETTLE_S)  # healthy is not idle: workers finish loading and warming up after it
        wait_for_quiet(roots, 120.0)
        idle_meter = CpuMeter(roots)
        idle_meter.start()
        time.sleep(idle_s)
        idle = cores(idle_meter.stop(), idle_s)
        url = f"ws://{settings.host}:{settings.port}/v1/stream"
        streaming = cores(asyncio.run(stream_silence(url, callers, load_s, CpuMeter(roots))), load_s)
    finally:
        supervisor.stop()
    row = {"label": label, "settings": env, "chunk_ms": settings.chunk_ms,
           "broker_heartbeat_interval_s": settings.broker_heartbeat_interval, "kafka_gc": settings.kafka_gc,
           "kafka_jit": settings.kafka_jit,
           "callers": callers, "idle_cores": idle, "streaming_cores": streaming,
           "streaming_cores_per_caller": round((streaming["total"] - idle["total"]) / callers, 4)}
    log(f"{label}: idle {idle['total']} cores, {callers} callers streaming {streaming['total']} cores "
        f"(vad {streaming.get('vad')}, broker {streaming.get('broker')}, archive {streaming.get('archive')}, "
        f"ingress {streaming.get('ingress')})")
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Stacked bars of cores per process, idle and streaming, per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["vad", "broker", "archive", "ingress"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, key, title in ((axes[0], "idle_cores", "idle stack"),
                           (axes[1], "streaming_cores", f"{rows[0]['callers']} callers streaming")):
        bottom = [0.0] * len(rows)
        for name in [*names, "other"]:
            values = [row[key].get(name, 0.0) if name != "other" else
                      row[key]["total"] - sum(row[key].get(n, 0.0) for n in names) for row in rows]
            ax.bar(range(len(rows)), values, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xticks(range(len(rows)), [row["label"] for row in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("cores")
        ax.set_title(title)
    axes[0].axhline(0.10, color="grey", linestyle="--", linewidth=1)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(callers: int = typer.Option(8, help="callers streaming at once"),
         idle_s: float = typer.Option(20.0, help="idle window (s)"),
         load_s: float = typer.Option(40.0, help="streaming window (s)"),
         only_defaults: bool = typer.Option(False, help="measure the defaults only, not every lever"),
         out: Path = typer.Option(RESULTS, help="folder for bus.json and bus.png"),  # noqa: B008
         work: Path = typer.Option(Path(__file__).parent / ".data", help="data folder of the stacks"),  # noqa: B008
         ) -> None:
    """Measure each configuration of :data:`LEVERS` and write ``bus.json`` and ``bus.png``."""
    levers = LEVERS[-1:] if only_defaults else LEVERS
    rows = [measure(label, env, callers, idle_s, load_s, work) for label, env in levers]
    out.mkdir(parents=True, exist_ok=True)
    result = {"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git": git_state(),
              "method": {"callers": callers, "idle_s": idle_s, "load_s": load_s,
                         "audio": "digital silence streamed in real time as 20 ms frames"},
              "rows": rows}
    (out / "bus.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, out / "bus.png")
    print("| configuration | idle cores | streaming cores | per caller | vad | broker | archive | ingress |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        s = row["streaming_cores"]
        print(f"| {row['label']} | {row['idle_cores']['total']} | {s['total']} "
              f"| {row['streaming_cores_per_caller']} | {s.get('vad')} | {s.get('broker')} "
              f"| {s.get('archive')} | {s.get('ingress')} |")
    print(f"wrote {out / 'bus.json'} and {out / 'bus.png'}")


if __name__ == "__main__":
    typer.run(main)
