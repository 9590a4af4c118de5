"""benchmarks/understanding.py: the Pipecat bot gets voxbus's prompt and reply policy (real models)."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from benchmarks.understanding import build_app

pytestmark = pytest.mark.asyncio(loop_scope="session")  # one app, served on the session's loop


@pytest.fixture(scope="module")
async def app(settings):
    async with TestClient(TestServer(build_app(settings))) as client:  # the models load once
        yield client


async def post(client: TestClient, path: str, body: dict) -> dict:
    response = await client.post(path, json=body)
    assert response.status == 200
    return await response.json()


async def test_llm_turn_gets_voxbus_prompt_and_facts(app):
    turn = await post(app, "/prompt", {"text": "Why is my late fee so high?"})
    assert turn["fixed"] is None  # the LLM answers, from the facts in the system prompt
    assert turn["facts"] and turn["passages"] == len(turn["facts"])
    assert all(fact["text"] in turn["system"] for fact in turn["facts"])
    assert turn["fallback"].startswith("Sorry")


async def test_canned_turn_is_fixed(app):
    turn = await post(app, "/prompt", {"text": "Goodbye, thanks for your help!"})
    assert turn["fixed"]  # voxbus says its canned goodbye without the LLM, and so does the bot


async def test_grounded_checks_numbers_against_the_facts(app):
    facts = (await post(app, "/prompt", {"text": "How much is the late fee?"}))["facts"]
    check = {"facts": [next(f for f in facts if "7" in f["text"])]}
    said = await post(app, "/grounded", {**check, "sentence": "The late fee is 7 dollars."})
    assert said == {"ungrounded": False}
    invented = await post(app, "/grounded", {**check, "sentence": "The late fee is 42 dollars."})
    assert invented == {"ungrounded": True}


async def test_knowledge_base_prompt_is_the_generation_stages(settings, tmp_path):
    """With ``VOXBUS_LLM_PROMPT=knowledge-base`` the bot's system message is voxbus's fixed one."""
    kb_settings = settings.model_copy(update={"llm_prompt": "knowledge-base", "data_dir": tmp_path})
    async with TestClient(TestServer(build_app(kb_settings))) as client:
        fee = await post(client, "/prompt", {"text": "Why is my late fee so high?"})
        roaming = await post(client, "/prompt", {"text": "Does my plan work abroad?"})
    assert fee["system"] == roaming["system"]  # one prefix for every turn: the LLM server caches it
    assert all(fact["text"] in fee["system"] for fact in fee["facts"] + roaming["facts"])
