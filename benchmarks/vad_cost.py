"""What the vad stage's own work costs per record, apart from the bus: is batching silero worth it?

Two measurements, in one process, without a broker (CPU time, ``time.process_time``):

* **silero per window by batch size**: the silero-vad ONNX model (one thread, as the stage
  runs it) on a batch of ``B`` 32 ms windows of ``B`` sessions in one call (input
  ``(B, 576)``, state ``(2, B, 128)``, the calling convention of
  ``silero_vad.utils_vad.OnnxWrapper``), for B = 1, 2, 4, 8, 16: what one batched call
  across sessions would save against one call per session;
* **the stage per record**: :meth:`processors.vad.stage.VadStage.handle` on real speech
  (a LibriVox clip and a second of silence, per session) cut into bus chunks of
  ``chunk_ms`` (the ingress's default), ``--sessions`` sessions interleaved: endpointing,
  silero, audio bookkeeping, utterance cutting, with no decode, produce or faust.

Compared with the vad worker's CPU per record on the bus (``benchmarks/bus.py``: cores at 8
callers streaming / records per second), the difference is what the consumer's transport
(aiokafka fetch and decode, faust's event handling and sensors, acks) costs.  Writes
``benchmarks/results/vad_cost.json``.

    python -m benchmarks.vad_cost
"""

from __future__ import annotations

import asyncio
import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import typer

from benchmarks.latency import git_state, log

RESULTS = Path(__file__).parent / "results"
BATCH_SIZES = (1, 2, 4, 8, 16)
CLIP = "sense_and_sensibility_01_austen_64kb-0880"
"""A LibriVox sentence from the test data (tests/data/README.md)."""


def silero_per_window(calls: int = 2000) -> list[dict[str, float]]:
    """CPU ms per batched silero call and per window, for each of :data:`BATCH_SIZES`."""
    path = str(resources.files("silero_vad") / "data" / "silero_vad.onnx")
    options = ort.SessionOptions()
    options.inter_op_num_threads = options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    sr = np.array(16_000, dtype=np.int64)
    rng = np.random.default_rng(0)
    rows = []
    for batch in BATCH_SIZES:
        feeds = {"input": (0.1 * rng.standard_normal((batch, 576))).astype(np.float32),
                 "state": np.zeros((2, batch, 128), dtype=np.float32), "sr": sr}
        for _ in range(50):
            session.run(None, feeds)
        n = max(50, calls // batch)
        started = time.process_time()
        for _ in range(n):
            session.run(None, feeds)
        per_call = (time.process_time() - started) / n * 1000.0
        rows.append({"batch": batch, "ms_per_call": round(per_call, 4),
                     "ms_per_window": round(per_call / batch, 4)})
    return rows


def stage_per_record(sessions: int, chunk_ms: int, repeats: int = 3) -> dict[str, float]:
    """CPU ms per audio record of the vad stage itself (silence-only endpointing, real speech)."""
    from processors.vad.stage import VadStage
    from streams.settings import Settings
    from tests.conftest import load_clip
    from tests.processors.conftest import chunks

    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16_000, dtype=np.float32)])
    stage = VadStage(Settings())
    stage.load()
    per_session = [list(chunks(f"s{i}", audio, chunk_samples=16 * chunk_ms)) for i in range(sessions)]
    records = [r for group in zip(*per_session, strict=True) for r in group]  # interleaved, as on the bus

    async def run() -> None:
        for record in records:
            async for _ in stage.handle(record):
                pass

    asyncio.run(run())  # warm
    best = float("inf")
    for _ in range(repeats):
        stage.sessions.clear()
        started = time.process_time()
        asyncio.run(run())
        best = min(best, time.process_time() - started)
    return {"sessions": sessions, "chunk_ms": chunk_ms, "records": len(records),
            "ms_per_record": round(best / len(records) * 1000.0, 4)}


def main(sessions: int = 8, chunk_ms: int = 128, out: Path = RESULTS / "vad_cost.json") -> None:
    """Measure silero per window by batch size and the vad stage per record; write ``out``."""
    silero = silero_per_window()
    stage = stage_per_record(sessions, chunk_ms)
    result: dict[str, Any] = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_state(),
                              "silero": silero, "stage": stage}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for row in silero:
        log(f"silero, batch {row['batch']:2d}: {row['ms_per_call']:.3f} ms per call, "
            f"{row['ms_per_window']:.3f} ms per window")
    log(f"vad stage: {stage['ms_per_record']:.3f} ms per {chunk_ms} ms record ({sessions} sessions); "
        f"wrote {out}")


if __name__ == "__main__":
    typer.run(main)
