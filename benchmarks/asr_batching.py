"""Cross-session batching in the asr stage: throughput of batched vs one-by-one decoding.

Decodes the real recordings of ``tests/data`` (3-11 s utterances) as the asr stage
would with ``VOXBUS_ASR_BATCH_SIZE`` = 1, 2, 4, 8, several rounds each, and reports
utterances per second and real-time factor.  Writes ``benchmarks/results/asr_batching.json``.

    python -m benchmarks.asr_batching --rounds 3
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import soundfile
import typer

from processors.asr.whisper import Recognizer
from streams.settings import Settings

DATA = Path(__file__).parent.parent / "tests" / "data"
RESULTS = Path(__file__).parent / "results"


def main(rounds: int = 3, batch: list[int] = typer.Option([1, 2, 4, 8])) -> None:  # noqa: B008
    """Measure decode throughput per batch size."""
    clips = [soundfile.read(p, dtype="float32")[0] for p in sorted(DATA.glob("*.wav"))]
    clips = [c for c in clips if c.size > 16000]
    recognizer = Recognizer.from_settings(Settings())
    recognizer.transcribe(clips[0])  # warm-up
    rows = []
    for size in batch:
        work = [clips[i % len(clips)] for i in range(size * max(1, 8 // size) * rounds)]
        started = time.perf_counter()
        for start in range(0, len(work), size):
            recognizer.transcribe_batch(work[start:start + size])
        elapsed = time.perf_counter() - started
        audio_s = sum(c.size for c in work) / 16000
        rows.append({"batch_size": size, "utterances": len(work), "seconds": round(elapsed, 2),
                     "utterances_per_s": round(len(work) / elapsed, 2),
                     "real_time_factor": round(elapsed / audio_s, 3)})
        print(json.dumps(rows[-1]))
    base = rows[0]["utterances_per_s"]
    for row in rows:
        row["speedup_vs_1"] = round(row["utterances_per_s"] / base, 2)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "asr_batching.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    typer.run(main)
