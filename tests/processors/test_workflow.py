"""Tools without the stack: the slot extractor, the dialogue rules, the executor on SQLite,
streamed tool-call deltas, and the agent loop (generation <-> workflow) on real stage code."""

from __future__ import annotations

import asyncio
import collections
import sqlite3

import pytest
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from ingress.agents.hold import BUSY_SAY
from processors.generation.dialogue import DialogueState, choose_tool
from processors.generation.slots import (
    extract_booking,
    extract_day,
    extract_name,
    extract_order_id,
    extract_time,
)
from processors.generation.stage import GenerationStage
from processors.generation.tools import ToolCallAccumulator
from processors.workflow.stage import WorkflowStage
from processors.workflow.store import WorkflowStore, db_path
from processors.workflow.tools import execute
from schemas import (
    Booking,
    Handoff,
    HandoffUpdate,
    QueueEvent,
    ReplyText,
    RetrievalResult,
    ToolCall,
    ToolResult,
)
from streams.settings import Settings
from streams.topics import BOOKINGS, EGRESS, HANDOFFS, TOOL_CALLS, TOOL_RESULTS

FIXTURE = Settings().orders_fixture


@pytest.mark.parametrize(("text", "expected"), [
    ("I want to book a screen repair on Tuesday at 3 pm", {"service": "screen repair", "day": "Tuesday",
                                                           "time": "3 PM"}),
    ("My name is Alice.", {"name": "Alice"}),
    ("my name is alice and I need a new battery", {"name": "Alice", "service": "battery replacement"}),
    ("Can someone come to fix my router on March 3rd at half past two?",
     {"service": "technician visit", "day": "March 3", "time": "2:30 PM"}),
    ("Tomorrow at 10 please", {"day": "tomorrow", "time": "10 AM"}),
    ("quarter to four in the afternoon", {"time": "3:45 PM"}),
    ("the 14th at noon", {"day": "the 14th", "time": "12 PM"}),
    ("How about 11 o'clock on Friday", {"day": "Friday", "time": "11 AM"}),
    ("I'm not sure yet", {}),
])
def test_booking_slots(text, expected):
    assert extract_booking(text) == expected


def test_a_bare_answer_is_a_name_only_when_asked_for_and_nothing_else():
    assert extract_booking("Alice Smith", asking="name") == {"name": "Alice Smith"}
    assert extract_booking("Alice Smith") == {}
    assert extract_booking("Tuesday", asking="name") == {"day": "Tuesday"}
    assert extract_name("I'm calling about my bill") is None
    assert extract_time("15:30") == "3:30 PM" and extract_time("at 25") is None
    assert extract_day("3/14") == "3/14" and extract_day("nothing") is None


def test_order_ids_spoken_in_groups():
    assert extract_order_id("It's 1234 5678.") == "12345678"
    assert extract_order_id("order 12-34-56-78") == "12345678"
    assert extract_order_id("123 456") is None and extract_order_id("123456789") is None


def turn(text, intent="other", score=0.0, turn_id="t1"):
    return RetrievalResult(session_id="s1", turn_id=turn_id, text=text, intent=intent, confidence=0.9,
                           sentiment="neutral", sentiment_score=score, speak=False)


def test_rules_choose_the_tool():
    s = Settings()
    asked = choose_tool(turn("get me a person", "human_agent"), DialogueState(), s)
    assert asked.arguments == {"reason": "requested"}
    angry = choose_tool(turn("this is terrible", "billing", -0.7), DialogueState(), s)
    assert angry.tool == "escalate_to_human" and angry.arguments["reason"] == "negative_sentiment"
    assert choose_tool(turn("when is my bill due", "billing"), DialogueState(), s) is None
    booking = choose_tool(turn("book a screen repair", "book_appointment"), DialogueState(), s)
    assert booking.tool == "book_appointment" and booking.arguments == {"service": "screen repair"}
    # an open booking takes the next turn, whatever its intent, and keeps the known slots
    open_ = DialogueState(open={"tool": "book_appointment", "arguments": {"service": "screen repair"},
                                "asking": "day"})
    follow = choose_tool(turn("Tuesday at 3 pm", "other"), open_, s)
    assert follow.arguments == {"service": "screen repair", "day": "Tuesday", "time": "3 PM"}
    assert choose_tool(turn("how long does delivery take", "order_status"), DialogueState(), s) is None
    assert choose_tool(turn("where is my order 12345678", "order_status"), DialogueState(), s).arguments == {
        "order_id": "12345678"}


