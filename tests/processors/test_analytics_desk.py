"""Team analytics from a scripted sequence of hand-offs and queue events, hang-ups too (no broker here).

The same on the real broker, through the worker `voxbus up` runs: tests/integration/test_team_analytics.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from processors.analytics.desk import track
from processors.analytics.stage import AnalyticsRunner, AnalyticsStage
from schemas import (
    AgentWindow,
    DeskFact,
    Handoff,
    HandoffUpdate,
    QueueEvent,
    decode,
    encode,
)
from streams.settings import Settings
from streams.topics import AGENT_QUEUE, ANALYTICS_AGENTS, ANALYTICS_WINDOWS, DEAD_LETTER, HANDOFFS

T0 = 1_700_000_040.0  # a window start
NOW = T0 + 300.0


def handoff(session: str, ts: float, turn: str = "t1") -> Handoff:
    return Handoff(session_id=session, turn_id=turn, reason="requested", summary="asked for a person", ts=ts)


def event(session: str, kind: str, ts: float, agent: str = "", turn: str = "t1", **extra) -> QueueEvent:
    return QueueEvent(session_id=session, kind=kind, handoff_turn=turn, agent=agent, ts=ts, **extra)


def hangup(session: str, ts: float, turn: str = "t1") -> QueueEvent:
    """What the ingress replica holding a waiting caller's socket writes when it closes."""
    return event(session, "abandon", ts, turn=turn)


SCRIPT = [
    # s1: bob takes it after 10 s, talks 40 s, ends it
    (HANDOFFS, handoff("s1", T0 + 0)), (AGENT_QUEUE, event("s1", "claim", T0 + 10, "bob")),
    (AGENT_QUEUE, event("s1", "claim", T0 + 11, "carol")),  # lost: bob's claim was first in the log
    (AGENT_QUEUE, event("s1", "end", T0 + 50, "bob", note="fixed")),
    # s2: carol takes it after 30 s, transfers it to bob, who releases it 20 s later
    (HANDOFFS, handoff("s2", T0 + 5)), (AGENT_QUEUE, event("s2", "claim", T0 + 35, "carol")),
    (AGENT_QUEUE, event("s2", "release", T0 + 40, "bob")),  # not bob's yet: changes nothing
    (AGENT_QUEUE, event("s2", "transfer", T0 + 45, "carol", to_agent="bob")),
    (AGENT_QUEUE, event("s2", "release", T0 + 55, "bob")),
    # s3: nobody within the SLA; a claim after the expiry changes nothing; a hang-up neither
    (HANDOFFS, handoff("s3", T0 + 6)), (AGENT_QUEUE, event("s3", "expire", T0 + 126)),
    (AGENT_QUEUE, event("s3", "claim", T0 + 127, "bob")), (AGENT_QUEUE, hangup("s3", T0 + 130)),
    # s4: the caller hangs up while waiting; a claim after it (a race the log order decides) is too late
    (HANDOFFS, handoff("s4", T0 + 7)), (AGENT_QUEUE, hangup("s4", T0 + 27)),
    (AGENT_QUEUE, event("s4", "claim", T0 + 28, "bob")),
    # s5: a claim read before its hand-off (the topics are read side by side) still counts
    (AGENT_QUEUE, event("s5", "claim", T0 + 20, "carol")), (HANDOFFS, handoff("s5", T0 + 8)),
    # a transcript line: nothing
    (HANDOFFS, HandoffUpdate(session_id="s1", kind="caller", turn_id="a2", text="hello?", ts=T0 + 12)),
]


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_and_wait(self, topic, key=None, value=None, partition=None, timestamp=None, headers=None):
        self.sent.append({"topic": topic, "key": key, "value": value})


def message(topic: str, value: bytes, offset: int = 0) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"s", value=value, timestamp=None)


@pytest.fixture
def runner(tmp_path) -> AnalyticsRunner:
    stage = AnalyticsStage(Settings(data_dir=tmp_path))
    stage.clock = lambda: NOW
    app = SimpleNamespace(producer=FakeProducer(), consumer=SimpleNamespace(assignment=lambda: {1}))
    return AnalyticsRunner(stage, app)  # type: ignore[arg-type]


async def run_script(runner: AnalyticsRunner, script) -> dict[str, AgentWindow]:
    """Feed the script to the desk agent, then every routed fact to the fold; the last record per key."""
    for offset, (topic, record) in enumerate(script):
        await runner.on_desk(message(topic.name, encode(record), offset))
    routed = [s for s in runner.app.producer.sent if s["topic"] == ANALYTICS_WINDOWS.name]
    for sent in routed:
        await runner.on_window(message(ANALYTICS_WINDOWS.name, sent["value"]))
    latest: dict[str, AgentWindow] = {}
    for sent in runner.app.producer.sent:
        if sent["topic"] == ANALYTICS_AGENTS.name:
            record = decode(sent["value"], AgentWindow)
            assert sent["key"].decode() == record.key
            latest[record.key] = record
    return latest


