"""Continuations at the ingress: a reply reaching the caller is reported to the vad stage; a reply
the caller's next words may continue is held, and dropped once they do (processors.vad.continuation)."""

from __future__ import annotations

import json

import aiohttp

from schemas import ReplyText, SessionControl, SynthAudio, Transcript, VadEvent

FIRST, NEXT = "a100-1", "a9000-1"


async def open_call(serve):
    client, gateway = await serve()
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    sid = (await ws.receive_json(timeout=5))["session_id"]
    return ws, gateway, sid


async def first_turn(gateway, sid: str) -> None:
    """The caller spoke a turn and its transcript is known."""
    for kind in ("speech_start", "speech_end"):
        await gateway.deliver(VadEvent(session_id=sid, turn_id=FIRST, kind=kind, sample=100, ts=1.0))
    await gateway.deliver(Transcript(session_id=sid, turn_id=FIRST, text="I want to change"))


def vad(sid: str, kind: str, utterance: bool = True) -> VadEvent:
    return VadEvent(session_id=sid, turn_id=NEXT, kind=kind, sample=9000, ts=2.0, utterance=utterance,
                    continues=FIRST)


def reply(sid: str) -> list:
    return [ReplyText(session_id=sid, turn_id=FIRST, index=0, text="What would you like?", final=True),
            SynthAudio(session_id=sid, turn_id=FIRST, index=0, seq=0, sample_rate=16000, pcm=b"\1\0" * 1600,
                       final=True)]


async def received(ws, seconds: float = 0.3) -> list[dict]:
    """Everything the caller gets within ``seconds`` (binary frames as ``{"type": "binary"}``)."""
    events = []
    try:
        while True:
            msg = await ws.receive(timeout=seconds)
            if msg.type == aiohttp.WSMsgType.TEXT:
                events.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                events.append({"type": "binary"})
            else:
                return events
    except TimeoutError:
        return events


async def test_the_first_reply_audio_is_reported_on_the_audio_topic_once(serve):
    ws, gateway, sid = await open_call(serve)
    await first_turn(gateway, sid)
    assert not [r for r in gateway.records(SessionControl, sid) if r.action == "replied"]
    for event in reply(sid):
        await gateway.deliver(event)
    await gateway.deliver(SynthAudio(session_id=sid, turn_id=FIRST, index=1, seq=0, sample_rate=16000,
                                     pcm=b"\1\0" * 160))
    await received(ws)
    replied = [r for r in gateway.records(SessionControl, sid) if r.action == "replied"]
    assert [r.turn_id for r in replied] == [FIRST]
    await ws.close()


async def test_a_continued_turn_is_held_then_dropped_unanswered(serve):
    ws, gateway, sid = await open_call(serve)
    await first_turn(gateway, sid)
    await gateway.deliver(vad(sid, "speech_start"))  # the caller resumes: the reply is held
    for event in reply(sid):
        await gateway.deliver(event)
    await gateway.deliver(vad(sid, "speech_end"))  # it continued the first turn
    await gateway.deliver(ReplyText(session_id=sid, turn_id=FIRST, index=1, text="Late.", final=True))
    events = await received(ws)
    assert {"type": "binary"} not in events, "the held reply was never played"
    [end] = [e for e in events if e["type"] == "turn_end"]
    assert end["turn_id"] == FIRST and end["reply_text"] == ""
    assert not [e for e in events if e.get("text") == "Late."], "nothing of the dropped turn after its end"
    assert not [r for r in gateway.records(SessionControl, sid) if r.action == "replied"]
    await ws.close()


async def test_a_blip_releases_the_held_reply(serve):
    ws, gateway, sid = await open_call(serve)
    await first_turn(gateway, sid)
    await gateway.deliver(vad(sid, "speech_start"))
    for event in reply(sid):
        await gateway.deliver(event)
    assert {"type": "binary"} not in await received(ws)
    await gateway.deliver(vad(sid, "speech_end", utterance=False))  # a cough: the turn goes on
    events = await received(ws)
    assert {"type": "binary"} in events, "the reply resumed"
    await ws.close()
