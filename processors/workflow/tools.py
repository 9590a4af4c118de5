"""The tools themselves: a :class:`schemas.ToolCall` in, a :class:`schemas.ToolResult` (and records) out.

* ``book_appointment``: needs ``name``, ``service``, ``day`` and ``time``; asks for the
  first missing one (``need_info``), else stores the booking and confirms it back.
* ``check_order_status``: needs an 8-digit ``order_id``; says the order's status.
* ``book_callback``: books a call back from an agent (a :class:`schemas.Booking` of the
  service ``callback``, today, as soon as one is free) for a caller whose hand-off expired
  unanswered; the ``name`` is optional.
* ``escalate_to_human``: publishes a :class:`schemas.Handoff` with a summary of the
  conversation and tells the caller a person is joining.
"""

from __future__ import annotations

import hashlib
import time

from processors.workflow.store import WorkflowStore
from schemas import Booking, Handoff, Record, ToolCall, ToolResult

BOOKING_SLOTS = ("service", "day", "time", "name")
"""The ``book_appointment`` arguments, in the order they are asked for."""
QUESTIONS = {
    "service": "Sure, I can book that. Which service do you need: screen repair, battery replacement, "
               "phone setup, a technician visit, or a store appointment?",
    "day": "Which day would suit you?",
    "time": "What time would you like?",
    "name": "And what name should I put the booking under?",
    "order_id": "Sure. What is your 8-digit order number?",
}
"""What the caller is asked for each missing argument."""
CALLBACK_SERVICE = "callback"
CALLBACK_TIME = "as soon as an agent is free"
HANDOFF_SAY = {
    "en": "I'm connecting you with a person now. A colleague will join this conversation in a moment.",
    "es": "Le paso ahora con una persona. Un compañero se unirá a esta conversación en un momento.",
}
"""What a caller handed off hears, by language (else English's); the other tools' texts are English only."""
HANDOFF_LINES = 12
"""Transcript lines kept in a hand-off summary (the last six turns)."""


def confirmation_number(call: ToolCall) -> str:
    """A short confirmation number, deterministic for the call (so a retry yields the same)."""
    digest = hashlib.sha256(f"{call.session_id}/{call.turn_id}/{call.call_id}".encode()).hexdigest()
    return "HM-" + digest[:6].upper()


def _result(call: ToolCall, status: str, say: str, missing: list[str] | None = None,
            data: dict[str, str] | None = None, arguments: dict[str, str] | None = None) -> ToolResult:
    return ToolResult(
        session_id=call.session_id, egress_partition=call.egress_partition, turn_id=call.turn_id,
        call_id=call.call_id, tool=call.tool, status=status,  # type: ignore[arg-type]
        arguments=call.arguments if arguments is None else arguments, missing=missing or [], say=say,
        data=data or {}, speak=call.speak, language=call.language,
        marks={**call.marks, "workflow.end": time.time()},
    )


def book_appointment(call: ToolCall) -> tuple[ToolResult, Booking | None]:
    """Ask for the first missing slot, or book and confirm.

    Returns:
        (the result, the booking to store and publish or None).
    """
    slots = {k: call.arguments.get(k, "").strip() for k in BOOKING_SLOTS}
    missing = [k for k in BOOKING_SLOTS if not slots[k]]
    if missing:
        known = {k: v for k, v in slots.items() if v}
        return _result(call, "need_info", QUESTIONS[missing[0]], missing=missing, arguments=known), None
    confirmation = confirmation_number(call)
    booking = Booking(
        session_id=call.session_id, egress_partition=call.egress_partition, confirmation=confirmation,
        turn_id=call.turn_id, call_id=call.call_id, ts=time.time(), **slots,
    )
    say = (f"Booked: {slots['service']} on {slots['day']} at {slots['time']} for {slots['name']}. "
           f"Your confirmation number is {confirmation}.")
    return _result(call, "done", say, data={"confirmation": confirmation, **slots}, arguments=slots), booking


