"""Agent assist on the real stack: a held session's caller turn gets passages, sources and a suggestion.

The caller types on the stack's ingress, the real pipeline hands the session off (intent, generation,
workflow), an agent takes it on the console page in headless Chromium, and the caller's next turn
goes through intent and retrieval to the suggest worker `voxbus up` runs (the generation code on the
embedded SmolLM2 server), whose suggestion the page shows; *Speak* and *Send* say it to the caller.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from playwright.async_api import async_playwright

from schemas import Suggestion
from streams.topics import SUGGESTIONS
from tests.integration.caller import ScriptedCaller
from tests.integration.test_browser import console_page
from tests.integration.test_pipeline import read_topic
from tests.integration.test_workflow import typed

pytestmark = pytest.mark.integration

QUESTION = "When is my bill due?"


async def listed(http: aiohttp.ClientSession, api: str, session_id: str, status: str) -> dict:
    """The session as the stack's console API lists it, once it has ``status`` (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        async with http.get(f"{api}/sessions") as response:
            found = {s["session_id"]: s for s in (await response.json())["sessions"]}.get(session_id)
        if found is not None and found["status"] == status:
            return found
        assert time.monotonic() < deadline, (session_id, status, found)
        await asyncio.sleep(0.3)


def agent_said(event: dict) -> bool:
    """An agent's words reached the caller's page."""
    return event["type"] == "reply_text" and event["turn_id"].startswith("agent-")


async def test_a_held_sessions_turn_gets_passages_sources_and_a_suggestion(stack, url):
    api = f"http://{stack.host}:{stack.port}/v1/agent"
    async with ScriptedCaller(url) as caller, aiohttp.ClientSession() as http, async_playwright() as pw:
        told = await typed(caller, "I want to talk to a person.")
        assert "connecting you with a person" in told["reply_text"], told
        await listed(http, api, caller.session_id, "waiting")
        async with console_page(pw, f"http://{stack.host}:{stack.port}/agent") as (page, errors):
            await page.click(f'li[data-session="{caller.session_id}"]', timeout=10_000)
            await page.fill("#agent", "sam")
            await page.click("#take")
            await listed(http, api, caller.session_id, "taken")
            # the claim (voxbus.agent-queue) and the turn (voxbus.retrievals) reach the suggest worker on two
            # topics: give the claim, written first, a moment to be read before the caller speaks again
            await asyncio.sleep(2.0)
            quiet = await typed(caller, QUESTION)
            assert quiet["reply_text"] == ""  # the bot is silent while an agent holds the call
            intents = [e["intent"] for _, e in caller.events if e["type"] == "intent" and e["turn_id"] ==
                       quiet["turn_id"]]
            assert intents == ["billing"]  # intent (and retrieval) still run on the held session's turns

            record = await read_topic(stack.bootstrap, SUGGESTIONS.name, lambda r: isinstance(r, Suggestion)
                                      and r.session_id == caller.session_id, timeout_s=60)
            assert record.turn_id == quiet["turn_id"] and record.caller_text == QUESTION
            assert record.text and not record.error
            assert "billing.md" in [p.source for p in record.passages]
            assert set(record.sources) <= {p.source for p in record.passages}
            async with http.get(f"{api}/sessions/{caller.session_id}/suggestions") as response:
                [shown] = (await response.json())["suggestions"]
            assert (shown["turn_id"], shown["text"]) == (record.turn_id, record.text)
            assert shown["passages"][0]["source"] == record.passages[0].source

            box = page.locator(f'.suggestion[data-turn="{record.turn_id}"]')
            await box.wait_for(timeout=10_000)
            assert "billing.md" in await box.inner_text()
            await box.locator("button.speak").click()
            said = await caller.until(agent_said, timeout_s=15)
            assert said["text"] == record.text
            await box.locator("button.send").click()
            again = await caller.until(lambda e: agent_said(e) and e["turn_id"] != said["turn_id"], 15)
            assert again["text"] == record.text
            assert not errors, errors
        release = f"{api}/sessions/{caller.session_id}/release"
        async with http.post(release, json={"agent": "sam"}) as response:
            assert response.status == 200
