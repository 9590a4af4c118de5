"""A voice call that asked for text replies only (``"speak": false``) is answered, never synthesized."""

from __future__ import annotations

import pytest

from voxbus.client import call

pytestmark = pytest.mark.integration

QUESTION = "sense_and_sensibility_01_austen_64kb-0880"


async def test_a_voice_call_for_text_replies_gets_text_and_no_audio(stack, url):
    turns = await call(url, f"tests/data/{QUESTION}.wav", speak=False)
    assert turns, "the question was answered"
    assert all(t.transcript and t.reply_text and not t.errors for t in turns), turns
    assert [len(t.reply_audio) for t in turns] == [0] * len(turns), "no reply was synthesized"
