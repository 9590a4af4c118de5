"""Team analytics on the real broker: a scripted sequence of hand-offs, queue events and hang-ups on the
real topics, folded by the analytics worker `voxbus up` runs, read on voxbus.analytics.agents and on the
analytics page's JSON.

Agents and sessions have names of their own, so the figures of other tests' calls in the same minutes
do not mix with these (the team's figures may include theirs: they are checked as at least these).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from processors.analytics.windows import window_start
from schemas import AgentWindow, Handoff, QueueEvent, SessionControl, encode
from streams.topics import AGENT_QUEUE, ANALYTICS_AGENTS, AUDIO, HANDOFFS
from tests.integration.test_analytics import last_per_key, read_until

pytestmark = pytest.mark.integration


async def test_team_figures_from_a_scripted_sequence_on_the_bus(stack):
    tag = uuid.uuid4().hex[:8]
    bob, carol = f"key:bob-{tag}", f"key:carol-{tag}"
    s = [f"team-{tag}-{i}" for i in range(4)]
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
        (AUDIO, SessionControl(session_id=s[3], action="end", ts=t0 + 13)),
        # the console's queue takes no notice of hang-ups: give the abandoned session back to the bot there
        # (here it is over already, so the expiry is not a breach)
        (AGENT_QUEUE, QueueEvent(session_id=s[3], kind="expire", handoff_turn="t1", ts=t0 + 14)),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
    await producer.start()
    try:
        handoffs = [(topic, record) for topic, record in script if topic is HANDOFFS]
        for topic, record in handoffs:
            await producer.send_and_wait(topic.name, key=record.session_id.encode(), value=encode(record))
        # a caller hangs up seconds after the hand-off, not milliseconds: the worker reads the hand-offs
        # first (a hang-up read before its session's hand-off is not counted: it is on another topic)
        await asyncio.sleep(3.0)
        for topic, record in script:
            if (topic, record) not in handoffs:
                await producer.send_and_wait(topic.name, key=record.session_id.encode(), value=encode(record))
    finally:
        await producer.stop()

    first = int(window_start(t0))

    def counted(records) -> bool:
        latest = last_per_key(records)
        mine = [latest.get(("analytics_agent", f"{first}/agent:{agent}")) for agent in (bob, carol)]
        team = latest.get(("analytics_agent", f"{first}/team"))
        return (all(m is not None and m.calls_handled == 1 for m in mine) and team is not None
                and team.abandoned >= 1 and team.sla_breaches >= 1)

    records = await read_until(stack.bootstrap, [ANALYTICS_AGENTS.name], counted, timeout_s=60)
    latest = last_per_key(records)
    b = latest[("analytics_agent", f"{first}/agent:{bob}")]
    c = latest[("analytics_agent", f"{first}/agent:{carol}")]
    assert isinstance(b, AgentWindow) and isinstance(c, AgentWindow)
    assert (b.calls_taken, b.calls_handled, b.handle_s_mean) == (1, 1, 20.0)
    assert (b.wait_p50_s, b.wait_p95_s) == (10.0, 10.0)
    assert (c.calls_taken, c.calls_handled, c.handle_s_mean, c.wait_p95_s) == (1, 1, 35.0, 4.0)
    team = latest[("analytics_agent", f"{first}/team")]
    assert team.calls_taken >= 2 and team.sla_breaches >= 1 and team.abandoned >= 1

    # the analytics page's JSON (the stack's ingress follows the analytics topics)
    url = f"http://{stack.host}:{stack.port}/v1/analytics?minutes=60"
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        agents = {a["agent"]: a for a in body["team"]["agents"]}
        if bob in agents and agents[bob]["calls_handled"] == 1:
            break
        assert time.monotonic() < deadline, body["team"]
        await asyncio.sleep(1.0)
    assert agents[bob]["handle_s_mean"] == 20.0 and agents[carol]["wait_p95_s"] == 4.0
    assert body["team"]["totals"]["abandoned"] >= 1 and body["team"]["totals"]["sla_breaches"] >= 1
