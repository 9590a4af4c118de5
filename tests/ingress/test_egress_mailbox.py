"""Issue 16 hole 7: one caller whose socket stops reading delays no other caller; it is closed with 4420."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp

from ingress.edge import CLOSE_TOO_SLOW
from ingress.gateway import Gateway
from schemas import ReplyText, SynthAudio

RCVBUF = 4096
"""The stalled caller's kernel receive buffer (bytes): its socket fills after a few kilobytes."""
CHUNK = b"\0\0" * 128_000
"""One reply-audio record of 256 kB (5.8 s at 22050 Hz)."""


def small_buffer_socket(addr_info: tuple) -> socket.socket:
    """A client socket whose receive buffer stays at :data:`RCVBUF` (no autotuning)."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    return sock


async def open_session(http: aiohttp.ClientSession, url) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url, max_msg_size=0)
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    ready = await ws.receive_json(timeout=10)
    assert ready["type"] == "ready", ready
    return ws, ready["session_id"]


async def test_a_caller_that_stops_reading_is_closed_and_delays_no_other(serve):
    client, fake = await serve(egress_queue_records=8)
    gateway = Gateway(fake.settings)  # the real routing (its Kafka clients are not started: not needed here)
    fake.sessions = gateway.sessions  # the app registers its sessions with the real gateway
    records: asyncio.Queue = asyncio.Queue()

    async def egress_reader() -> None:  # what EgressReader does with each record of its partition
        while True:
            await gateway.deliver(await records.get())

    reader = asyncio.create_task(egress_reader())
    url = client.make_url("/v1/stream")
    stalled_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(socket_factory=small_buffer_socket))
    async with aiohttp.ClientSession() as http, stalled_http:
        stalled, stalled_id = await open_session(stalled_http, url)  # it never calls receive() again
        normal, normal_id = await open_session(http, url)
        for seq in range(64):  # 16 MB of reply audio to a socket nobody reads; the reader never waits
            records.put_nowait(SynthAudio(session_id=stalled_id, turn_id="a1-1", index=0, seq=seq,
                                          sample_rate=22050, pcm=CHUNK))
        await asyncio.sleep(0.5)  # the stalled caller's sender is now stuck on its socket
        sent = time.monotonic()
        for index in range(3):
            records.put_nowait(ReplyText(session_id=normal_id, turn_id="t1", index=index,
                                         text=f"Sentence {index}.", final=index == 2))
        got = [await normal.receive_json(timeout=10) for _ in range(3)]
        assert [e["text"] for e in got] == ["Sentence 0.", "Sentence 1.", "Sentence 2."]
        assert time.monotonic() - sent < 5.0, "the normal caller waited for the stalled one"

        deadline = time.monotonic() + 30
        while stalled_id in gateway.sessions:  # the server closed it; its handler ended
            assert time.monotonic() < deadline, "the stalled caller was not dropped"
            await asyncio.sleep(0.1)
        while True:  # the caller reads again: what was buffered, then the close frame
            msg = await stalled.receive(timeout=30)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == CLOSE_TOO_SLOW, msg
        assert normal_id in gateway.sessions and not normal.closed, "the normal caller stays connected"
        await normal.close()
    reader.cancel()
