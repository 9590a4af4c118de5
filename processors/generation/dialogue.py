"""Dialogue state of a session and the rules that pick a tool without the LLM.

The state rides on the newest entry of the generation stage's history table (key
``"state"``), so it is as durable as the history (a compacted changelog topic) and
follows a session to whichever worker owns its partition:

* ``open``: a tool still missing arguments (``{"tool", "arguments", "asking"}``): the
  caller's next turn goes to it (a booking asked for a day gets "Tuesday at 3");
* ``misses``: unanswered (fallback) turns in a row;
* ``handoff``: the session is with a person; the bot no longer answers;
* ``handoff_turn``: the turn that handed it off (the queue's events name it, :mod:`schemas.desk`);
* ``callback``: the hand-off expired unanswered and the bot offered a callback: a request for
  a person (or a booking) books the callback instead of queueing again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from processors.generation.slots import extract_booking, extract_name, extract_order_id
from schemas import HandoffReason, RetrievalResult, ToolName, ToolResult
from streams.settings import Settings


@dataclass
class DialogueState:
    """What the conversation of one session is in the middle of (see the module docstring)."""

    open: dict[str, Any] | None = None
    misses: int = 0
    handoff: bool = False
    handoff_turn: str = ""
    callback: bool = False

    @classmethod
    def of(cls, history: list[dict[str, Any]]) -> DialogueState:
        """The state stored on the newest history entry (a fresh state for a new session)."""
        stored = history[-1].get("state") if history else None
        return cls(**stored) if isinstance(stored, dict) else cls()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored on the history entry."""
        return asdict(self)

    def after_result(self, result: ToolResult) -> DialogueState:
        """The state once ``result`` is spoken: an open tool stays open while it needs information."""
        open_ = None
        if result.status == "need_info":
            asking = result.missing[0] if result.missing else ""
            open_ = {"tool": result.tool, "arguments": dict(result.arguments), "asking": asking}
        escalated = result.tool == "escalate_to_human" and result.status == "done"
        called_back = result.tool == "book_callback" and result.status == "done"
        return DialogueState(open=open_, misses=0, handoff=self.handoff or escalated,
                             handoff_turn=result.turn_id if escalated else self.handoff_turn,
                             callback=self.callback and not called_back)

    def back_to_bot(self, handoff_turn: str, offer_callback: bool) -> DialogueState | None:
        """The state once the hand-off of ``handoff_turn`` ends; None if that hand-off is not the current one.

        Args:
            handoff_turn: the hand-off an ``expire``, ``release`` or ``end`` queue event names.
            offer_callback: the hand-off expired: the bot offered a callback.
        """
        if not self.handoff or self.handoff_turn not in ("", handoff_turn):
            return None
        return DialogueState(misses=0, callback=self.callback or offer_callback)


@dataclass(frozen=True)
class ToolChoice:
    """A tool the rules chose for a turn."""

    tool: ToolName
    arguments: dict[str, str] = field(default_factory=dict)


def escalation_reason(turn: RetrievalResult, settings: Settings) -> HandoffReason | None:
    """``requested`` for intent ``human_agent``, ``negative_sentiment`` at or below the threshold."""
    if turn.intent == "human_agent":
        return "requested"
    if turn.sentiment_score <= settings.handoff_sentiment:
        return "negative_sentiment"
    return None


def choose_tool(turn: RetrievalResult, state: DialogueState, settings: Settings) -> ToolChoice | None:
    """The tool for ``turn`` by intent and open dialogue; None when the turn is a question to answer.

    Args:
        turn: the caller's words with intent, sentiment and passages.
        state: the session's dialogue state before this turn.
        settings: ``handoff_sentiment``.

    Returns:
        ``book_callback`` when a callback is on offer and the caller asks for a person or a
        booking; ``escalate_to_human`` (asked for, or strongly negative), else the open tool or
        the tool of the intent (``book_appointment``, ``order_status``) with the
        arguments extracted from the words (merged over those already known).
    """
    reason = escalation_reason(turn, settings)
    if state.callback and (reason is not None or turn.intent == "book_appointment"):
        name = extract_name(turn.text)
        return ToolChoice("book_callback", {"name": name} if name else {})
    if reason is not None:
        return ToolChoice("escalate_to_human", {"reason": reason})
    open_ = state.open or {}
    tool = open_.get("tool") or {"book_appointment": "book_appointment",
                                 "order_status": "check_order_status"}.get(turn.intent)
    if tool is None:
        return None
    known = dict(open_.get("arguments", {})) if open_.get("tool") == tool else {}
    if tool == "book_appointment":
        known.update(extract_booking(turn.text, asking=open_.get("asking", "")))
    elif tool == "check_order_status":
        order_id = extract_order_id(turn.text)
        if order_id:
            known["order_id"] = order_id
        elif not open_ and "order" not in turn.text.lower():
            return None  # a delivery question ("how long does delivery take?"): the KB answers it
    return ToolChoice(tool, known)  # type: ignore[arg-type]
