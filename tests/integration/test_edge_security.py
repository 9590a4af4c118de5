"""Authentication and limits at a real ingress: a second, authenticated ingress on the stack's broker.

The test starts an ingress in-process (``make_app``) with API keys, a JWT secret and
tight limits, on its own port and egress partition (``ingress_slot=1``), next to the
stack's open one.  Each abuse is refused with its documented close code and counted,
while a legitimate caller on the same ingress keeps talking to the pipeline.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from ingress.server import make_app
from streams.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SECRET = "edge-test-secret-0123456789abcdef0123"
KEYS = "alice=alice-key-0123456789,bob=bob-key-0123456789,carol=carol-key-0123456789," \
       "mallory=mallory-key-0123456789"
START = {"type": "start", "sample_rate": 16000}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def edge(stack):
    settings = Settings(api_keys=KEYS, jwt_secret=SECRET, jwt_issuer="harbor", ingress_slot=1,
                        sessions_per_minute=3, max_concurrent_sessions=2, max_frame_bytes=64 * 1024,
                        allowed_origins="https://voice.harbor.example")
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield f"ws://127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}", http
    await server.close()


async def attempt(http, url, headers=None, params=None, start=None, frames=()):
    """Open a session: (close code, reason, events) once closed, or (None, None, events) once ready."""
    async with http.ws_connect(f"{url}/v1/stream", headers=headers or {}, params=params or {}) as ws:
        await ws.send_str(json.dumps(start or START))
        for frame in frames:
            await ws.send_bytes(frame)
        events = []
        try:
            while True:
                msg = await ws.receive(timeout=3)
                if msg.type == aiohttp.WSMsgType.TEXT:
                    events.append(json.loads(msg.data))
                    if events[-1]["type"] == "ready" and not frames:
                        return None, None, events
                elif msg.type == aiohttp.WSMsgType.CLOSE:
                    return msg.data, msg.extra, events
                elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return ws.close_code, msg.extra, events
        except TimeoutError:
            return None, None, events


async def counter(http, base: str, code: str) -> float:
    body = await (await http.get(f"{base}/metrics")).text()
    for line in body.splitlines():
        if line.startswith(f'voxbus_ingress_rejections_total{{code="{code}"}}'):
            return float(line.split()[-1])
    return 0.0


async def test_abuse_is_refused_and_the_ingress_keeps_serving(edge):
    url, base, http = edge
    # a legitimate caller, open for the whole test
    alice = await http.ws_connect(f"{url}/v1/stream", headers={**bearer("alice-key-0123456789"),
                                                                "Origin": "https://voice.harbor.example"})
    await alice.send_str(json.dumps(START))
    ready = await alice.receive_json(timeout=10)
    assert ready["type"] == "ready"
    session_id = ready["session_id"]
    before = {code: await counter(http, base, code) for code in
              ("unauthenticated", "rate_limited", "too_many_sessions", "frame_too_large", "session_forbidden",
               "origin_forbidden")}

    expired = jwt.encode({"sub": "dave", "iss": "harbor", "exp": int(time.time()) - 120}, SECRET, "HS256")
    cases = [
        ("missing credentials", {}, {}, 4401, "unauthenticated: missing_credentials"),
        ("unknown key", bearer("guess-0123456789"), {}, 4401, "unauthenticated: invalid_credentials"),
        ("unknown key in the query", {}, {"api_key": "guess-0123456789"}, 4401, "unauthenticated: invalid"),
        ("expired token", {}, {"access_token": expired}, 4401, "unauthenticated: expired_token"),
        ("foreign origin", {**bearer("bob-key-0123456789"), "Origin": "https://evil.example"}, {}, 4403,
         "origin_forbidden"),
    ]
    for name, headers, params, code, reason in cases:
        closed, message, events = await attempt(http, url, headers, params)
        assert closed == code and message.startswith(reason), (name, closed, message)
        assert events[-1]["close_code"] == code, (name, events)

    token = jwt.encode({"sub": "dave", "iss": "harbor", "exp": int(time.time()) + 300}, SECRET, "HS256")
    closed, _, events = await attempt(http, url, params={"access_token": token})
    assert closed is None and events[0]["type"] == "ready"  # a valid JWT

    # another caller cannot take alice's live session id
    closed, message, _ = await attempt(http, url, bearer("mallory-key-0123456789"),
                                       start={**START, "session_id": session_id})
    assert closed == 4403 and message.startswith("session_forbidden")

    # per-key rate: 3 sessions a minute (the origin refusal above did not count)
    codes = [(await attempt(http, url, bearer("bob-key-0123456789")))[0] for _ in range(4)]
    assert codes == [None, None, None, 4429], codes

    # per-key concurrency: 2 at once
    held = []
    for _ in range(2):
        ws = await http.ws_connect(f"{url}/v1/stream", headers=bearer("carol-key-0123456789"))
        await ws.send_str(json.dumps(START))
        assert (await ws.receive_json(timeout=10))["type"] == "ready"
        held.append(ws)
    closed, message, _ = await attempt(http, url, bearer("carol-key-0123456789"))
    assert closed == 4429 and message.startswith("too_many_sessions")
    for ws in held:
        await ws.close()

    # an oversized frame
    closed, _, _ = await attempt(http, url, bearer("mallory-key-0123456789"), frames=[b"\0" * (128 * 1024)])
    assert closed == 1009

    await asyncio.sleep(0.2)
    after = {code: await counter(http, base, code) for code in before}
    assert after["unauthenticated"] - before["unauthenticated"] == 4
    assert after["origin_forbidden"] - before["origin_forbidden"] == 1
    assert after["session_forbidden"] - before["session_forbidden"] == 1
    assert after["rate_limited"] - before["rate_limited"] == 1
    assert after["too_many_sessions"] - before["too_many_sessions"] == 1
    assert after["frame_too_large"] - before["frame_too_large"] == 1

    # alice was never disturbed: her question goes through the pipeline and back to this ingress
    await alice.send_str(json.dumps({"type": "text", "text": "When is my bill due?"}))
    events = []
    deadline = time.monotonic() + 60
    while not any(e["type"] == "turn_end" for e in events):
        assert time.monotonic() < deadline, events
        msg = await alice.receive(timeout=60)
        if msg.type == aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))
    end = next(e for e in events if e["type"] == "turn_end")
    assert end["intent"] == "billing" and end["reply_text"].strip()
    await alice.close()


async def test_session_ownership_survives_a_restart_and_holds_across_replicas(stack):
    """Issue 13, finding 2, on the real broker: bindings on voxbus.sessions, read by every replica."""
    async def replica(slot: int) -> TestServer:
        server = TestServer(make_app(Settings(api_keys=KEYS, ingress_slot=slot)), host="127.0.0.1")
        await server.start_server()
        return server

    first, other = await replica(2), await replica(3)
    alice = bearer("alice-key-0123456789")
    async with aiohttp.ClientSession() as http:
        closed, _, events = await attempt(http, f"ws://127.0.0.1:{first.port}", alice)
        assert closed is None and events[0]["type"] == "ready"
        session_id = events[0]["session_id"]
        resume = {**START, "session_id": session_id}
        await asyncio.sleep(2.0)  # the other replica's ledger follows voxbus.sessions live
        closed, message, _ = await attempt(http, f"ws://127.0.0.1:{other.port}",
                                           bearer("mallory-key-0123456789"), start=resume)
        assert closed == 4403 and message.startswith("session_forbidden"), (closed, message)
        await first.close()  # the ingress restarts: its memory is gone
        first = await replica(2)
        closed, message, _ = await attempt(http, f"ws://127.0.0.1:{first.port}",
                                           bearer("mallory-key-0123456789"), start=resume)
        assert closed == 4403 and message.startswith("session_forbidden"), (closed, message)
        for server in (first, other):  # the owner resumes on either
            closed, _, events = await attempt(http, f"ws://127.0.0.1:{server.port}", alice, start=resume)
            assert closed is None and events[0]["session_id"] == session_id
        # an id of the caller's choosing, claimed for the first time: confirmed by reading it back
        chosen = {**START, "session_id": f"chosen-{time.time_ns()}"}
        closed, _, events = await attempt(http, f"ws://127.0.0.1:{other.port}", alice, start=chosen)
        assert closed is None and events[0]["session_id"] == chosen["session_id"]
        closed, message, _ = await attempt(http, f"ws://127.0.0.1:{first.port}",
                                           bearer("mallory-key-0123456789"), start=chosen)
        assert closed == 4403 and message.startswith("session_forbidden"), (closed, message)
    await first.close()
    await other.close()
