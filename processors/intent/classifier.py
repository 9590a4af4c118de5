"""Intent classification by nearest labelled examples in sentence-embedding space.

Each label's score is the mean cosine similarity of the query to its
:data:`TOP_K` most similar examples (``examples.yaml``); the confidence is the
softmax of the label scores at temperature :data:`TEMPERATURE`.  A query whose best
score stays under :data:`MIN_SIMILARITY` is ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import get_args

import numpy as np
import yaml

from processors.embeddings import Embedder
from schemas import Intent

TOP_K = 3
TEMPERATURE = 0.05
MIN_SIMILARITY = 0.35
"""Below this best-label similarity a query is ``other`` (tuned on the held-out set)."""


@dataclass(frozen=True)
class IntentPrediction:
    """A predicted intent and its confidence in [0, 1]."""

    intent: Intent
    confidence: float


def load_examples(path: str | None = None) -> dict[str, list[str]]:
    """Read labelled examples ``{intent: [utterance, ...]}`` from YAML.

    Raises:
        ValueError: a label is not one of :data:`schemas.Intent`.
    """
    text = open(path).read() if path else resources.files(__package__).joinpath("examples.yaml").read_text()
    examples: dict[str, list[str]] = yaml.safe_load(text)
    unknown = set(examples) - set(get_args(Intent))
    if unknown:
        raise ValueError(f"unknown intent labels in examples: {sorted(unknown)}")
    return examples


class IntentClassifier:
    """k-nearest-example intent classifier over an :class:`Embedder`."""

    def __init__(self, embedder: Embedder, examples: dict[str, list[str]]) -> None:
        self.embedder = embedder
        self.labels = list(examples)
        texts = [t for label in self.labels for t in examples[label]]
        self.owner = np.array([i for i, label in enumerate(self.labels) for _ in examples[label]])
        self.matrix = embedder.encode(texts)

    def predict(self, text: str) -> IntentPrediction:
        """Classify one utterance (blocking, ~5 ms)."""
        return self.predict_vectors(self.embedder.encode([text]))[0]

    def predict_vectors(self, vectors: np.ndarray) -> list[IntentPrediction]:
        """Classify pre-computed unit embeddings of shape (n, dim)."""
        similarities = vectors @ self.matrix.T  # (n, examples)
        out = []
        for row in similarities:
            scores = np.array([
                np.sort(row[self.owner == i])[-TOP_K:].mean() for i in range(len(self.labels))
            ])
            best = int(scores.argmax())
            weights = np.exp((scores - scores.max()) / TEMPERATURE)
            confidence = float(weights[best] / weights.sum())
            label = self.labels[best] if scores[best] >= MIN_SIMILARITY else "other"
            out.append(IntentPrediction(label, round(confidence, 4)))  # type: ignore[arg-type]
        return out
