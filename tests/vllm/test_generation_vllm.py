"""The generation stage against vLLM's OpenAI API instead of the embedded llama.cpp server.

Opt-in (``VOXBUS_TEST_VLLM=1 make test-vllm``): vLLM on CPU serves the same
SmolLM2-135M, and a real ``voxbus worker generation`` on the embedded broker is pointed
at it with ``VOXBUS_LLM_URL`` / ``VOXBUS_LLM_MODEL``, as production points it at a GPU
vLLM Deployment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

from schemas import Passage, ReplyText, RetrievalResult, encode

PASSAGE = Passage(text="Our stores are open from 9 am to 8 pm, Monday to Saturday, and closed on Sunday.",
                  source="store_hours.md", title="Store hours", score=0.5)
"""Relevant (>= 0.35) but below the direct-answer score (0.6): the reply must come from the LLM."""

PRIVATE_ENV = {"VOXBUS_EMBEDDED_LISTEN": "127.0.0.1:19792", "VOXBUS_METRICS_BASE_PORT": "19800"}
"""Ports of their own, clear of the integration stack's."""


async def test_vllm_streams_a_chat_completion(vllm):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=vllm.url, api_key="not-needed")
    assert vllm.model in [m.id async for m in client.models.list()]
    stream = await client.chat.completions.create(
        model=vllm.model, stream=True, max_tokens=32, temperature=0.2,
        messages=[{"role": "user", "content": "Say hello to a customer in one sentence."}])
    deltas = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    text = "".join(d for d in deltas if d)
    assert len([d for d in deltas if d]) > 1, "tokens are streamed, not returned at once"
    assert text.strip(), deltas
    print(f"\nvLLM: {text!r}")


async def test_generation_worker_answers_through_vllm(vllm):
    from aiokafka import AIOKafkaProducer

    from processors.generation.stage import APOLOGY
    from streams.admin import ensure_topics
    from streams.broker import start_embedded_broker, stop_process
    from streams.settings import get_settings
    from streams.topics import REPLIES, RETRIEVALS
    from tests.integration.test_pipeline import read_topic
    from voxbus.supervisor import Supervisor

    data_dir = tempfile.mkdtemp(prefix="voxbus-vllm-")
    saved = dict(os.environ)
    os.environ.update({**PRIVATE_ENV, "VOXBUS_DATA_DIR": data_dir, "VOXBUS_LLM_URL": vllm.url,
                       "VOXBUS_LLM_MODEL": vllm.model, "VOXBUS_LLM_TIMEOUT_S": "60"})
    get_settings.cache_clear()
    settings = get_settings()
    supervisor = Supervisor(settings)
    broker = start_embedded_broker(settings.bootstrap, str(supervisor.logs / "broker.log"))
    try:
        await ensure_topics(settings)
        worker = supervisor.add_replica("generation")
        turn = RetrievalResult(session_id=f"vllm-{uuid.uuid4().hex[:8]}", turn_id="a0",
                               text="what time do your stores open on saturday", intent="store_hours",
                               confidence=0.9, sentiment="neutral", sentiment_score=0.0, passages=[PASSAGE])
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
        await producer.start()
        await producer.send_and_wait(RETRIEVALS.name, encode(turn), key=turn.session_id.encode())
        await producer.stop()
        final = await read_topic(settings.bootstrap, REPLIES.name, timeout_s=180, match=lambda r: (
            isinstance(r, ReplyText) and r.turn_id == turn.turn_id and r.final))
        first = await read_topic(settings.bootstrap, REPLIES.name, match=lambda r: (
            isinstance(r, ReplyText) and r.turn_id == turn.turn_id and r.index == 0))
        marks, text = final.marks, first.text
        assert "generation.error" not in marks, f"the LLM call failed; see {worker.log_path}"
        assert "generation.first_token" in marks and text and APOLOGY not in text
        ttft = marks["generation.first_token"] - marks["generation.start"]
        draft = "replaced by the article (ungrounded)" if "generation.ungrounded" in marks else "kept"
        print(f"\ngeneration via vLLM: {text!r}; LLM draft {draft}; time to first token {ttft * 1000:.0f} ms")
    finally:
        supervisor.stop()
        stop_process(broker)
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()
        shutil.rmtree(data_dir, ignore_errors=True)
