"""The retrieval stage: intent results in, knowledge-base passages out (Qdrant)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from processors.base import Emit, Stage
from processors.embeddings import Embedder
from processors.retrieval.kb import collection_for, ingest, kb_dir_for, kb_languages, open_client
from schemas import DEFAULT_LANGUAGE, IntentResult, Passage, Record, RetrievalResult
from streams.topics import INTENTS, RETRIEVALS

log = logging.getLogger(__name__)

NO_LOOKUP_INTENTS = frozenset({"greeting", "goodbye", "human_agent"})
"""Intents answered without the knowledge base."""


class RetrievalStage(Stage):
    """Retrieve the top-k passages for each turn, from the knowledge base of its language.

    Consumes ``voxbus.intents``; produces :class:`RetrievalResult` to
    ``voxbus.retrievals``.  On first start against an empty collection it ingests
    ``VOXBUS_KB_DIR`` (the sample KB by default), each language's folder into its own
    collection with its own model (:mod:`processors.retrieval.kb`); a turn in a language
    without a knowledge base is looked up in the English one.
    """

    name = "retrieval"
    input = INTENTS
    accepts = (IntentResult,)

    def load(self) -> None:
        """Load each language's embedder and open Qdrant, ingesting a KB whose collection is missing."""
        self.preload()
        self.open_exclusive()

    def preload(self) -> None:
        """Load each language's embedder (a warm standby does while the worker holds Qdrant's storage)."""
        self.embedders = {language: Embedder.from_settings(self.settings, language)
                          for language in kb_languages(self.settings)}

    def open_exclusive(self) -> None:
        """Open Qdrant (its embedded storage: one process), ingesting a KB whose collection is missing."""
        self.client = open_client(self.settings)
        for language, embedder in self.embedders.items():
            collection, folder = collection_for(self.settings, language), kb_dir_for(self.settings, language)
            if not self.client.collection_exists(collection):
                count = ingest(folder, self.client, embedder, collection, progress=False)
                log.info("ingested %d passages from %s", count, folder)

    def search(self, query: str, vector: np.ndarray | None = None,
               language: str = DEFAULT_LANGUAGE) -> list[Passage]:
        """Top-k passages for ``query``, best first (blocking).

        Args:
            query: the caller's words.
            vector: their unit-norm embedding, shape (dim,), when already computed by
                this stage's model of ``language``; else the query is embedded here.
            language: the query's language (one without a knowledge base: English's).
        """
        if language not in self.embedders:
            language, vector = DEFAULT_LANGUAGE, None
        if vector is None:
            vector = self.embedders[language].encode([query])[0]
        hits = self.client.query_points(
            collection_for(self.settings, language), query=vector.tolist(),
            limit=self.settings.retrieval_top_k,
        ).points
        return [
            Passage(text=h.payload["text"], title=h.payload.get("title", ""), source=h.payload["source"],
                    score=float(h.score))
            for h in hits if h.payload
        ]

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Attach passages to one intent result."""
        assert isinstance(record, IntentResult)
        passages: list[Passage] = []
        language = record.language if record.language in self.embedders else DEFAULT_LANGUAGE
        embedder = self.embedders[language]
        if record.intent not in NO_LOOKUP_INTENTS:
            vector = embedder.reuse(record.embedding, record.embedding_model)
            passages = await asyncio.to_thread(self.search, record.text, vector, language)
        fields = record.model_dump(exclude={"type", "v", "marks", "embedding", "embedding_model"})
        yield Emit(RETRIEVALS, RetrievalResult(
            **fields, passages=passages, embedding_model=embedder.model_id,
            marks={**record.marks, "retrieval.end": time.time()}
        ))
