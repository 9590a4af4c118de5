"""The agent desk: the queue's fold, the wait estimate, the hold line and the API (on the fake bus).

The same on the real broker with two replicas: tests/integration/test_agent_queue.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from ingress.agents import QUEUE
from ingress.agents.estimate import estimated_wait, spoken_wait
from ingress.agents.hold import BUSY_SAY, BUSY_SAYS, HoldLine, notice
from ingress.agents.queue import ABANDONED, BOT, ENDED, TAKEN, WAITING, AgentQueue, Span
from ingress.agents.routes import DESK
from schemas import ConversationLine, Handoff, HandoffUpdate, QueueEvent, ReplyText, encode
from streams.settings import Settings
from streams.topics import AGENT_QUEUE, EGRESS, HANDOFFS, REPLIES

STATIC = Path(__file__).parents[2] / "ingress" / "static"
KEYS = "alice=key-alice-0123456789,agent:bob=key-bob-0123456789,agent:carol=key-carol-0123456789"
BOB = {"Authorization": "Bearer key-bob-0123456789"}
CAROL = {"Authorization": "Bearer key-carol-0123456789"}


def handoff(session_id: str, ts: float, turn_id: str = "t1", **extra) -> Handoff:
    return Handoff(session_id=session_id, egress_partition=0, turn_id=turn_id, reason="requested",
                   summary="asked for a person", ts=ts, **extra)


def event(session_id: str, kind: str, agent: str = "", ts: float = 20.0, turn: str = "t1",
          **extra) -> QueueEvent:
    return QueueEvent(session_id=session_id, kind=kind, handoff_turn=turn, agent=agent, ts=ts, **extra)


def message(record, offset, topic="voxbus.agent-queue"):
    return SimpleNamespace(topic=topic, partition=0, offset=offset, value=encode(record))


def test_the_first_claim_in_log_order_wins_and_an_expiry_after_it_changes_nothing(tmp_path):
    queue = AgentQueue(Settings(data_dir=tmp_path))
    queue.apply(handoff("s1", 10.0))
    # bob's claim is later in the log (whatever its clock says); bob does not hold it to release it
    for record in (event("s1", "claim", "ann", 20.0), event("s1", "claim", "bob", 19.0),
                   event("s1", "expire", ts=30.0), event("s1", "release", "bob", 31.0)):
        queue.apply(record)
    session = queue.sessions["s1"]
    assert (session.status, session.agent, session.taken_at) == (TAKEN, "ann", 20.0)
    queue.apply(event("s1", "transfer", "ann", 40.0, to_agent="bob", note="billing question"))
    queue.apply(event("s1", "release", "bob", 100.0, note="refund issued"))
    assert (session.status, session.returned, session.note) == (BOT, "release", "refund issued")
    assert [(s.agent, s.start, s.end) for s in queue.spans()] == [("bob", 20.0, 100.0)]


def test_an_expiry_first_in_the_log_beats_a_later_claim(tmp_path):
    queue = AgentQueue(Settings(data_dir=tmp_path))
    queue.apply(handoff("s1", 10.0))
    queue.apply(event("s1", "expire", ts=130.0, note=BUSY_SAY))
    queue.apply(event("s1", "claim", "ann", 131.0))
    assert (queue.sessions["s1"].status, queue.sessions["s1"].agent) == (BOT, "")


def test_an_abandon_ends_a_waiting_round_and_counts_only_while_waiting(tmp_path):
    queue = AgentQueue(Settings(data_dir=tmp_path))
    queue.apply(handoff("s1", 10.0))
    queue.apply(handoff("s2", 11.0))
    queue.apply(event("s1", "abandon", ts=30.0))
    queue.apply(event("s1", "claim", "ann", 31.0))  # read after the hang-up: nobody can take it
    assert (queue.sessions["s1"].status, queue.sessions["s1"].returned, queue.sessions["s1"].agent) == (
        ABANDONED, "abandon", "")
    assert [s.session_id for s in queue.waiting()] == ["s2"] and queue.position("s1") == 0
    queue.apply(event("s2", "claim", "ann", 32.0))
    queue.apply(event("s2", "abandon", ts=33.0))  # the claim was first in the log: ann holds the call
    assert (queue.sessions["s2"].status, queue.sessions["s2"].agent) == (TAKEN, "ann")
    queue.apply(handoff("s1", 50.0, turn_id="t2"))  # the caller came back and asked again: a new round
    assert queue.sessions["s1"].status == WAITING


def test_events_before_their_handoff_and_a_second_round(tmp_path):
    queue = AgentQueue(Settings(data_dir=tmp_path))
    queue.absorb([message(event("s1", "claim", "ann"), 0),
                  SimpleNamespace(topic="voxbus.agent-queue", partition=0, offset=1, value=b"\xc1")])
    assert "s1" not in queue.sessions and queue.read[("voxbus.agent-queue", 0)] == 2
    queue.absorb([message(handoff("s1", 10.0, transcript=[ConversationLine(role="caller", text="hi")]), 0,
                          "voxbus.handoffs")])
    assert (queue.sessions["s1"].status, queue.sessions["s1"].agent) == (TAKEN, "ann")  # read side by side
    queue.apply(event("s1", "end", "ann", 50.0, note="done"))
    assert queue.sessions["s1"].status == ENDED
    queue.apply(handoff("s1", 60.0, turn_id="t9"))  # handed off again later: a new round
    queue.apply(handoff("s1", 60.0, turn_id="t9"))  # redelivered: nothing changes
    queue.apply(event("s1", "claim", "bob", 61.0))  # an event of the first round
    session = queue.sessions["s1"]
    assert (session.status, session.round, [s.end for s in queue.spans()]) == (WAITING, "t9", [50.0])
    queue.apply(HandoffUpdate(session_id="s1", kind="caller", turn_id="t10", text="hello?", speak=False,
                              ts=62))
    assert [line["text"] for line in session.lines] == ["hi", "hello?"]


def test_the_queue_is_ordered_by_handoff_time(tmp_path):
    queue = AgentQueue(Settings(data_dir=tmp_path))
    for session_id, ts in (("late", 30.0), ("early", 10.0), ("mid", 20.0)):
        queue.apply(handoff(session_id, ts))
    queue.apply(event("mid", "claim", "ann", turn="t1"))
    assert [s.session_id for s in queue.waiting()] == ["early", "late"]
    assert (queue.position("late"), queue.position("mid")) == (2, 0)
    listed = [(v["session_id"], v["position"]) for v in queue.listing()]
    assert listed == [("early", 1), ("late", 2), ("mid", 0)]


def test_the_wait_estimate_is_place_times_mean_handle_time_over_agents_on_duty():
    spans = [Span("ann", 0.0, 200.0), Span("bob", 100.0, 500.0)]  # mean handle time 300 s, two agents
    assert estimated_wait(3, spans, holding=[], now=600.0) == pytest.approx(3 * 300 / 2)
    assert estimated_wait(1, spans, holding=["carol"], now=600.0) == pytest.approx(100.0)
    assert estimated_wait(1, spans, holding=[], now=600.0 + 7200) == pytest.approx(300.0)  # off duty: 1 agent
    assert estimated_wait(1, [], holding=["ann"], now=0.0) is None
    assert [spoken_wait(s) for s in (20, 60, 61, 450)] == [
        "less than a minute", "about a minute", "about 2 minutes", "about 8 minutes"]
    assert notice(1, None, 90.0) == ("You are next in the queue. If no one is free soon, I'll be back to "
                                     "help within about 2 minutes.")
    assert notice(2, 450.0, 90.0) == "You are number 2 in the queue. The estimated wait is about 8 minutes."


class Caller:
    """A caller connected to the fake gateway's replica (``gateway.sessions``)."""

    async def deliver(self, record) -> None:
        pass


