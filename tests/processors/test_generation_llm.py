"""The generation stage's LLM path against a scripted OpenAI-protocol server.

The server is an aiohttp app in the test that answers ``POST /v1/chat/completions`` with
``stream: true`` as a real one does: server-sent events of ``chat.completion.chunk``
objects, one ``data:`` line per token, then ``data: [DONE]``.  Each test scripts the
tokens and where the server waits, so streaming, cancellation, the sentence cap and the
apology are checked against the stage's own OpenAI client, over HTTP.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer

from processors.generation.prefixes import RETRY_S, WARM_UP_TEXT, warm_prefixes
from processors.generation.prompt import build_messages
from processors.generation.stage import APOLOGY, MAX_SENTENCES, GenerationStage
from processors.retrieval.kb import knowledge_base
from schemas import Passage, ReplyText, RetrievalResult, TurnCancel
from streams.settings import Settings
from streams.topics import EGRESS, REPLIES

FACTS = Passage(text="Your bill is due on the 15th of each month. A late fee of 7 dollars applies after it.",
                source="billing.md", title="Billing", score=0.5)  # relevant, not enough to read it out
FIRST = "Your bill is due on the 15th of each month."
SECOND = "Pay by then to avoid the 7 dollar fee."


class ScriptedLLM:
    """``/v1/chat/completions``, streaming :attr:`tokens` as SSE chunks.

    Attributes:
        tokens: the content deltas to stream, in order.
        hold_at: before sending this token index, wait for :attr:`release` (None: never).
        delay_s: pause between two tokens (s), as a model generates them.
        status: an HTTP status other than 200 answers with an OpenAI error body instead.
        requests: the JSON bodies received.
        sent: tokens written so far.
        disconnected: set once the client has closed the stream before its end.
    """

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.hold_at: int | None = None
        self.delay_s = 0.0
        self.status = 200
        self.release = asyncio.Event()
        self.requests: list[dict[str, Any]] = []
        self.sent = 0
        self.disconnected = asyncio.Event()

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """Answer one chat completion request from the script."""
        body = await request.json()
        self.requests.append(body)
        if self.status != 200:
            return web.json_response({"error": {"message": "the model crashed", "type": "server_error"}},
                                     status=self.status)
        sse = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=sse)
        await response.prepare(request)
        completed = False
        try:
            await self.chunk(response, body, {"role": "assistant", "content": ""})
            for index, token in enumerate(self.tokens):
                if index == self.hold_at:
                    await self.hold(request)
                await asyncio.sleep(self.delay_s)
                await self.chunk(response, body, {"content": token})
                self.sent += 1
            await self.chunk(response, body, {}, finish_reason="stop")
            await response.write(b"data: [DONE]\n\n")
            completed = True
        except ConnectionResetError:
            pass  # the client hung up: noticed on a write or while holding
        finally:  # also when aiohttp cancels the handler of a client that hung up
            if not completed:
                self.disconnected.set()
        return response

    async def hold(self, request: web.Request) -> None:
        """Wait for :attr:`release`; a client that hangs up meanwhile is noticed within 10 ms."""
        while not self.release.is_set():
            if request.transport is None or request.transport.is_closing():
                raise ConnectionResetError("the client closed the stream")
            await asyncio.sleep(0.01)

    @staticmethod
    async def chunk(response: web.StreamResponse, body: dict[str, Any], delta: dict[str, str],
                    finish_reason: str | None = None) -> None:
        """Write one ``chat.completion.chunk`` event."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        event = {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 1_700_000_000,
                 "model": body["model"], "choices": [choice]}
        await response.write(f"data: {json.dumps(event)}\n\n".encode())


@pytest_asyncio.fixture(loop_scope="function")
async def llm() -> AsyncIterator[tuple[ScriptedLLM, str]]:
    """A scripted server on a free port, and its base URL (``…/v1``)."""
    script = ScriptedLLM()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", script.completions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield script, str(server.make_url("/v1"))
    script.release.set()
    await server.close()


def stage_for(url: str, tmp_path, **settings: Any) -> GenerationStage:
    """A generation stage whose client talks to ``url``, with an in-memory history table."""
    stage = GenerationStage(Settings(data_dir=tmp_path, llm_url=url, **settings))
    stage.load()
    stage.history = collections.defaultdict(list)  # the faust Table's interface
    return stage


