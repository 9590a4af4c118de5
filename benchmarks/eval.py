"""Quality report (``make eval``): ASR WER clean and in noise, intent accuracy, retrieval recall@3,
grounded-answer rate, TTS round-trip WER.  Writes ``benchmarks/results/eval.json`` and prints a table.

What runs where:

* **ASR WER**: each recording of ``tests/data`` (a) decoded whole by offline faster-whisper and
  (b) endpointed by the vad stage in 64 ms chunks then decoded by the asr stage's recognizer,
  the same code the pipeline runs, in-process; clean and with white noise mixed at 10 and 5 dB
  SNR.  (b) is run with each ``VOXBUS_DENOISE`` mode (``auto``, the default: VAD input only
  while the noise floor is high; ``vad``: VAD input always; ``off``) and with noisereduce
  applied to what Whisper hears, to show why voxbus does not do the latter.
* **Intent accuracy**: ``benchmarks/eval/intents_heldout.yaml`` (not in the training examples).
* **Retrieval recall@3**: the expected article among the top 3 passages' sources, for
  ``benchmarks/eval/kb_questions.yaml``.
* **Grounded-answer rate**: the generation stage's answer (its real code and the embedded
  SmolLM2 server, or ``VOXBUS_LLM_URL``) states the expected fact, for the same questions.
* **TTS intelligibility**: every KB passage synthesized by Piper and transcribed by Whisper (WER).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jiwer
import numpy as np
import soundfile
import soxr
import yaml

from processors.asr.whisper import Recognizer
from processors.embeddings import Embedder
from processors.intent.classifier import IntentClassifier, load_examples
from processors.retrieval.kb import ingest, open_client, read_passages
from processors.retrieval.stage import RetrievalStage
from processors.tts.piper_voice import Synthesizer
from processors.vad.denoise import VadDenoiser
from processors.vad.stage import VadStage
from schemas import AudioChunk, RetrievalResult, Utterance
from streams.settings import Settings

ROOT = Path(__file__).parent
DATA = ROOT.parent / "tests" / "data"
RESULTS = ROOT / "results"
DIGITS = "zero one two three four five six seven eight nine".split()


def normalize(text: str) -> str:
    """Lower-case words without punctuation, single digits spelled out."""
    import re

    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in words)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER after :func:`normalize`."""
    return round(jiwer.wer([normalize(r) for r in references], [normalize(h) or "<empty>" for h in hypotheses]), 4)


