"""Analytics on the whole pipeline: real calls -> voxbus.turns -> windowed records, page JSON, Parquet."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from processors.analytics.windows import window_start
from schemas import (
    DeadLetter,
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SentimentCount,
    StageHeartbeat,
    TurnRecord,
    TurnsPerMinute,
    WindowedRecord,
    decode,
)
from streams.topics import ANALYTICS_TOPICS, DEAD_LETTER, HEARTBEATS, TURNS
from tests.conftest import DATA
from voxbus.client import ask, call

pytestmark = pytest.mark.integration

CLIP = "sense_and_sensibility_01_austen_64kb-0880"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def read_until(bootstrap: str, topics: list[str], done, timeout_s: float = 60.0) -> list:
    """Read ``topics`` from the beginning, decoded, until ``done(records)`` holds; all records read."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    records: list = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while asyncio.get_running_loop().time() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    record = decode(message.value)
                    if isinstance(record, WindowedRecord):
                        assert message.key.decode() == record.key  # upserts keyed by window/dimension
                    records.append(record)
            if done(records):
                return records
        raise AssertionError(f"condition not met on {topics} within {timeout_s} s; "
                             f"read {len(records)} records")
    finally:
        await consumer.stop()


def last_per_key(records: list) -> dict[tuple[str, str], WindowedRecord]:
    return {(r.type, r.key): r for r in records if isinstance(r, WindowedRecord)}


@pytest.fixture(scope="module")
def calls(url, stack):
    """A spoken call and a typed request for a person; their turn records from voxbus.turns."""
    voice_session, text_session = f"an-{uuid.uuid4().hex[:8]}", f"an-{uuid.uuid4().hex[:8]}"
    turns = asyncio.run(call(url, DATA / f"{CLIP}.wav", session_id=voice_session))
    assert len(turns) == 1, turns
    asyncio.run(ask(url, "I want to talk to a person", session_id=text_session))

    def both(records):
        return {r.session_id for r in records if isinstance(r, TurnRecord)} >= {voice_session, text_session}

    records = asyncio.run(read_until(stack.bootstrap, [TURNS.name], both, timeout_s=30))
    by_session = {r.session_id: r for r in records if isinstance(r, TurnRecord)}
    return SimpleNamespace(voice=by_session[voice_session], text=by_session[text_session])


async def test_windowed_records_reach_the_analytics_topics(calls, stack):
    voice, text = calls.voice, calls.text
    assert text.intent == "human_agent"

    def key(record: TurnRecord, dimension: str) -> str:
        return f"{int(window_start(record.ts))}/{dimension}"

    def counted(records) -> bool:
        latest = last_per_key(records)
        escalation = latest.get(("analytics_escalations", key(text, "all")))
        return (
            ("analytics_latency", key(voice, "voice_to_voice")) in latest
            and ("analytics_intent", key(text, "human_agent")) in latest
            and escalation is not None and text.session_id in escalation.session_ids
        )

    records = await read_until(stack.bootstrap, [t.name for t in ANALYTICS_TOPICS], counted)
    latest = last_per_key(records)

    minute = latest[("analytics_turns", key(voice, "all"))]
    assert isinstance(minute, TurnsPerMinute)
    assert minute.turns >= 1 and minute.voice >= 1 and minute.sessions >= 1
    assert minute.window_start <= voice.ts < minute.window_end == minute.window_start + 60
    assert latest[("analytics_turns", key(text, "all"))].text >= 1

    intent = latest[("analytics_intent", key(voice, voice.intent or "unknown"))]
    assert isinstance(intent, IntentCount) and intent.turns >= 1
    sentiment = latest[("analytics_sentiment", key(voice, voice.sentiment))]
    assert isinstance(sentiment, SentimentCount) and sentiment.turns >= 1

    escalation = latest[("analytics_escalations", key(text, "all"))]
    assert isinstance(escalation, EscalationCount) and escalation.human_agent >= 1

    for span, ms in voice.latency_ms.items():
        latency = latest[("analytics_latency", key(voice, span))]
        assert isinstance(latency, LatencyPercentiles) and latency.turns >= 1
        assert latency.min_ms - 0.1 <= ms <= latency.max_ms + 0.1, span
        assert latency.min_ms <= latency.p50_ms <= latency.p95_ms <= latency.p99_ms <= latency.max_ms
    v2v = latest[("analytics_latency", key(voice, "voice_to_voice"))]
    if v2v.turns == 1:  # no other voice turn in that minute: the percentiles are the turn's own latency
        assert v2v.p50_ms == v2v.p99_ms == pytest.approx(voice.voice_to_voice_ms, abs=0.1)