def turn(turn_id: str = "t1") -> RetrievalResult:
    return RetrievalResult(session_id="s1", turn_id=turn_id, text="when is my bill due?", intent="billing",
                           confidence=0.9, sentiment="neutral", sentiment_score=0.0, passages=[FACTS])


def words(text: str) -> list[str]:
    """Tokens as a server streams them: a word (with its leading space) at a time."""
    first, *rest = text.split(" ")
    return [first, *(f" {w}" for w in rest)]


def replies(emits: list) -> list[tuple[int, str, bool]]:
    """``(index, text, final)`` of the ReplyTexts sent to the caller."""
    return [(e.record.index, e.record.text, e.record.final) for e in emits if e.topic is EGRESS]


async def test_sentences_stream_to_the_caller_while_the_llm_is_still_generating(llm, tmp_path):
    script, url = llm
    script.tokens = words(f"{FIRST} {SECOND}")
    script.hold_at = script.tokens.index(" Pay") + 1  # the first sentence is complete once "Pay" begins
    stage = stage_for(url, tmp_path)
    handle = stage.handle(turn())
    first = [await anext(handle), await anext(handle)]
    assert script.sent < len(script.tokens), "the first sentence came before the end of the generation"
    assert [e.topic for e in first] == [REPLIES, EGRESS]
    assert replies(first) == [(0, FIRST, False)]
    script.release.set()
    rest = [e async for e in handle]
    assert replies(rest) == [(1, SECOND, False), (2, "", True)]
    assert all(isinstance(e.record, ReplyText) and e.record.speak for e in first + rest)
    [request] = script.requests
    assert request["stream"] is True and request["max_tokens"] == stage.settings.llm_max_tokens
    assert request["messages"][0]["role"] == "system" and "15th" in request["messages"][0]["content"]
    assert request["messages"][-1] == {"role": "user", "content": "when is my bill due?"}
    [entry] = stage.history["s1"]
    assert entry["assistant"] == f"{FIRST} {SECOND}"


LONG = (f"{FIRST} Pay it online, in the app, by phone or in any store, and remember that paying early "
        "never costs more than paying on the last day of the month.")


async def barge_in_after_the_first_sentence(script: ScriptedLLM, url: str, 
                                            tmp_path) -> tuple[list, list, Any]:
    """Stream :data:`LONG`, barging in once its first sentence is out.

    Returns:
        (the first sentence's emits, the emits after the barge-in, the stage).
    """
    script.tokens = words(LONG)
    script.hold_at = script.tokens.index(" Pay") + 1
    script.delay_s = 0.02
    stage = stage_for(url, tmp_path)
    handle = stage.handle(turn())
    first = [await anext(handle), await anext(handle)]
    await stage.on_cancel(TurnCancel(session_id="s1", turn_id="t1", reason="barge_in",
                                     heard_text="Your bill is due", heard_ms=900.0, ts=1.0))
    script.release.set()
    return first, [e async for e in handle], stage


async def test_a_barge_in_mid_stream_stops_the_reply(llm, tmp_path):
    first, rest, stage = await barge_in_after_the_first_sentence(*llm, tmp_path)
    assert replies(first) == [(0, FIRST, False)]
    assert rest == [], "nothing after the barge-in, not even the final marker"
    assert stage.history["s1"][-1]["assistant"] == "Your bill is due", "the history keeps what was heard"


async def test_a_barge_in_mid_stream_hangs_up_on_the_llm_within_a_few_tokens(llm, tmp_path):
    script, url = llm
    await barge_in_after_the_first_sentence(script, url, tmp_path)
    await asyncio.wait_for(script.disconnected.wait(), 1.0)
    assert script.sent <= script.hold_at + 3, "the class docstring: stops streaming at the next token"


async def test_a_long_answer_is_cut_at_the_sentence_cap(llm, tmp_path):
    script, url = llm
    sentences = [f"This is the {n} sentence of the answer." for n in ("first", "second", "third", "fourth")]
    script.tokens = words(" ".join(sentences))
    script.delay_s = 0.01
    stage = stage_for(url, tmp_path)
    emits = [e async for e in stage.handle(turn())]
    said = [(i, text) for i, text, final in replies(emits) if text]
    assert said == list(enumerate(sentences[:MAX_SENTENCES]))
    assert replies(emits)[-1] == (MAX_SENTENCES, "", True)
    assert stage.history["s1"][-1]["assistant"] == " ".join(sentences[:MAX_SENTENCES])
    await asyncio.wait_for(script.disconnected.wait(), 1.0)  # the rest is not generated for nothing
    assert script.sent < len(script.tokens)


