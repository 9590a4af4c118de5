"""Tool calls and human hand-off: the records of the agent loop and the workflow stage.

The generation stage (the agent loop) produces a :class:`ToolCall` to
``voxbus.tool-calls``; the workflow stage executes it and answers with a
:class:`ToolResult` on ``voxbus.tool-results``, which the generation stage speaks.
A booking is also published as a :class:`Booking` (``voxbus.bookings``); a hand-off as
a :class:`Handoff`, followed by :class:`HandoffUpdate` records (caller turns, the agent
taking the session, agent replies) on ``voxbus.handoffs``, read by the agent console.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import (
    DEFAULT_LANGUAGE,
    EpochSeconds,
    Language,
    Marks,
    Name,
    Part,
    SessionRecord,
    Text,
    TurnId,
    TurnRef,
)

ToolName = Literal["book_appointment", "check_order_status", "escalate_to_human", "book_callback"]
"""The tools the workflow stage executes (JSON schemas: :mod:`processors.generation.tools`)."""

ToolStatus = Literal["done", "need_info", "failed"]
"""``done``: executed; ``need_info``: slots are missing (listed in ``missing``); ``failed``:
the arguments were refused (an unknown order id) or the store failed."""

HandoffReason = Literal["requested", "repeated_failure", "negative_sentiment"]
"""Why a session went to a person: the caller asked (intent ``human_agent``), two
unanswered turns in a row, or a sentiment score at or below the threshold."""

MAX_HISTORY_LINES = 40
"""Most conversation lines on a record: a tool call carries two per turn of
``VOXBUS_HISTORY_TURNS`` (4 by default) and a hand-off 12 (``processors.workflow.tools.HANDOFF_LINES``);
room for an operator's 20 turns."""

MAX_TOOL_SLOTS = 16
"""Most slot names in a :class:`ToolResult`'s ``missing``: a tool takes at most 4
(``book_appointment``: name, service, day, time); room for 16."""

Arguments = dict[Name, Text]
"""Tool arguments or outputs: name -> value, all strings."""


class ConversationLine(Part):
    """One line of a conversation transcript.

    Attributes:
        role: ``caller``, ``assistant`` (the bot) or ``agent`` (a person).
        text: what was said.
        turn_id: the turn it belongs to.
    """

    role: Literal["caller", "assistant", "agent"]
    text: Text
    turn_id: TurnRef = ""


class ToolCall(SessionRecord):
    """A request to run one tool, from the generation stage to the workflow stage.

    Attributes:
        turn_id: the caller turn that led to the call.
        call_id: unique within the turn (the LLM's ``tool_calls[].id``, or ``rules-<n>``);
            ``(session_id, turn_id, call_id)`` identifies the call for deduplication.
        tool: one of :data:`ToolName`.
        arguments: argument name -> value (all strings), as the JSON schema of the tool.
        source: ``llm`` (the model chose the tool) or ``rules`` (intent and open dialogue).
        intent: the turn's intent.
        sentiment_score: the turn's VADER compound score in [-1, 1].
        history: the last turns of the conversation, oldest first (for a hand-off summary).
        speak: whether the reply is synthesized.
        language: the turn's language, which the result is said in where the tool has its texts
            (a field with a default: an older producer's call reads as English).
        marks: per-stage wall-clock timestamps.
    """

    type: Literal["tool_call"] = "tool_call"
    turn_id: TurnId
    call_id: str = Field(min_length=1, max_length=64)
    tool: ToolName
    arguments: Arguments = Field(default_factory=dict)
    source: Literal["llm", "rules"] = "rules"
    intent: Name = ""
    sentiment_score: float = Field(default=0.0, ge=-1.0, le=1.0)
    history: list[ConversationLine] = Field(default_factory=list, max_length=MAX_HISTORY_LINES)
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE
    marks: Marks = Field(default_factory=dict)


class ToolResult(SessionRecord):
    """The outcome of a :class:`ToolCall`, from the workflow stage to the generation stage.

    Attributes:
        turn_id, call_id, tool, speak, language, marks: as on the call (``say`` is in ``language``).
        status: one of :data:`ToolStatus`.
        arguments: the slots known so far (for ``need_info``: kept by the dialogue).
        missing: slot names still needed, in the order they are asked for.
        say: the short sentence(s) spoken to the caller.
        data: tool output (confirmation number, order status...), all strings.
    """

    type: Literal["tool_result"] = "tool_result"
    turn_id: TurnId
    call_id: str = Field(min_length=1, max_length=64)
    tool: ToolName
    status: ToolStatus
    arguments: Arguments = Field(default_factory=dict)
    missing: list[Name] = Field(default_factory=list, max_length=MAX_TOOL_SLOTS)
    say: Text
    data: Arguments = Field(default_factory=dict)
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE
    marks: Marks = Field(default_factory=dict)


class Booking(SessionRecord):
    """A booked appointment (``voxbus.bookings``), as stored by the workflow stage.

    Attributes:
        confirmation: the confirmation number told to the caller.
        name, service, day, time: the booked slots (``time`` like ``3 PM``).
        turn_id, call_id: the call that booked it.
        ts: when it was booked (epoch s).
    """

    type: Literal["booking"] = "booking"
    confirmation: str = Field(min_length=1, max_length=32)
    name: Text
    service: Text
    day: Text
    time: Text
    turn_id: TurnId
    call_id: str = Field(min_length=1, max_length=64)
    ts: EpochSeconds


class Handoff(SessionRecord):
    """A session handed to a person (``voxbus.handoffs``), with a summary for the agent.

    Attributes:
        turn_id: the turn that triggered the hand-off.
        reason: one of :data:`HandoffReason`.
        intent: the triggering turn's intent.
        sentiment_score: its VADER compound score in [-1, 1].
        summary: one line for the agent (reason, intent, sentiment, last request).
        transcript: the last turns, caller words and bot replies, oldest first.
        speak: whether the caller hears replies (the agent's are synthesized then).
        ts: when (epoch s).
    """

    type: Literal["handoff"] = "handoff"
    turn_id: TurnId
    reason: HandoffReason
    intent: Name = ""
    sentiment_score: float = Field(default=0.0, ge=-1.0, le=1.0)
    summary: Text
    transcript: list[ConversationLine] = Field(default_factory=list, max_length=MAX_HISTORY_LINES)
    speak: bool = True
    ts: EpochSeconds


class HandoffUpdate(SessionRecord):
    """Something new in a handed-off session (``voxbus.handoffs``).

    Attributes:
        kind: ``caller`` (a caller turn, not answered by the bot), ``taken`` (an agent
            took the session) or ``agent`` (an agent's reply).
        turn_id: the caller turn, or the agent reply's turn id.
        text: the words (empty for ``taken``).
        agent: the agent (principal id or name) for ``taken`` and ``agent``.
        speak: for ``caller``, whether that turn came by voice.
        ts: when (epoch s).
    """

    type: Literal["handoff_update"] = "handoff_update"
    kind: Literal["caller", "taken", "agent"]
    turn_id: TurnRef = ""
    text: Text = ""
    agent: str = Field(default="", max_length=128)
    speak: bool = True
    ts: EpochSeconds
