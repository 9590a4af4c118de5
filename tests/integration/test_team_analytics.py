"""Team analytics on the real broker: a scripted sequence of hand-offs and queue events on the real topics,
and a caller who hangs up while queued (their socket to the stack's ingress closes: the ingress writes the
round's abandon), folded by the analytics worker `voxbus up` runs, read on voxbus.analytics.agents and on
the analytics page's JSON.

Agents and sessions have names of their own, so the figures of other tests' calls in the same minutes
do not mix with these (the team's figures may include theirs: they are checked as at least these).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from processors.analytics.windows import window_start
from schemas import AgentWindow, Handoff, QueueEvent, encode
from streams.topics import AGENT_QUEUE, ANALYTICS_AGENTS, HANDOFFS
from tests.integration.test_analytics import last_per_key, read_until

pytestmark = pytest.mark.integration


async def test_team_figures_from_a_scripted_sequence_on_the_bus(stack):
    tag = uuid.uuid4().hex[:8]
    bob, carol = f"key:bob-{tag}", f"key:carol-{tag}"
    s = [f"team-{tag}-{i}" for i in range(3)]
    base = f"http://{stack.host}:{stack.port}"
    http = aiohttp.ClientSession()
    # the console is open first: the stack's ingress follows the queue before the hand-offs are written
    async with http.get(f"{base}/v1/agent/sessions") as response:
        assert response.status == 200, await response.text()
    caller = await http.ws_connect(f"{base}/v1/stream")  # the caller who will hang up while queued
    await caller.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    ready = json.loads((await caller.receive(timeout=30)).data)
    assert ready["type"] == "ready", ready
    s.append(ready["session_id"])
    t0 = window_start(time.time()) + 1.0  # every event in one window (t0 .. t0 + 40 s: their own times)
    script = [
        (HANDOFFS, Handoff(session_id=s[0], turn_id="t1", reason="requested", summary="x", ts=t0)),
        (AGENT_QUEUE, QueueEvent(session_id=s[0], kind="claim", handoff_turn="t1", agent=bob, ts=t0 + 10)),
        (AGENT_QUEUE, QueueEvent(session_id=s[0], kind="claim", handoff_turn="t1", agent=carol, ts=t0 + 11)),
        (AGENT_QUEUE, QueueEvent(session_id=s[0], kind="end", handoff_turn="t1", agent=bob, ts=t0 + 30)),
        (HANDOFFS, Handoff(session_id=s[1], turn_id="t1", reason="requested", summary="x", ts=t0 + 1)),
        (AGENT_QUEUE, QueueEvent(session_id=s[1], kind="claim", handoff_turn="t1", agent=carol, ts=t0 + 5)),
        (AGENT_QUEUE, QueueEvent(session_id=s[1], kind="release", handoff_turn="t1", agent=carol,
                                 ts=t0 + 40)),
        (HANDOFFS, Handoff(session_id=s[2], turn_id="t1", reason="requested", summary="x", ts=t0 + 2)),
        (AGENT_QUEUE, QueueEvent(session_id=s[2], kind="expire", handoff_turn="t1", ts=t0 + 20)),
        (HANDOFFS, Handoff(session_id=s[3], turn_id="t1", reason="requested", summary="x", ts=t0 + 3)),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        handoffs = [(topic, record) for topic, record in script if topic is HANDOFFS]
        for topic, record in handoffs:
            await producer.send_and_wait(topic.name, key=record.session_id.encode(), value=encode(record))
        for topic, record in script:
            if (topic, record) not in handoffs:
                await producer.send_and_wait(topic.name, key=record.session_id.encode(), value=encode(record))
    finally:
        await producer.stop()
    # the caller hangs up once the ingress holding their socket has them waiting in its queue
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"{base}/v1/agent/sessions") as response:
            found = {x["session_id"]: x for x in (await response.json())["sessions"]}.get(s[3])
        if found is not None and found["status"] == "waiting":
            break
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.3)
    await caller.close()

    first = int(window_start(t0))

    def abandon(records) -> QueueEvent | None:
        return next((r for r in records if isinstance(r, QueueEvent) and r.session_id == s[3]), None)

    def counted(records) -> bool:
        latest, left = last_per_key(records), abandon(records)
        mine = [latest.get(("analytics_agent", f"{first}/agent:{agent}")) for agent in (bob, carol)]
        team = latest.get(("analytics_agent", f"{first}/team"))
        gone = None if left is None else latest.get(("analytics_agent", f"{int(window_start(left.ts))}/team"))
        return (all(m is not None and m.calls_handled == 1 for m in mine) and team is not None
                and team.sla_breaches >= 1 and gone is not None and gone.abandoned >= 1)

    records = await read_until(stack.bootstrap, [ANALYTICS_AGENTS.name, AGENT_QUEUE.name], counted,
                               timeout_s=60)
    left = abandon(records)
    assert (left.kind, left.handoff_turn, left.agent) == ("abandon", "t1", "")  # the only event of s[3]
    # the queue took the caller out: nobody can take a call whose caller hung up
    async with http.post(f"{base}/v1/agent/sessions/{s[3]}/take", json={"agent": bob}) as response:
        assert response.status == 409 and "hung up while waiting" in await response.text()
    latest = last_per_key(records)
    b = latest[("analytics_agent", f"{first}/agent:{bob}")]
    c = latest[("analytics_agent", f"{first}/agent:{carol}")]
    assert isinstance(b, AgentWindow) and isinstance(c, AgentWindow)
    assert (b.calls_taken, b.calls_handled, b.handle_s_mean) == (1, 1, 20.0)
    assert (b.wait_p50_s, b.wait_p95_s) == (10.0, 10.0)
    assert (c.calls_taken, c.calls_handled, c.handle_s_mean, c.wait_p95_s) == (1, 1, 35.0, 4.0)
    team = latest[("analytics_agent", f"{first}/team")]
    assert team.calls_taken >= 2 and team.sla_breaches >= 1
    assert latest[("analytics_agent", f"{int(window_start(left.ts))}/team")].abandoned >= 1

    # the analytics page's JSON (the stack's ingress follows the analytics topics)
    deadline = time.monotonic() + 120
    while True:
        async with http.get(f"{base}/v1/analytics", params={"minutes": "60"}) as response:
            # 503 while the ingress's analytics view still starts (a fresh stack on a busy machine)
            assert response.status in (200, 503), await response.text()
            body = await response.json()
        if response.status == 503:
            assert time.monotonic() < deadline, body
            await asyncio.sleep(1.0)
            continue
        agents = {a["agent"]: a for a in body["team"]["agents"]}
        if bob in agents and agents[bob]["calls_handled"] == 1:
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(1.0)
    await http.close()
    assert agents[bob]["handle_s_mean"] == 20.0 and agents[carol]["wait_p95_s"] == 4.0
    assert body["team"]["totals"]["abandoned"] >= 1 and body["team"]["totals"]["sla_breaches"] >= 1
