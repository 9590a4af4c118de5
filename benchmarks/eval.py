"""Quality report (``make eval``): ASR WER clean and in noise, intent accuracy, retrieval recall@3,
grounded-answer rate, TTS round-trip WER.  Writes ``benchmarks/results/eval.json`` and prints a table.

What runs where:

* **ASR WER**: each recording of ``tests/data``, clean and with white noise mixed at 10 and 5 dB
  SNR, (a) decoded whole by offline faster-whisper (the reference column), (b) the same after
  noisereduce, to show why voxbus never denoises what Whisper hears, and (c) through the full
  pipeline: one real voxbus stack per ``VOXBUS_DENOISE`` mode (``auto``, the default: VAD input
  only while the noise floor is high; ``off``; ``vad``: VAD input always), each clip streamed
  over ``/v1/stream`` in real time in 20 ms frames (:func:`voxbus.client.call`, text replies
  only, trailing silence until every turn has ended), the transcripts of the session's turns
  joined in speech order.  ``--quick`` leaves out the ``vad`` mode.
* **Intent accuracy**: ``benchmarks/eval/intents_heldout.yaml`` (not in the training examples).
* **Retrieval recall@3**: the expected article among the top 3 passages' sources, for
  ``benchmarks/eval/kb_questions.yaml``.
* **Grounded-answer rate**: the generation stage's answer (its real code and the embedded
  SmolLM2 server, or ``VOXBUS_LLM_URL``) states the expected fact, for the same questions.
* **TTS intelligibility**: every KB passage synthesized by Piper and transcribed by Whisper (WER).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
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
from schemas import RetrievalResult
from streams.settings import Settings
from voxbus.client import TurnResult, call

ROOT = Path(__file__).parent
DATA = ROOT.parent / "tests" / "data"
RESULTS = ROOT / "results"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
CONDITIONS = {"clean": None, "snr_10db": 10.0, "snr_5db": 5.0}
"""Label -> SNR (dB) of the white noise mixed into each clip (None: clean)."""
DENOISE_MODES = ("auto", "off", "vad")
"""``VOXBUS_DENOISE`` modes whose full pipeline is measured (``--quick``: the first two)."""
CALLERS = 2
"""Clips streamed at once to a stack (each in real time): halves the wall time on 2 cores."""


def normalize(text: str) -> str:
    """Lower-case words without punctuation, single digits spelled out."""
    import re

    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in words)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER after :func:`normalize`."""
    return round(jiwer.wer([normalize(r) for r in references],
                           [normalize(h) or "<empty>" for h in hypotheses]), 4)


