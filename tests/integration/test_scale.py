"""A replica of the asr stage joins during one call and leaves (SIGTERM) during another: no turn is lost.

Every membership change rebalances all of the input partitions of ``voxbus-asr`` (the
consumers revoke and are reassigned), so the session's partition is paused by it
whichever replica owns it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from tests.integration.caller import ScriptedCaller
from voxbus.supervisor import wait_http

pytestmark = pytest.mark.integration

STAGE = "asr"
CLIPS = ["sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"]
"""Two 3 s questions, spoken in turn."""
MAX_TURNS = 5
"""Turns the first call may take while the new replica loads and joins."""


def live_instances(stack, stage: str) -> int:
    """Workers of ``stage`` that the ingress sees consuming (``/healthz``: heartbeats with partitions)."""
    try:
        with urllib.request.urlopen(f"http://{stack.host}:{stack.port}/healthz", timeout=2) as response:
            return int(json.load(response)["stages"][stage])
    except urllib.error.HTTPError as error:  # 503 while a stage is down: the body is the same JSON
        return int(json.load(error)["stages"][stage])


async def joined(stack, stage: str, count: int) -> float:
    """Wait until ``count`` workers of ``stage`` consume; return when that was seen (monotonic)."""
    while await asyncio.to_thread(live_instances, stack, stage) < count:
        await asyncio.sleep(0.5)
    return time.monotonic()


async def speak_turn(caller: ScriptedCaller, clip: str) -> str:
    """Say ``clip`` and wait for its ``turn_end``; return the turn id."""
    done = {e.get("turn_id") for _, e in caller.events if e["type"] == "turn_end"}
    await caller.say(clip)
    end = await caller.until(lambda e: e["type"] == "turn_end" and e["turn_id"] not in done, timeout_s=60)
    return end["turn_id"]


def assert_each_turn_answered_once(caller: ScriptedCaller) -> None:
    """Every utterance of the call ends in exactly one turn with a reply, with no sentence twice."""
    events = [e for _, e in caller.events]
    utterances = [e["turn_id"] for e in events if e["type"] == "speech_ended"]
    ends = [e for e in events if e["type"] == "turn_end"]
    assert sorted(e["turn_id"] for e in ends) == sorted(utterances), (utterances, ends)
    for end in ends:
        assert end["transcript"] and end["reply_text"], end
        sentences = [(e["index"], e["text"]) for e in events
                     if e["type"] == "reply_text" and e["turn_id"] == end["turn_id"]]
        assert sentences and len(sentences) == len(set(sentences)), f"duplicate reply sentences: {sentences}"
    assert not [e for e in events if e["type"] == "error"]


async def test_replica_joins_and_leaves_mid_call_without_losing_a_turn(stack, supervisor, url):
    assert wait_http(f"http://{stack.host}:{stack.port}/healthz", 120), "stack not healthy before the test"
    assert live_instances(stack, STAGE) == 1
    replica = None
    try:
        async with ScriptedCaller(url) as caller:
            replica = supervisor.add_replica(STAGE)
            spawned = time.monotonic()
            join = asyncio.create_task(joined(stack, STAGE, 2))
            turns = 0
            while not join.done() and turns < MAX_TURNS:  # the last turn ends after the join
                await speak_turn(caller, CLIPS[turns % len(CLIPS)])
                turns += 1
            if not join.done():
                join.cancel()
                pytest.fail(f"the second {STAGE} replica did not join; see {replica.log_path}")
            assert_each_turn_answered_once(caller)
            print(f"\n{STAGE} replica consuming {join.result() - spawned:.1f} s after it started, before "
                  f"the end of turn {turns} of the call; every turn answered once")

        async with ScriptedCaller(url) as caller:
            async def stop_when_asr_holds_the_turn() -> int | None:
                while not any(e["type"] == "speech_ended" for _, e in caller.events):
                    await asyncio.sleep(0.005)
                return await asyncio.to_thread(supervisor.remove_replica, replica)

            stopping = asyncio.create_task(stop_when_asr_holds_the_turn())
            for clip in CLIPS:
                await speak_turn(caller, clip)
            code = await stopping
            print(f"{STAGE} replica stopped (SIGTERM) while the caller's first turn was at asr; "
                  f"{len(CLIPS)} turns answered once")
            assert code == 0, f"SIGTERM: the replica exited with {code}; see {replica.log_path}"
            assert_each_turn_answered_once(caller)
    finally:
        if replica is not None:
            supervisor.remove_replica(replica)
    assert wait_http(f"http://{stack.host}:{stack.port}/healthz", 60)
