"""kill -9 each stage mid-call: the supervisor starts a replacement, and the turn is still answered once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import numpy as np
import pytest
import soundfile

from tests.integration.caller import ScriptedCaller, piper_speech
from voxbus.client import connect
from voxbus.supervisor import wait_http

pytestmark = pytest.mark.integration

QUESTION = "sense_and_sensibility_01_austen_64kb-0880"
SECOND_QUESTION = "sense_and_sensibility_01_austen_64kb-0920"

# (stage, the caller-visible event at which the stage is killed: it is then holding the turn)
CRASHES = [
    ("vad", "speech_started"),
    ("asr", "speech_ended"),
    ("intent", "speech_ended"),
    ("retrieval", "transcript"),
    ("generation", "intent"),
    ("tts", "reply_text"),
]


async def kill_on(caller: ScriptedCaller, kind: str, pid: int) -> float:
    """SIGKILL ``pid`` as soon as the caller receives an event of ``kind``; return when (monotonic)."""
    while not any(event["type"] == kind for _, event in caller.events):
        await asyncio.sleep(0.005)
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


@pytest.mark.parametrize(("stage", "moment"), CRASHES, ids=[stage for stage, _ in CRASHES])
async def test_kill_9_mid_call_still_answers_once(stack, supervisor, url, stage, moment):
    assert wait_http(f"http://{stack.host}:{stack.port}/healthz", 120), "stack not healthy before the crash"
    child = next(c for c in supervisor.children if c.name == stage)
    async with ScriptedCaller(url) as caller:
        killer = asyncio.create_task(kill_on(caller, moment, child.proc.pid))
        await caller.say(QUESTION)
        end = await caller.until(
            lambda e: e["type"] == "turn_end" and (e["transcript"] or e.get("reply_text")), timeout_s=120)
        killed_at = await killer
        answered_at = next(t for t, e in caller.events if e is end)
        events = [e for _, e in caller.events if e.get("turn_id") == end["turn_id"]]
        errors = [e for _, e in caller.events if e["type"] == "error"]
        assert not errors, f"the crash reached the caller: {errors}"
        assert end["transcript"] and end["reply_text"], f"the turn was not answered: {events}"
        sentences = [(e["index"], e["text"]) for e in events if e["type"] == "reply_text"]
        assert len(sentences) == len(set(sentences)), f"duplicate reply sentences: {sentences}"
        assert any(e["type"] == "reply_text" and e.get("final") for e in events), "no final sentence"
        audio = [e for e in events if e["type"] == "reply_audio"]
        assert audio and sum(e["bytes"] for e in audio) > 0, "the reply was not spoken"
        turn_ends = [e for e in events if e["type"] == "turn_end"]
        assert len(turn_ends) == 1
        print(f"\n{stage} killed at '{moment}': answered {answered_at - killed_at:.1f} s after the kill; "
              f"reply: {end['reply_text']!r}")
    assert wait_http(f"http://{stack.host}:{stack.port}/healthz", 120), f"{stage} did not come back"


async def test_llm_server_down_gives_a_spoken_apology(stack, supervisor, url, tmp_path):
    from processors.generation.llm_server import embedded_url
    from voxbus.client import call

    # an in-domain question the LLM would answer (a recorded audiobook line is off topic: redirected)
    speech = piper_speech(stack, "Why is my bill higher this month?")
    silence = np.zeros(8000, dtype=np.int16)
    question = str(tmp_path / "q.wav")
    soundfile.write(question, np.concatenate([silence, speech, silence, silence]), 16000, subtype="PCM_16")
    supervisor.stop_llm()  # and kept down: the watcher does not restart it
    try:
        turns = await call(url, question)
        assert turns and "trouble" in turns[0].reply_text.lower()
        assert turns[0].reply_audio, "the apology is spoken"
    finally:
        supervisor.start_llm()
        assert wait_http(f"{embedded_url(stack)}/models", 120)


async def test_kill_9_of_the_ingress_the_caller_reconnects_and_goes_on(stack, supervisor, url):
    """The ingress dies mid-turn; the caller reopens its session (same id, backoff) and is answered once."""
    health = f"http://{stack.host}:{stack.port}/healthz"
    assert wait_http(health, 120), "stack not healthy before the crash"
    ingress = next(c for c in supervisor.children if c.name == "ingress")
    async with ScriptedCaller(url) as caller:
        killer = asyncio.create_task(kill_on(caller, "speech_started", ingress.proc.pid))
        with contextlib.suppress(ConnectionError, RuntimeError):  # the socket dies under the caller
            await caller.say(QUESTION)
        killed_at = await killer
        lost_turn = next(e for _, e in caller.events if e["type"] == "speech_started")["turn_id"]
        caller.reader.cancel()
        resume = {"sample_rate": 16000, "session_id": caller.session_id}
        caller.ws, ready = await connect(caller.http, url, resume, retry_for_s=40)
        reconnected_at = time.monotonic()
        assert ready["session_id"] == caller.session_id
        caller.reader = asyncio.create_task(caller._read())
        await caller.say(SECOND_QUESTION)
        end = await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"], timeout_s=45)
        assert end["reply_text"], end
        assert end["turn_id"] != lost_turn, "turn ids stay unique across connections"
        turn_ends = [e["turn_id"] for _, e in caller.events if e["type"] == "turn_end"]
        assert len(turn_ends) == len(set(turn_ends)), f"a turn ended twice: {turn_ends}"
        sentences = [(e["turn_id"], e["index"]) for _, e in caller.events if e["type"] == "reply_text"]
        assert len(sentences) == len(set(sentences)), f"duplicate reply sentences: {sentences}"
        answered_at = next(t for t, e in caller.events if e is end)
        print(f"\ningress killed: caller back on its session {reconnected_at - killed_at:.1f} s after the "
              f"kill, next turn answered {answered_at - reconnected_at:.1f} s after reconnecting")
    assert wait_http(health, 60), "the ingress did not come back healthy"
