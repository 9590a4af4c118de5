"""Issue 16 hole 4 on the real stack: a reconnection on a replica whose clock is behind is heard."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from ingress.server import make_app
from streams.settings import Settings
from tests.integration.caller import ScriptedCaller
from voxbus.client import connect

pytestmark = pytest.mark.integration

QUESTION = "sense_and_sensibility_01_austen_64kb-0880"
BEHIND_S = 120.0
"""How far behind the second replica's clock is (s)."""


async def test_a_reconnection_on_a_replica_whose_clock_is_behind_is_answered(stack, url, monkeypatch):
    other = TestServer(make_app(Settings(ingress_slot=1)), host="127.0.0.1")  # a second ingress replica
    await other.start_server()
    try:
        async with ScriptedCaller(url) as caller:  # the stack's ingress: the vad stage holds the session
            await caller.speak(np.zeros(16000, dtype=np.int16))  # a second of silence
            # the caller's line drops without the first ingress noticing (a half-open socket): it
            # reconnects to the other replica, whose clock is behind
            real = time.time
            monkeypatch.setattr(time, "time", lambda: real() - BEHIND_S)
            resumed = ScriptedCaller(f"ws://127.0.0.1:{other.port}/v1/stream")
            resumed.http = aiohttp.ClientSession()
            try:
                resumed.ws, ready = await connect(resumed.http, resumed.url,
                                                  {"sample_rate": 16000, "session_id": caller.session_id},
                                                  retry_for_s=20)
                assert ready["session_id"] == caller.session_id
                resumed.session_id = caller.session_id
                resumed.reader = asyncio.create_task(resumed._read())
                await resumed.say(QUESTION)
                end = await resumed.until(lambda e: e["type"] == "turn_end" and e["transcript"], timeout_s=60)
                assert end["reply_text"], end
            finally:
                await resumed.__aexit__(None, None, None)
    finally:
        await other.close()