def call(tool, arguments, turn_id="t1", call_id="rules-1"):
    return ToolCall(session_id="s1", turn_id=turn_id, call_id=call_id, tool=tool, arguments=arguments)


def test_booking_asks_for_what_is_missing_then_books_once(tmp_path):
    store = WorkflowStore(tmp_path / "w.sqlite", FIXTURE)
    result, published = execute(call("book_appointment", {"service": "screen repair"}), store)
    assert (result.status, result.missing, published) == ("need_info", ["day", "time", "name"], [])
    assert result.say == "Which day would suit you?"
    slots = {"service": "screen repair", "day": "Tuesday", "time": "3 PM", "name": "Alice"}
    full = call("book_appointment", slots, turn_id="t3")
    result, [booking] = execute(full, store)
    assert result.status == "done" and isinstance(booking, Booking)
    assert result.say == (f"Booked: screen repair on Tuesday at 3 PM for Alice. Your confirmation number is "
                          f"{booking.confirmation}.")
    again, republished = execute(full, store)  # a redelivered call: not booked twice
    assert again == result
    db = sqlite3.connect(tmp_path / "w.sqlite")
    rows = db.execute("SELECT name, service, day, time FROM bookings").fetchall()
    assert rows == [("Alice", "screen repair", "Tuesday", "3 PM")]


SLOTS = {"service": "screen repair", "day": "Tuesday", "time": "3 PM", "name": "Alice"}


@pytest.mark.parametrize(("tool", "arguments", "kind"), [
    ("book_appointment", SLOTS, Booking),
    ("escalate_to_human", {"reason": "requested"}, Handoff),
])
async def test_a_call_redelivered_after_a_crash_produces_its_records_again(tmp_path, tool, arguments, kind):
    """The worker died after the SQLite write and before the produce: the redelivery produces them."""
    settings = Settings(data_dir=tmp_path)
    crashed = WorkflowStage(settings)
    crashed.load()
    redelivered = call(tool, arguments)
    first = [emit async for emit in crashed.handle(redelivered)]  # stored; the worker dies before producing
    restarted = WorkflowStage(settings)
    restarted.load()
    again = [emit async for emit in restarted.handle(redelivered)]
    assert [(e.topic, e.record) for e in again] == [(e.topic, e.record) for e in first]
    assert [type(e.record) for e in again] == [kind, ToolResult]
    assert len(restarted.store.bookings("s1")) == (kind is Booking), "booked once"


def test_order_status_from_the_fixture(tmp_path):
    store = WorkflowStore(tmp_path / "w.sqlite", FIXTURE)
    result, _ = execute(call("check_order_status", {"order_id": "12345678"}), store)
    assert result.status == "done" and "shipped" in result.say and result.data["item"] == "Pixel 8 phone"
    unknown, _ = execute(call("check_order_status", {"order_id": "99999999"}, turn_id="t2"), store)
    assert unknown.status == "failed" and "couldn't find" in unknown.say
    ask, _ = execute(call("check_order_status", {}, turn_id="t3"), store)
    assert ask.status == "need_info" and ask.missing == ["order_id"]


def test_db_setting_is_a_path_or_sqlite_url(tmp_path):
    assert db_path(Settings(data_dir=tmp_path)) == tmp_path / "workflow.sqlite"
    assert str(db_path(Settings(workflow_db="sqlite:////var/x.db"))) == "/var/x.db"
    with pytest.raises(ValueError, match="only SQLite"):
        db_path(Settings(workflow_db="postgresql://h/db"))


def test_streamed_tool_call_deltas_are_reassembled():
    acc = ToolCallAccumulator()
    fn = ChoiceDeltaToolCallFunction
    acc.push([ChoiceDeltaToolCall(index=0, id="call_1", type="function",
                                  function=fn(name="book_appointment", arguments=""))])
    for piece in ['{"service": "scr', 'een repair", "day"', ': "Tuesday", "time": null}']:
        acc.push([ChoiceDeltaToolCall(index=0, function=fn(arguments=piece))])
    acc.push([ChoiceDeltaToolCall(index=1, id="call_2", function=fn(name="not_a_tool", arguments="{}"))])
    acc.push(None)
    assert acc.complete() == [("call_1", "book_appointment", {"service": "screen repair", "day": "Tuesday"})]