async def test_team_figures_from_a_scripted_sequence(runner):
    latest = await run_script(runner, SCRIPT)
    sent = runner.app.producer.sent
    facts = [decode(s["value"], DeskFact) for s in sent if s["topic"] == ANALYTICS_WINDOWS.name]
    assert sorted((f.session_id, f.kind, f.agent, f.seconds) for f in facts) == [
        ("s1", "handled", "bob", 40.0), ("s1", "taken", "bob", 10.0),
        ("s2", "handled", "bob", 20.0), ("s2", "taken", "carol", 30.0),
        ("s3", "sla_breach", "", 120.0), ("s4", "abandoned", "", 20.0), ("s5", "taken", "carol", 12.0),
    ]
    first, third = int(T0), int(T0) + 120  # the expiry at T0 + 126 is in the third minute
    team = latest[f"{first}/team"]
    assert (team.calls_taken, team.calls_handled, team.abandoned, team.sla_breaches) == (3, 2, 1, 0)
    assert team.handle_s_mean == 30.0 and team.handle_s_max == 40.0
    # nearest rank of the waits 10, 12 and 30 s
    assert team.wait_p50_s == pytest.approx(12.0, rel=0.01) and team.wait_p95_s == 30.0
    assert latest[f"{third}/team"].sla_breaches == 1 and latest[f"{third}/team"].calls_taken == 0
    bob, carol = latest[f"{first}/agent:bob"], latest[f"{first}/agent:carol"]
    assert (bob.agent, bob.calls_taken, bob.calls_handled, bob.handle_s_mean) == ("bob", 1, 2, 30.0)
    assert (bob.wait_p50_s, bob.wait_p95_s) == (10.0, 10.0)
    assert (carol.calls_taken, carol.calls_handled, carol.handle_s_mean) == (2, 0, None)
    assert carol.wait_p95_s == 30.0
    assert carol.sla_breaches == carol.abandoned == 0  # nobody's: the team's only
    assert f"{third}/agent:bob" not in latest  # the late claim of s3 did not count
    # left in the table: s5, held by carol, and the late events of s3 and s4 (for a round not read yet)
    assert sorted(runner.stage.sessions) == ["s3", "s4", "s5"]
    assert runner.stage.sessions["s5"]["agent"] == "carol"
    assert [e["kind"] for e in runner.stage.sessions["s3"]["pending"]] == ["claim", "abandon"]
    assert [e["kind"] for e in runner.stage.sessions["s4"]["pending"]] == ["claim"]
    assert DEAD_LETTER.name not in {s["topic"] for s in runner.app.producer.sent}


async def test_redelivered_records_are_counted_once(runner):
    script = [(HANDOFFS, handoff("s1", T0)), (AGENT_QUEUE, event("s1", "claim", T0 + 10, "bob"))]
    await run_script(runner, script)
    runner.stage.sessions.clear()  # a restart before the table's changelog was written
    latest = await run_script(runner, script)
    assert latest[f"{int(T0)}/team"].calls_taken == 1


def test_a_second_round_starts_over_and_old_rounds_events_change_nothing():
    state, facts = track(None, handoff("s1", T0, turn="t1"))
    state, facts = track(state, event("s1", "expire", T0 + 120, turn="t1"))
    assert state is None and [f.kind for f in facts] == ["sla_breach"]
    state, _ = track(state, handoff("s1", T0 + 200, turn="t9"))
    state, facts = track(state, event("s1", "claim", T0 + 201, "bob", turn="t1"))  # the old round's
    assert facts == [] and state["status"] == "waiting"
    state, facts = track(state, event("s1", "claim", T0 + 205, "bob", turn="t9"))
    assert [(f.kind, f.seconds) for f in facts] == [("taken", 5.0)]
    # hung up while talking to bob (an abandon that lost the race to his claim): not abandoned
    assert track(state, hangup("s1", T0 + 230, turn="t9")) == (state, [])


async def test_undecodable_desk_records_are_dead_lettered(runner):
    await runner.on_desk(message(AGENT_QUEUE.name, b"\xc1 not msgpack"))
    [letter] = runner.app.producer.sent
    assert letter["topic"] == DEAD_LETTER.name


async def test_the_desk_table_on_faust(tmp_path):
    """The same fold with the stage's real faust tables (faust's test context: no broker)."""
    import faust

    stage = AnalyticsStage(Settings(data_dir=tmp_path))
    stage.clock = lambda: NOW
    app = faust.App("test-analytics-desk", broker="kafka://127.0.0.1:1", store="memory://",
                    key_serializer="raw", value_serializer="raw")
    stage.bind(app)
    facts: list[DeskFact] = []
    windows: list[AgentWindow] = []

    @app.agent(app.topic("test-desk", value_serializer="raw"))
    async def desk_agent(stream):
        async for event_ in stream.events():
            async for emit in stage.track(decode(event_.message.value)):
                facts.append(emit.record)
                async for out in stage.aggregate(emit.record):
                    windows.append(out.record)
            yield None

    app.finalize()
    app.flow_control.resume()
    async with desk_agent.test_context() as agent:
        for _topic, record in SCRIPT:
            await agent.put(encode(record))
    assert len(facts) == 7
    team = [w for w in windows if w.key == f"{int(T0)}/team"][-1]
    assert (team.calls_taken, team.calls_handled, team.abandoned) == (3, 2, 1)