async def test_the_hold_line_tells_reminds_and_gives_back_to_the_bot(serve):
    client, gateway = await serve(handoff_sla_s=100.0, hold_message_s=30.0)
    app = client.server.app
    queue, desk = app[QUEUE], app[DESK]
    for task in asyncio.all_tasks():
        if task.get_name() == "agent-desk":
            task.cancel()  # the app's own hold line, on the wall clock: this test drives one by hand
    await gateway.produce(HANDOFFS, handoff("here", 1000.0, speak=True))
    await gateway.produce(HANDOFFS, handoff("elsewhere", 999.0))  # another replica's caller
    gateway.sessions["here"] = Caller()
    hold = HoldLine(desk)
    for now in (1001.0, 1010.0, 1031.0):
        await hold.tick(now)
    said = [(r.turn_id.split("-")[0], r.text, r.speak) for r in gateway.records(ReplyText, "here")]
    first = ("You are number 2 in the queue. If no one is free soon, I'll be back to help within "
             "about 2 minutes.")
    assert said == [("hold", first, False)] * 2 + [("hold", first, True)] * 2  # replies and egress, each
    assert not gateway.records(ReplyText, "elsewhere")
    await hold.tick(1100.0)
    [expire] = gateway.records(QueueEvent, "here")
    assert (expire.kind, expire.handoff_turn, expire.note) == ("expire", "t1", BUSY_SAY)
    assert (queue.sessions["here"].status, queue.sessions["here"].returned) == (BOT, "expire")
    assert [r.text for r in gateway.records(ReplyText, "here")][-1] == BUSY_SAY
    await hold.tick(1200.0)
    assert len(gateway.records(QueueEvent, "here")) == 1  # back with the bot: no more expiries