class Loop:
    """The generation stage (rules, no LLM needed) and the workflow stage, wired in memory."""

    def __init__(self, tmp_path):
        settings = Settings(data_dir=tmp_path)
        self.generation = GenerationStage(settings)
        self.generation.history = collections.defaultdict(list)  # the faust Table's interface
        self.generation.cancelled, self.generation.heard = set(), {}
        self.workflow = WorkflowStage(settings)
        self.workflow.load()
        self.topics = collections.defaultdict(list)

    async def say(self, text, intent="other", turn_id="t1", score=0.0):
        pending = [turn(text, intent, score, turn_id)]
        while pending:
            record = pending.pop(0)
            stage = self.workflow if isinstance(record, ToolCall) else self.generation
            async for emit in stage.handle(record):
                self.topics[emit.topic.name].append(emit.record)
                if emit.topic in (TOOL_CALLS, TOOL_RESULTS):
                    pending.append(emit.record)
        return " ".join(r.text for r in self.topics[EGRESS.name] if r.turn_id == turn_id and r.text)


async def test_a_booking_over_three_turns_then_a_handoff(tmp_path):
    loop = Loop(tmp_path)
    assert "Which service" in await loop.say("I'd like to book an appointment", "book_appointment", "t1")
    assert await loop.say("a screen repair on Tuesday", "tech_support", "t2") == "What time would you like?"
    assert "what name" in await loop.say("at 3 pm", "other", "t3")
    said = await loop.say("Alice Smith", "other", "t4")
    assert said.startswith("Booked: screen repair on Tuesday at 3 PM for Alice Smith.")
    [booking] = loop.topics[BOOKINGS.name]
    assert loop.workflow.store.bookings("s1")[0]["confirmation"] == booking.confirmation
    finals = [r for r in loop.topics[EGRESS.name] if isinstance(r, ReplyText) and r.final]
    assert [r.turn_id for r in finals] == ["t1", "t2", "t3", "t4"]
    # redelivering a result is not spoken twice
    result = loop.topics[TOOL_RESULTS.name][-1]
    assert [e async for e in loop.generation.handle(result)] == []

    assert "connecting you with a person" in await loop.say("I want to talk to a person", "human_agent", "t5")
    [handoff] = loop.topics[HANDOFFS.name]
    assert isinstance(handoff, Handoff) and handoff.reason == "requested"
    callers = [line.text for line in handoff.transcript if line.role == "caller"]
    assert callers[-1] == "I want to talk to a person"
    assert "Alice Smith" in [line.text for line in handoff.transcript]
    # after the hand-off the bot is quiet; the turn goes to the agent
    assert await loop.say("hello? anyone there?", "other", "t6") == ""
    update = loop.topics[HANDOFFS.name][-1]
    assert isinstance(update, HandoffUpdate)
    assert (update.kind, update.text) == ("caller", "hello? anyone there?")
    assert isinstance(loop.topics[EGRESS.name][-1], ReplyText) and loop.topics[EGRESS.name][-1].final


def test_two_unanswered_turns_in_a_row_hand_off(tmp_path):
    stage = Loop(tmp_path).generation
    unanswered = {"generation.unanswered": 1.0}
    assert stage.follow_up(turn("what?"), DialogueState(misses=0), unanswered, None) is None
    assert stage.follow_up(turn("what?"), DialogueState(misses=1), {}, None) is None
    call_id, source, choice = stage.follow_up(turn("what?"), DialogueState(misses=1), unanswered, None)
    assert (call_id, source, choice.tool, choice.arguments) == (
        "rules-1", "rules", "escalate_to_human", {"reason": "repeated_failure"})


async def test_a_turn_without_a_relevant_passage_is_unanswered(tmp_path):
    stage = Loop(tmp_path).generation
    stage.settings = Settings(data_dir=tmp_path, llm_url="http://127.0.0.1:9/v1", llm_timeout_s=2)
    stage.load()  # a client of a server that is not there: the mark is set before the LLM is asked
    marks: dict[str, float] = {}
    with pytest.raises(Exception, match="Connection"):
        [s async for s in stage.answer(turn("what is the airspeed of a swallow?", "plan_change"), [], marks)]
    assert "generation.unanswered" in marks


def test_a_tool_the_llm_called_ends_the_turn(tmp_path):
    stage = Loop(tmp_path).generation
    acc = ToolCallAccumulator()
    fn = ChoiceDeltaToolCallFunction
    acc.push([ChoiceDeltaToolCall(index=0, id="call_9", function=fn(name="check_order_status",
                                                                    arguments='{"order_id": "12345678"}'))])
    call_id, source, choice = stage.follow_up(turn("where is it?"), DialogueState(), {}, acc)
    assert (call_id, source, choice.tool, choice.arguments) == ("call_9", "llm", "check_order_status",
                                                                {"order_id": "12345678"})


