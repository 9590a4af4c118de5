"""Intent classification by nearest labelled examples in sentence-embedding space.

Each label's score is the mean cosine similarity of the query to its
:data:`TOP_K` most similar examples (``examples.yaml``); the confidence is the
softmax of the label scores at temperature :data:`TEMPERATURE`.  A query whose best
score stays under its embedding model's floor (:attr:`processors.embeddings.Calibration.intent_floor`:
0.35 for MiniLM, tuned on the held-out set) is ``other``.

Each language has its examples: ``examples.yaml`` (English), ``examples.<language>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import get_args

import numpy as np
import yaml

from processors.embeddings import Embedder
from schemas import DEFAULT_LANGUAGE, Intent

TOP_K = 3
TEMPERATURE = 0.05


@dataclass(frozen=True)
class IntentPrediction:
    """A predicted intent and its confidence in [0, 1]."""

    intent: Intent
    confidence: float


def examples_file(language: str) -> str:
    """The packaged examples of ``language``: ``examples.yaml`` (English), or ``examples.<language>.yaml``."""
    return "examples.yaml" if language == DEFAULT_LANGUAGE else f"examples.{language}.yaml"


def example_languages() -> list[str]:
    """The languages whose labelled examples are packaged: English, then each ``examples.<language>.yaml``."""
    files = (entry.name.split(".") for entry in resources.files(__package__).iterdir())
    return [DEFAULT_LANGUAGE, *sorted(name[1] for name in files if len(name) == 3 and name[0] == "examples")]


def load_examples(path: str | None = None, language: str = DEFAULT_LANGUAGE) -> dict[str, list[str]]:
    """Read labelled examples ``{intent: [utterance, ...]}`` from YAML.

    Args:
        path: a YAML file; None: the packaged examples of ``language``.
        language: see ``path``.

    Raises:
        ValueError: a label is not one of :data:`schemas.Intent`.
        FileNotFoundError: no packaged examples of ``language``.
    """
    packaged = resources.files(__package__).joinpath(examples_file(language))
    text = Path(path).read_text(encoding="utf-8") if path else packaged.read_text(encoding="utf-8")
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
            label = self.labels[best] if scores[best] >= self.embedder.calibration.intent_floor else "other"
            out.append(IntentPrediction(label, round(confidence, 4)))  # type: ignore[arg-type]
        return out
