"""The warm-up of the knowledge-base prompt: each language's fixed prefix sent once, before any caller.

With ``VOXBUS_LLM_PROMPT=knowledge-base`` every turn of a language starts with the same system message
(:mod:`processors.generation.prompt`), which the server evaluates once and then keeps in its prompt cache
(llama-server: ``--cache-ram``; vLLM: prefix caching).  That first evaluation took 4.5 s (English,
837 tokens) and 5.6 s (Spanish, 1,085 tokens) here with Qwen2.5-0.5B (README "LLM choice"), so the
generation worker sends it itself when it starts: one request per language, the messages a real first
turn would have (:func:`build_messages` with an empty history) and a neutral user message, for one token.
"""

from __future__ import annotations

import asyncio
import logging
import time

import openai
from openai import AsyncOpenAI

from processors.generation.prompt import build_messages
from schemas import Passage, RetrievalResult

log = logging.getLogger(__name__)

WARM_UP_TEXT = "Hello"
"""The user message after the prefix: a greeting, nothing the prefix depends on."""
WAIT_S = 120.0
"""How long the warm-up waits for the server to answer (s): the supervisor's own wait for the embedded
server (:meth:`voxbus.supervisor.Supervisor.start`), which starts with the workers."""
RETRY_S = 1.0
"""Pause (s) between two attempts while the server is not up yet (refused, or 503 while loading)."""


def warm_up_messages(knowledge_bases: dict[str, list[Passage]]) -> dict[str, list[dict[str, str]]]:
    """The warm-up request of each language: its fixed system message and :data:`WARM_UP_TEXT`.

    Args:
        knowledge_bases: language -> every passage of its knowledge base (the stage's, read at load).

    Returns:
        language -> chat messages, ``[system, user]``, the system message byte for byte a real turn's.
    """
    return {
        language: build_messages(
            RetrievalResult(session_id="warm-up", turn_id="warm-up", text=WARM_UP_TEXT, intent="other",
                            confidence=1.0, sentiment="neutral", sentiment_score=0.0, language=language),
            [], passages)
        for language, passages in knowledge_bases.items()
    }


def not_up_yet(exc: Exception) -> bool:
    """True if ``exc`` says the server is not serving yet: nothing listens, or it is loading its model."""
    return isinstance(exc, openai.APIConnectionError) or (
        isinstance(exc, openai.APIStatusError) and exc.status_code == 503)


async def complete_one_token(client: AsyncOpenAI, model: str, messages: list[dict[str, str]],
                             deadline: float) -> float:
    """Have the server evaluate ``messages`` and generate one token, retrying until it is up.

    Streamed, as a turn's request is; each attempt is bounded by the time left to ``deadline``.

    Returns:
        Seconds the answered attempt took (the waiting for the server before it not counted).

    Raises:
        openai.OpenAIError: the server failed, or was not up by ``deadline`` (``time.monotonic()``).
    """
    while True:
        left = deadline - time.monotonic()
        started = time.perf_counter()
        try:
            stream = await client.with_options(timeout=max(left, RETRY_S)).chat.completions.create(
                model=model, messages=messages, stream=True, max_tokens=1,  # type: ignore[arg-type]
            )
            async for _ in stream:
                pass
            return time.perf_counter() - started
        except openai.OpenAIError as exc:
            if not not_up_yet(exc) or left <= RETRY_S:
                raise
        await asyncio.sleep(RETRY_S)


async def warm_prefixes(client: AsyncOpenAI, model: str, knowledge_bases: dict[str, list[Passage]],
                        wait_s: float = WAIT_S) -> dict[str, float]:
    """Send each language's fixed prefix once, one language after the other; log each and never raise.

    Args:
        client: the stage's LLM client.
        model: the model name requests carry.
        knowledge_bases: language -> its knowledge base (:meth:`GenerationStage.load`).
        wait_s: how long to wait, in all, for the server to come up.

    Returns:
        language -> seconds its answered request took, for the languages the server answered (a
        failure is logged and skipped: the stage apologises to callers while the server is down).
    """
    deadline = time.monotonic() + wait_s
    took: dict[str, float] = {}
    for language, messages in warm_up_messages(knowledge_bases).items():
        try:
            took[language] = await complete_one_token(client, model, messages, deadline)
        except Exception as exc:  # down, slow or broken: the turns will say so, the worker carries on
            log.warning("LLM warm-up of the %s prefix failed: %s: %s", language, type(exc).__name__, exc)
            continue
        log.info("LLM warm-up: the %s prefix (%d characters) answered in %.1f s", language,
                 len(messages[0]["content"]), took[language])
    return took
