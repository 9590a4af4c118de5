"""The agent console's view of ``voxbus.handoffs``, and its page (the API runs in tests/integration)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from ingress.agents import HandoffDesk
from schemas import ConversationLine, Handoff, HandoffUpdate, encode
from streams.settings import Settings

STATIC = Path(__file__).parents[2] / "ingress" / "static"


def message(record, offset):
    return SimpleNamespace(topic="voxbus.handoffs", partition=0, offset=offset, value=encode(record))


def test_the_desk_folds_handoffs_and_updates_once(tmp_path):
    desk = HandoffDesk(Settings(data_dir=tmp_path))
    handoff = Handoff(session_id="s1", egress_partition=2, turn_id="t2", reason="requested", summary="asked",
                      speak=True, transcript=[ConversationLine(role="caller", text="hi", turn_id="t1"),
                                  ConversationLine(role="assistant", text="Hello!", turn_id="t1")], ts=10.0)
    caller = HandoffUpdate(session_id="s1", kind="caller", turn_id="t3", text="hello?", speak=False, ts=11.0)
    early = Handoff(session_id="s0", turn_id="t1", reason="negative_sentiment", summary="angry", ts=5.0)
    desk.absorb([message(handoff, 0), message(caller, 1), message(caller, 2), message(early, 3),
                 SimpleNamespace(topic="voxbus.handoffs", partition=0, offset=4, value=b"\xc1")])
    desk.apply(HandoffUpdate(session_id="s0", kind="taken", agent="ann", ts=12.0))
    desk.apply(HandoffUpdate(session_id="gone", kind="caller", text="?", ts=12.0))  # before the horizon
    [first, second] = desk.listing()
    assert (first["session_id"], first["waiting"], first["egress_partition"]) == ("s1", True, 2)
    assert [(line["role"], line["text"]) for line in first["lines"]] == [
        ("caller", "hi"), ("assistant", "Hello!"), ("caller", "hello?")]
    assert first["speak"] is True  # the caller spoke before typing: agents are heard
    assert (second["session_id"], second["waiting"], second["agent"]) == ("s0", False, "ann")


def test_the_console_page_is_self_contained():
    html = (STATIC / "agent.html").read_text()
    assert "/v1/agent/sessions" in html and "/take" in html and "/reply" in html
    assert "http://" not in html and "https://" not in html


def test_an_agent_reply_to_a_typing_caller_ends_without_audio():
    from ingress.turns import Turn
    from schemas import ReplyText

    turn = Turn("agent-1")
    turn.absorb(ReplyText(session_id="s1", turn_id="agent-1", index=0, text="Hi, Sam here.", final=True,
                          speak=False))
    assert turn.complete and turn.reply_text == "Hi, Sam here."


async def test_the_api_needs_credentials_when_auth_is_on_and_speaks_for_the_agent(serve):
    import asyncio

    from ingress.agents import DESK
    from schemas import ReplyText
    from streams.topics import EGRESS, HANDOFFS, REPLIES

    client, gateway = await serve(api_keys="agent:alice=key-alice-0123456789")
    desk = client.server.app[DESK]
    desk.task = asyncio.create_task(asyncio.sleep(3600))  # as if following voxbus.handoffs
    desk.caught_up.set()
    desk.apply(Handoff(session_id="s1", egress_partition=3, turn_id="t1", reason="requested", summary="asked",
                       speak=False, ts=1.0))
    assert (await client.get("/v1/agent/sessions")).status == 401
    assert (await client.post("/v1/agent/sessions/s1/take", json={})).status == 401
    key = {"Authorization": "Bearer key-alice-0123456789"}
    listed = await (await client.get("/v1/agent/sessions", headers=key)).json()
    assert [s["session_id"] for s in listed["sessions"]] == ["s1"]
    assert (await client.post("/v1/agent/sessions/nope/take", json={}, headers=key)).status == 404
    taken = await client.post("/v1/agent/sessions/s1/take", json={"agent": "mallory"}, headers=key)
    assert (await taken.json())["agent"] == "key:alice"  # the principal, not what the body claims
    sent = await client.post("/v1/agent/sessions/s1/reply", json={"text": "Hello, Alice here."}, headers=key)
    assert sent.status == 200
    topics = [(topic, type(record).__name__) for topic, record in gateway.produced]
    assert topics == [(HANDOFFS.name, "HandoffUpdate"), (REPLIES.name, "ReplyText"),
                      (EGRESS.name, "ReplyText"), (HANDOFFS.name, "HandoffUpdate")]
    [reply, _] = gateway.records(ReplyText)
    assert (reply.egress_partition, reply.text, reply.speak, reply.final) == (3, "Hello, Alice here.", False,
                                                                              True)
    assert (await client.post("/v1/agent/sessions/s1/reply", json={"text": ""}, headers=key)).status == 400
