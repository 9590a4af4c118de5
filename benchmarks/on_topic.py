"""The on-topic rule (:mod:`processors.generation.topic`) on held-out and off-topic utterances.

Every utterance of ``benchmarks/eval/intents_heldout.yaml`` and ``kb_questions.yaml`` (in
domain: a redirect is a *false redirect*) and of ``off_topic.yaml`` (written for this rule:
each should be redirected) goes through the real intent classifier and the real retrieval
search over the sample knowledge base (an in-memory Qdrant), then the rule.  Greeting,
goodbye and human_agent turns are retrieved nothing, as in the retrieval stage.  Writes
``benchmarks/results/on_topic.json``: the false-redirect rate of each in-domain set, the
redirect rate of each off-topic group, and the utterances the rule got wrong with their
intent, confidence and best passage score.

Run: ``python -m benchmarks.on_topic`` (loads the embedding model: a few seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from qdrant_client import QdrantClient

from processors.embeddings import Embedder
from processors.generation.topic import off_topic
from processors.intent.classifier import IntentClassifier, load_examples
from processors.retrieval.kb import ingest
from processors.retrieval.stage import NO_LOOKUP_INTENTS, RetrievalStage
from schemas import RetrievalResult
from streams.settings import Settings

EVAL = Path(__file__).parent / "eval"
RESULTS = Path(__file__).parent / "results"


def utterance_sets() -> dict[str, tuple[bool, list[str]]]:
    """``{set name: (should be redirected, utterances)}`` from the eval files."""
    heldout = yaml.safe_load((EVAL / "intents_heldout.yaml").read_text())
    in_domain = [text for label, texts in heldout.items() if label != "other" for text in texts]
    questions = [item["q"] for item in yaml.safe_load((EVAL / "kb_questions.yaml").read_text())]
    sets = {"intents_heldout (in domain)": (False, in_domain), "kb_questions": (False, questions),
            "intents_heldout 'other'": (True, heldout.get("other", []))}
    for group, texts in yaml.safe_load((EVAL / "off_topic.yaml").read_text()).items():
        sets[f"off_topic: {group}"] = (True, texts)
    return sets


def main() -> dict:
    """Measure the rule on every set; print and write the report."""
    settings = Settings()
    embedder = Embedder.from_settings(settings)
    classifier = IntentClassifier(embedder, load_examples())
    retrieval = RetrievalStage(settings)
    retrieval.embedders, retrieval.client = {"en": embedder}, QdrantClient(":memory:")
    ingest(settings.kb_dir, retrieval.client, embedder, settings.qdrant_collection, progress=False)
    report: dict = {}
    for name, (expected, texts) in utterance_sets().items():
        wrong = []
        for text in texts:
            intent = classifier.predict(text)
            passages = [] if intent.intent in NO_LOOKUP_INTENTS else retrieval.search(text)
            turn = RetrievalResult(session_id="eval", turn_id="t", text=text, intent=intent.intent,
                                   confidence=intent.confidence, sentiment="neutral", sentiment_score=0.0,
                                   passages=passages)
            if off_topic(turn) != expected:
                wrong.append({"text": text, "intent": intent.intent, "confidence": intent.confidence,
                              "best_passage": round(passages[0].score, 3) if passages else None})
        rate = (len(texts) - len(wrong)) / len(texts) if expected else len(wrong) / len(texts)
        key = "redirect_rate" if expected else "false_redirect_rate"
        report[name] = {"n": len(texts), key: round(rate, 4), "wrong": wrong}
        print(f"{name:40s} n={len(texts):3d} {key}={rate:.1%}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "on_topic.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
