from processors.generation.prompt import build_messages
from processors.generation.sentences import SentenceAggregator
from schemas import Passage, RetrievalResult


def stream(aggregator, text, step=3):
    out = []
    for i in range(0, len(text), step):
        out += aggregator.push(text[i:i + step])
    return out, aggregator.flush()


def test_sentences_are_released_as_soon_as_the_next_begins():
    agg = SentenceAggregator()
    assert agg.push("Your bill is due on the 15th.") == []
    assert agg.push(" A late") == ["Your bill is due on the 15th."]
    assert agg.flush() == "A late"


def test_short_fragments_and_markdown():
    sentences, rest = stream(SentenceAggregator(),
                             "Hi. **Your** refund takes 5 to 7 days! - Anything else? ok")
    assert sentences == ["Hi. Your refund takes 5 to 7 days!", "Anything else?"]
    assert rest == "ok"


def test_prompt_has_passages_intent_and_history():
    fee = Passage(text="A late fee of 7 dollars is added.", source="billing.md", score=0.7)
    turn = RetrievalResult(session_id="s", turn_id="t2", text="and the late fee?", intent="billing",
                           confidence=0.9, sentiment="neutral", sentiment_score=0.0, passages=[fee])
    messages = build_messages(turn, [{"user": "when is my bill due", "assistant": "On the 15th."}])
    assert messages[0]["role"] == "system" and "7 dollars" in messages[0]["content"]
    assert "billing" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[-1]["content"] == "and the late fee?"


def test_numbers_in_words_and_digits():
    from processors.generation.grounding import numbers

    assert numbers("due on the 15th, a fee of seven dollars") == {"15", "7"}
    assert numbers("no numbers here") == set()


def test_a_sentence_with_an_invented_number_is_ungrounded():
    from processors.generation.grounding import direct_answer, ungrounded

    facts = [Passage(text="Payment is due on the 15th; a late fee of 7 dollars applies.", source="b",
                     score=0.55)]
    assert not ungrounded("Your payment is due on the 15th.", facts)
    assert ungrounded("Your payment is due on the 20th.", facts)
    assert not ungrounded("I can help with that.", facts)
    assert direct_answer(facts, 0.6) is None
    assert direct_answer(facts, 0.5) == facts[0].text


def test_a_long_first_clause_is_released_early():
    from processors.generation.sentences import speech_units

    text = ("You can return a phone or accessory within 30 days of purchase for a full refund, "
            "as long as it is undamaged. Bring it to a store, with the receipt.")
    sentences, rest = stream(SentenceAggregator(), text)
    assert sentences == ["You can return a phone or accessory within 30 days of purchase for a full refund,",
                         "as long as it is undamaged."]
    assert rest == "Bring it to a store, with the receipt."
    assert speech_units(text) == [*sentences, rest]
    assert speech_units("Hi, there. Fine.") == ["Hi, there. Fine."]  # short clauses wait for the sentence
    assert stream(SentenceAggregator(first_clause=False), text)[0] == [text.split(" Bring")[0]]


def test_a_turn_written_after_a_tool_result_keeps_that_result():
    """Lost update (issue 16 hole 2): a turn streams while its session's tool result is spoken."""
    from collections import defaultdict

    from processors.generation.dialogue import DialogueState
    from processors.generation.stage import GenerationStage
    from streams.settings import Settings

    stage = GenerationStage(Settings())
    stage.history = defaultdict(list)
    stage.history["s"] = [{"turn_id": "t1", "user": "book a repair", "assistant": "", "tool": "rules-1",
                           "said": 0, "state": DialogueState().as_dict()}]
    turn = RetrievalResult(session_id="s", turn_id="t2", text="and my bill?", intent="billing",
                           confidence=0.9, sentiment="neutral", sentiment_score=0.0, passages=[])
    # t2 started streaming with the history above; meanwhile t1's result was spoken:
    stage.history["s"] = [{**stage.history["s"][0], "assistant": "Booked.", "result": "ok"}]
    stage.remember(turn, "On the 15th.", DialogueState())
    entries = {e["turn_id"]: e for e in stage.history["s"]}
    assert entries["t1"]["result"] == "ok" and entries["t1"]["assistant"] == "Booked."
    assert entries["t2"]["assistant"] == "On the 15th."


