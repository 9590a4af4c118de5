"""When a turn is complete at the ingress, whatever order its egress events arrive in.

The asr stage writes a turn's transcript to ``voxbus.egress`` itself, and the intent stage writes
the intent of the same transcript there too, from another process: on the partition the intent
can come first (seen in `make bench` at 8 callers: the turn ended with no transcript, and its
reply was then dropped as a duplicate).
"""

from __future__ import annotations

import json
import time

from ingress.turns import Turn
from schemas import IntentResult, ReplyText, SynthAudio, Transcript, VadEvent

SESSION = {"session_id": "s1", "turn_id": "a16000-1"}
ASR_MARKS = {"asr.start": 1.0, "asr.end": 1.2}


def intent() -> IntentResult:
    return IntentResult(**SESSION, text="what is my balance", intent="billing", confidence=0.9,
                        sentiment="neutral", sentiment_score=0.0, marks={**ASR_MARKS, "intent.end": 1.3})


def test_an_intent_before_its_transcript_does_not_end_the_turn():
    turn = Turn(SESSION["turn_id"])
    turn.absorb(VadEvent(**SESSION, kind="speech_end", sample=16000, ts=time.time(), utterance=True))
    turn.absorb(intent())
    assert not turn.complete  # the words are on their way: asr.end in the marks is not "heard nothing"
    turn.absorb(Transcript(**SESSION, text="what is my balance", marks=ASR_MARKS))
    assert not turn.complete and turn.transcript == "what is my balance"


def test_a_rejected_utterance_ends_the_turn():
    turn = Turn(SESSION["turn_id"])
    turn.absorb(VadEvent(**SESSION, kind="speech_end", sample=16000, ts=time.time(), utterance=True))
    turn.absorb(Transcript(**SESSION, text="", marks=ASR_MARKS))  # the asr stage heard no speech
    assert turn.complete


async def test_the_caller_gets_the_reply_when_the_intent_overtakes_the_transcript(serve):
    client, gateway = await serve()
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    sid = (await ws.receive_json(timeout=5))["session_id"]
    turn = {"session_id": sid, "turn_id": SESSION["turn_id"]}
    for kind in ("speech_start", "speech_end"):
        await gateway.deliver(VadEvent(**turn, kind=kind, sample=16000, ts=time.time(), utterance=True))
    await gateway.deliver(intent().model_copy(update={"session_id": sid}))
    await gateway.deliver(Transcript(**turn, text="what is my balance", marks=ASR_MARKS))
    await gateway.deliver(ReplyText(**turn, index=0, text="Ten dollars.", final=True))
    await gateway.deliver(SynthAudio(**turn, index=0, seq=0, sample_rate=16000, pcm=bytes(320), final=True))
    types, audio = [], 0
    while "turn_end" not in types:
        msg = await ws.receive(timeout=5)
        if msg.type.name == "BINARY":
            audio += 1
            continue
        event = json.loads(msg.data)
        types.append(event["type"])
        if event["type"] == "turn_end":
            assert event["transcript"] == "what is my balance" and event["reply_text"] == "Ten dollars."
    assert audio and types.index("transcript") < types.index("turn_end"), types
    await ws.close()
