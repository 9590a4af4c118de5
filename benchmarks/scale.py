"""``make bench-scale``: throughput of 1 vs 2 replicas of a stage on a backlog, and the rebalance pause.

For each embedded broker (Apache Kafka and Tansu, ``--broker``) and scenario (the asr
stage with ``VOXBUS_WHISPER_THREADS`` 2 and 1, and the stateless intent stage) a fresh
embedded broker (:mod:`streams.broker`) gets the
declared topics, and the stage runs as real ``voxbus worker STAGE`` processes started by
:meth:`voxbus.supervisor.Supervisor.add_replica`, members of the consumer group
``voxbus-<stage>``.  Each backlog is N records keyed by N distinct session ids, so the
default partitioner spreads them over the input topic's partitions:

* asr: :class:`schemas.Utterance` records cut from the recordings of ``tests/data``
  (:func:`benchmarks.utterances.load_utterances`) on ``voxbus.utterances``;
* intent: :class:`schemas.Transcript` records of the held-out intent set
  (``benchmarks/eval/intents_heldout.yaml``) on ``voxbus.transcripts``.

Phases, in order, on the same group:

1. ``one``: 1 replica drains a backlog; throughput = N / (time from the first record
   produced until the group's committed offsets reach the end offsets and the last of
   the N outputs is produced).  Offsets are read by OffsetFetch through a consumer that
   never joins the group (Tansu does not answer the admin client's
   ListConsumerGroupOffsets).  Both times are reported and the later one counts, so
   neither a commit (every 0.5 s) nor an output that comes later overstates throughput.
2. ``add``: a second replica starts while the first drains a backlog.  ``joined`` is
   when its worker serves ``/metrics`` (models loaded, consumer started: it sends
   JoinGroup); ``both_consuming`` when its record counter first moves.  The rebalance
   pause is the longest gap in output production (Kafka timestamps of the stage's
   ``voxbus.egress`` records, one per input) from ``joined`` to ``both_consuming``.
3. ``two``: both replicas drain a backlog, measured as in 1; scaling = two / one.
4. ``remove``: the second replica is stopped gracefully (SIGTERM) mid-backlog; the
   pause is the longest output gap from the signal until the backlog is drained.

"Typical gap" is the 95th percentile of the gaps between outputs before the change: the
asr stage decodes batches (``VOXBUS_ASR_BATCH_SIZE``), so its outputs come in bursts
and a pause is only the part of the longest gap above that.  ``both_consuming`` is read
from the second replica's record counter, which moves when its first record (asr: its
first batch) is done, so it includes that record's processing time.

Writes ``benchmarks/results/scale.json`` and ``scale.png``.

    python -m benchmarks.scale [--utterances 40] [--transcripts 600] [--scenario asr-t2 ...]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import typer
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.cpu import CpuMeter
from benchmarks.latency import git_state, wait_for_quiet
from benchmarks.utterances import load_utterances
from processors.runtime import STAGES, stage_class
from schemas import Record, SchemaError, StageHeartbeat, Transcript, Utterance, decode, encode
from streams.admin import ensure_topics
from streams.app import group_id
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings, get_settings
from streams.topics import EGRESS, HEARTBEATS, TopicSpec
from voxbus.supervisor import Child, Supervisor

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"
DATA = ROOT / "tests" / "data"
INTENT_SET = Path(__file__).parent / "eval" / "intents_heldout.yaml"

BENCH_ENV = {
    "VOXBUS_KAFKA_BOOTSTRAP": "",
    "VOXBUS_EMBEDDED_LISTEN": "127.0.0.1:19592",
    "VOXBUS_METRICS_BASE_PORT": "19600",
    "HF_HUB_OFFLINE": "1",
}
"""Private ports, so the benchmark never meets a `voxbus up` or the test stack."""

SCENARIOS: dict[str, tuple[str, dict[str, str]]] = {
    "asr-t2": ("asr", {"VOXBUS_WHISPER_THREADS": "2"}),
    "asr-t1": ("asr", {"VOXBUS_WHISPER_THREADS": "1"}),
    "intent": ("intent", {}),
}
"""Scenario name -> (stage, settings of its replicas)."""

ADD_BACKLOG = {"asr": 2, "intent": 3}
"""Backlog of the ``add`` phase, in multiples of N: it must outlast the second replica's start
(model load and join: 5-10 s here) at the first replica's pace."""
POLL_S = 0.1
"""Period of the offset and /metrics polls (s): the resolution of the measured times."""
RECORDS_OK = re.compile(r'^voxbus_stage_records_total\{outcome="ok",stage="[a-z]+"\} ([0-9.e+]+)$', re.M)


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def utterance_backlog(count: int, tag: str) -> list[Utterance]:
    """``count`` utterances cut from the recordings, one session id each."""
    cut = load_utterances(DATA)
    now = time.time()
    return [Utterance(session_id=f"{tag}-{i:04d}", turn_id=f"a{i}", start_sample=0,
                      end_sample=cut[i % len(cut)].pcm.size, pcm=cut[i % len(cut)].pcm.tobytes(),
                      speech_end_ts=now) for i in range(count)]


