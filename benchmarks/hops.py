"""Per-hop broker latency and broker CPU, Apache Kafka and Tansu side by side.

For each embedded broker (a fresh one per broker, :mod:`streams.broker`):

* **hop**: N simulated sessions each produce an audio-sized record every ``--chunk-ms``
  (keyed by session, like ``voxbus.audio``); a consumer in its own group reads them
  with aiokafka at a given ``fetch_max_wait_ms``.  Hop latency = consume time -
  produce time (same host clock).  The broker's CPU over the run is reported per
  record; an idle window (the consumer polling an empty topic) gives the cost of
  one idle consumer at that fetch wait.
* **exactly-once** (Kafka only; Tansu has no transactions): source -> stage -> sink
  with the stage consuming, producing and committing its input offsets inside one
  transaction per fetched batch (aiokafka's transactional producer,
  ``send_offsets_to_transaction``) and the sink reading ``read_committed``, against
  the same two hops at-least-once (plain produce, offset commit after it).  The
  difference is the latency cost of exactly-once on one stage hop.

Writes ``benchmarks/results/hops.json`` (``rows``: one per broker, wait, sessions;
``eos``: the exactly-once comparison) and ``hops.png``.

    python -m benchmarks.hops --sessions 1 --sessions 10 --seconds 20
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.cpu import cpu_seconds
from streams.broker import start_embedded_broker, stop_process

RESULTS = Path(__file__).parent / "results"
BOOTSTRAP = "127.0.0.1:19392"
DEFAULT_WAITS = {"kafka": [40, 500], "tansu": [10, 40, 100]}


def stats(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in ms of latencies in seconds."""
    ms = np.array(seconds) * 1000
    return {"records": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2), "max_ms": round(float(ms.max()), 2)}


async def new_topic(partitions: int = 8) -> str:
    topic = f"hops-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    await admin.close()
    return topic


async def sessions_produce(producer: AIOKafkaProducer, topic: str, sessions: int, seconds: float,
                           chunk_ms: int, payload: int) -> None:
    """Each session sends a timestamped record every ``chunk_ms`` for ``seconds``."""
    async def session(index: int) -> None:
        key = f"s{index}".encode()
        body = bytes(max(0, payload - 8))
        next_at = time.perf_counter() + index * chunk_ms / 1000 / sessions
        end = time.perf_counter() + seconds
        while next_at < end:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await producer.send(topic, struct.pack("d", time.perf_counter()) + body, key=key)
            next_at += chunk_ms / 1000

    await asyncio.gather(*(session(i) for i in range(sessions)))


async def collect(consumer: AIOKafkaConsumer, latencies: list[float], stop: asyncio.Event) -> None:
    """Append each record's age (s since the stamp in its first 8 bytes) to ``latencies`` until ``stop``."""
    while not stop.is_set():
        for messages in (await consumer.getmany(timeout_ms=200)).values():
            now = time.perf_counter()
            latencies.extend(now - struct.unpack("d", m.value[:8])[0] for m in messages)


async def measure(broker: subprocess.Popen[bytes], sessions: int, seconds: float, fetch_wait_ms: int,
                  chunk_ms: int, payload: int, idle_s: float) -> dict:
    topic = await new_topic()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"g-{topic}",
                                fetch_max_wait_ms=fetch_wait_ms, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=1000)
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
    await producer.start()
    await consumer.start()
    while not consumer.assignment():
        await asyncio.sleep(0.05)
    latencies: list[float] = []
    stop = asyncio.Event()

    reader = asyncio.create_task(collect(consumer, latencies, stop))
    await asyncio.sleep(1.0)
    idle_before = cpu_seconds([broker.pid])[broker.pid]
    await asyncio.sleep(idle_s)
    idle_cores = (cpu_seconds([broker.pid])[broker.pid] - idle_before) / idle_s
    busy_before = cpu_seconds([broker.pid])[broker.pid]
    await sessions_produce(producer, topic, sessions, seconds, chunk_ms, payload)
    await asyncio.sleep(1.0)
    busy = cpu_seconds([broker.pid])[broker.pid] - busy_before
    stop.set()
    await reader
    await consumer.stop()
    await producer.stop()
    return {"sessions": sessions, "fetch_max_wait_ms": fetch_wait_ms, "chunk_ms": chunk_ms,
            **stats(latencies),
            "broker_idle_cores_one_consumer": round(idle_cores, 4),
            "broker_cpu_ms_per_record": round(1000 * busy / max(1, len(latencies)), 3)}