def mix(audio: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """``audio`` with white noise at ``snr_db`` (None: clean)."""
    if snr_db is None:
        return audio
    noise = np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    scale = np.sqrt(np.mean(audio**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return np.clip(audio + scale * noise, -1, 1).astype(np.float32)


async def pipeline_text(vad: VadStage, recognizer: Recognizer, name: str, audio: np.ndarray,
                        denoise_asr: bool) -> str:
    """vad stage (64 ms chunks, trailing silence) -> recognizer on each utterance; joined text."""
    padded = np.concatenate([audio, np.zeros(24_000, dtype=np.float32)])
    pcm = (padded * 32767).astype("<i2")
    texts = []
    for seq, start in enumerate(range(0, pcm.size, 1024)):
        chunk = AudioChunk(session_id=name, seq=seq, start_sample=start, pcm=pcm[start:start + 1024].tobytes(),
                           recv_ts=1.0)
        async for emit in vad.handle(chunk):
            if isinstance(emit.record, Utterance) and not emit.record.speculative:
                speech = np.frombuffer(emit.record.pcm, "<i2").astype(np.float32) / 32768
                if denoise_asr:
                    speech = VadDenoiser()(speech)
                texts.append(recognizer.transcribe(speech).text)
    return " ".join(texts)


def asr_report(settings: Settings, recognizer: Recognizer) -> dict:
    clips = {p.stem: (soundfile.read(p, dtype="float32")[0], (DATA / f"{p.stem}.txt").read_text().strip())
             for p in sorted(DATA.glob("*.wav"))}
    refs = [ref for _, ref in clips.values()]
    vads = {}
    for mode in ("auto", "vad", "off"):
        vads[mode] = VadStage(settings.model_copy(update={"denoise": mode}))
        vads[mode].load()
    report = {}
    for label, snr in (("clean", None), ("snr_10db", 10.0), ("snr_5db", 5.0)):
        noisy = {name: mix(audio, snr, i) for i, (name, (audio, _)) in enumerate(clips.items())}
        runs = {"offline_whisper": [recognizer.transcribe(a).text for a in noisy.values()]}
        for mode, vad in vads.items():
            runs[f"pipeline_denoise_{mode}"] = [
                asyncio.run(pipeline_text(vad, recognizer, f"{label}-{mode}-{n}", a, False)) for n, a in noisy.items()
            ]
        runs["pipeline_denoised_asr_input"] = [
            asyncio.run(pipeline_text(vads["vad"], recognizer, f"{label}-d-{n}", a, True)) for n, a in noisy.items()
        ]
        report[label] = {name: wer(refs, hyps) for name, hyps in runs.items()}
    return report


def intent_report(embedder: Embedder) -> dict:
    classifier = IntentClassifier(embedder, load_examples())
    heldout = yaml.safe_load((ROOT / "eval" / "intents_heldout.yaml").read_text())
    pairs = [(text, label) for label, texts in heldout.items() for text in texts]
    predicted = [classifier.predict(text).intent for text, _ in pairs]
    correct = sum(p == label for p, (_, label) in zip(predicted, pairs, strict=True))
    errors = [{"text": t, "expected": label, "got": p} for p, (t, label) in zip(predicted, pairs, strict=True)
              if p != label]
    return {"accuracy": round(correct / len(pairs), 4), "n": len(pairs), "errors": errors}


def retrieval_and_grounding(settings: Settings, embedder: Embedder) -> dict:
    from processors.generation.stage import GenerationStage

    questions = yaml.safe_load((ROOT / "eval" / "kb_questions.yaml").read_text())
    retrieval = RetrievalStage(settings)
    retrieval.embedder = embedder
    retrieval.client = open_client(settings)
    ingest(settings.kb_dir, retrieval.client, embedder, settings.qdrant_collection, progress=False)
    generation = GenerationStage(settings)
    turns = [RetrievalResult(session_id="eval", turn_id="t", text=item["q"], intent="other", confidence=0.5,
                             sentiment="neutral", sentiment_score=0.0, passages=retrieval.search(item["q"]))
             for item in questions]

    async def answers() -> list[str]:  # one event loop: the LLM client's connections live in it
        generation.load()
        return [" ".join([s async for s in generation.answer(turn, [], {})]) for turn in turns]

    hits, grounded, rows = 0, 0, []
    for item, turn, text in zip(questions, turns, asyncio.run(answers()), strict=True):
        hit = item["source"] in [p.source for p in turn.passages[:3]]
        ok = any(fact.lower() in text.lower() for fact in item["fact"])
        hits += hit
        grounded += ok
        rows.append({"q": item["q"], "answer": text, "grounded": ok, "retrieved": hit})
    n = len(questions)
    return {"retrieval_recall_at_3": round(hits / n, 4), "grounded_answer_rate": round(grounded / n, 4),
            "n": n, "answers": rows}


def tts_report(settings: Settings, recognizer: Recognizer) -> dict:
    synthesizer = Synthesizer.from_settings(settings)
    texts = [p.text for p in read_passages(settings.kb_dir)]
    heard = []
    for text in texts:
        pcm = b"".join(synthesizer.synthesize(text))
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        heard.append(recognizer.transcribe(soxr.resample(audio, synthesizer.sample_rate, 16000)).text)
    return {"round_trip_wer": wer(texts, heard), "n": len(texts)}


def main() -> None:
    """Run every evaluation against the embedded LLM server (started here) or VOXBUS_LLM_URL."""
    import os
    import tempfile

    from processors.generation.llm_server import embedded_url, start_llm_server, warm_up
    from streams.broker import stop_process
    from voxbus.supervisor import wait_http

    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="voxbus-eval-")), llm_port=18281)
    server = None
    if not settings.llm_url:
        os.environ["VOXBUS_LLM_PORT"] = str(settings.llm_port)
        server = start_llm_server(settings)
        assert wait_http(f"{embedded_url(settings)}/models", 120), "LLM server did not start"
        warm_up(embedded_url(settings))
    started = time.time()
    try:
        recognizer = Recognizer.from_settings(settings)
        embedder = Embedder.from_settings(settings)
        report = {
            "asr_wer": asr_report(settings, recognizer),
            "intent": intent_report(embedder),
            "knowledge": retrieval_and_grounding(settings, embedder),
            "tts": tts_report(settings, recognizer),
            "seconds": None,
        }
    finally:
        if server is not None:
            stop_process(server)
    report["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "eval.json").write_text(json.dumps(report, indent=2))
    print("| measure | value |\n|---|---|")
    for label, runs in report["asr_wer"].items():
        for name, value in runs.items():
            print(f"| ASR WER {label}, {name.replace('_', ' ')} | {value:.1%} |")
    print(f"| intent accuracy (held-out, n={report['intent']['n']}) | {report['intent']['accuracy']:.1%} |")
    k = report["knowledge"]
    print(f"| retrieval recall@3 (n={k['n']}) | {k['retrieval_recall_at_3']:.1%} |")
    print(f"| grounded-answer rate (n={k['n']}) | {k['grounded_answer_rate']:.1%} |")
    print(f"| TTS round-trip WER (n={report['tts']['n']} KB sentences) | {report['tts']['round_trip_wer']:.1%} |")


if __name__ == "__main__":
    main()
