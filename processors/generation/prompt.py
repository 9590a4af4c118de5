"""The chat prompt: system prompt + retrieved passages + intent + conversation history."""

from __future__ import annotations

from schemas import RetrievalResult

SYSTEM_PROMPT = "You are Harbor Mobile's phone assistant. Answer in one short sentence using the facts."
"""Kept short on purpose: SmolLM2-135M parrots long instructions back to the caller."""


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
    system = f"{SYSTEM_PROMPT}\n\nTopic: {turn.intent.replace('_', ' ')}\nFacts:\n{facts}"
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
