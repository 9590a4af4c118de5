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
    sentences, rest = stream(SentenceAggregator(), "Hi. **Your** refund takes 5 to 7 days! - Anything else? ok")
    assert sentences == ["Hi. Your refund takes 5 to 7 days!", "Anything else?"]
    assert rest == "ok"


def test_prompt_has_passages_intent_and_history():
    turn = RetrievalResult(session_id="s", turn_id="t2", text="and the late fee?", intent="billing", confidence=0.9,
                           sentiment="neutral", sentiment_score=0.0,
                           passages=[Passage(text="A late fee of 7 dollars is added.", source="billing.md", score=0.7)])
    messages = build_messages(turn, [{"user": "when is my bill due", "assistant": "On the 15th."}])
    assert messages[0]["role"] == "system" and "7 dollars" in messages[0]["content"]
    assert "billing" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]
    assert messages[-1]["content"] == "and the late fee?"
