"""Duplicates at the ingress: events of finished turns, and repeated reply sentences or audio chunks."""

import json

import aiohttp

from ingress.turns import FinishedTurns, Turn
from schemas import ReplyText, SynthAudio, VadEvent


def test_finished_turns_are_bounded():
    finished = FinishedTurns(sessions=2, per_session=2)
    for turn in ("a1", "a2", "a3"):
        finished.add("s1", turn)
    assert ("s1", "a1") not in finished and ("s1", "a3") in finished
    finished.add("s2", "a1")
    finished.add("s3", "a1")
    assert ("s1", "a3") not in finished and ("s3", "a1") in finished



def test_a_redelivered_reply_sentence_or_audio_chunk_is_recognized():
    turn = Turn("a1-1")
    sentence = ReplyText(session_id="s", turn_id="a1-1", index=0, text="Hello.")
    audio = SynthAudio(session_id="s", turn_id="a1-1", index=0, seq=0, sample_rate=22050, pcm=b"\0\0")
    assert not turn.repeats(sentence) and not turn.repeats(audio)
    assert turn.repeats(sentence) and turn.repeats(audio)
    assert not turn.repeats(audio.model_copy(update={"seq": 1}))


async def test_an_unanswered_turn_ends_with_turn_timeout_and_a_late_reply_is_dropped(serve):
    client, gateway = await serve(turn_timeout_s=0.3)
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    sid = (await ws.receive_json(timeout=5))["session_id"]
    for kind in ("speech_start", "speech_end"):
        await gateway.deliver(VadEvent(session_id=sid, turn_id="a100-1", kind=kind, sample=100, ts=1.0,
                                       utterance=True))
    events = [await ws.receive_json(timeout=5) for _ in range(4)]
    assert [e["type"] for e in events] == ["speech_started", "speech_ended", "error", "turn_end"], events
    assert events[2]["code"] == "turn_timeout" and events[2]["turn_id"] == "a100-1"
    await gateway.deliver(ReplyText(session_id=sid, turn_id="a100-1", index=0, text="Too late.", final=True))
    await ws.send_str(json.dumps({"type": "end"}))
    assert (await ws.receive()).type != aiohttp.WSMsgType.TEXT, "the late reply does not reach the caller"
