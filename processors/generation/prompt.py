"""The chat prompt: system prompt + retrieved passages + intent + conversation history."""

from __future__ import annotations

from processors.generation.phrases import PHRASES, phrases
from schemas import DEFAULT_LANGUAGE, RetrievalResult

SYSTEM_PROMPT = PHRASES[DEFAULT_LANGUAGE].system_prompt
"""The English system prompt (:mod:`processors.generation.phrases`), also given to Pipecat's benchmark bot."""


def build_messages(turn: RetrievalResult, history: list[dict[str, str]]) -> list[dict[str, str]]:
    """Build the OpenAI chat messages for one turn.

    Args:
        turn: the caller's words, intent, sentiment and retrieved passages.
        history: earlier turns of the session, oldest first, as ``{"user": ..., "assistant": ...}``
            dicts, with ``"note"`` (and neither) where an agent gave the call back.

    Returns:
        Messages for ``/v1/chat/completions``.
    """
    facts = "\n".join(f"- {p.text}" for p in turn.passages) or "- (no article matched)"
    topic = turn.intent.replace("_", " ")
    system = f"{phrases(turn.language).system_prompt}\n\nTopic: {topic}\nFacts:\n{facts}"
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
