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

from processors.generation.phrases import PHRASES, phrases
from schemas import DEFAULT_LANGUAGE, Passage, RetrievalResult

SYSTEM_PROMPT = PHRASES[DEFAULT_LANGUAGE].system_prompt
"""The English system prompt (:mod:`processors.generation.phrases`), also given to Pipecat's benchmark bot."""
KB_TOPIC = "customer_service"
"""The intent written as the topic of the knowledge-base system message: one for every turn, so the
message (the server's cached prefix) does not change with the turn's intent."""


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