def transcript_backlog(count: int, tag: str) -> list[Transcript]:
    """``count`` caller transcripts from the held-out intent set, one session id each."""
    texts = [text for examples in yaml.safe_load(INTENT_SET.read_text()).values() for text in examples]
    return [Transcript(session_id=f"{tag}-{i:04d}", turn_id=f"a{i}", text=texts[i % len(texts)])
            for i in range(count)]


@dataclass
class Replica:
    """A replica of the stage under test and what the /metrics poll saw of it (epoch seconds)."""

    child: Child
    port: int
    serving: float | None = None
    records: list[tuple[float, float]] = field(default_factory=list)

    def first_record_after(self, since: float) -> float | None:
        """When its ok-record counter first rose after ``since``."""
        before = max((n for t, n in self.records if t <= since), default=0.0)
        return next((t for t, n in self.records if t > since and n > before), None)


class Bench:
    """One scenario: a broker, the stage's replicas, and the probes that time them."""

    def __init__(self, stage: str, settings: Settings, supervisor: Supervisor) -> None:
        self.stage = stage
        self.settings = settings
        self.supervisor = supervisor
        self.spec: TopicSpec = stage_class(stage).input
        self.replicas: list[Replica] = []
        self.outputs: list[float] = []

    def add(self) -> Replica:
        """Start one more replica and begin polling its /metrics."""
        child = self.supervisor.add_replica(self.stage)
        base = int(child.env["VOXBUS_METRICS_BASE_PORT"])
        replica = Replica(child, base + list(STAGES).index(self.stage))
        self.replicas.append(replica)
        return replica

    async def poll_metrics(self, http: aiohttp.ClientSession) -> None:
        """Record every replica's ok-record count every :data:`POLL_S`."""
        while True:
            for replica in self.replicas:
                try:
                    url = f"http://{self.settings.host}:{replica.port}/metrics"
                    async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                        text = await response.text()
                except (aiohttp.ClientError, TimeoutError):
                    continue
                now = time.time()
                replica.serving = replica.serving or now
                replica.records.append((now, sum(float(v) for v in RECORDS_OK.findall(text))))
            await asyncio.sleep(POLL_S)

    async def follow_outputs(self) -> None:
        """Append the Kafka timestamp (s) of every record the stage produces to ``voxbus.egress``."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, enable_auto_commit=False,
                                    fetch_max_wait_ms=50)
        await consumer.start()
        try:
            partitions = [TopicPartition(EGRESS.name, p) for p in range(EGRESS.partitions(self.settings))]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            while True:
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    self.outputs.extend(m.timestamp / 1000 for m in messages)
        finally:
            await consumer.stop()

    async def wait_consuming(self, replica: Replica, timeout_s: float = 300.0) -> float:
        """Epoch time of the replica's first heartbeat with partitions assigned.

        Raises:
            TimeoutError: none within ``timeout_s``.
        """
        instance = f"{socket.gethostname()}:{replica.child.proc.pid}"
        consumer = AIOKafkaConsumer(HEARTBEATS.name, bootstrap_servers=self.settings.bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    fetch_max_wait_ms=100)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                if replica.child.proc.poll() is not None:
                    raise RuntimeError(f"{replica.child.name} exited; see {replica.child.log_path}")
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        try:
                            beat = decode(message.value, StageHeartbeat)
                        except SchemaError:
                            continue
                        if beat.instance == instance and beat.ready:
                            return beat.ts
            raise TimeoutError(f"{replica.child.name} did not consume within {timeout_s:.0f} s")
        finally:
            await consumer.stop()

    async def produce(self, records: list[Record]) -> float:
        """Produce the backlog to the stage's input topic; return when the first record was sent."""
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap, linger_ms=5,
                                    max_request_size=4 * 1024 * 1024)
        await producer.start()
        try:
            started = time.time()
            sent = [await producer.send(self.spec.name, encode(r), key=r.session_id.encode())
                    for r in records]
            await asyncio.gather(*sent)
            return started
        finally:
            await producer.stop()

    async def drained(self, timeout_s: float = 600.0) -> float:
        """Epoch time at which the group's committed offsets reach the input topic's end offsets.

        Raises:
            TimeoutError: not drained within ``timeout_s``.
        """
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap, group_id=group_id(self.stage),
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            count = self.spec.partitions(self.settings)
            partitions = [TopicPartition(self.spec.name, p) for p in range(count)]
            ends = await consumer.end_offsets(partitions)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                committed = [await consumer.committed(tp) or 0 for tp in partitions]
                if all(c >= ends[tp] for c, tp in zip(committed, partitions, strict=True)):
                    return time.time()
                await asyncio.sleep(POLL_S)
            raise TimeoutError(f"{self.stage} did not drain its backlog within {timeout_s:.0f} s")
        finally:
            await consumer.stop()

    def meter(self, broker_pid: int) -> CpuMeter:
        """A CPU meter of the live replicas and the broker."""
        roots = {r.child.name: r.child.proc.pid for r in self.replicas
                 if r.child.proc and r.child.proc.poll() is None}
        return CpuMeter({**roots, "broker": broker_pid})

    async def wait_outputs(self, count: int, timeout_s: float = 300.0) -> None:
        """Wait until ``count`` outputs were seen in all (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        while len(self.outputs) < count and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)

    async def drain(self, records: list[Record], broker_pid: int) -> dict[str, Any]:
        """Produce ``records`` and time the current replicas draining them."""
        meter = self.meter(broker_pid)
        meter.start()
        first_output = len(self.outputs)
        started = await self.produce(records)
        committed = await self.drained()
        await self.wait_outputs(first_output + len(records), timeout_s=60)
        cpu = meter.stop()
        outputs = self.outputs[first_output:]
        last_output = max(outputs, default=committed)
        wall = max(committed, last_output) - started
        return {
            "replicas": sum(r.child.proc.poll() is None for r in self.replicas),
            "records": len(records),
            "outputs": len(outputs),
            "seconds": round(wall, 2),
            "records_per_s": round(len(records) / wall, 2),
            "offsets_committed_after_s": round(committed - started, 2),
            "last_output_after_s": round(last_output - started, 2),
            "cpu_seconds": cpu,
            "other_processes_cores": round(max(0.0, meter.machine - sum(cpu.values())) / wall, 2),
        }


def largest_gap(times: list[float], start: float, end: float) -> float:
    """Longest interval without an output timestamp within ``[start, end]`` (s)."""
    inside = sorted(t for t in times if start <= t <= end)
    points = [start, *inside, end]
    return round(max(b - a for a, b in zip(points, points[1:], strict=False)), 2) if end > start else 0.0


def typical_gap(times: list[float], start: float, end: float) -> float:
    """95th percentile of the gaps between consecutive outputs within ``[start, end]`` (s)."""
    inside = sorted(t for t in times if start <= t <= end)
    gaps = np.diff(inside)
    return round(float(np.percentile(gaps, 95)), 2) if gaps.size else 0.0


async def run_scenario(name: str, stage: str, env: dict[str, str], sizes: dict[str, int],
                       quiet_wait_s: float) -> dict[str, Any]:
    """Run the four phases of one scenario on a fresh broker; return its results."""
    data_dir = tempfile.mkdtemp(prefix="voxbus-scale-")
    os.environ.update({**BENCH_ENV, **env, "VOXBUS_DATA_DIR": data_dir})
    get_settings.cache_clear()
    settings = get_settings()
    supervisor = Supervisor(settings)
    broker = start_embedded_broker(settings.bootstrap, str(supervisor.logs / "broker.log"))
    bench = Bench(stage, settings, supervisor)
    count = sizes[stage]
    backlog = utterance_backlog if stage == "asr" else transcript_backlog
    tasks: list[asyncio.Task[None]] = []
    http = aiohttp.ClientSession()
    result: dict[str, Any] = {"scenario": name, "stage": stage, "settings": env, "backlog_records": count}
    try:
        await ensure_topics(settings)
        tasks = [asyncio.create_task(bench.follow_outputs()), asyncio.create_task(bench.poll_metrics(http))]
        first = bench.add()
        await bench.wait_consuming(first)
        ours = {"broker": broker.pid, first.child.name: first.child.proc.pid}
        await asyncio.to_thread(wait_for_quiet, ours, quiet_wait_s)
        log(f"{name}: 1 replica, {count} records")
        result["one"] = await bench.drain(backlog(count, "one"), broker.pid)
        log(f"{name}: one -> {result['one']}")

        log(f"{name}: second replica joins mid-backlog")
        before = len(bench.outputs)
        started = await bench.produce(backlog(ADD_BACKLOG[stage] * count, "add"))
        await bench.wait_outputs(before + max(4, count // 8))
        spawned = time.time()
        second = bench.add()
        await bench.wait_consuming(second)
        await bench.drained()
        joined = second.serving or spawned
        second_first = second.first_record_after(spawned)
        both = second_first or joined
        if second_first is None:
            log(f"{name}: the backlog was drained before the second replica took a record; use a larger one")
        result["add"] = {
            "backlog_records": ADD_BACKLOG[stage] * count,
            "second_started_after_s": round(spawned - started, 2),
            "second_joined_after_start_s": round(joined - spawned, 2),
            "second_took_records": second_first is not None,
            "joined_to_both_consuming_s": round(both - joined, 2),
            "rebalance_pause_s": largest_gap(bench.outputs, joined, both),
            "typical_gap_s": typical_gap(bench.outputs, started, spawned),
            "timeline": {"started": started, "spawned": spawned, "joined": joined, "both": both},
        }
        log(f"{name}: add -> {result['add']}")

        await asyncio.sleep(2.0)
        log(f"{name}: 2 replicas, {count} records")
        result["two"] = await bench.drain(backlog(count, "two"), broker.pid)
        log(f"{name}: two -> {result['two']}")
        result["scaling"] = round(result["two"]["records_per_s"] / result["one"]["records_per_s"], 2)

        log(f"{name}: second replica leaves (SIGTERM) mid-backlog")
        before = len(bench.outputs)
        started = await bench.produce(backlog(count, "remove"))
        await bench.wait_outputs(before + max(4, count // 4))
        stopping = time.time()
        code = await asyncio.to_thread(supervisor.remove_replica, second.child)
        exited = time.time()
        done = await bench.drained()
        result["remove"] = {
            "exit_code": code,
            "sigterm_to_exit_s": round(exited - stopping, 2),
            "rebalance_pause_s": largest_gap(bench.outputs, stopping, done),
            "typical_gap_s": typical_gap(bench.outputs, started, stopping),
            "timeline": {"started": started, "sigterm": stopping, "exited": exited, "drained": done},
        }
        log(f"{name}: remove -> {result['remove']}")
        result["outputs"] = [round(t, 3) for t in bench.outputs]
        return result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
        supervisor.stop()
        stop_process(broker)
        shutil.rmtree(data_dir, ignore_errors=True)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Throughput bars (1 vs 2 replicas) and each scenario's output timeline around the join."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(results), figsize=(4.2 * (1 + len(results)), 4))
    bars = axes[0]
    x = np.arange(len(results))
    bars.bar(x - 0.2, [r["one"]["records_per_s"] for r in results], 0.4, label="1 replica")
    bars.bar(x + 0.2, [r["two"]["records_per_s"] for r in results], 0.4, label="2 replicas")
    labels = [f"{r.get('broker', '')}\n{r['scenario']}\nx{r['scaling']}" for r in results]
    bars.set_xticks(x, labels, fontsize=7)
    bars.set_ylabel("records/s (backlog drained)")
    bars.set_yscale("log")
    bars.set_title("Throughput, 2 cores")
    bars.legend(fontsize=8)
    for ax, r in zip(axes[1:], results, strict=True):
        line = r["add"]["timeline"]
        times = np.array(sorted(t for t in r["outputs"] if t >= line["started"])) - line["started"]
        ax.plot(times, np.arange(1, times.size + 1), lw=1)
        for key, colour in (("spawned", "grey"), ("joined", "orange"), ("both", "green")):
            ax.axvline(line[key] - line["started"], color=colour, ls="--", lw=1, label=key)
        right = max(1.0, line["both"] - line["started"] + 15)
        ax.set_xlim(0, right)
        ax.set_ylim(0, max(1, int((times <= right).sum() * 1.05)))
        ax.set_xlabel("s since the backlog was produced")
        ax.set_ylabel("outputs")
        ax.set_title(f"{r.get('broker', '')} {r['scenario']}: 2nd replica joins\n"
                     f"pause {r['add']['rebalance_pause_s']} s", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(utterances: int = 40, transcripts: int = 600,
         scenario: list[str] = typer.Option(list(SCENARIOS)),  # noqa: B008
         broker: list[str] = typer.Option(["kafka", "tansu"]),  # noqa: B008
         quiet_wait: float = 60.0) -> None:
    """Run the scenarios on each embedded broker; print and save the results."""
    sizes = {"asr": utterances, "intent": transcripts}
    results = []
    for kind in broker:
        for name in scenario:
            stage, env = SCENARIOS[name]
            result = asyncio.run(run_scenario(name, stage, {**env, "VOXBUS_BROKER": kind}, sizes, quiet_wait))
            results.append({"broker": kind, **result})
    RESULTS.mkdir(exist_ok=True)
    summary = {"machine": {"cores": os.cpu_count()}, "git": git_state(), "scenarios": results}
    (RESULTS / "scale.json").write_text(json.dumps(summary, indent=2))
    plot(results, RESULTS / "scale.png")
    for r in results:
        add, remove = r["add"], r["remove"]
        print(f"{r['broker']:6s} {r['scenario']:8s} 1 replica {r['one']['records_per_s']:7.2f}/s  2 replicas "
              f"{r['two']['records_per_s']:7.2f}/s  scaling x{r['scaling']}  "
              f"join pause {add['rebalance_pause_s']} s (join->both {add['joined_to_both_consuming_s']} s)  "
              f"leave pause {remove['rebalance_pause_s']} s")


if __name__ == "__main__":
    typer.run(main)
