"""Tools and hand-off through the real stack: a booking over several typed turns, and a
spoken request for a person answered by an agent from the console page (headless Chromium)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request

import aiohttp
import numpy as np
import pytest
from playwright.async_api import async_playwright

from processors.runtime import STAGES
from schemas import Booking, Handoff
from streams.topics import BOOKINGS, HANDOFFS
from tests.integration.caller import ScriptedCaller, piper_speech
from tests.integration.test_browser import console_page
from tests.integration.test_pipeline import read_topic

pytestmark = pytest.mark.integration


async def typed(caller: ScriptedCaller, text: str) -> dict:
    """Type one turn on the caller's socket and return its ``turn_end``."""
    seen = len(caller.events)
    await caller.ws.send_str(json.dumps({"type": "text", "text": text}))
    return await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"] == text
                              and any(x is e for _, x in caller.events[seen:]), timeout_s=30)


def metrics_of(stack, stage: str) -> str:
    port = stack.metrics_base_port + list(STAGES).index(stage)
    return urllib.request.urlopen(f"http://{stack.host}:{port}/metrics", timeout=5).read().decode()


async def answer_from_the_console(page_url: str, session_id: str, agent: str, text: str) -> None:
    """In headless Chromium: open the console, pick the session, take it, type ``text`` and send it."""
    async with async_playwright() as pw, console_page(pw, page_url) as (page, errors):
        await page.click(f'li[data-session="{session_id}"]', timeout=10_000)
        await page.fill("#agent", agent)
        await page.click("#take")
        await page.fill("#text", text, timeout=10_000)  # enabled once the session is ours
        await page.click("#send")
        await page.wait_for_selector(f".line.agent:has-text('{text[:20]}')", timeout=10_000)
        assert "waiting" not in await page.inner_text(f'li[data-session="{session_id}"]')
        assert not errors, errors


async def test_a_booking_over_three_typed_turns(stack, url):
    async with ScriptedCaller(url) as caller:
        first = await typed(caller, "I'd like to book an appointment.")
        assert first["intent"] == "book_appointment" and "Which service" in first["reply_text"], first
        second = await typed(caller, "A screen repair on Tuesday at 3 pm.")
        assert second["reply_text"] == "And what name should I put the booking under?", second
        third = await typed(caller, "My name is Alice.")
        assert third["reply_text"].startswith("Booked: screen repair on Tuesday at 3 PM for Alice. "
                                              "Your confirmation number is HM-"), third
    db = sqlite3.connect(stack.data_dir / "workflow.sqlite")
    rows = db.execute("SELECT name, service, day, time, confirmation FROM bookings WHERE session_id=?",
                      (caller.session_id,)).fetchall()
    assert [row[:4] for row in rows] == [("Alice", "screen repair", "Tuesday", "3 PM")]
    assert rows[0][4] in third["reply_text"]
    booking = await read_topic(stack.bootstrap, BOOKINGS.name,
                               lambda r: isinstance(r, Booking) and r.session_id == caller.session_id)
    assert (booking.name, booking.confirmation) == ("Alice", rows[0][4])
    assert 'voxbus_tool_calls_total{status="done",tool="book_appointment"}' in metrics_of(stack, "workflow")


async def test_a_spoken_request_for_a_person_is_handed_to_an_agent(stack, url):
    speech = piper_speech(stack, "I want to talk to a person.")
    samples = np.concatenate([speech, np.zeros(8000, dtype=np.int16)])
    api = f"http://{stack.host}:{stack.port}/v1/agent/sessions"
    async with ScriptedCaller(url) as caller, aiohttp.ClientSession() as http:
        await caller.speak(samples)
        # not waiting for turn_end, which follows the playback of the reply (seconds of audio)
        # the answer to the caller's turn: the queue's notices (turns hold-*, queue-*) may come first
        told = await caller.until(lambda e: e["type"] == "reply_text" and e["text"]
                                  and not e["turn_id"].startswith(("hold-", "queue-")), timeout_s=60)
        assert "connecting you with a person" in told["text"], told
        turn = told["turn_id"]
        intents = [e["intent"] for _, e in caller.events if e["type"] == "intent" and e["turn_id"] == turn]
        assert intents == ["human_agent"], caller.events
        await caller.until(lambda e: e["type"] == "reply_audio" and e["turn_id"] == turn and e["bytes"])
        handoff = await read_topic(stack.bootstrap, HANDOFFS.name,
                                   lambda r: isinstance(r, Handoff) and r.session_id == caller.session_id)
        assert handoff.reason == "requested" and handoff.speak and "human_agent" in handoff.summary

        # the bot no longer answers; the turn reaches the agent's transcript
        quiet = await typed(caller, "Hello? Is anyone there?")
        assert quiet["reply_text"] == ""

        async with http.get(api) as response:
            listed = {s["session_id"]: s for s in (await response.json())["sessions"]}
        mine = listed[caller.session_id]
        assert mine["waiting"] and mine["reason"] == "requested"
        assert [line["text"] for line in mine["lines"]][-1] == "Hello? Is anyone there?"
        async with http.post(f"{api}/{caller.session_id}/reply", json={"text": "too early"}) as response:
            assert response.status == 409  # not taken yet
        text = "Hi, this is Sam from Harbor Mobile. How can I help you?"
        console = f"http://{stack.host}:{stack.port}/agent"
        await answer_from_the_console(console, caller.session_id, "sam", text)
        said = await caller.until(lambda e: e["type"] == "reply_text" and e["turn_id"].startswith("agent-"))
        assert said["text"] == text
        agent_turn = said["turn_id"]
        audio = await caller.until(lambda e: e["type"] == "reply_audio" and e["turn_id"] == agent_turn, 30)
        assert audio["bytes"] >= audio["sample_rate"]  # the first chunk: half a second of speech
        async with http.get(api) as response:
            listed = {s["session_id"]: s for s in (await response.json())["sessions"]}
        assert listed[caller.session_id]["agent"] == "sam"
        assert listed[caller.session_id]["lines"][-1] == {**listed[caller.session_id]["lines"][-1],
                                                          "role": "agent", "text": text}
    assert 'voxbus_handoffs_total{reason="requested"}' in metrics_of(stack, "workflow")


async def test_an_angry_turn_is_handed_off(stack, url):
    # two unanswered turns in a row: tests/processors/test_workflow.py (here each would cost an LLM call)
    async with ScriptedCaller(url) as angry:
        told = await typed(angry, "This is terrible, I hate this useless awful service!")
        assert "connecting you with a person" in told["reply_text"], told
    handoff = await read_topic(stack.bootstrap, HANDOFFS.name,
                               lambda r: isinstance(r, Handoff) and r.session_id == angry.session_id)
    assert handoff.reason == "negative_sentiment" and handoff.sentiment_score <= -0.5
