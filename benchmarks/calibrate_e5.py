"""The floors of multilingual-e5-small's cosines (:data:`processors.embeddings.E5`), measured in Spanish.

e5's cosines sit high (unrelated Spanish texts score about 0.8), so MiniLM's floors mean nothing
for it.  Over the Spanish sets of ``benchmarks/eval`` (``*.es.yaml``) and the Spanish knowledge base
(``kb/es``, an in-memory Qdrant) this prints and writes ``benchmarks/results/calibrate_e5.json``:

* per knowledge-base question: the best passage's score and whether it is from the right article;
* per off-topic utterance: the best passage's score and the best intent label's score;
* per held-out intent utterance: the best label's score and whether the label is right.

From these: ``relevant`` and ``intent_floor`` sit between the off-topic and the in-domain scores,
``direct`` at the least score above which every best passage was the right article's.

Run: ``python -m benchmarks.calibrate_e5`` (a few seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from qdrant_client import QdrantClient

from processors.embeddings import Embedder
from processors.intent.classifier import TOP_K, IntentClassifier, load_examples
from processors.retrieval.kb import ingest, kb_dir_for
from streams.settings import Settings

EVAL = Path(__file__).parent / "eval"
RESULTS = Path(__file__).parent / "results"
LANGUAGE = "es"


def label_scores(classifier: IntentClassifier, text: str) -> tuple[str, float]:
    """The best label of ``text`` and its score (mean cosine of its TOP_K nearest examples)."""
    row = classifier.embedder.encode([text])[0] @ classifier.matrix.T
    scores = [np.sort(row[classifier.owner == i])[-TOP_K:].mean() for i in range(len(classifier.labels))]
    best = int(np.argmax(scores))
    return classifier.labels[best], float(scores[best])


def main() -> dict:
    """Measure and print the score distributions; write the report."""
    settings = Settings()
    embedder = Embedder.from_settings(settings, LANGUAGE)
    client = QdrantClient(":memory:")
    ingest(kb_dir_for(settings, LANGUAGE), client, embedder, "kb", progress=False)
    classifier = IntentClassifier(embedder, load_examples(str(Path("processors/intent/examples.es.yaml"))))

    def best_passage(text: str) -> tuple[str, float]:
        hit = client.query_points("kb", query=embedder.encode([text])[0].tolist(), limit=1).points[0]
        return hit.payload["source"], float(hit.score)

    questions = yaml.safe_load((EVAL / "kb_questions.es.yaml").read_text())
    kb = [(q["q"], *best_passage(q["q"]), q["source"]) for q in questions]
    off_sets = yaml.safe_load((EVAL / "off_topic.es.yaml").read_text())
    off = [text for texts in off_sets.values() for text in texts]
    off_scores = [(text, best_passage(text)[1], label_scores(classifier, text)[1]) for text in off]
    heldout = yaml.safe_load((EVAL / "intents_heldout.es.yaml").read_text())
    intents = [(text, label, *label_scores(classifier, text))
               for label, texts in heldout.items() for text in texts]
    right = [score for _q, source, score, want in kb if source == want]
    wrong = [score for _q, source, score, want in kb if source != want]
    report = {
        "kb_top1": len(right) / len(kb),
        "kb_best_score_right": [min(right), float(np.median(right)), max(right)] if right else [],
        "kb_best_score_wrong": sorted(wrong),
        "off_topic_best_passage": [min(s for _t, s, _l in off_scores), max(s for _t, s, _l in off_scores)],
        "off_topic_best_label": [min(x for _t, _s, x in off_scores), max(x for _t, _s, x in off_scores)],
        "intent_accuracy": sum(label == got for _t, label, got, _s in intents) / len(intents),
        "intent_best_label_score": [min(s for *_x, s in intents),
                                    float(np.median([s for *_x, s in intents]))],
        "intent_misses": [(t, label, got) for t, label, got, _s in intents if label != got],
        "kb_misses": [(q, source, round(score, 3), want) for q, source, score, want in kb if source != want],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "calibrate_e5.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return report


if __name__ == "__main__":
    main()
