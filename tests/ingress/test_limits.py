"""Per-session and per-connection limits (issue 13, findings 4 and 6): text turns, sockets, frames, HTTP."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from schemas import AudioChunk, ReplyText, SessionControl, Transcript, TurnCancel
from tests.ingress.test_edge import KEYS, START, session
from tests.ingress.test_twilio import wait_for


async def text(ws, words: str) -> None:
    await ws.send_str(json.dumps({"type": "text", "text": words}))


async def errors(ws, count: int) -> list[str]:
    """The codes of the next ``count`` error events."""
    codes = []
    while len(codes) < count:
        event = await ws.receive_json(timeout=5)
        if event["type"] == "error":
            codes.append(event["code"])
    return codes


async def test_a_text_flood_reaches_the_bus_only_up_to_the_unanswered_limit(serve):
    client, gateway = await serve(max_pending_text_turns=3, text_turns_per_minute=0)
    events, _, _, ws = await session(client, hold=True)
    sid = events[0]["session_id"]
    for i in range(100):
        await text(ws, f"question {i}")
    assert await errors(ws, 97) == ["too_many_turns"] * 97
    transcripts = gateway.records(Transcript, sid)
    assert [t.text for t in transcripts] == ["question 0", "question 1", "question 2"]
    assert len({t.turn_id for t in transcripts}) == 3  # unique turn ids, even within one millisecond
    # an answer frees a place
    await gateway.deliver(ReplyText(session_id=sid, turn_id=transcripts[0].turn_id, index=0, text="Answer.",
                                    final=True, speak=False))
    await wait_for(lambda: transcripts[0].turn_id not in gateway.sessions[sid].turns)
    await text(ws, "one more")
    await wait_for(lambda: len(gateway.records(Transcript, sid)) == 4)
    # hanging up cancels the unanswered turns for the stages
    await ws.send_str(json.dumps({"type": "end"}))
    await wait_for(lambda: len(gateway.records(TurnCancel, sid)) == 3)
    cancelled = {(c.turn_id, c.reason) for c in gateway.records(TurnCancel, sid)}
    assert cancelled == {(t.turn_id, "hangup") for t in gateway.records(Transcript, sid)[1:]}


async def test_text_turns_are_rate_limited_per_session(serve):
    client, gateway = await serve(text_turns_per_minute=2, max_pending_text_turns=0)
    events, _, _, ws = await session(client, hold=True)
    for i in range(3):
        await text(ws, f"question {i}")
    assert await errors(ws, 1) == ["rate_limited"]
    assert len(gateway.records(Transcript)) == 2
    other, _, _, ws2 = await session(client, hold=True)  # another session has its own budget
    await text(ws2, "hello")
    await wait_for(lambda: len(gateway.records(Transcript)) == 3)
    await ws.close()
    await ws2.close()


async def test_an_unanswered_text_turn_times_out_and_frees_its_place(serve):
    client, gateway = await serve(max_pending_text_turns=1, turn_timeout_s=0.3)
    events, _, _, ws = await session(client, hold=True)
    await text(ws, "anyone there?")
    assert await errors(ws, 1) == ["turn_timeout"]
    await text(ws, "hello?")
    await wait_for(lambda: len(gateway.records(Transcript)) == 2)
    await ws.close()


async def test_sockets_waiting_for_start_are_capped_per_address_and_principal(serve):
    client, _ = await serve(max_pending_starts_per_address=2)
    waiting = [await client.ws_connect("/v1/stream") for _ in range(2)]
    await asyncio.sleep(0.1)
    _, code, message, _ = await session(client, start=False)
    assert code == 4429 and message.startswith("too_many_pending")
    await waiting[0].send_str(json.dumps(START))  # one starts: a place is free again
    assert (await waiting[0].receive_json(timeout=5))["type"] == "ready"
    events, _, _, ws = await session(client, hold=True)
    assert events[0]["type"] == "ready"
    for socket in (*waiting, ws):
        await socket.close()

    client, _ = await serve(api_keys=KEYS, max_pending_starts=1)
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    idle = await client.ws_connect("/v1/stream", headers=alice)
    await asyncio.sleep(0.1)
    _, code, _, _ = await session(client, headers=alice, start=False)
    assert code == 4429
    bob = {"Authorization": "Bearer key-bob-0123456789"}
    events, _, _, ws = await session(client, headers=bob, hold=True)
    assert events[0]["type"] == "ready"  # another principal is not affected
    await idle.close()
    await ws.close()


async def test_a_frame_of_exactly_the_limit_is_accepted(serve):
    client, gateway = await serve()  # VOXBUS_MAX_FRAME_BYTES: 256 KiB
    # 2.7 s at 48 kHz (8 s at 16 kHz would be over the session's 5 s audio buffer)
    start = {**START, "sample_rate": 48000}
    events, _, _, ws = await session(client, start, frames=[b"\0" * (256 * 1024)], hold=True)
    await wait_for(lambda: sum(len(c.pcm) for c in gateway.records(AudioChunk)) >= 256 * 1024 // 3 - 4096)
    assert not ws.closed
    await ws.send_bytes(b"\0" * (256 * 1024 + 2))
    closed = await ws.receive(timeout=5)
    assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1009


async def test_a_half_open_http_request_is_closed_after_the_keepalive_timeout(serve):
    client, _ = await serve(http_keepalive_timeout_s=0.5)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # the headers never end
    await writer.drain()
    started = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_hang_up_ends_the_session_even_if_the_broker_refuses_the_cancellations(serve):
    client, gateway = await serve()
    events, _, _, ws = await session(client, hold=True)
    sid = events[0]["session_id"]
    await text(ws, "are you there?")
    await wait_for(lambda: gateway.records(Transcript, sid))
    produce = gateway.produce

    async def refusing_cancellations(topic, record):
        if isinstance(record, TurnCancel):
            raise ConnectionError("broker unreachable")
        await produce(topic, record)

    gateway.produce = refusing_cancellations
    await ws.close()
    await wait_for(lambda: [r.action for r in gateway.records(SessionControl, sid)] == ["start", "end"])
    await wait_for(lambda: sid not in gateway.sessions)
