"""The shared agent queue on the real broker: two ingress replicas, one queue, one winner per claim.

Two ingress apps in-process (egress partitions 1 and 2) next to the stack's own; the caller
is on one, the agents on both.  The hand-off comes from the real pipeline (intent, generation,
workflow), the bot's return and the callback booking too.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from ingress.agents.hold import BUSY_SAY
from ingress.server import make_app
from schemas import Booking, QueueEvent
from streams.settings import Settings
from streams.topics import AGENT_QUEUE, BOOKINGS
from tests.integration.caller import ScriptedCaller
from tests.integration.test_pipeline import read_topic
from tests.integration.test_workflow import typed

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEYS = "alice=alice-key-0123456789,agent:bob=bob-key-0123456789,agent:carol=carol-key-0123456789"
BOB = {"Authorization": "Bearer bob-key-0123456789"}
CAROL = {"Authorization": "Bearer carol-key-0123456789"}
ASK = "I want to talk to a person."


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def replicas(stack):
    """Two ingress replicas; the second gives a caller back to the bot after 4 s without an agent."""
    servers = [TestServer(make_app(Settings(api_keys=KEYS, ingress_slot=slot, handoff_sla_s=sla,
                                            hold_message_s=2.0)), host="127.0.0.1")
               for slot, sla in ((1, 600.0), (2, 4.0))]
    for server in servers:
        await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield [f"127.0.0.1:{server.port}" for server in servers], http
    for server in servers:
        await server.close()


async def listed(http, host: str, session_id: str, status: str, timeout_s: float = 15.0) -> dict:
    """The session as the replica at ``host`` lists it, once it has ``status``."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(f"http://{host}/v1/agent/sessions", headers=BOB) as response:
            assert response.status == 200, await response.text()
            found = {s["session_id"]: s for s in (await response.json())["sessions"]}.get(session_id)
        if found is not None and found["status"] == status:
            return found
        assert time.monotonic() < deadline, (host, session_id, status, found)
        await asyncio.sleep(0.3)


async def test_two_agents_on_two_replicas_claim_at_once_and_one_wins(stack, replicas):
    (a, b), http = replicas
    async with ScriptedCaller(f"ws://{a}/v1/stream?api_key=alice-key-0123456789") as caller:
        told = await typed(caller, ASK)
        assert "connecting you with a person" in told["reply_text"], told
        # the caller sees their place (both replicas fold the same queue)
        hold = await caller.until(lambda e: e["type"] == "reply_text" and e["turn_id"].startswith("hold-"),
                                  15)
        assert hold["text"].startswith("You are ") and " in the queue." in hold["text"], hold
        for host in (a, b):
            waiting = await listed(http, host, caller.session_id, "waiting")
            assert waiting["position"] >= 1
        path = f"/v1/agent/sessions/{caller.session_id}/take"
        answers = await asyncio.gather(http.post(f"http://{a}{path}", json={}, headers=BOB),
                                       http.post(f"http://{b}{path}", json={}, headers=CAROL))
        statuses = sorted(r.status for r in answers)
        assert statuses == [200, 409], statuses
        winner = "key:bob" if answers[0].status == 200 else "key:carol"
        for host in (a, b):
            assert (await listed(http, host, caller.session_id, "taken"))["agent"] == winner
        # the rule: the first claim in log order wins
        first = await read_topic(stack.bootstrap, AGENT_QUEUE.name, lambda r: isinstance(r, QueueEvent)
                                 and r.session_id == caller.session_id and r.kind == "claim")
        assert first.agent == winner

        headers, host = (BOB, a) if winner == "key:bob" else (CAROL, b)
        base = f"http://{host}/v1/agent/sessions/{caller.session_id}"
        async with http.post(f"{base}/reply", json={"text": "Hello, how can I help?"}, headers=headers) as r:
            assert r.status == 200
        said = await caller.until(lambda e: e["type"] == "reply_text" and e["turn_id"].startswith("agent-"))
        assert said["text"] == "Hello, how can I help?"
        async with http.post(f"{base}/release", json={"note": "Explained the bill."}, headers=headers) as r:
            assert r.status == 200 and (await r.json())["status"] == "bot"
        await asyncio.sleep(2.0)  # the generation stage reads the release
        back = await typed(caller, "What are your store hours?")
        assert back["reply_text"], back  # the bot answers again


