import pytest

from processors.retrieval.kb import read_passages
from processors.retrieval.stage import RetrievalStage
from schemas import IntentResult


@pytest.fixture(scope="module")
def retrieval(settings, embedder):
    stage = RetrievalStage(settings)
    stage.embedders = {"en": embedder}
    from processors.retrieval.kb import ingest, open_client

    stage.client = open_client(settings)
    ingest(settings.kb_dir, stage.client, embedder, settings.qdrant_collection, progress=False)
    return stage


def test_sample_kb_is_chunked_one_fact_per_passage(settings):
    passages = list(read_passages(settings.kb_dir))
    assert len(passages) >= 30
    assert {p.source for p in passages} >= {"billing.md", "refunds.md", "stores.md"}
    assert all(not p.text.startswith("#") for p in passages)


@pytest.mark.parametrize(("question", "source", "fact"), [
    ("When is my bill due?", "billing.md", "15th"),
    ("How much is the late fee?", "billing.md", "7 dollars"),
    ("How long do refunds take?", "refunds.md", "5 to 7 business days"),
    ("Are stores open on Sunday?", "stores.md", "11 am"),
    ("How much does the travel pass cost?", "roaming.md", "10 dollars per day"),
    ("How much is express delivery?", "orders.md", "12 dollars"),
])
def test_top_passage_holds_the_fact(retrieval, question, source, fact):
    passages = retrieval.search(question)
    assert passages[0].source == source
    assert any(fact in p.text for p in passages[:3])


async def test_greetings_skip_the_lookup(retrieval):
    record = IntentResult(session_id="s", turn_id="t", text="hello", intent="greeting", confidence=0.9,
                          sentiment="neutral", sentiment_score=0.0)
    [emit] = [e async for e in retrieval.handle(record)]
    assert emit.record.passages == [] and emit.record.text == "hello"


async def test_the_transcript_is_embedded_once(settings, embedder, retrieval, monkeypatch):
    """intent puts its embedding on the record; retrieval reuses it and finds the same passages."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from processors.intent.classifier import IntentClassifier, load_examples
    from processors.intent.stage import IntentStage
    from schemas import Transcript

    stage = IntentStage(settings)
    stage.classifiers = {"en": IntentClassifier(embedder, load_examples())}
    stage.sentiment = SentimentIntensityAnalyzer()
    question = "How long do refunds take?"
    to_retrieval, to_caller = [e.record async for e in stage.handle(
        Transcript(session_id="s", turn_id="a1", text=question))]
    assert len(to_retrieval.embedding) == 4 * retrieval.embedders["en"].dim and to_caller.embedding == b""
    expected = retrieval.search(question)

    def no_second_embedding(texts):
        raise AssertionError(f"embedded again: {texts}")

    monkeypatch.setattr(retrieval.embedders["en"], "encode", no_second_embedding)
    [emit] = [e async for e in retrieval.handle(to_retrieval)]
    assert [p.text for p in emit.record.passages] == [p.text for p in expected]


def test_a_vector_of_another_model_is_not_reused(embedder):
    vector = embedder.encode(["hello"])[0].astype("<f4").tobytes()
    assert embedder.reuse(vector, embedder.model_id) is not None
    assert embedder.reuse(vector, "another/model") is None
    assert embedder.reuse(vector[:-4], embedder.model_id) is None