async def test_the_analytics_json_api_reads_the_topics(calls, stack):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from ingress.analytics import add_routes

    app = web.Application()
    add_routes(app, SimpleNamespace(settings=stack))
    voice = calls.voice
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/analytics")).status == 200
        for _ in range(20):
            body = await (await client.get("/v1/analytics?minutes=60")).json()
            if window_start(voice.ts) in body["windows"] and "human_agent" in body["intents"]["totals"]:
                break
            await asyncio.sleep(1)
        i = body["windows"].index(window_start(voice.ts))
        assert body["turns"]["turns"][i] >= 1
        assert body["latency"]["voice_to_voice"]["p50"][i] is not None
        assert body["totals"]["escalations"] >= 1 and calls.text.session_id in body["escalations"]["sessions"]


def test_export_writes_the_turns_to_parquet(calls, stack, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "turns.parquet"
    done = subprocess.run([sys.executable, "-m", "voxbus", "analytics", "export", "--to", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(out).to_pylist()
    voice = next(r for r in rows if r["session_id"] == calls.voice.session_id)
    assert voice["turn_id"] == calls.voice.turn_id and voice["transcript"] == calls.voice.transcript
    assert voice["topic"] == TURNS.name
    for span, ms in calls.voice.latency_ms.items():
        assert voice[f"latency_{span}_ms"] == pytest.approx(ms), span
    first_audio = calls.voice.marks["ingress.first_audio"]
    assert dict(voice["marks"])["ingress.first_audio"] == pytest.approx(first_audio)
    assert any(r["session_id"] == calls.text.session_id and r["intent"] == "human_agent" for r in rows)


def test_tail_prints_decoded_records(calls, stack):
    done = subprocess.run(
        [sys.executable, "-m", "voxbus", "analytics", "tail", "latency", "--from-beginning", "--json",
         "--count", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(lines) == 2
    assert all(line["topic"] == "voxbus.analytics.latency" and line["record"]["type"] == "analytics_latency"
               for line in lines)
    assert lines[0]["key"] == f"{int(lines[0]['record']['window_start'])}/{lines[0]['record']['span']}"


async def test_the_analytics_worker_is_alive_and_dead_letters_garbage(calls, stack):
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    marker = uuid.uuid4().hex[:12].encode()
    await producer.send_and_wait(TURNS.name, b"\xc1not a turn " + marker, key=b"poison")
    await producer.stop()
    records = await read_until(stack.bootstrap, [DEAD_LETTER.name],
                               lambda rs: any(isinstance(r, DeadLetter) and marker in r.payload for r in rs))
    letter = next(r for r in records if isinstance(r, DeadLetter) and marker in r.payload)
    assert letter.stage == "analytics" and letter.topic == TURNS.name

    beats = await read_until(stack.bootstrap, [HEARTBEATS.name], lambda rs: any(
        isinstance(r, StageHeartbeat) and r.stage == "analytics" and r.ready for r in rs))
    assert beats
    from processors.analytics.stage import metrics_port

    port = metrics_port(stack)
    body = urllib.request.urlopen(f"http://{stack.host}:{port}/metrics", timeout=5).read().decode()
    assert 'voxbus_stage_records_total{outcome="ok",stage="analytics"}' in body
