"""Spanish questions spoken by espeak-ng, heard by faster-whisper base, looked up in kb/es (issue 19 part 1).

Every question of ``benchmarks/eval/kb_questions.es.yaml`` is synthesized by espeak-ng's Spanish voice
(``-v es``, at each rate of ``RATES`` words a minute), resampled to 16 kHz, decoded by the asr stage's
model of Spanish (base, forced to ``es``) and looked up as the retrieval stage does (e5 over ``kb/es``).
Prints and writes ``benchmarks/results/spoken_es.json``: per rate, the WER against the written
question, how often the right article ranks first, and how often its best passage would be read out
(at or above e5's read-out floor) with the fact in it.  espeak-ng is formant synthesis, far from a
human voice: this measures the synthetic test caller, not Spanish callers.

Run: ``python -m benchmarks.spoken_es`` (about a minute).
"""

from __future__ import annotations

import json
from pathlib import Path

import jiwer
import numpy as np
import soxr
import yaml
from qdrant_client import QdrantClient

from processors.asr.languages import Recognizers
from processors.embeddings import E5, Embedder
from processors.retrieval.kb import ingest, kb_dir_for
from processors.tts.espeak_voice import EspeakSynthesizer
from streams.settings import Settings

EVAL = Path(__file__).parent / "eval"
RESULTS = Path(__file__).parent / "results"
RATES = (175, 140)
"""espeak-ng's default rate (words a minute), and the slower one the integration tests use."""


def espeak(text: str, wpm: int) -> np.ndarray:
    """``text`` in espeak-ng's Spanish voice (the tts stage's): float32 16 kHz mono."""
    voice = EspeakSynthesizer("es", words_per_minute=wpm)
    audio = np.frombuffer(b"".join(voice.synthesize(text)), "<i2").astype(np.float32) / 32768
    return soxr.resample(audio, voice.sample_rate, 16000)


def words(text: str) -> str:
    """Lower-case words without punctuation."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.lower()).split())


def main() -> dict:
    """Measure every rate; print and write the report."""
    settings = Settings()
    recognizer = Recognizers(settings).for_language("es")
    embedder = Embedder.from_settings(settings, "es")
    client = QdrantClient(":memory:")
    ingest(kb_dir_for(settings, "es"), client, embedder, "kb", progress=False)
    questions = yaml.safe_load((EVAL / "kb_questions.es.yaml").read_text())
    report: dict = {}
    for wpm in RATES:
        heard, top1, read_out = [], 0, 0
        for item in questions:
            text = recognizer.transcribe(espeak(item["q"], wpm), "es").text
            heard.append(text)
            vector = embedder.encode([text or " "])[0].tolist()
            hit = client.query_points("kb", query=vector, limit=1).points[0]
            right = hit.payload["source"] == item["source"]
            top1 += right
            stated = any(fact.lower() in hit.payload["text"].lower() for fact in item["fact"])
            read_out += right and hit.score >= E5.direct and stated
        report[f"{wpm} wpm"] = {
            "wer": round(jiwer.wer([words(q["q"]) for q in questions], [words(h) or "-" for h in heard]),
                         3),
            "right_article_first": f"{top1}/{len(questions)}",
            "fact_read_out": f"{read_out}/{len(questions)}",
            "heard": {q["q"]: h for q, h in zip(questions, heard, strict=True)},
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "spoken_es.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(json.dumps({k: {m: v for m, v in r.items() if m != "heard"} for k, r in report.items()}, indent=2))
    return report


if __name__ == "__main__":
    main()