async def handed_off(tmp_path) -> tuple[Loop, Handoff]:
    loop = Loop(tmp_path)
    await loop.say("I want to talk to a person", "human_agent", "t1")
    [handoff] = loop.topics[HANDOFFS.name]
    return loop, handoff


def queue_event(handoff: Handoff, kind: str, note: str = "", agent: str = "") -> QueueEvent:
    return QueueEvent(session_id=handoff.session_id, kind=kind, handoff_turn=handoff.turn_id, agent=agent,
                      note=note, ts=100.0)


async def test_an_expired_handoff_brings_the_bot_back_and_a_request_for_a_person_books_a_callback(tmp_path):
    loop, handoff = await handed_off(tmp_path)
    assert [e async for e in loop.generation.handle(queue_event(handoff, "expire", BUSY_SAY))] == []
    assert DialogueState.of(loop.generation.history["s1"]).callback
    # the bot answers again (a store-hours question is canned), and keeps the offer open
    assert await loop.say("When are you open?", "store_hours", "t2")
    said = await loop.say("Please, I want a person to call me. My name is Sam.", "human_agent", "t3")
    assert said.startswith("I've booked a callback: a colleague will call you back as soon as an agent")
    [callback] = loop.topics[BOOKINGS.name]
    assert (callback.service, callback.name) == ("callback", "Sam") and callback.confirmation in said
    assert len(loop.topics[HANDOFFS.name]) == 1  # not queued again
    assert not DialogueState.of(loop.generation.history["s1"]).callback
    history = loop.generation.history["s1"]
    assert {"assistant": BUSY_SAY}.items() <= next(e for e in history if e["turn_id"] == "expire-t1").items()


async def test_a_released_session_is_the_bots_again_with_the_agents_note(tmp_path):
    loop, handoff = await handed_off(tmp_path)
    for kind in ("claim", "release", "release"):  # a claim changes nothing here; a redelivery neither
        [e async for e in loop.generation.handle(queue_event(handoff, kind, "Refund issued.", "key:bob"))]
    notes = [e for e in loop.generation.history["s1"] if e.get("note")]
    assert [n["note"] for n in notes] == ["Refund issued."]
    assert await loop.say("When are you open?", "store_hours", "t2")  # the bot answers
    from processors.generation.prompt import build_messages

    messages = build_messages(turn("thanks"), loop.generation.history["s1"])
    note = "Note from the agent who handled the call: Refund issued."
    assert {"role": "system", "content": note} in messages
    # an event of an earlier hand-off does nothing once the session was handed off again
    await loop.say("I want to talk to a person", "human_agent", "t3")
    [e async for e in loop.generation.handle(queue_event(handoff, "end", "late"))]
    assert DialogueState.of(loop.generation.history["s1"]).handoff


def test_a_spanish_caller_handed_off_is_told_in_spanish(tmp_path):
    from processors.workflow.store import WorkflowStore
    from processors.workflow.tools import execute
    from schemas import ToolCall

    call = ToolCall(session_id="s-es", turn_id="t1", call_id="rules-1", tool="escalate_to_human",
                    arguments={"reason": "requested"}, language="es")
    result, _published = execute(call, WorkflowStore(tmp_path / "w.sqlite", FIXTURE))
    assert result.language == "es" and result.say.startswith("Le paso ahora con una persona")


async def test_a_result_that_overtakes_its_calls_history_entry_is_still_spoken(tmp_path):
    """The call is produced before its history entry is written (a crash between them calls again); on a
    busy event loop the result can come back in between, and is then spoken once the entry is there."""
    loop = Loop(tmp_path)
    assert "order number" in await loop.say("Where is my order?", "order_status", "t1")
    answering = loop.generation.handle(turn("12345678", "other", turn_id="t2"))
    call = (await anext(answering)).record  # produced and acknowledged; the entry is not written yet
    [result] = [e.record async for e in loop.workflow.handle(call) if e.topic is TOOL_RESULTS]
    speaking = asyncio.create_task(collect(loop.generation.handle(result)))
    await asyncio.sleep(0.05)
    assert not speaking.done(), "the result waits for its entry"
    assert await anext(answering, None) is None
    [reply] = [e.record for e in await speaking if e.topic is EGRESS and e.record.final]
    assert "shipped" in reply.text, reply


async def collect(outputs) -> list:
    return [emit async for emit in outputs]
