"""An agent's voice on the fake bus: the leg's records, its events, and the caller hearing it.

Through the real broker, browsers and a Twilio call on two replicas:
tests/integration/test_agent_voice.py.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from ingress.agents.queue import AgentQueue
from ingress.agents.voice_leg import AgentLeg
from ingress.agents.voice_play import AGENT_VOICE_TURN
from schemas import (
    AgentAudio,
    AudioChunk,
    Handoff,
    HandoffUpdate,
    IntentResult,
    SessionControl,
    Transcript,
    TurnRecord,
    VadEvent,
    agent_leg,
    is_agent_leg,
)
from streams.settings import Settings
from streams.topics import AUDIO, EGRESS, HANDOFFS, TURNS
from tests.ingress.conftest import FakeGateway
from tests.ingress.test_twilio import CALL_SID, Phone, start_message, wait_for


class Page:
    """The agent's socket as the leg sees it: what it was sent."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.closed = False

    async def send_event(self, payload: dict) -> None:
        self.events.append(payload)

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True


def test_an_agent_leg_is_no_callers_session():
    assert agent_leg("s1") == "agent:s1" and is_agent_leg("agent:s1") and not is_agent_leg("s1")
    long = agent_leg("x" * 64)
    assert len(long) == 64 and is_agent_leg(long) and long != agent_leg("x" * 63 + "y")


async def test_the_agents_voice_reaches_the_caller_and_the_transcriber_and_their_words_the_record(tmp_path):
    gateway = FakeGateway(Settings(data_dir=tmp_path, ingress_slot=2, chunk_ms=64))
    queue = AgentQueue(gateway.settings)
    queue.apply(Handoff(session_id="s1", egress_partition=1, turn_id="t1", reason="requested", summary="",
                        ts=1.0))
    session = queue.sessions["s1"]
    page = Page()
    leg = AgentLeg(gateway, queue, session, "key:bob", page, 16000)  # type: ignore[arg-type]
    leg.control("start")
    leg.on_audio(np.zeros(1600, dtype="<i2").tobytes())  # 100 ms: one 64 ms chunk, the rest pending
    leg.caller_seen(AudioChunk(session_id="s1", egress_partition=3, seq=0, start_sample=0, pcm=b"",
                               recv_ts=1.0))  # the caller reconnected on replica 3

    # the leg's events come back from vad, asr and intent
    turn = {"session_id": "agent:s1", "egress_partition": 2, "turn_id": "a0-1"}
    words = "Your bill is due."
    for event in (VadEvent(**turn, kind="speech_start", sample=0, ts=2.0),
                  VadEvent(**turn, kind="speech_end", sample=16000, ts=3.0),
                  Transcript(**turn, text=words, speak=False, marks={"asr.end": 3.5}),
                  IntentResult(**turn, text=words, intent="billing", confidence=0.9, sentiment="neutral",
                               sentiment_score=0.0)):
        await leg.deliver(event)
    assert [e["type"] for e in page.events] == ["speech_started", "speech_ended", "transcript", "turn_end"]
    update = gateway.records(HandoffUpdate)[0]
    assert (update.session_id, update.kind, update.agent, update.text) == ("s1", "agent", "key:bob", words)
    assert session.lines[-1]["role"] == "agent" and session.lines[-1]["text"] == words
    [record] = gateway.records(TurnRecord)
    assert (record.session_id, record.turn_id, record.speaker, record.intent, record.reply_text) == (
        "s1", "agent.a0-1", "agent", "billing", "")
    assert [topic for topic, r in gateway.produced if isinstance(r, HandoffUpdate | TurnRecord)] == [
        HANDOFFS.name, TURNS.name]

    await leg.close()  # the last 36 ms, and the end
    chunks = gateway.records(AudioChunk)
    assert {(c.session_id, c.egress_partition, c.speak) for c in chunks} == {("agent:s1", 2, False)}
    assert [len(c.pcm) for c in chunks] == [2048, 1152]
    stages = {topic for topic, r in gateway.produced if isinstance(r, AudioChunk | SessionControl)}
    assert stages == {AUDIO.name}
    voices = gateway.records(AgentAudio)
    assert [(v.session_id, v.egress_partition, v.agent, v.seq) for v in voices] == [
        ("s1", 1, "key:bob", 0), ("s1", 3, "key:bob", 1)]
    assert {topic for topic, r in gateway.produced if isinstance(r, AgentAudio)} == {EGRESS.name}
    # nothing continues an agent's turn: it is reported replied at its end
    assert [(c.action, c.turn_id) for c in gateway.records(SessionControl)] == [
        ("start", ""), ("replied", "a0-1"), ("end", "")]


async def test_a_web_caller_hears_the_agent_as_reply_audio(serve):
    client, gateway = await serve()
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    session_id = (await ws.receive_json())["session_id"]
    pcm = (np.sin(np.arange(1024) / 5) * 3000).astype("<i2").tobytes()
    await gateway.deliver(AgentAudio(session_id=session_id, agent="bob", seq=0, pcm=pcm, ts=1.0))
    header = await ws.receive_json()
    assert header.items() >= {"type": "reply_audio", "turn_id": AGENT_VOICE_TURN, "sample_rate": 16000,
                              "final": False, "bytes": len(pcm)}.items()
    assert await ws.receive_bytes() == pcm
    assert not gateway.sessions[session_id].turns  # no turn of the caller's
    await ws.close()


async def test_a_twilio_caller_hears_the_agent_as_mulaw_media(serve):
    client, gateway = await serve()
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await phone.send(start_message())
    await wait_for(lambda: CALL_SID in gateway.sessions)
    pcm = (np.sin(np.arange(16000) / 5) * 3000).astype("<i2").tobytes()
    await gateway.deliver(AgentAudio(session_id=CALL_SID, agent="bob", seq=0, pcm=pcm, ts=1.0))
    marks = await phone.wait(lambda m: m["event"] == "mark")
    assert marks[0]["mark"]["name"].startswith(f"{AGENT_VOICE_TURN}:")
    media = [m for m in phone.received if m["event"] == "media"]
    payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in media)
    assert 0.9 * 8000 < len(payload) <= 8000  # 1 s of 8 kHz mu-law


@pytest.mark.parametrize("session_id", ["agent:s1", "agent:"])
async def test_a_caller_cannot_open_an_agent_leg(serve, session_id):
    client, _ = await serve()
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, "session_id": session_id}))
    error = await ws.receive_json()
    assert error["code"] == "bad_message" and "agents'" in error["message"]
    assert (await ws.receive()).data == 4400