async def test_a_continued_turn_leaves_the_history():
    """The caller's next words continued t2 (vad stage): t3 holds them, and t2's reply was never heard."""
    from collections import defaultdict

    from processors.cancel import CancelledTurns
    from processors.generation.stage import GenerationStage
    from schemas import TurnCancel
    from streams.settings import Settings

    stage = GenerationStage(Settings())
    stage.history, stage.cancelled, stage.heard = defaultdict(list), CancelledTurns(), {}
    stage.history["s"] = [{"turn_id": "t1", "user": "hello", "assistant": "Hi."},
                          {"turn_id": "t2", "user": "I want to change", "assistant": "What would you like?"}]
    await stage.on_cancel(TurnCancel(session_id="s", turn_id="t2", reason="continuation", ts=1.0))
    assert [e["turn_id"] for e in stage.history["s"]] == ["t1"]
    assert ("s", "t2") in stage.cancelled


def _turn(intent: str, *scores: float) -> RetrievalResult:
    passages = [Passage(text=f"fact {i}", source=f"a{i}.md", score=s) for i, s in enumerate(scores)]
    return RetrievalResult(session_id="s", turn_id="t", text="front, left", intent=intent, confidence=0.3,
                           sentiment="neutral", sentiment_score=0.0, passages=passages)


def test_off_topic_needs_intent_other_and_no_relevant_passage():
    from processors.generation.grounding import RELEVANT_SCORE
    from processors.generation.topic import off_topic

    below = RELEVANT_SCORE - 0.01
    assert off_topic(_turn("other", below, below - 0.05))
    assert off_topic(_turn("other"))  # nothing retrieved at all
    assert not off_topic(_turn("other", RELEVANT_SCORE))  # an article matched: the KB answers
    assert not off_topic(_turn("billing", below))  # a customer-service intent is never redirected


def test_cited_sources_are_each_file_once_best_first():
    from processors.generation.grounding import cited

    passages = [Passage(text=t, source=s, score=0.5) for t, s in (("a", "plans.md"), ("b", "billing.md"),
                                                                  ("c", "plans.md"))]
    assert cited(passages) == ["plans.md", "billing.md"]
    assert cited([]) == []


async def test_an_agents_words_are_never_answered():
    """An agent leg's turn (schemas.voice: the agent's own voice, transcribed) gets no reply, no tool."""
    from collections import defaultdict

    from processors.generation.stage import GenerationStage
    from schemas import agent_leg
    from streams.settings import Settings

    stage = GenerationStage(Settings())
    stage.history, stage.cancelled, stage.heard = defaultdict(list), set(), {}
    turn = RetrievalResult(session_id=agent_leg("s"), turn_id="a0-1", text="Let me get a supervisor.",
                           intent="human_agent", confidence=0.9, sentiment="neutral", sentiment_score=0.0,
                           passages=[])
    assert [emit async for emit in stage.handle(turn)] == []
    assert not stage.history[agent_leg("s")]


def test_the_stored_history_drops_turns_a_block_at_a_time():
    """The history the next prompt reads keeps its first entry for VOXBUS_HISTORY_TURNS turns in a row."""
    from collections import defaultdict

    from processors.generation.dialogue import DialogueState
    from processors.generation.stage import GenerationStage
    from streams.settings import Settings

    stage = GenerationStage(Settings(history_turns=4))
    stage.history = defaultdict(list)
    firsts = []
    for k in range(12):
        turn = RetrievalResult(session_id="s", turn_id=f"t{k}", text=f"question {k}", intent="billing",
                               confidence=0.9, sentiment="neutral", sentiment_score=0.0, passages=[])
        stage.remember(turn, f"answer {k}", DialogueState())
        firsts.append(stage.history["s"][0]["turn_id"])
    assert firsts == ["t0"] * 7 + ["t4"] * 4 + ["t8"]  # 4 to 7 turns kept; a sliding window moves every turn
    assert stage.history["s"][-1]["turn_id"] == "t11"