def book_callback(call: ToolCall) -> tuple[ToolResult, Booking]:
    """Book a callback (today, as soon as an agent is free) and confirm it."""
    name = call.arguments.get("name", "").strip() or "caller"
    confirmation = confirmation_number(call)
    slots = {"name": name, "service": CALLBACK_SERVICE, "day": time.strftime("%Y-%m-%d"),
             "time": CALLBACK_TIME}
    booking = Booking(session_id=call.session_id, egress_partition=call.egress_partition,
                      confirmation=confirmation, turn_id=call.turn_id, call_id=call.call_id, ts=time.time(),
                      **slots)
    say = (f"I've booked a callback: a colleague will call you back {CALLBACK_TIME}. "
           f"Your confirmation number is {confirmation}.")
    return _result(call, "done", say, data={"confirmation": confirmation, **slots}, arguments=slots), booking


def check_order_status(call: ToolCall, store: WorkflowStore) -> ToolResult:
    """Say the status of the order, ask for its number, or say it is unknown."""
    order_id = call.arguments.get("order_id", "").strip()
    if not order_id:
        return _result(call, "need_info", QUESTIONS["order_id"], missing=["order_id"])
    found = store.order(order_id)
    if found is None:
        spoken = " ".join(order_id)
        return _result(call, "failed", f"I couldn't find order {spoken}. Please check the number on your "
                                       "confirmation email.", data={"order_id": order_id})
    status, item, detail = found
    return _result(call, "done", f"Your order {' '.join(order_id)}, the {item}, is {status}: {detail}.",
                   data={"order_id": order_id, "status": status, "item": item})


def escalate_to_human(call: ToolCall) -> tuple[ToolResult, Handoff]:
    """Hand the session to a person: the :class:`Handoff` for the agents, and what the caller hears."""
    reason = call.arguments.get("reason", "requested")
    if reason not in ("requested", "repeated_failure", "negative_sentiment"):
        reason = "requested"  # an LLM's free-text reason: the caller asked
    transcript = list(call.history[-HANDOFF_LINES:])
    last = next((line.text for line in reversed(transcript) if line.role == "caller"), "")
    summary = (f"{reason.replace('_', ' ')}; intent {call.intent or 'unknown'}; "
               f"sentiment {call.sentiment_score:+.2f}; last request: {last[:200]!r}")
    handoff = Handoff(
        session_id=call.session_id, egress_partition=call.egress_partition, turn_id=call.turn_id,
        reason=reason, intent=call.intent, sentiment_score=call.sentiment_score,  # type: ignore[arg-type]
        summary=summary, transcript=transcript, speak=call.speak, ts=time.time(),
    )
    say = HANDOFF_SAY.get(call.language, HANDOFF_SAY["en"])
    return _result(call, "done", say, data={"reason": reason}), handoff


def execute(call: ToolCall, store: WorkflowStore) -> tuple[ToolResult, list[Record]]:
    """Run ``call`` once: a redelivered call returns its stored result and records.

    The records are published again on redelivery (the worker may have died between the
    store's write and the produce); their consumers are idempotent (a booking is keyed by
    its confirmation number, a hand-off by its session), and the booking is not made twice.

    Returns:
        (the result, records to publish: a :class:`Booking` or a :class:`Handoff`).

    Raises:
        sqlite3.Error: the store failed (the runtime dead-letters the call and tells the caller).
    """
    done = store.executed(call)
    if done is not None:
        return done
    published: list[Record] = []
    if call.tool == "book_appointment":
        result, booking = book_appointment(call)
        published = [booking] if booking else []
    elif call.tool == "book_callback":
        result, callback = book_callback(call)
        published = [callback]
    elif call.tool == "check_order_status":
        result = check_order_status(call, store)
    else:
        result, handoff = escalate_to_human(call)
        published = [handoff]
    store.record(call, result, published)
    return result, published