@pytest.mark.parametrize("status", [500, 503])
async def test_an_llm_error_is_answered_with_a_spoken_apology(llm, tmp_path, status):
    script, url = llm
    script.status = status
    emits = [e async for e in stage_for(url, tmp_path).handle(turn())]
    assert replies(emits) == [(0, APOLOGY, True)]
    assert all(e.record.speak and "generation.error" in e.record.marks for e in emits)
    assert len(script.requests) == 1, "no retry: the caller is waiting"


@pytest.mark.parametrize(("stall_at", "expected"), [
    ("Your", [(0, APOLOGY, True)]),
    (" by", [(0, FIRST, False), (1, APOLOGY, True)]),  # what was said stands; the apology ends it
], ids=["before-the-first-token", "after-a-sentence"])
async def test_an_llm_that_stalls_past_the_timeout_ends_with_an_apology(llm, tmp_path, stall_at, expected):
    script, url = llm
    script.tokens = words(f"{FIRST} {SECOND}")
    script.hold_at = script.tokens.index(stall_at)
    emits = [e async for e in stage_for(url, tmp_path, llm_timeout_s=0.5).handle(turn())]
    assert replies(emits) == expected


async def test_an_llm_server_that_is_not_there_is_answered_with_an_apology(tmp_path):
    emits = [e async for e in stage_for("http://127.0.0.1:9/v1", tmp_path, llm_timeout_s=2).handle(turn())]
    assert replies(emits) == [(0, APOLOGY, True)]


def sources(emits: list) -> list[list[str]]:
    """The ``sources`` of each ReplyText sent to the caller."""
    return [e.record.sources for e in emits if e.topic is EGRESS]


async def test_an_off_topic_turn_gets_the_redirect_without_the_llm(llm, tmp_path):
    script, url = llm
    stage = stage_for(url, tmp_path, redirect_text="I can help with your account. What do you need?")
    stray = turn().model_copy(update={"text": "front, left", "intent": "other", "confidence": 0.37,
                                      "passages": [FACTS.model_copy(update={"score": 0.12})]})
    emits = [e async for e in stage.handle(stray)]
    assert replies(emits) == [(0, "I can help with your account.", False), (1, "What do you need?", False),
                              (2, "", True)]
    assert script.requests == [], "no LLM prose for an off-topic turn"
    assert all(e.record.speak for e in emits), "the redirect is spoken like any reply"
    assert sources(emits) == [[], [], []]
    assert "generation.redirect" in emits[0].record.marks
    assert "generation.unanswered" not in emits[-1].record.marks, "a redirect is not a miss"


async def test_a_reply_grounded_on_passages_carries_their_sources(llm, tmp_path):
    script, url = llm
    script.tokens = words(FIRST)
    stage = stage_for(url, tmp_path)
    other = Passage(text="AutoPay saves 5 dollars a month.", source="plans.md", score=0.4)
    emits = [e async for e in stage.handle(turn().model_copy(update={"passages": [FACTS, other]}))]
    assert replies(emits) == [(0, FIRST, False), (1, "", True)]
    assert sources(emits) == [["billing.md", "plans.md"]] * 2
    read_out = turn("t2").model_copy(update={"passages": [FACTS.model_copy(update={"score": 0.8})]})
    emits = [e async for e in stage.handle(read_out)]  # a confident article is read out, no LLM
    assert len(script.requests) == 1 and all(s == ["billing.md"] for s in sources(emits))
    hello = turn("t3").model_copy(update={"text": "hello", "intent": "greeting", "passages": []})
    assert all(s == [] for s in sources([e async for e in stage.handle(hello)]))