async def two_hops(sessions: int, seconds: float, chunk_ms: int, payload: int, exactly_once: bool) -> dict:
    """Source -> stage -> sink; the stage transactional (``exactly_once``) or at-least-once."""
    source_topic, sink_topic = await new_topic(), await new_topic()
    tag = uuid.uuid4().hex[:6]
    stage_in = AIOKafkaConsumer(source_topic, bootstrap_servers=BOOTSTRAP, group_id=f"stage-{tag}",
                                enable_auto_commit=False, auto_offset_reset="earliest", fetch_max_wait_ms=500,
                                isolation_level="read_committed")
    stage_out = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0, enable_idempotence=True,
                                 transactional_id=f"stage-{tag}" if exactly_once else None)
    sink = AIOKafkaConsumer(sink_topic, bootstrap_servers=BOOTSTRAP, group_id=f"sink-{tag}",
                            auto_offset_reset="earliest", fetch_max_wait_ms=500,
                            isolation_level="read_committed" if exactly_once else "read_uncommitted")
    source = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0)
    for client in (source, stage_out, stage_in, sink):
        await client.start()
    while not (stage_in.assignment() and sink.assignment()):
        await asyncio.sleep(0.05)
    latencies: list[float] = []
    stop = asyncio.Event()

    async def stage() -> None:
        while not stop.is_set():
            batch = await stage_in.getmany(timeout_ms=200)
            if not batch:
                continue
            offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items()}
            if exactly_once:
                async with stage_out.transaction():
                    for messages in batch.values():
                        for m in messages:
                            await stage_out.send(sink_topic, m.value, key=m.key)
                    await stage_out.send_offsets_to_transaction(offsets, f"stage-{tag}")
            else:
                sent = [await stage_out.send(sink_topic, m.value, key=m.key)
                        for messages in batch.values() for m in messages]
                await asyncio.gather(*sent)
                await stage_in.commit({TopicPartition(tp.topic, tp.partition): o
                                       for tp, o in offsets.items()})

    tasks = [asyncio.create_task(stage()), asyncio.create_task(collect(sink, latencies, stop))]
    await asyncio.sleep(1.0)
    await sessions_produce(source, source_topic, sessions, seconds, chunk_ms, payload)
    await asyncio.sleep(2.0)
    stop.set()
    await asyncio.gather(*tasks)
    for client in (source, stage_out, stage_in, sink):
        await client.stop()
    return {"sessions": sessions, "exactly_once": exactly_once, **stats(latencies)}


def plot(rows: list[dict], eos: list[dict], path: Path) -> None:
    """Bar chart of p50/p99 hop latency per broker, fetch wait and session count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['broker']}\nwait {r['fetch_max_wait_ms']}\n{r['sessions']} sess" for r in rows]
    labels += [f"kafka 2 hops\n{'EOS' if r['exactly_once'] else 'ALO'}\n{r['sessions']} sess" for r in eos]
    everything = rows + eos
    x = np.arange(len(everything))
    fig, ax = plt.subplots(figsize=(max(6, len(everything) * 0.9), 4.5))
    ax.bar(x - 0.2, [r["p50_ms"] for r in everything], 0.4, label="p50")
    ax.bar(x + 0.2, [r["p99_ms"] for r in everything], 0.4, label="p99")
    ax.set_xticks(x, labels, fontsize=6)
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Per-hop latency: Apache Kafka vs Tansu (64 ms audio records)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(broker: list[str] = typer.Option(["kafka", "tansu"]),  # noqa: B008
         sessions: list[int] = typer.Option([1, 10]),  # noqa: B008
         fetch_wait: list[int] = typer.Option([], help="Fetch waits (ms); default per broker."),  # noqa: B008
         seconds: float = 20.0, chunk_ms: int = 64, payload: int = 2048, idle_s: float = 10.0,
         eos: bool = typer.Option(True, help="Also measure the exactly-once stage hop on Kafka.")) -> None:
    """Measure hop latency per broker, fetch wait and session count; print and save the results."""
    rows: list[dict] = []
    eos_rows: list[dict] = []
    for kind in broker:
        proc = start_embedded_broker(BOOTSTRAP, kind=kind)
        try:
            for wait in fetch_wait or DEFAULT_WAITS[kind]:
                for count in sessions:
                    measured = asyncio.run(measure(proc, count, seconds, wait, chunk_ms, payload, idle_s))
                    row = {"broker": kind, **measured}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
            if kind == "kafka" and eos:
                for count in sessions:
                    for exactly_once in (False, True):
                        row = asyncio.run(two_hops(count, seconds, chunk_ms, payload, exactly_once))
                        print(json.dumps(row), flush=True)
                        eos_rows.append(row)
        finally:
            stop_process(proc)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hops.json").write_text(json.dumps({"rows": rows, "eos": eos_rows}, indent=2))
    plot(rows, eos_rows, RESULTS / "hops.png")


if __name__ == "__main__":
    typer.run(main)