async def test_no_agent_within_the_sla_brings_the_bot_back_and_a_callback_is_booked(stack, replicas):
    (_, b), http = replicas
    async with ScriptedCaller(f"ws://{b}/v1/stream?api_key=alice-key-0123456789") as caller:
        await typed(caller, ASK)
        busy = await caller.until(lambda e: e["type"] == "reply_text" and e["text"] == BUSY_SAY, 30)
        assert busy["turn_id"].startswith("queue-")
        session = await listed(http, b, caller.session_id, "bot")
        assert session["returned"] == "expire"
        await asyncio.sleep(2.0)  # the generation stage reads the expiry
        booked = await typed(caller, ASK)
        assert booked["reply_text"].startswith("I've booked a callback"), booked
        booking = await read_topic(stack.bootstrap, BOOKINGS.name,
                                   lambda r: isinstance(r, Booking) and r.session_id == caller.session_id)
        assert booking.service == "callback" and booking.confirmation in booked["reply_text"]
        # and the caller was not queued again
        async with http.get(f"http://{b}/v1/agent/queue", headers=BOB) as response:
            assert caller.session_id not in json.dumps(await response.json())


async def test_a_wrap_up_files_a_ticket_under_the_caller_id_and_it_is_resolved(stack, replicas):
    """Hand-off on one replica, take and end on the other; search and resolve on the first."""
    (a, b), http = replicas
    caller_id = f"+1555{int(time.time() * 1000) % 10**7:07d}"  # a caller of this run only
    url = f"ws://{a}/v1/stream?api_key=alice-key-0123456789"
    async with ScriptedCaller(url, caller_id=caller_id) as caller:
        await typed(caller, ASK)
        await listed(http, b, caller.session_id, "waiting")
        base = f"http://{b}/v1/agent/sessions/{caller.session_id}"
        async with http.post(f"{base}/take", json={}, headers=CAROL) as r:
            assert r.status == 200, await r.text()
        wrap_up = {"disposition": "follow_up", "note": "Call back about the bill."}
        async with http.post(f"{base}/end", json=wrap_up, headers=CAROL) as r:
            assert r.status == 200, await r.text()
            ended = await r.json()
        assert ended["status"] == "ended" and ended["ticket"]["caller_id"] == caller_id
    async with http.get(f"http://{a}/v1/agent/tickets", params={"caller_id": caller_id}, headers=BOB) as r:
        [ticket] = (await r.json())["tickets"]
    assert (ticket["session_id"], ticket["agent"], ticket["disposition"], ticket["status"]) == (
        caller.session_id, "key:carol", "follow_up", "open")
    async with http.post(f"http://{a}/v1/agent/tickets/{ticket['id']}/resolve", json={"note": "Called back."},
                         headers=BOB) as r:
        assert r.status == 200 and (await r.json())["resolved_by"] == "key:bob"
    deadline = time.monotonic() + 15
    while True:  # the other replica reads the resolution from the bus
        async with http.get(f"http://{b}/v1/agent/tickets", params={"session_id": caller.session_id},
                            headers=CAROL) as r:
            [seen] = (await r.json())["tickets"]
        if seen["status"] == "resolved":
            break
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.3)
    async with http.get(f"http://{b}/v1/agent/callers/{caller_id}/sessions", headers=CAROL) as r:
        [session] = (await r.json())["sessions"]
    assert session["session_id"] == caller.session_id and session["handoff"]["status"] == "ended"
    assert [t["status"] for t in session["tickets"]] == ["resolved"]
    # a caller's key is refused on every new endpoint
    alice = {"Authorization": "Bearer alice-key-0123456789"}
    for method, path in (("POST", f"/v1/agent/sessions/{caller.session_id}/end"),
                         ("GET", "/v1/agent/tickets"),
                         ("POST", f"/v1/agent/tickets/{ticket['id']}/resolve"),
                         ("GET", f"/v1/agent/callers/{caller_id}/sessions")):
        async with http.request(method, f"http://{a}{path}", json={"disposition": "resolved"},
                                headers=alice) as r:
            assert r.status == 403, (method, path)
