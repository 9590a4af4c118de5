"""Continuations on the whole pipeline: a caller who pauses mid-thought and goes on gets one answer."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from tests.conftest import load_clip, wer
from tests.integration.caller import ScriptedCaller

pytestmark = pytest.mark.integration

FIRST = "sense_and_sensibility_01_austen_64kb-0880"  # "he was not an ill disposed young man"
SECOND = "sense_and_sensibility_01_austen_64kb-0890"  # "unless to be rather cold hearted and ..."


async def test_a_thought_spoken_in_two_pieces_gets_one_answer(url):
    first, first_text = load_clip(FIRST)
    second, second_text = load_clip(SECOND)
    pause = np.zeros(1600, dtype=np.float32)  # 0.1 s, plus the clips' own ~0.45 s: a 0.55 s pause in speech
    audio = (np.concatenate([first, pause, second]) * 32767).astype(np.int16)
    async with ScriptedCaller(url) as caller:
        await caller.speak(audio)
        answer = await caller.until(lambda e: e["type"] == "turn_end" and e["reply_text"])
        with contextlib.suppress(TimeoutError):  # anything more would come within a few seconds
            await caller.until(lambda e: False, timeout_s=3.0)
    ends = [e for _, e in caller.events if e["type"] == "turn_end"]
    assert [e["turn_id"] for e in ends if e["reply_text"]] == [answer["turn_id"]], ends
    assert wer(f"{first_text} {second_text}", answer["transcript"]) <= 0.25, answer["transcript"]
    played = {e["turn_id"] for _, e in caller.events if e["type"] == "reply_audio" and e["bytes"]}
    assert played <= {answer["turn_id"]}, "only the answer to the whole thought is heard"
    continued = [e["turn_id"] for e in ends if e["turn_id"] != answer["turn_id"]]
    print(f"\ncontinuation: {len(continued)} earlier piece(s) folded into {answer['turn_id']}: "
          f"{answer['transcript']!r}")