async def test_take_reply_transfer_release_through_the_api(serve):
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, handoff("s1", 10.0, speak=False))
    await gateway.produce(HANDOFFS, handoff("s2", 11.0))
    queued = await (await client.get("/v1/agent/queue", headers=BOB)).json()
    assert [(e["session_id"], e["position"], e["estimated_wait_s"]) for e in queued["queue"]] == [
        ("s1", 1, None), ("s2", 2, None)]
    assert (await client.post("/v1/agent/sessions/s1/reply", json={"text": "hi"}, headers=BOB)).status == 409
    taken = await client.post("/v1/agent/sessions/s1/take", json={"agent": "mallory"}, headers=BOB)
    assert (await taken.json())["agent"] == "key:bob"  # the principal, not what the body claims
    lost = await client.post("/v1/agent/sessions/s1/take", json={}, headers=CAROL)
    assert lost.status == 409 and "already taken by key:bob" in await lost.text()
    sent = await client.post("/v1/agent/sessions/s1/reply", json={"text": "Hello, Bob here."}, headers=BOB)
    assert sent.status == 200
    [reply, shown] = gateway.records(ReplyText, "s1")
    assert (reply.text, reply.speak, reply.final) == ("Hello, Bob here.", False, True)
    assert [t for t, r in gateway.produced if r is reply] == [REPLIES.name, EGRESS.name]
    assert (await client.post("/v1/agent/sessions/s1/reply", json={"text": "x"}, headers=CAROL)).status == 409
    moved = await client.post("/v1/agent/sessions/s1/transfer", json={"to": "key:carol", "note": "billing"},
                              headers=BOB)
    assert (await moved.json())["agent"] == "key:carol"
    released = await client.post("/v1/agent/sessions/s1/release", json={"note": "refund issued"},
                                 headers=CAROL)
    body = await released.json()
    assert (body["status"], body["returned"], body["note"]) == ("bot", "release", "refund issued")
    kinds = [(r.kind, r.agent) for r in gateway.records(QueueEvent, "s1")]
    # carol's claim was refused here: this replica had read bob's (the race: the integration test)
    assert kinds == [("claim", "key:bob"), ("transfer", "key:bob"), ("release", "key:carol")]
    assert [t for t, r in gateway.produced if isinstance(r, QueueEvent)] == [AGENT_QUEUE.name] * 3
    listed = await (await client.get("/v1/agent/sessions", headers=BOB)).json()
    assert [(s["session_id"], s["status"]) for s in listed["sessions"]] == [("s2", "waiting"), ("s1", "bot")]
    queued = await (await client.get("/v1/agent/queue", headers=BOB)).json()
    assert queued["queue"][0]["estimated_wait_s"] is not None  # a finished call to learn from
    for path, body in (("s1/reply", {"text": ""}), ("s1/release", {"note": 5}), ("s2/transfer", {})):
        assert (await client.post(f"/v1/agent/sessions/{path}", json=body, headers=BOB)).status == 400, path
    assert (await client.post("/v1/agent/sessions/nope/take", json={}, headers=BOB)).status == 404
    assert (await client.post("/v1/agent/sessions/s2/take", data="[", headers=BOB)).status == 400


def test_the_console_page_is_self_contained():
    html = (STATIC / "agent.html").read_text()
    for path in ("/v1/agent/sessions", "/take", "/reply", 'act("release"', 'act("transfer"'):
        assert path in html, path
    assert "http://" not in html and "https://" not in html


def test_an_agent_reply_to_a_typing_caller_ends_without_audio():
    from ingress.turns import Turn

    turn = Turn("agent-1")
    turn.absorb(ReplyText(session_id="s1", turn_id="agent-1", index=0, text="Hi, Sam here.", final=True,
                          speak=False))
    assert turn.complete and turn.reply_text == "Hi, Sam here."


