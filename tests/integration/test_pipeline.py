"""A real caller through every stage, each its own process and consumer group."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import numpy as np
import pytest
import soxr
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.runtime import STAGES, stage_class
from schemas import SchemaError, TurnRecord, decode
from streams.app import group_id
from streams.broker import broker_kind
from streams.topics import TURNS
from tests.conftest import DATA, load_clip, wer
from voxbus.client import ask, call

pytestmark = pytest.mark.integration

CLIP = "sense_and_sensibility_01_austen_64kb-0880"
STAGE_MARKS = ["vad.speech_end", "vad.emit", "asr.start", "asr.end", "intent.end", "retrieval.end",
               "generation.start", "generation.first_token", "generation.sentence0", "tts.sentence0",
               "ingress.first_audio"]

VOICE_STAGES = [name for name in STAGES if name != "workflow"]
"""The stages a voice call without a tool call goes through (tests/integration/test_workflow.py checks
the workflow stage)."""


async def read_topic(bootstrap: str, topic: str, match, timeout_s: float = 15.0):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    try:
                        record = decode(message.value)
                    except SchemaError:
                        continue  # other tests put poison records on the topics on purpose
                    if match(record):
                        return record
        raise AssertionError(f"no matching record on {topic} within {timeout_s} s")
    finally:
        await consumer.stop()


async def committed(settings, name: str) -> int:
    """Sum of the committed offsets of stage ``name``'s group on its input topic.

    Apache Kafka answers the admin client's ListConsumerGroupOffsets; Tansu does not, so
    there the offsets are read by OffsetFetch through a consumer that never joins the group.
    """
    topic = stage_class(name).input.name
    if broker_kind(settings) != "tansu":
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group_id(name))
        finally:
            await admin.close()
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group_id(name),
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return sum([await consumer.committed(TopicPartition(topic, p)) or 0 for p in partitions])
    finally:
        await consumer.stop()


async def all_committed(settings) -> dict[str, int]:
    return {name: await committed(settings, name) for name in VOICE_STAGES}


@pytest.fixture(scope="module")
def voice_call(url, stack):
    before = asyncio.run(all_committed(stack))
    session_id = f"it-{uuid.uuid4().hex[:8]}"
    turns = asyncio.run(call(url, DATA / f"{CLIP}.wav", session_id=session_id))
    return session_id, turns, before


def test_spoken_question_gets_a_spoken_answer(voice_call, recognizer):
    _session, turns, _before = voice_call
    assert len(turns) == 1
    turn = turns[0]
    _audio, reference = load_clip(CLIP)
    assert wer(reference, turn.transcript) <= 0.25, turn.transcript
    assert turn.reply_text.strip()
    assert turn.reply_sample_rate == 22050
    reply = np.frombuffer(bytes(turn.reply_audio), "<i2").astype(np.float32) / 32768
    heard = recognizer.transcribe(soxr.resample(reply, 22050, 16000)).text
    assert wer(turn.reply_text, heard) <= 0.4, (turn.reply_text, heard)
    assert turn.voice_to_voice_ms and turn.voice_to_voice_ms > 0
    print("\nvoice-to-voice", turn.voice_to_voice_ms, "ms;", json.dumps(turn.latency_ms))


async def test_turn_record_has_every_stage_timestamp(voice_call, stack):
    session_id, _turns, _before = voice_call
    record = await read_topic(stack.bootstrap, TURNS.name,
                              lambda r: isinstance(r, TurnRecord) and r.session_id == session_id)
    missing = [mark for mark in STAGE_MARKS if mark not in record.marks]
    assert not missing, missing
    times = [record.marks[m] for m in STAGE_MARKS]
    assert times == sorted(times), dict(zip(STAGE_MARKS, times, strict=True))
    assert record.voice_to_voice_ms == record.latency_ms["voice_to_voice"] > 0


async def test_every_stage_committed_offsets(voice_call, stack):
    """Each stage's group committed past the records of this call (not just any offset of the shared
    stack)."""
    _session, _turns, before = voice_call
    await asyncio.sleep(1.5)  # > broker_commit_interval
    after = await all_committed(stack)
    stuck = {name: (before[name], after[name]) for name in VOICE_STAGES if after[name] <= before[name]}
    assert not stuck, f"committed offsets did not move during the call: {stuck}"


def test_text_channel(url):
    turn = asyncio.run(ask(url, "When is my bill due?"))
    assert turn.intent == "billing"
    assert turn.reply_text.strip()
    assert not turn.reply_audio


def test_each_stage_serves_prometheus_metrics(voice_call, stack):
    for index, stage in enumerate(STAGES):
        if stage not in VOICE_STAGES:
            continue
        body = urllib.request.urlopen(f"http://{stack.host}:{stack.metrics_base_port + index}/metrics",
                                      timeout=5).read().decode()
        assert f'voxbus_stage_records_total{{outcome="ok",stage="{stage}"}}' in body
        assert "faust_messages_received_total" in body  # faust's own sensor, same page
    body = urllib.request.urlopen(f"http://{stack.host}:{stack.port}/metrics", timeout=5).read().decode()
    assert "voxbus_voice_to_voice_seconds_count" in body
