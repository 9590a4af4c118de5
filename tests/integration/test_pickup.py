"""Pickup, keys and consent through the whole stack: the greeting and the consent notice reach a web
caller and a phone (spoken by the tts stage) before any turn, and are no turn in analytics; a '0' key
hands the caller to a person, digits and '#' answer the order-number question; ``record: false`` (the
start message, a Twilio parameter) leaves no audio of the call in the archive.

The ingress runs in-process with the pickup settings, on its own egress partition (``ingress_slot=2``),
next to the stack's.
"""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
import pytest_asyncio
import soxr
from aiohttp.test_utils import TestServer

from ingress.g711 import ulaw_decode
from ingress.server import make_app
from processors.archive.reader import archive_root, read_archive
from processors.archive.recording import RecordingRefused, build, session_reads
from schemas import AudioChunk, Handoff, SynthAudio, Transcript, Utterance
from streams.settings import Settings
from streams.topics import HANDOFFS
from tests.conftest import load_clip, wer
from tests.integration.caller import ScriptedCaller
from tests.integration.test_pipeline import read_topic
from tests.integration.test_twilio import QUESTION, Twilio, turn_records

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

GREETING = "Thank you for calling Harbor Mobile. How can I help you today?"
NOTICE = "This call may be recorded for quality."


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pickup(stack):
    settings = Settings(greeting=GREETING, consent_notice=NOTICE, dtmf_timeout_s=1.0, ingress_slot=2)
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    yield f"ws://127.0.0.1:{server.port}"
    await server.close()


def greeting_of(caller: ScriptedCaller) -> str:
    turns = {e["turn_id"] for _, e in caller.events if e["type"] == "reply_text"}
    [turn] = [t for t in turns if t.startswith("greeting-")]
    return turn


async def typed(caller: ScriptedCaller, text: str) -> dict:
    seen = len(caller.events)
    await caller.ws.send_str(json.dumps({"type": "text", "text": text}))
    return await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"] == text
                              and any(x is e for _, x in caller.events[seen:]), timeout_s=60)


async def keys(caller: ScriptedCaller, digits: str) -> None:
    for digit in digits:
        await caller.ws.send_str(json.dumps({"type": "dtmf", "digit": digit}))


async def test_a_web_caller_is_greeted_before_the_first_turn(pickup, stack):
    async with ScriptedCaller(f"{pickup}/v1/stream") as caller:
        # the line stays silent: what comes is the greeting, spoken, before the caller says anything
        await caller.until(lambda e: e["type"] == "turn_end" and e["turn_id"].startswith("greeting-"),
                           timeout_s=60)
        turn = greeting_of(caller)
        said = [e for _, e in caller.events if e["type"] == "reply_text" and e["turn_id"] == turn]
        assert [e["text"] for e in said if e["text"]] == [NOTICE, GREETING]
        audio = [e for _, e in caller.events if e["type"] == "reply_audio" and e["turn_id"] == turn]
        seconds = sum(e["bytes"] for e in audio) / 2 / audio[0]["sample_rate"]
        assert seconds > 2.0, audio  # both lines spoken (Piper: ~4 s)
        replies = [e for _, e in caller.events if e["type"] in ("reply_text", "reply_audio")]
        assert replies[0]["turn_id"] == turn
        answered = await typed(caller, "When is my bill due?")
        assert "15th" in answered["reply_text"], answered
        session_id = caller.session_id
    records = await turn_records(stack.bootstrap, session_id, 1, timeout_s=10, settle_s=2)
    assert [r.transcript for r in records] == ["When is my bill due?"], "the greeting is no caller turn"
    print(f"\ngreeting: {seconds:.1f} s of audio before the first turn")


async def test_a_phone_call_hears_the_greeting_first(pickup, recognizer):
    async with Twilio(f"{pickup}/v1/twilio") as phone:
        await phone.until(lambda: phone.events("media"), timeout_s=60)
        await phone.until(lambda: phone.echoed and not phone.pending_marks
                          and time.monotonic() - phone.received[-1][0] > 3.0, timeout_s=60)
    heard = recognizer.transcribe(soxr.resample(ulaw_decode(bytes(phone.reply)).astype(np.float32) / 32768,
                                                8000, 16000)).text
    assert wer(f"{NOTICE} {GREETING}", heard) <= 0.3, heard
    print(f"\nphone greeting heard as {heard!r}")


