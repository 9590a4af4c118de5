"""The chat prompt: system prompt + facts (the turn's passages or the whole knowledge base) + history + turn.

Two prompts (``VOXBUS_LLM_PROMPT``):

* ``passages``: the system message holds the turn's intent and its relevant passages, so it changes
  with every turn and the server evaluates it anew each time;
* ``knowledge-base``: the system message is the language's system prompt and the whole knowledge base
  of that language under one topic (:data:`KB_TOPIC`), the same for every turn of the language, so
  llama-server's prompt cache (vLLM: automatic prefix caching) keeps its tokens and a turn pays only
  for the history and its own words, which follow it.  The turn's intent and passages are not in this
  prompt (``make bench-llm`` measured it so: ``benchmarks/llm_choice.py``, mode ``cached_kb``); the
  stage still checks the reply against the turn's relevant passages
  (:mod:`processors.generation.grounding`).
"""

from __future__ import annotations

from typing import TypeVar

from processors.generation.phrases import PHRASES, phrases
from schemas import DEFAULT_LANGUAGE, Passage, RetrievalResult

SYSTEM_PROMPT = PHRASES[DEFAULT_LANGUAGE].system_prompt
"""The English system prompt (:mod:`processors.generation.phrases`), also given to Pipecat's benchmark bot."""
KB_TOPIC = "customer_service"
"""The intent written as the topic of the knowledge-base system message: one for every turn, so the
message (the server's cached prefix) does not change with the turn's intent."""
T = TypeVar("T")


def history_window(history: list[T], turns: int) -> list[T]:
    """The earlier turns a prompt carries and the history keeps: the newest ``turns`` to ``2 * turns - 1``.

    The LLM server reuses the longest prefix a new prompt shares with one it has evaluated
    (llama-server: a slot's KV cache and ``--cache-ram``; vLLM: automatic prefix caching).  A window
    that slides by one turn changes the first history message of every prompt once the session is
    longer than ``turns``, so the server evaluates the whole history again on each turn (measured at
    1 caller, 12 turns: 1152 prompt tokens evaluated against 302 for Pipecat's unbounded context on the
    same turns, 438 with this window; README "The prompt cache").  Dropping ``turns`` entries at a
    time keeps the prefix the same for ``turns`` turns in a row, at the price of up to ``turns - 1``
    more turns in the prompt.

    The result is its own window (``history_window(history_window(h, n), n) == history_window(h, n)``),
    so keeping it and appending the next turn gives the window of the whole conversation.

    Args:
        history: the turns, oldest first.
        turns: the fewest turns carried (``VOXBUS_HISTORY_TURNS``) once there are that many; 0 or
            less: none.

    Returns:
        The newest entries of ``history``: all of them while there are fewer than ``2 * turns``,
        then the newest ``turns`` plus those since, starting at a multiple of ``turns``.
    """
    if turns <= 0:
        return []
    start = max(0, len(history) - turns) // turns * turns
    return history[start:]


def build_messages(turn: RetrievalResult, history: list[dict[str, str]],
                   knowledge_base: list[Passage] | None = None) -> list[dict[str, str]]:
    """Build the OpenAI chat messages for one turn.

    Args:
        turn: the caller's words, intent, language and the passages to answer from.
        history: earlier turns of the session, oldest first, as ``{"user": ..., "assistant": ...}``
            dicts, with ``"note"`` (and neither) where an agent gave the call back.
        knowledge_base: None for the ``passages`` prompt (the turn's intent and passages in the system
            message); else every passage of the knowledge base of the turn's language
            (:func:`processors.retrieval.kb.knowledge_base`) for the ``knowledge-base`` prompt, whose
            system message is then the same for every turn of that language (the module docstring).

    Returns:
        Messages for ``/v1/chat/completions``: the system message, the history, the turn's words last.
    """
    topic, passages = (turn.intent, turn.passages) if knowledge_base is None else (KB_TOPIC, knowledge_base)
    facts = "\n".join(f"- {p.text}" for p in passages) or "- (no article matched)"
    system = f"{phrases(turn.language).system_prompt}\n\nTopic: {topic.replace('_', ' ')}\nFacts:\n{facts}"
    messages = [{"role": "system", "content": system}]
    for past in history:
        if past.get("note"):  # an agent handled the call and gave it back
            note = f"Note from the agent who handled the call: {past['note']}"
            messages.append({"role": "system", "content": note})
        if past.get("user") or past.get("assistant"):
            messages.append({"role": "user", "content": past.get("user", "")})
            messages.append({"role": "assistant", "content": past.get("assistant", "")})
    messages.append({"role": "user", "content": turn.text})
    return messages


def grounded_messages(turn: RetrievalResult, facts: list[Passage], history: list[dict[str, str]],
                      knowledge_base: list[Passage] | None = None) -> list[dict[str, str]]:
    """:func:`build_messages` for ``turn`` with only ``facts`` as its passages.

    ``facts`` are the relevant passages the generation stage checks its reply against
    (``GenerationStage.facts_of``); the other arguments and the result are :func:`build_messages`'s.
    """
    return build_messages(turn.model_copy(update={"passages": facts}), history, knowledge_base)