def mix(audio: np.ndarray, snr_db: float | None, seed: int = 0) -> np.ndarray:
    """``audio`` with white noise at ``snr_db`` (None: clean)."""
    if snr_db is None:
        return audio
    noise = np.random.default_rng(seed).standard_normal(audio.size).astype(np.float32)
    scale = np.sqrt(np.mean(audio**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return np.clip(audio + scale * noise, -1, 1).astype(np.float32)


def session_transcript(turns: list[TurnResult]) -> str:
    """The transcripts of a session's turns joined in speech order.

    Args:
        turns: the session's ended turns, in any order; voice turn ids are
            ``a<start sample>-<connection epoch>`` (:func:`processors.vad.stage.turn_id`).

    Returns:
        The non-empty transcripts joined by spaces, ordered by (epoch, start sample).
    """
    def order(turn: TurnResult) -> tuple[int, int]:
        start, _, epoch = turn.turn_id.removeprefix("a").partition("-")
        return int(epoch or 0), int(start)

    return " ".join(t.transcript for t in sorted(turns, key=order) if t.transcript)


async def stream_clips(url: str, paths: list[Path], callers: int = CALLERS) -> list[str]:
    """Stream each recording over ``/v1/stream`` in real time (``callers`` at once); their transcripts.

    Raises:
        voxbus.client.Refused | TimeoutError: from :func:`voxbus.client.call`.
    """
    gate = asyncio.Semaphore(callers)

    async def one(path: Path) -> str:
        async with gate:
            return session_transcript(await call(url, path, speak=False))

    return await asyncio.gather(*(one(path) for path in paths))


def pipeline_wer(noisy: dict[str, list[Path]], refs: list[str], modes: tuple[str, ...]
                 ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, list[str]]]]:
    """Full-pipeline WER per condition for each denoise mode: one real voxbus stack per mode.

    Args:
        noisy: condition label -> WAV paths of the clips, in the order of ``refs``.
        refs: reference transcripts.
        modes: ``VOXBUS_DENOISE`` values.

    Returns:
        (condition label -> {"pipeline_denoise_<mode>": WER}, the same -> the clips' transcripts)

    Raises:
        voxbus.client.Refused | TimeoutError: a session was refused or did not end.
    """
    from benchmarks.latency import prepare_data_dir, start_voxbus

    report: dict[str, dict[str, float]] = {label: {} for label in noisy}
    transcripts: dict[str, dict[str, list[str]]] = {}
    for mode in modes:
        supervisor, settings = start_voxbus(prepare_data_dir(ROOT / ".data", f"eval-{mode}"),
                                            extra_env={"DENOISE": mode})
        try:
            url = f"ws://{settings.host}:{settings.port}/v1/stream"
            for label, paths in noisy.items():
                started = time.monotonic()
                hyps = asyncio.run(stream_clips(url, paths))
                report[label][f"pipeline_denoise_{mode}"] = wer(refs, hyps)
                transcripts.setdefault(label, {})[f"pipeline_denoise_{mode}"] = hyps
                print(f"denoise {mode}, {label}: WER {wer(refs, hyps):.1%} "
                      f"in {time.monotonic() - started:.0f} s", flush=True)
        finally:
            supervisor.stop()
    return report, transcripts


def asr_report(settings: Settings, modes: tuple[str, ...] = DENOISE_MODES) -> dict:
    """ASR WER per condition: offline Whisper (raw and denoised input) and the full pipeline per mode.

    Returns:
        {"wer": condition label -> column -> WER, "transcripts": the pipeline's texts per clip}
    """
    clips = {p.stem: (soundfile.read(p, dtype="float32")[0], (DATA / f"{p.stem}.txt").read_text().strip())
             for p in sorted(DATA.glob("*.wav"))}
    refs = [ref for _, ref in clips.values()]
    noisy = {label: [mix(audio, snr, i) for i, (audio, _) in enumerate(clips.values())]
             for label, snr in CONDITIONS.items()}
    with tempfile.TemporaryDirectory(prefix="voxbus-eval-clips-") as work:
        paths = {label: [Path(work) / f"{label}-{name}.wav" for name in clips] for label in noisy}
        for label, audios in noisy.items():
            for path, audio in zip(paths[label], audios, strict=True):
                soundfile.write(path, audio, 16000, subtype="FLOAT")
        report, transcripts = pipeline_wer(paths, refs, modes)
    recognizer = Recognizer.from_settings(settings)
    for label, audios in noisy.items():
        report[label]["offline_whisper"] = wer(refs, [recognizer.transcribe(a).text for a in audios])
        report[label]["offline_whisper_denoised_input"] = wer(
            refs, [recognizer.transcribe(VadDenoiser()(a)).text for a in audios])
    return {"wer": report, "transcripts": transcripts}


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
    """Recall@3 and the grounded-answer rate of the KB questions, each turn with its real intent.

    A question the generation stage would route to a tool (``choose_tool``: booking,
    order status, hand-off) is still answered here, and counted in ``routed_to_tool``.
    """
    from processors.generation.dialogue import DialogueState, choose_tool
    from processors.generation.stage import GenerationStage

    questions = yaml.safe_load((ROOT / "eval" / "kb_questions.yaml").read_text())
    retrieval = RetrievalStage(settings)
    retrieval.embedders = {"en": embedder}
    retrieval.client = open_client(settings)
    ingest(settings.kb_dir, retrieval.client, embedder, settings.qdrant_collection, progress=False)
    generation = GenerationStage(settings)
    classifier = IntentClassifier(embedder, load_examples())
    turns = []
    for item in questions:
        intent = classifier.predict(item["q"])
        turns.append(RetrievalResult(session_id="eval", turn_id="t", text=item["q"], intent=intent.intent,
                                     confidence=intent.confidence, sentiment="neutral", sentiment_score=0.0,
                                     passages=retrieval.search(item["q"])))
    tools = [choose_tool(turn, DialogueState(), settings) for turn in turns]

    async def answers() -> list[str]:  # one event loop: the LLM client's connections live in it
        generation.load()
        return [" ".join([s async for s in generation.answer(turn, [], {})]) for turn in turns]

    hits, grounded, rows = 0, 0, []
    for item, turn, tool, text in zip(questions, turns, tools, asyncio.run(answers()), strict=True):
        hit = item["source"] in [p.source for p in turn.passages[:3]]
        ok = any(fact.lower() in text.lower() for fact in item["fact"])
        hits += hit
        grounded += ok
        rows.append({"q": item["q"], "intent": turn.intent, "tool": tool.tool if tool else None,
                     "answer": text, "grounded": ok, "retrieved": hit})
    n = len(questions)
    return {"retrieval_recall_at_3": round(hits / n, 4), "grounded_answer_rate": round(grounded / n, 4),
            "routed_to_tool": sum(tool is not None for tool in tools), "n": n, "answers": rows}