async def test_zero_hands_the_caller_to_a_person(pickup, stack):
    async with ScriptedCaller(f"{pickup}/v1/stream") as caller:
        await caller.until(lambda e: e["type"] == "turn_end" and e["turn_id"].startswith("greeting-"))
        await keys(caller, "0")  # no '#': entered after VOXBUS_DTMF_TIMEOUT_S
        pressed = await caller.until(lambda e: e["type"] == "transcript" and e["source"] == "dtmf")
        told = await caller.until(lambda e: e["type"] == "reply_text" and e["turn_id"] == pressed["turn_id"]
                                  and e["text"], timeout_s=60)
        assert "connecting you with a person" in told["text"], told
        intents = [e["intent"] for _, e in caller.events if e["type"] == "intent"]
        assert intents == ["human_agent"]
        handoff = await read_topic(stack.bootstrap, HANDOFFS.name,
                                   lambda r: isinstance(r, Handoff) and r.session_id == caller.session_id)
        assert handoff.reason == "requested"


async def test_digits_and_hash_answer_the_order_number_question(pickup):
    async with ScriptedCaller(f"{pickup}/v1/stream", speak=False) as caller:
        asked = await typed(caller, "Where is my order?")
        assert "order number" in asked["reply_text"], asked
        await keys(caller, "12345678#")
        pressed = await caller.until(lambda e: e["type"] == "transcript" and e["source"] == "dtmf")
        assert pressed["text"] == "12345678"
        answer = await caller.until(lambda e: e["type"] == "turn_end" and e["turn_id"] == pressed["turn_id"],
                                    timeout_s=60)
        assert "shipped" in answer["reply_text"] and "Pixel 8" in answer["reply_text"], answer


async def archived(stack, session_id: str, timeout_s: float = 90.0) -> list:
    """The session's archived records once its transcript is there (VOXBUS_ARCHIVE_FLUSH_S after the call)."""
    root = archive_root(stack)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reads = list(read_archive(root, ["audio", "utterances", "transcripts", "egress"],
                                  sessions=[session_id]))
        if any(isinstance(r.record, Transcript) for r in reads):
            return [r.record for r in reads]
        await asyncio.sleep(2)
    raise AssertionError(f"session {session_id} not archived within {timeout_s} s")


def assert_no_audio(records: list) -> None:
    assert not [r for r in records if isinstance(r, AudioChunk)], "caller audio archived"
    utterances = [r for r in records if isinstance(r, Utterance)]
    synthesized = [r for r in records if isinstance(r, SynthAudio)]
    assert utterances and synthesized, "the call's records are archived, without their audio"
    assert not any(r.pcm for r in utterances + synthesized)


async def test_record_false_keeps_the_calls_audio_out_of_the_archive(pickup, stack):
    async with ScriptedCaller(f"{pickup}/v1/stream", record=False) as caller:
        await caller.say(QUESTION)
        end = await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"], timeout_s=90)
        assert not [e for _, e in caller.events if e["type"] == "reply_text" and e["text"] == NOTICE]
        web = caller.session_id
    async with Twilio(f"{pickup}/v1/twilio", record="false") as phone:
        await phone.say(QUESTION)
        await phone.until(lambda: phone.events("media") and phone.echoed and not phone.pending_marks
                          and time.monotonic() - phone.received[-1][0] > 5.0, timeout_s=90)
    records = await turn_records(stack.bootstrap, phone.call_sid, 1)
    assert records and records[0].transcript
    for session_id in (web, phone.call_sid):
        assert_no_audio(await archived(stack, session_id))
        with pytest.raises(RecordingRefused):  # no recording from the topics either
            build(await session_reads(stack, session_id, "topics"), session_id)
    # a session that did not refuse is archived with its audio (the same path, the same archive)
    async with ScriptedCaller(f"{pickup}/v1/stream") as caller:
        await caller.say(QUESTION)
        await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"], timeout_s=90)
        kept = caller.session_id
    chunks = [r for r in await archived(stack, kept) if isinstance(r, AudioChunk) and r.pcm]
    assert chunks, "the recorded session's audio is archived"
    assert wer(load_clip(QUESTION)[1], end["transcript"]) <= 0.4, end["transcript"]
