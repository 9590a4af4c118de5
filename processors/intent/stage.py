"""The intent stage: transcripts in, intent + sentiment out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from processors.base import Emit, Stage
from processors.embeddings import Embedder
from processors.intent.classifier import IntentClassifier, load_examples
from schemas import IntentResult, Record, Sentiment, Transcript
from streams.topics import EGRESS, INTENTS, TRANSCRIPTS

SENTIMENT_CUTOFF = 0.05
"""VADER's recommended compound-score cut-off between neutral and polar sentiment."""


def sentiment_label(compound: float) -> Sentiment:
    """Map a VADER compound score in [-1, 1] to a label (Hutto & Gilbert, 2014)."""
    if compound >= SENTIMENT_CUTOFF:
        return "positive"
    if compound <= -SENTIMENT_CUTOFF:
        return "negative"
    return "neutral"


class IntentStage(Stage):
    """Classify intent (sentence-embedding kNN) and sentiment (VADER).

    Consumes ``voxbus.transcripts``; produces :class:`IntentResult` to
    ``voxbus.intents`` and ``voxbus.egress``.
    """

    name = "intent"
    input = TRANSCRIPTS
    accepts = (Transcript,)

    def load(self) -> None:
        """Load the embedding model, embed the examples, and load VADER."""
        self.classifier = IntentClassifier(Embedder.from_settings(self.settings), load_examples())
        self.sentiment = SentimentIntensityAnalyzer()

    def analyse(self, text: str) -> tuple[str, float, float, bytes]:
        """Return (intent, confidence, VADER compound, embedding bytes) for ``text`` (blocking).

        The embedding (little-endian float32, unit norm) goes on the record, so the
        retrieval stage does not embed the same text again.
        """
        vector = self.classifier.embedder.encode([text])
        prediction = self.classifier.predict_vectors(vector)[0]
        compound = self.sentiment.polarity_scores(text)["compound"]
        return prediction.intent, prediction.confidence, compound, vector[0].astype("<f4").tobytes()

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Classify one transcript."""
        assert isinstance(record, Transcript)
        intent, confidence, compound, embedding = await asyncio.to_thread(self.analyse, record.text)
        result = IntentResult(
            session_id=record.session_id,
            egress_partition=record.egress_partition,
            turn_id=record.turn_id,
            text=record.text,
            source=record.source,
            speak=record.speak,
            intent=intent,  # type: ignore[arg-type]
            confidence=confidence,
            sentiment=sentiment_label(compound),
            sentiment_score=compound,
            embedding=embedding,
            embedding_model=self.classifier.embedder.model_id,
            marks={**record.marks, "intent.end": time.time()},
        )
        yield Emit(INTENTS, result)
        yield Emit(EGRESS, result.model_copy(update={"embedding": b"", "embedding_model": ""}))