async def test_the_knowledge_base_prompt_sends_one_fixed_prefix_per_language_and_still_checks_the_reply(
        llm, tmp_path):
    script, url = llm
    stage = stage_for(url, tmp_path, llm_prompt="knowledge-base")
    kb = knowledge_base(stage.settings, "en")
    assert stage.knowledge_base_of("en") == kb and stage.knowledge_base_of("fr") == kb
    script.tokens = words(FIRST)
    first = [e async for e in stage.handle(turn())]
    stores = Passage(text="Stores are open Monday to Saturday from 9 am to 8 pm.", source="stores.md",
                     title="Stores", score=0.5)
    asked = turn("t2").model_copy(update={"text": "are you open on Sunday?", "intent": "store_hours",
                                          "passages": [stores]})
    script.tokens = words("Sunday from 11 am to 5 pm.")  # in the knowledge base, not in the turn's passages
    second = [e async for e in stage.handle(asked)]
    spanish = turn("t1").model_copy(update={"session_id": "s2", "text": "¿cuándo vence mi factura?",
                                            "language": "es", "passages": []})
    script.tokens = words("El día 15.")
    [e async for e in stage.handle(spanish)]
    prefix = build_messages(turn(), [], kb)[0]
    [bill, sunday, factura] = [request["messages"] for request in script.requests]
    assert bill[0] == sunday[0] == prefix, "the same system message whatever the turn and its intent"
    assert bill[1:] == [{"role": "user", "content": "when is my bill due?"}]
    assert sunday[1:] == [{"role": "user", "content": "when is my bill due?"},
                          {"role": "assistant", "content": FIRST},
                          {"role": "user", "content": "are you open on Sunday?"}]
    assert factura[0] == build_messages(spanish, [], knowledge_base(stage.settings, "es"))[0] != prefix
    assert factura[-1] == {"role": "user", "content": "¿cuándo vence mi factura?"}
    assert replies(first) == [(0, FIRST, False), (1, "", True)]
    assert sources(first) == [["billing.md"]] * 2, "sources: the turn's relevant passages"
    assert replies(second) == [(0, stores.text, False), (1, "", True)], \
        "a number not in the turn's passages is cut, as with the passages prompt"
    assert "generation.ungrounded" in second[-1].record.marks


async def test_the_knowledge_base_warm_up_sends_each_languages_first_turn_prefix_for_one_token(llm, tmp_path):
    script, url = llm
    stage = stage_for(url, tmp_path, llm_prompt="knowledge-base")
    took = await stage.warm_up()
    assert sorted(took) == ["en", "es"] and all(seconds >= 0 for seconds in took.values())
    assert [request["max_tokens"] for request in script.requests] == [1, 1]
    assert all(request["model"] == stage.model for request in script.requests)
    [en, es] = [request["messages"] for request in script.requests]
    assert en[1:] == es[1:] == [{"role": "user", "content": WARM_UP_TEXT}], "no history, a neutral message"
    script.tokens = words(FIRST)
    [e async for e in stage.handle(turn())]
    spanish = turn("t1").model_copy(update={"session_id": "s2", "text": "¿cuándo vence mi factura?",
                                            "language": "es", "passages": []})
    script.tokens = words("El día 15.")
    [e async for e in stage.handle(spanish)]
    [_, _, bill, factura] = [request["messages"] for request in script.requests]
    assert en[0] == bill[0] and es[0] == factura[0] and en[0] != es[0], "byte for byte a real turn's prefix"


async def test_the_warm_up_waits_for_a_server_still_loading_its_model(llm, tmp_path):
    script, url = llm
    script.status = 503  # llama-server while it loads the model
    stage = stage_for(url, tmp_path, llm_prompt="knowledge-base")
    warming = asyncio.create_task(stage.warm_up())
    while not script.requests:
        await asyncio.sleep(0.01)
    script.status = 200
    took = await asyncio.wait_for(warming, 5 * RETRY_S)
    assert sorted(took) == ["en", "es"]
    assert [request["max_tokens"] for request in script.requests] == [1, 1, 1], "English again, then Spanish"


@pytest.mark.parametrize("status", [500, None], ids=["server-error", "no-server"])
async def test_a_failed_warm_up_is_logged_and_the_stage_still_answers(llm, tmp_path, caplog, status):
    script, url = llm
    script.status = status or 200
    stage = stage_for(url if status else "http://127.0.0.1:9/v1", tmp_path, llm_prompt="knowledge-base",
                      llm_timeout_s=2)
    started = time.monotonic()
    assert await warm_prefixes(stage.client, stage.model, stage.knowledge_bases, wait_s=1.5) == {}
    assert time.monotonic() - started < 4, "the wait is bounded for all languages together"
    assert len(script.requests) == (2 if status else 0), "a server that answers with an error: no retry"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(" failed")[0] for w in warnings] == ["LLM warm-up of the en prefix",
                                                         "LLM warm-up of the es prefix"]
    emits = [e async for e in stage.handle(turn())]
    assert replies(emits) == [(0, APOLOGY, True)], "the turns go on as with no warm-up"


async def test_the_passages_prompt_warms_nothing_up(llm, tmp_path):
    script, url = llm
    assert await stage_for(url, tmp_path).warm_up() == {}
    assert script.requests == []
