"""kill -9 of a vad worker mid-utterance, on the real embedded Apache Kafka (issue 16): after the restart the
open utterance comes out whole and once, and the closed utterance of another session of its partition
(read again with it) is not sent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from benchmarks.ports import free_port
from processors.vad.stage import VadStage
from schemas import SessionControl, Utterance, decode, encode
from streams import kafka_server
from streams.admin import ensure_topics
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings
from streams.topics import AUDIO, UTTERANCES
from tests.conftest import load_clip
from tests.processors.conftest import chunks
from tests.streams.test_broker import bootstrap  # noqa: F401  (a free broker address, as a fixture)

pytestmark = pytest.mark.skipif(kafka_server.java_major() is None or kafka_server.java_major() < 17,
                                reason="no Java 17+: Apache Kafka cannot run here")

RATE = 16000
CHUNK = 320  # 20 ms, as the ingress sends
LONG, SHORT = "sense_and_sensibility_01_austen_64kb-0870", "cards_five_five"
KILL_AT_S = 5.5
"""Audio sent before the kill (s): the long utterance (speech from 1 s to 8.1 s) is open, the short one
(speech from 2.1 s to 3.6 s) has been sent."""


def partition_of(session: str, partitions: int) -> int:
    return DefaultPartitioner()(session.encode(), list(range(partitions)), [])


def timeline(name: str, lead_s: float, total_s: float) -> np.ndarray:
    """Clip ``name`` after ``lead_s`` of silence, padded with silence to ``total_s``."""
    audio, _ = load_clip(name)
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    start = int(lead_s * RATE)
    out[start:start + audio.size] = audio
    return out


async def reference(settings: Settings, session: str, audio: np.ndarray) -> list[tuple[str, int, int]]:
    """The confirmed utterances (turn id, start, end sample) of ``audio`` endpointed in one go, no crash."""
    stage = VadStage(settings)
    stage.load()
    out = []
    for chunk in chunks(session, audio, CHUNK):
        async for emit in stage.handle(chunk):
            if isinstance(emit.record, Utterance) and not emit.record.speculative:
                out.append((emit.record.turn_id, emit.record.start_sample, emit.record.end_sample))
    return out


def spans(utterances: list[Utterance]) -> list[tuple[str, str, int, int]]:
    return [(u.session_id, u.turn_id, u.start_sample, u.end_sample) for u in utterances]


def start_worker(settings: Settings, log_path) -> subprocess.Popen[bytes]:
    """The vad worker, as ``voxbus up`` runs it: a stable group instance id and web port (its replacement
    gets its partitions at once, faust's assignment naming that port)."""
    env = {**os.environ, "VOXBUS_BROKER": "kafka", "VOXBUS_DATA_DIR": str(settings.data_dir),
           "VOXBUS_GROUP_INSTANCE_ID": "vad-0", "VOXBUS_METRICS_BASE_PORT": str(settings.metrics_base_port)}
    log = open(log_path, "ab")  # noqa: SIM115 - the worker's output, closed with the test's tmp_path
    argv = [sys.executable, "-m", "voxbus", "worker", "vad", "--bootstrap", settings.bootstrap]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


async def send(settings: Settings, records: list) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for record in records:
            await producer.send_and_wait(AUDIO.name, encode(record), key=record.session_id.encode())
    finally:
        await producer.stop()


async def utterances_until(settings: Settings, done, timeout_s: float = 90.0, settle_s: float = 0.0) -> list:
    """The confirmed utterances on ``voxbus.utterances`` once ``done(them)`` holds, and ``settle_s`` on."""
    consumer = AIOKafkaConsumer(UTTERANCES.name, bootstrap_servers=settings.bootstrap,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        got: list[Utterance] = []
        deadline, settled = time.monotonic() + timeout_s, None
        while settled is None or time.monotonic() < settled:
            assert time.monotonic() < deadline, f"timed out; utterances so far: {spans(got)}"
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                got += [u for u in (decode(m.value, Utterance) for m in messages) if not u.speculative]
            if settled is None and done(got):
                settled = time.monotonic() + settle_s
        return got
    finally:
        await consumer.stop()


def test_a_vad_worker_killed_mid_utterance_loses_and_repeats_nothing(bootstrap, tmp_path):  # noqa: F811
    settings = Settings(broker="kafka", embedded_listen=bootstrap, data_dir=tmp_path / "data",
                        metrics_base_port=free_port())
    talker = "s-long"
    partition = partition_of(talker, settings.partitions)
    candidates = (f"s-short-{i}" for i in range(1000))
    other = next(s for s in candidates if partition_of(s, settings.partitions) == partition)
    long_audio, short_audio = timeline(LONG, 1.0, 10.0), timeline(SHORT, 1.0 + 1.0, 10.0)
    expected_long = asyncio.run(reference(settings, talker, long_audio))
    expected_short = asyncio.run(reference(settings, other, short_audio))
    assert len(expected_long) == 1 and expected_long[0][1] < KILL_AT_S * RATE < expected_long[0][2]
    assert len(expected_short) == 1 and expected_short[0][2] < (KILL_AT_S - 1.0) * RATE
    # both sessions' chunks interleaved in time order on one partition, as two live callers' are
    pairs = zip(chunks(talker, long_audio, CHUNK), chunks(other, short_audio, CHUNK), strict=True)
    records = [record for pair in pairs for record in pair]
    cut = 2 * int(KILL_AT_S * RATE / CHUNK)
    ends = [SessionControl(session_id=s, action="end", ts=time.time()) for s in (talker, other)]

    broker = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                   data_dir=tmp_path / "kafka", settings=settings)
    worker = None
    try:
        asyncio.run(ensure_topics(settings))
        worker = start_worker(settings, tmp_path / "vad.log")
        asyncio.run(send(settings, records[:cut]))
        before = asyncio.run(utterances_until(settings, lambda got: any(u.session_id == other for u in got)))
        time.sleep(2.0)  # several commit intervals (0.5 s): everything handled so far is acked
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        assert not [u for u in before if u.session_id == talker], "the long utterance ended before the kill"

        worker = start_worker(settings, tmp_path / "vad.log")
        asyncio.run(send(settings, records[cut:] + ends))
        got = asyncio.run(utterances_until(settings, lambda got: any(u.session_id == talker for u in got),
                                           settle_s=5.0))
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        stop_process(broker)

    (_, start, end), = expected_long
    long_turns = [span[1:] for span in spans(got) if span[0] == talker]
    assert len(long_turns) == 1, f"the open utterance should come out once after the restart: {long_turns}"
    (_, got_start, got_end), = long_turns
    # the speech itself (the reference's utterance less its padding) is all there; the padding may be
    # shorter, the restarted VAD hearing the speech start a few windows later without its earlier context
    pad = settings.vad_speech_pad_ms * RATE // 1000
    assert got_start <= start + pad and got_end >= end - pad, (
        f"the open utterance lost speech: {got_start / RATE:.2f}-{got_end / RATE:.2f} s, "
        f"expected {start / RATE:.2f}-{end / RATE:.2f} s")
    short_turns = [span[1:] for span in spans(got) if span[0] == other]
    assert short_turns == expected_short, f"the other session's, sent before the kill: {short_turns}"
