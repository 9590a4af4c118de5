"""The retrieval stage: intent results in, knowledge-base passages out (Qdrant)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import numpy as np

from processors.base import Emit, Stage
from processors.embeddings import Embedder
from processors.retrieval.kb import ingest, open_client
from schemas import IntentResult, Passage, Record, RetrievalResult
from streams.topics import INTENTS, RETRIEVALS

log = logging.getLogger(__name__)

NO_LOOKUP_INTENTS = frozenset({"greeting", "goodbye", "human_agent"})
"""Intents answered without the knowledge base."""


class RetrievalStage(Stage):
    """Retrieve the top-k passages for each turn.

    Consumes ``voxbus.intents``; produces :class:`RetrievalResult` to
    ``voxbus.retrievals``.  On first start against an empty collection it ingests
    ``VOXBUS_KB_DIR`` (the sample KB by default).
    """

    name = "retrieval"
    input = INTENTS
    accepts = (IntentResult,)

    def load(self) -> None:
        """Load the embedder and open Qdrant, ingesting the KB if the collection is missing."""
        self.embedder = Embedder.from_settings(self.settings)
        self.client = open_client(self.settings)
        collection = self.settings.qdrant_collection
        if not self.client.collection_exists(collection):
            count = ingest(self.settings.kb_dir, self.client, self.embedder, collection, progress=False)
            log.info("ingested %d passages from %s", count, self.settings.kb_dir)

    def search(self, query: str, vector: np.ndarray | None = None) -> list[Passage]:
        """Top-k passages for ``query``, best first (blocking).

        Args:
            query: the caller's words.
            vector: their unit-norm embedding, shape (dim,), when already computed by
                this stage's model; else the query is embedded here.
        """
        if vector is None:
            vector = self.embedder.encode([query])[0]
        hits = self.client.query_points(
            self.settings.qdrant_collection, query=vector.tolist(), limit=self.settings.retrieval_top_k
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
        if record.intent not in NO_LOOKUP_INTENTS:
            vector = self.embedder.reuse(record.embedding, record.embedding_model)
            passages = await asyncio.to_thread(self.search, record.text, vector)
        fields = record.model_dump(exclude={"type", "v", "marks", "embedding", "embedding_model"})
        yield Emit(RETRIEVALS, RetrievalResult(
            **fields, passages=passages, marks={**record.marks, "retrieval.end": time.time()}
        ))
