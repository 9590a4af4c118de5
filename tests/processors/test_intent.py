import pytest

from processors.intent.classifier import IntentClassifier, load_examples
from processors.intent.stage import IntentStage, sentiment_label
from schemas import Transcript
from streams.topics import EGRESS, INTENTS


@pytest.fixture(scope="module")
def classifier(embedder):
    return IntentClassifier(embedder, load_examples())


@pytest.mark.parametrize(("text", "intent"), [
    ("When is my payment due?", "billing"),
    ("Can I get my money back for these headphones", "refund"),
    ("My package still hasn't shown up", "order_status"),
    ("I keep typing the wrong password and now I'm locked out", "account_access"),
    ("I'd like a plan with more data", "plan_change"),
    ("I want to end my contract and leave", "cancel_service"),
    ("Will my phone work in Spain", "roaming"),
    ("What time does the shop open on Saturday", "store_hours"),
    ("My wifi router is blinking red", "tech_support"),
    ("Could a technician come on Friday", "book_appointment"),
    ("I need to talk to a real person", "human_agent"),
    ("hi good morning", "greeting"),
    ("thanks, bye", "goodbye"),
    ("He was not an ill disposed young man", "other"),
])
def test_intents(classifier, text, intent):
    assert classifier.predict(text).intent == intent


@pytest.mark.parametrize(("score", "label"), [(0.6, "positive"), (0.0, "neutral"), (-0.6, "negative")])
def test_sentiment_label(score, label):
    assert sentiment_label(score) == label


async def test_stage_carries_turn_and_sentiment(settings, classifier):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    stage = IntentStage(settings)
    stage.classifiers, stage.sentiment = {"en": classifier}, SentimentIntensityAnalyzer()
    record = Transcript(session_id="s", turn_id="a1", text="This is terrible, my internet is down again!",
                        marks={"asr.end": 5.0})
    emits = [e async for e in stage.handle(record)]
    assert [e.topic for e in emits] == [INTENTS, EGRESS]
    result = emits[0].record
    assert result.intent == "tech_support" and result.sentiment == "negative"
    assert result.marks["intent.end"] > 5.0
