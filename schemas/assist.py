"""Agent assist: what the suggest stage proposes to the agent holding a call (``voxbus.suggestions``).

While a session is handed to a person, the caller's turns still run through intent and
retrieval; the suggest stage (:mod:`processors.generation.suggest`, consumer group
``voxbus-suggest``) answers each one with the generation stage's logic and writes a
:class:`Suggestion`, keyed by session id, that every ingress replica reads for the agent
console.  Nothing here reaches the caller: the agent sends or speaks the suggestion, or not.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import EpochSeconds, Marks, Name, SessionRecord, Text, TurnId, TurnRef
from schemas.text import MAX_PASSAGES, Passage


class Suggestion(SessionRecord):
    """A suggested reply to one caller turn of a handed-off session, with what it is grounded on.

    Attributes:
        turn_id: the caller's turn.
        handoff_turn: the hand-off round the turn belongs to.
        caller_text: what the caller said (the transcript or typed text).
        text: the suggested reply (sentences joined); empty when none could be made (``error``).
        passages: the knowledge-base passages retrieved for the turn, best first (at most
            :data:`schemas.text.MAX_PASSAGES`), each with its ``source`` file and score.
        sources: the files the suggestion is grounded on (as :attr:`schemas.ReplyText.sources`).
        error: why there is no suggestion (``llm_failed``), else empty.
        marks: the turn's stage timestamps, and ``suggest.end``.
        ts: when the suggestion was made (epoch s).
    """

    type: Literal["suggestion"] = "suggestion"
    turn_id: TurnId
    handoff_turn: TurnRef = ""
    caller_text: Text
    text: Text
    passages: list[Passage] = Field(default_factory=list, max_length=MAX_PASSAGES)
    sources: list[Name] = Field(default_factory=list, max_length=MAX_PASSAGES)
    error: Name = ""
    marks: Marks = Field(default_factory=dict)
    ts: EpochSeconds