def tts_report(settings: Settings, recognizer: Recognizer) -> dict:
    synthesizer = Synthesizer.from_settings(settings)
    texts = [p.text for p in read_passages(settings.kb_dir)]
    heard = []
    for text in texts:
        pcm = b"".join(synthesizer.synthesize(text))
        audio = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
        heard.append(recognizer.transcribe(soxr.resample(audio, synthesizer.sample_rate, 16000)).text)
    return {"round_trip_wer": wer(texts, heard), "n": len(texts)}


def main(argv: list[str] | None = None) -> None:
    """Run every evaluation: the full pipeline's ASR on real stacks, then the rest in-process
    against the embedded LLM server (started here) or VOXBUS_LLM_URL."""
    import os

    from processors.generation.llm_server import embedded_url, start_llm_server, warm_up
    from streams.broker import stop_process
    from voxbus.supervisor import wait_http

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="pipeline WER with denoise auto and off only")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = Settings(data_dir=Path(tempfile.mkdtemp(prefix="voxbus-eval-")), llm_port=18281)
    started = time.time()
    asr = asr_report(settings, DENOISE_MODES[:2] if args.quick else DENOISE_MODES)
    server = None
    if not settings.llm_url:
        os.environ["VOXBUS_LLM_PORT"] = str(settings.llm_port)
        server = start_llm_server(settings)
        assert wait_http(f"{embedded_url(settings)}/models", 120), "LLM server did not start"
        warm_up(embedded_url(settings))
    try:
        recognizer = Recognizer.from_settings(settings)
        embedder = Embedder.from_settings(settings)
        report = {
            "asr_wer": asr["wer"],
            "intent": intent_report(embedder),
            "knowledge": retrieval_and_grounding(settings, embedder),
            "tts": tts_report(settings, recognizer),
            "asr_transcripts": asr["transcripts"],
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
    print(f"| grounded-answer rate (n={k['n']}; {k['routed_to_tool']} routed to a tool) "
          f"| {k['grounded_answer_rate']:.1%} |")
    tts = report["tts"]
    print(f"| TTS round-trip WER (n={tts['n']} KB sentences) | {tts['round_trip_wer']:.1%} |")
    print(f"({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
