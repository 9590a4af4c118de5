"""The intent stage: transcripts in, intent + sentiment out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.base import Emit, Stage
from processors.embeddings import Embedder
from processors.intent.classifier import IntentClassifier, example_languages, load_examples
from schemas import DEFAULT_LANGUAGE, IntentResult, Record, Sentiment, Transcript
from streams.topics import EGRESS, INTENTS, TRANSCRIPTS

SENTIMENT_CUTOFF = 0.05
"""VADER's recommended compound-score cut-off between neutral and polar sentiment."""
SENTIMENT_LANGUAGES = frozenset({"en"})
"""Languages VADER reads (its lexicon is English).  No maintained Spanish sentiment library installs
here without a model hub download, so any other language's turns get 0.0 (neutral): not measured."""


def sentiment_label(compound: float) -> Sentiment:
    """Map a VADER compound score in [-1, 1] to a label (Hutto & Gilbert, 2014)."""
    if compound >= SENTIMENT_CUTOFF:
        return "positive"
    if compound <= -SENTIMENT_CUTOFF:
        return "negative"
    return "neutral"


class IntentStage(Stage):
    """Classify intent (sentence-embedding kNN) and sentiment (VADER), in the turn's language.

    Consumes ``voxbus.transcripts``; produces :class:`IntentResult` to
    ``voxbus.intents`` and ``voxbus.egress``.  Each language with packaged examples
    (:func:`processors.intent.classifier.example_languages`: English, Spanish) has its classifier
    and embedding model (:func:`processors.embeddings.embedding_model_for`); a turn in another
    language is classified as English is.
    """

    name = "intent"
    input = TRANSCRIPTS
    accepts = (Transcript,)

    def load(self) -> None:
        """Load each language's embedding model, embed its examples, and load VADER."""
        self.classifiers = {
            language: IntentClassifier(Embedder.from_settings(self.settings, language),
                                       load_examples(language=language))
            for language in example_languages()
        }
        self.sentiment = SentimentIntensityAnalyzer()

    def classifier_for(self, language: str) -> IntentClassifier:
        """The classifier of ``language``, else the English one."""
        return self.classifiers.get(language) or self.classifiers[DEFAULT_LANGUAGE]

    def analyse(self, text: str, language: str = DEFAULT_LANGUAGE) -> tuple[str, float, float, bytes, str]:
        """Return (intent, confidence, VADER compound, embedding bytes, model id) for ``text`` (blocking).

        The embedding (little-endian float32, unit norm) goes on the record with its model's id,
        so the retrieval stage does not embed the same text again.  The compound is 0.0 in a
        language but those of :data:`SENTIMENT_LANGUAGES`.
        """
        classifier = self.classifier_for(language)
        vector = classifier.embedder.encode([text])
        prediction = classifier.predict_vectors(vector)[0]
        measured = language in SENTIMENT_LANGUAGES
        compound = self.sentiment.polarity_scores(text)["compound"] if measured else 0.0
        return (prediction.intent, prediction.confidence, compound, vector[0].astype("<f4").tobytes(),
                classifier.embedder.model_id)

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Classify one transcript."""
        assert isinstance(record, Transcript)
        intent, confidence, compound, embedding, model = await asyncio.to_thread(self.analyse, record.text,
                                                                                 record.language)
        result = IntentResult(
            session_id=record.session_id,
            egress_partition=record.egress_partition,
            turn_id=record.turn_id,
            text=record.text,
            source=record.source,
            speak=record.speak,
            language=record.language,
            intent=intent,  # type: ignore[arg-type]
            confidence=confidence,
            sentiment=sentiment_label(compound),
            sentiment_score=compound,
            embedding=embedding,
            embedding_model=model,
            marks={**record.marks, "intent.end": time.time()},
        )
        yield Emit(INTENTS, result)
        yield Emit(EGRESS, result.model_copy(update={"embedding": b"", "embedding_model": ""}))