async def test_a_callers_key_gets_403_on_every_agent_endpoint(serve):
    """Every route of the console and its API, found in the app's router (a new endpoint is covered too)."""
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, handoff("s1", 10.0))
    routes = sorted({(r.method, r.resource.canonical) for r in client.server.app.router.routes()
                     if r.resource is not None and r.resource.canonical.startswith(("/agent", "/v1/agent"))})
    assert len(routes) >= 11, routes  # with the wrap-up, tickets and caller history
    produced = len(gateway.produced)
    for method, path in routes:
        url = re.sub(r"\{\w+\}", "s1", path)  # session, ticket or caller id
        for headers, status in (({"Authorization": "Bearer key-alice-0123456789"}, 403), ({}, 401)):
            response = await client.request(method, url, json={"text": "x", "to": "key:bob",
                                                               "disposition": "resolved"}, headers=headers)
            assert response.status == status, (method, path, headers)
    assert len(gateway.produced) == produced  # nothing a caller sent reached the bus


async def wait_for(predicate, timeout: float = 10.0) -> None:
    """Until ``predicate()`` (the server ends a closed socket's session in its own task)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_caller_who_hangs_up_while_waiting_leaves_the_queue(serve):
    """The caller's socket closes: their replica writes the round's abandon, and a take is refused."""
    from tests.ingress.test_edge import START, session

    client, gateway = await serve(api_keys=KEYS)
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    events, _, _, first = await session(client, headers=alice, hold=True)
    sid = events[0]["session_id"]
    await gateway.produce(HANDOFFS, handoff(sid, time.time()))
    # the caller resumes on a newer connection: the older one closes (4409), the session goes on
    _, _, _, second = await session(client, {**START, "session_id": sid}, headers=alice, hold=True)
    while (await first.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
        pass
    assert first.close_code == 4409
    assert not gateway.records(QueueEvent, sid) and client.server.app[QUEUE].sessions[sid].status == WAITING
    await second.close()  # the caller hangs up
    await wait_for(lambda: gateway.records(QueueEvent, sid))
    [abandon] = gateway.records(QueueEvent, sid)
    assert (abandon.kind, abandon.handoff_turn, abandon.v) == ("abandon", "t1", 2)
    assert client.server.app[QUEUE].sessions[sid].status == ABANDONED
    taken = await client.post(f"/v1/agent/sessions/{sid}/take", json={}, headers=BOB)
    assert taken.status == 409 and "hung up while waiting" in await taken.text()
    assert gateway.records(QueueEvent, sid) == [abandon]  # the refused take wrote nothing


async def test_callers_cut_by_a_shutdown_keep_their_place(serve):
    """An ingress shutting down closes its callers' sockets; they reconnect elsewhere, still queued."""
    from tests.ingress.test_edge import session

    client, gateway = await serve()
    events, _, _, ws = await session(client, hold=True)
    sid = events[0]["session_id"]
    await gateway.produce(HANDOFFS, handoff(sid, time.time()))
    await client.server.close()  # on_shutdown first, then the handlers end
    assert not gateway.records(QueueEvent, sid)


def test_a_spanish_caller_is_told_their_place_in_spanish():
    assert spoken_wait(450, "es") == "unos 8 minutos" and spoken_wait(20, "fr") == "less than a minute"
    assert notice(2, 450.0, 90.0, "es") == ("Es usted el número 2 en la cola. La espera estimada es de "
                                            "unos 8 minutos.")
    assert notice(1, None, 30.0, "es").startswith("Es usted el siguiente en la cola. Si nadie queda libre")


async def test_the_hold_line_speaks_the_callers_language(serve):
    client, gateway = await serve(handoff_sla_s=100.0, hold_message_s=30.0)
    for task in asyncio.all_tasks():
        if task.get_name() == "agent-desk":
            task.cancel()
    await gateway.produce(HANDOFFS, handoff("aqui", 1000.0, speak=True))
    caller = Caller()
    caller.language = "es"
    gateway.sessions["aqui"] = caller
    hold = HoldLine(client.server.app[DESK])
    await hold.tick(1001.0)
    [notice_record, _to_egress] = gateway.records(ReplyText, "aqui")
    assert notice_record.language == "es" and notice_record.text.startswith("Es usted el siguiente")
    await hold.tick(1100.0)
    [expire] = gateway.records(QueueEvent, "aqui")
    assert expire.note == BUSY_SAYS["es"]
    assert gateway.records(ReplyText, "aqui")[-1].language == "es"
