"""The embedded brokers: Apache Kafka from its jars (format, readiness, restart, shutdown) and the
fallback."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.ports import free_port_range
from streams import broker as broker_module
from streams import kafka_server
from streams.broker import BrokerError, resolve_kind, start_embedded_broker, stop_process
from streams.settings import Settings

pytestmark = pytest.mark.skipif(kafka_server.java_major() is None or kafka_server.java_major() < 17,
                                reason="no Java 17+: Apache Kafka cannot run here")


@pytest.fixture()
def bootstrap() -> str:
    return f"127.0.0.1:{free_port_range(2)}"  # the controller takes the next port


async def roundtrip(bootstrap: str, topic: str, create: bool) -> list[bytes]:
    if create:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        await (await producer.send(topic, b"kept", key=b"s1"))
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [m.value for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()


def test_kafka_formats_serves_idempotent_producers_and_keeps_its_log_across_a_restart(bootstrap, tmp_path):
    settings = Settings(broker="kafka")
    log_path = tmp_path / "broker.log"
    proc = start_embedded_broker(bootstrap, str(log_path), kind="kafka", data_dir=tmp_path / "kafka",
                                 settings=settings)
    try:
        assert (tmp_path / "kafka" / "log" / "meta.properties").exists()
        assert asyncio.run(roundtrip(bootstrap, "kept-topic", create=True)) == [b"kept"]
    finally:
        stop_process(proc)
    assert proc.returncode is not None
    with pytest.raises(OSError):  # the port is free again: a clean shutdown
        socket.create_connection(tuple(bootstrap.split(":")), timeout=0.5).close()
    proc = start_embedded_broker(bootstrap, str(log_path), kind="kafka", data_dir=tmp_path / "kafka",
                                 settings=settings)
    try:  # same storage: not re-formatted, the record is still there
        assert asyncio.run(roundtrip(bootstrap, "kept-topic", create=False)) == [b"kept"]
    finally:
        stop_process(proc)


def test_a_taken_port_is_refused(bootstrap):
    host, port = bootstrap.split(":")
    with socket.socket() as sock:
        sock.bind((host, int(port)))
        sock.listen()
        with pytest.raises(BrokerError, match="already in use"):
            start_embedded_broker(bootstrap, kind="kafka", settings=Settings())


def test_auto_falls_back_to_tansu_without_java_and_says_so(monkeypatch, caplog, tmp_path):
    resolve_kind.cache_clear()
    monkeypatch.setattr(kafka_server, "java_major", lambda java=None: None)
    with caplog.at_level(logging.WARNING, logger=broker_module.__name__):
        assert resolve_kind("auto", tmp_path) == "tansu"
    assert [r.getMessage() for r in caplog.records] == [
        "embedded broker: Tansu, not Apache Kafka (no Java runtime found)"]
    with pytest.raises(BrokerError, match="VOXBUS_BROKER=kafka, but no Java runtime found"):
        resolve_kind("kafka", tmp_path)
    resolve_kind.cache_clear()


def test_auto_picks_kafka_when_java_17_is_here(tmp_path):
    resolve_kind.cache_clear()
    assert resolve_kind("auto", tmp_path) == "kafka"  # mvn is on PATH to fetch the jars
    assert resolve_kind("tansu", tmp_path) == "tansu"
    resolve_kind.cache_clear()


def test_java_8_is_too_old(monkeypatch, tmp_path):
    resolve_kind.cache_clear()
    monkeypatch.setattr(kafka_server, "java_major", lambda java=None: 8)
    with pytest.raises(BrokerError, match="Java 8 found"):
        resolve_kind("kafka", tmp_path)
    resolve_kind.cache_clear()


def test_a_stages_internal_topics_exist_before_its_worker_starts(bootstrap, tmp_path):
    """faust looked up its new changelog too early on Kafka and ran with "0 partitions"."""
    from processors.runtime import build
    from streams.admin import ensure_internal_topics, topic_partitions

    settings = Settings(broker="kafka", kafka_bootstrap=bootstrap, data_dir=tmp_path)
    proc = start_embedded_broker(bootstrap, kind="kafka", data_dir=tmp_path / "kafka", settings=settings)
    try:
        app, _runner = build("generation", settings)
        created = asyncio.run(ensure_internal_topics(app, settings))
        assert created == ["voxbus-generation-__assignor-__leader", "voxbus-generation-history-changelog"]
        changelog = asyncio.run(topic_partitions(settings, "voxbus-generation-history-changelog"))
        assert len(changelog) == settings.partitions
        assert asyncio.run(ensure_internal_topics(app, settings)) == []  # idempotent
    finally:
        stop_process(proc)


def test_the_broker_heap_is_fixed_and_touched_at_start(tmp_path):
    # -Xms = -Xmx and AlwaysPreTouch: the heap is resident from the start, so the RSS stays flat
    argv = kafka_server.java_command(tmp_path, tmp_path / "log4j2.properties", 384, "kafka.Kafka")
    assert {"-Xms384m", "-Xmx384m", "-XX:+AlwaysPreTouch"} <= set(argv)
