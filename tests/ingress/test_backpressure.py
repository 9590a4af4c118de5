"""The ingress's bounded audio buffer: in order, bounded per session and per process, shed when full."""

import asyncio
import json

from ingress.backpressure import AudioBudget, Outbox
from schemas import AudioChunk, SessionControl


def chunk(seq: int, nbytes: int = 2048) -> AudioChunk:
    return AudioChunk(session_id="s", seq=seq, start_sample=seq * nbytes // 2, pcm=b"\0" * nbytes,
                      recv_ts=1.0)


class SlowBroker:
    """Acknowledges a record only when the test releases it."""

    def __init__(self) -> None:
        self.acked: list = []
        self.gate = asyncio.Semaphore(0)

    async def produce(self, record) -> None:
        await self.gate.acquire()
        self.acked.append(record)


async def test_outbox_keeps_order_and_sheds_past_the_session_bound():
    broker, budget = SlowBroker(), AudioBudget(1 << 20)
    outbox = Outbox(broker.produce, budget, max_bytes=4 * 2048)
    accepted = [outbox.put(chunk(i)) for i in range(6)]
    assert accepted == [True] * 4 + [False] * 2
    assert outbox.put(SessionControl(session_id="s", action="end", ts=1.0)), "control records are never shed"
    assert budget.used == 4 * 2048 and outbox.buffered_s == 4 * 2048 / 32000
    for _ in range(5):
        broker.gate.release()
    await outbox.close(timeout_s=1.0)
    assert [getattr(r, "seq", "end") for r in broker.acked] == [0, 1, 2, 3, "end"]
    assert budget.used == 0


async def test_the_global_budget_bounds_every_session_together():
    broker, budget = SlowBroker(), AudioBudget(3 * 2048)
    a, b = (Outbox(broker.produce, budget, max_bytes=1 << 20) for _ in range(2))
    assert [a.put(chunk(0)), a.put(chunk(1)), b.put(chunk(0)), b.put(chunk(1))] == [True, True, True, False]
    assert budget.saturated
    broker.gate.release()
    await asyncio.sleep(0.01)
    assert budget.used == 2 * 2048 and b.put(chunk(1)), "an acknowledgement frees room"
    for outbox in (a, b):
        await outbox.close(timeout_s=0.05)  # the broker never answers: nothing is leaked
    assert budget.used == 0


async def test_a_failed_send_is_dropped_and_the_next_goes_on():
    sent = []

    async def flaky(record):
        if record.seq == 1:
            raise ConnectionError("broker gone")
        sent.append(record.seq)

    outbox = Outbox(flaky, AudioBudget(1 << 20), max_bytes=1 << 20)
    for i in range(3):
        outbox.put(chunk(i))
    await outbox.close(timeout_s=1.0)
    assert sent == [0, 2]


async def test_a_caller_is_told_when_audio_is_shed(serve):
    client, gateway = await serve(session_buffer_s=0.2)  # 6.4 kB: under two 128 ms chunks
    release = asyncio.Event()
    produce = gateway.produce

    async def stalled(topic, record):
        if isinstance(record, AudioChunk):
            await release.wait()  # the broker falls behind
        await produce(topic, record)

    gateway.produce = stalled
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    assert (await ws.receive_json(timeout=5))["type"] == "ready"
    for _ in range(10):
        await ws.send_bytes(b"\0" * 4096)  # 128 ms each
    event = await ws.receive_json(timeout=5)
    assert event["type"] == "error" and event["code"] == "overloaded", event
    release.set()
    await ws.send_str(json.dumps({"type": "end"}))
    await ws.close()
    await asyncio.sleep(0.1)
    chunks = gateway.records(AudioChunk)
    assert 0 < len(chunks) < 10 and [c.seq for c in chunks] == sorted(c.seq for c in chunks)
    assert gateway.audio_budget.used == 0


async def test_new_sessions_are_refused_while_the_buffer_is_saturated(serve):
    client, gateway = await serve()
    gateway.audio_budget.take(gateway.audio_budget.limit)  # every session's audio waits for the broker
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    event = await ws.receive_json(timeout=5)
    assert event["code"] == "overloaded" and event["close_code"] == 1013
    assert (await ws.receive()).data == 1013

