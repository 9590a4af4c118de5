"""The suggest stage on the generation stage's own code (no broker): which turns, and what it suggests.

Suggestions made by the embedded SmolLM2 on the real stack: tests/integration/test_agent_assist.py.
"""

from __future__ import annotations

import pytest

from processors.generation.suggest import SuggestStage, follow, opened
from schemas import (
    ConversationLine,
    DeadLetter,
    Handoff,
    HandoffUpdate,
    Passage,
    QueueEvent,
    RetrievalResult,
    Suggestion,
    encode,
)
from streams.settings import Settings
from streams.topics import DEAD_LETTER, EGRESS, RETRIEVALS, SUGGESTIONS
from tests.processors.test_bus_bounds import message, runner_for, sent

BILL = Passage(text="Your bill is due on the 15th of each month.", source="billing.md", title="Billing",
               score=0.92)
ROAMING = "Roaming works in Canada and Mexico at no extra cost."


def handoff(session: str = "s1", ts: float = 100.0, turn: str = "t1") -> Handoff:
    return Handoff(session_id=session, turn_id=turn, reason="requested", summary="asked for a person", ts=ts,
                   transcript=[ConversationLine(role="caller", text="I want a person", turn_id="t1"),
                               ConversationLine(role="assistant", text="Connecting you.", turn_id="t1")])


def event(kind: str, agent: str = "bob", turn: str = "t1", session: str = "s1") -> QueueEvent:
    return QueueEvent(session_id=session, kind=kind, handoff_turn=turn, agent=agent, ts=110.0)


def turn(text: str = "When is my bill due?", passages=(BILL,), session: str = "s1", turn_id: str = "a2",
         intent: str = "billing") -> RetrievalResult:
    return RetrievalResult(session_id=session, turn_id=turn_id, text=text, intent=intent, confidence=0.9,
                           sentiment="neutral", sentiment_score=0.0, passages=list(passages), source="text",
                           speak=False)


@pytest.fixture
def stage(tmp_path) -> SuggestStage:
    stage = SuggestStage(Settings(data_dir=tmp_path))
    stage.load()  # an LLM client only; the turns below never reach the LLM
    return stage


async def run(stage: SuggestStage, *records) -> list[Suggestion]:
    out = []
    for record in records:
        async for emit in stage.handle(record):
            assert emit.topic is SUGGESTIONS
            out.append(emit.record)
    return out


def test_a_round_is_held_from_its_claim_until_released_ended_or_expired_unclaimed():
    state = opened(handoff())
    assert state["history"] == [{"user": "I want a person", "assistant": "Connecting you."}]
    assert follow(state, event("claim"), 4)["held"]
    assert follow(state, event("claim", turn="t0"), 4) == state  # another round's event
    held = follow(state, event("claim"), 4)
    assert follow(held, event("expire", agent=""), 4) == held  # a claim came first: the expiry lost
    assert follow(state, event("expire", agent=""), 4) is None
    assert follow(held, event("release"), 4) is None and follow(held, event("end"), 4) is None
    assert follow(held, event("transfer"), 4) == held
    reply = HandoffUpdate(session_id="s1", kind="agent", turn_id="agent-1", text="Let me check.", ts=111.0)
    assert follow(held, reply, 4)["history"][-1]["assistant"] == "Connecting you. Let me check."
    assert follow(None, event("claim"), 4) is None
    assert follow(held, handoff(ts=90.0, turn="t0"), 4) == held  # an older round
    assert follow(held, handoff(ts=200.0, turn="t5"), 4) == opened(handoff(ts=200.0, turn="t5"))


async def test_a_held_sessions_turn_gets_its_passages_sources_and_a_reply(stage):
    assert await run(stage, turn()) == []  # not handed off
    assert await run(stage, handoff(), turn()) == []  # waiting: nobody to suggest to
    [suggestion] = await run(stage, event("claim"), turn())
    assert suggestion.text == BILL.text  # a confident article is read out, as the bot would
    assert suggestion.sources == ["billing.md"] and suggestion.passages == [BILL]
    assert (suggestion.session_id, suggestion.turn_id, suggestion.handoff_turn) == ("s1", "a2", "t1")
    assert suggestion.caller_text == "When is my bill due?" and "suggest.end" in suggestion.marks
    assert stage.rounds["s1"]["history"][-1] == {"user": "When is my bill due?", "assistant": ""}
    [greeting] = await run(stage, turn("Hello there", passages=(), intent="greeting", turn_id="a3"))
    assert greeting.text.startswith("Hello") and greeting.sources == [] and greeting.passages == []
    assert await run(stage, event("release"), turn(turn_id="a4")) == []  # back to the bot


async def test_an_agent_leg_is_not_answered(stage):
    leg = "agent:s1"
    await run(stage, handoff(session=leg), event("claim", session=leg))
    assert await run(stage, turn(session=leg)) == []


async def test_without_the_llm_the_agent_still_gets_the_passages(tmp_path):
    """The LLM server is down (nothing listens on the discard port)."""
    stage = SuggestStage(Settings(data_dir=tmp_path, llm_url="http://127.0.0.1:9/v1", llm_timeout_s=5.0))
    stage.load()
    weak = Passage(text=ROAMING, source="roaming.md", score=0.5)  # not confident: the LLM answers
    [suggestion] = await run(stage, handoff(), event("claim"), turn("Does roaming work in Mexico?", (weak,),
                                                                     intent="roaming"))
    assert suggestion.text == "" and suggestion.error == "llm_failed"
    assert suggestion.passages == [weak] and suggestion.sources == ["roaming.md"]


async def test_a_failure_is_dead_lettered_and_never_told_to_the_caller(stage, monkeypatch):
    """Under the real runtime: agent assist is on no caller's path (``caller_path`` False), so a turn
    it fails on goes to the dead letters and no ErrorEvent reaches the caller (its Kafka user may not
    write voxbus.egress: deploy/k8s/base/stages/suggest.yaml)."""
    async def broken(turn, state):
        raise RuntimeError("the rounds table is gone")

    monkeypatch.setattr(stage, "suggest", broken)
    runner = runner_for(stage)
    for offset, record in enumerate([handoff(), event("claim"), turn()]):
        await runner.on_message(message(encode(record), RETRIEVALS.name, "s1", offset))
    [letter] = sent(runner, DEAD_LETTER.name)
    assert isinstance(letter, DeadLetter) and letter.offset == 2 and "rounds table is gone" in letter.reason
    assert not sent(runner, EGRESS.name) and not sent(runner, SUGGESTIONS.name)
