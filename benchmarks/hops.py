"""Per-hop broker latency: N sessions producing audio-sized records, one consumer group reading them.

Each of N simulated sessions produces a record every ``--chunk-ms`` (keyed by session,
like ``voxbus.audio``); a consumer in its own group reads them with aiokafka at a
given ``fetch_max_wait_ms``.  Hop latency = consume time - produce time (same host
clock).  Writes ``benchmarks/results/hops.json`` and ``hops.png``.

    python -m benchmarks.hops --sessions 10 --seconds 20 --fetch-wait 10 --fetch-wait 100 --fetch-wait 500
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from pathlib import Path

import numpy as np
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.broker import start_embedded_broker, stop_process

RESULTS = Path(__file__).parent / "results"
BOOTSTRAP = "127.0.0.1:19392"


async def measure(sessions: int, seconds: float, fetch_wait_ms: int, chunk_ms: int, payload: int) -> dict:
    topic = f"hops-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=8, replication_factor=1)])
    await admin.close()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"g-{topic}",
                                fetch_max_wait_ms=fetch_wait_ms, auto_offset_reset="earliest",
                                session_timeout_ms=3000, heartbeat_interval_ms=500)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
    await producer.start()
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    latencies: list[float] = []
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            for messages in (await consumer.getmany(timeout_ms=200)).values():
                now = time.perf_counter()
                latencies.extend(now - struct.unpack("d", m.value[:8])[0] for m in messages)

    async def session(index: int) -> None:
        key = f"s{index}".encode()
        body = bytes(payload - 8)
        next_at = time.perf_counter() + index * chunk_ms / 1000 / sessions
        end = time.perf_counter() + seconds
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await producer.send(topic, struct.pack("d", time.perf_counter()) + body, key=key)
            next_at += chunk_ms / 1000

    reader = asyncio.create_task(read())
    await asyncio.gather(*(session(i) for i in range(sessions)))
    await asyncio.sleep(1.0)
    stop.set()
    await reader
    await consumer.stop()
    await producer.stop()
    ms = np.array(latencies) * 1000
    return {"sessions": sessions, "fetch_max_wait_ms": fetch_wait_ms, "chunk_ms": chunk_ms, "records": len(ms),
            "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


def plot(rows: list[dict], path: Path) -> None:
    """Bar chart of p50/p99 hop latency per fetch wait and chunk size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"wait {r['fetch_max_wait_ms']} ms\nchunk {r['chunk_ms']} ms" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.1), 4))
    ax.bar(x - 0.2, [r["p50_ms"] for r in rows], 0.4, label="p50")
    ax.bar(x + 0.2, [r["p99_ms"] for r in rows], 0.4, label="p99")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("hop latency (ms)")
    ax.set_yscale("log")
    ax.set_title(f"Per-hop latency on the embedded broker, {rows[0]['sessions']} sessions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(sessions: int = 10, seconds: float = 20.0, fetch_wait: list[int] = typer.Option([10, 100, 500]),  # noqa: B008
         chunk_ms: list[int] = typer.Option([64]), payload: int = 2048) -> None:  # noqa: B008
    """Measure hop latency for each fetch wait and chunk size; print and save the results."""
    broker = start_embedded_broker(BOOTSTRAP)
    try:
        rows = [asyncio.run(measure(sessions, seconds, wait, chunk, payload * chunk // 64))
                for wait in fetch_wait for chunk in chunk_ms]
    finally:
        stop_process(broker)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hops.json").write_text(json.dumps(rows, indent=2))
    plot(rows, RESULTS / "hops.png")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    typer.run(main)
