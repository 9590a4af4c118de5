"""Issue 16 holes 6 and 9 on the real stack: with tts or asr down, callers are told and get text replies
at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from tests.integration.caller import ScriptedCaller
from voxbus.supervisor import Supervisor, wait_http

pytestmark = pytest.mark.integration

QUESTION = "sense_and_sensibility_01_austen_64kb-0880"
TYPED = "When is my bill due?"


def stages(health_url: str) -> dict[str, int]:
    """Live workers per stage, as /healthz reports them (it answers 503 while one is missing)."""
    try:
        with urllib.request.urlopen(health_url, timeout=5) as response:
            return json.loads(response.read())["stages"]
    except urllib.error.HTTPError as error:
        return json.loads(error.read())["stages"]


@contextlib.asynccontextmanager
async def stage_down(supervisor: Supervisor, health_url: str, stage: str) -> AsyncIterator[None]:
    """Stop ``stage`` (SIGTERM, unsupervised) for the block; then start it again and wait for health."""
    child = next(c for c in supervisor.children if c.name == stage)
    supervisor.remove_replica(child)
    try:
        deadline = time.monotonic() + 30
        while stages(health_url)[stage]:
            assert time.monotonic() < deadline, f"{stage} still has a live worker"
            await asyncio.sleep(0.5)
        yield
    finally:
        child.start(supervisor.env)
        supervisor.children.append(child)
        assert wait_http(health_url, 240), f"{stage} did not come back"


async def type_and_wait(caller: ScriptedCaller) -> dict:
    """Type :data:`TYPED`; return its ``turn_end``."""
    await caller.ws.send_str(json.dumps({"type": "text", "text": TYPED}))
    return await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"] == TYPED, timeout_s=40)


async def test_with_tts_down_a_call_is_told_and_gets_text_replies(stack, supervisor, url):
    health = f"http://{stack.host}:{stack.port}/healthz"
    assert wait_http(health, 120), "stack not healthy before tts stops"
    async with stage_down(supervisor, health, "tts"), ScriptedCaller(url) as caller:
        told = await caller.until(lambda e: e["type"] == "degraded", timeout_s=15)
        assert told["speaking"] is False and told["hearing"] and told["answering"], told
        typed = await type_and_wait(caller)
        assert typed["reply_text"], typed
        await caller.say(QUESTION)  # a spoken question: answered in text, not held for audio
        spoken = await caller.until(lambda e: e["type"] == "turn_end" and e["transcript"]
                                    and e["turn_id"] != typed["turn_id"], timeout_s=60)
        assert spoken["reply_text"], spoken
        audio = [e for _, e in caller.events if e["type"] == "reply_audio"]
        assert not [e for e in audio if e["turn_id"] == spoken["turn_id"]], audio
        assert not [e for _, e in caller.events if e["type"] == "error"]


async def test_with_asr_down_a_call_is_told_to_type_and_typed_turns_are_answered(stack, supervisor, url):
    health = f"http://{stack.host}:{stack.port}/healthz"
    assert wait_http(health, 120), "stack not healthy before asr stops"
    async with stage_down(supervisor, health, "asr"), ScriptedCaller(url) as caller:
        told = await caller.until(lambda e: e["type"] == "degraded", timeout_s=15)
        assert told["hearing"] is False and "please type" in told["message"], told
        typed = await type_and_wait(caller)
        assert typed["reply_text"], typed
        assert not [e for _, e in caller.events if e["type"] == "error"]
