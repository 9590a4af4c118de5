"""Admission by capacity on a real broker: a real consumer group's lag refuses, its catching up admits."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from ingress.admission import LAG_POLL_S, AdmissionControl
from streams.app import group_id
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings
from tests.streams.test_broker import bootstrap, pytestmark  # noqa: F401 - the fixture, the Java check

TOPIC = "admission-input"


async def lag_refuses_then_recovers(address: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    await admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=address)
    await producer.start()
    for i in range(30):
        await producer.send_and_wait(TOPIC, b"x", partition=i % 2)
    await producer.stop()
    stage = AIOKafkaConsumer(TOPIC, bootstrap_servers=address, group_id=group_id("vad"),
                             enable_auto_commit=False, auto_offset_reset="earliest")
    await stage.start()
    while len(stage.assignment()) < 2:  # joined the group: both partitions are its own
        await stage.getmany(timeout_ms=200)
    first, second = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
    await stage.commit({first: OffsetAndMetadata(10, ""), second: OffsetAndMetadata(5, "")})

    admission = AdmissionControl(Settings(kafka_bootstrap=address, admission_max_lag=10), ["vad", "asr"])
    await admission.start()
    try:
        assert await admission.read_lags() == {"voxbus-vad": 15, "voxbus-asr": 0}
        await asyncio.sleep(LAG_POLL_S)
        assert admission.admit() == (False, "lag")
        await stage.commit({first: OffsetAndMetadata(15, ""), second: OffsetAndMetadata(15, "")})
        await asyncio.sleep(LAG_POLL_S + 1.0)
        assert admission.lags == {"voxbus-vad": 0, "voxbus-asr": 0}
        assert admission.admit() == (True, "")
    finally:
        await admission.stop()
        await stage.stop()


def test_the_lag_of_a_real_consumer_group_refuses_until_it_catches_up(bootstrap, tmp_path):  # noqa: F811
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                 data_dir=tmp_path / "kafka", settings=Settings(broker="kafka"))
    try:
        asyncio.run(lag_refuses_then_recovers(bootstrap))
    finally:
        stop_process(proc)
