"""Endpointing defaults by measurement: utterances per recording and endpoint delay vs minimum silence.

Runs the vad stage's endpointer (silero-vad) over every recording in ``tests/data``
(each followed by 1.5 s of silence, as a caller who waits) for several
``VOXBUS_VAD_MIN_SILENCE_MS`` values and reports how many utterances each yields (the
LibriVox clips and "five five" are one sentence each; jfk.wav has pauses inside
one sentence) and the endpoint delay (speech end to utterance emitted, in audio time).
Writes ``benchmarks/results/endpointing.json``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import soundfile
import typer

from processors.vad.stage import VadStage
from schemas import AudioChunk, Utterance
from streams.settings import Settings

DATA = Path(__file__).parent.parent / "tests" / "data"
RESULTS = Path(__file__).parent / "results"


async def utterances(stage: VadStage, name: str, audio: np.ndarray,
                     chunk: int = 1024) -> list[tuple[Utterance, float]]:
    """Endpoint ``audio`` in 64 ms chunks; return each utterance with its endpoint delay (ms of audio
    from the end of speech to the end of the chunk whose arrival emitted the utterance)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    pad = stage.config.samples(stage.config.speech_pad_ms)
    found = []
    for seq, start in enumerate(range(0, pcm.size, chunk)):
        record = AudioChunk(session_id=name, seq=seq, start_sample=start,
                            pcm=pcm[start:start + chunk].tobytes(), recv_ts=1000.0 + (start + chunk) / 16000)
        async for emit in stage.handle(record):
            if isinstance(emit.record, Utterance) and not emit.record.speculative:
                speech_end = emit.record.end_sample - pad
                found.append((emit.record, (start + chunk - speech_end) / 16))
    return found


def main(silence: list[int] = typer.Option([200, 300, 400, 500, 600, 800])) -> None:  # noqa: B008
    """Count utterances per recording for each minimum silence."""
    clips = {p.stem: soundfile.read(p, dtype="float32")[0] for p in sorted(DATA.glob("*.wav"))}
    rows = []
    for ms in silence:
        stage = VadStage(Settings(vad_min_silence_ms=ms))
        stage.load()
        counts, delays = {}, []
        for name, audio in clips.items():
            padded = np.concatenate([audio, np.zeros(24000, dtype=np.float32)])
            found = asyncio.run(utterances(stage, f"{name}-{ms}", padded))
            counts[name] = len(found)
            delays += [delay for _, delay in found]
        single = [n for n in counts if n != "jfk"]
        rows.append({"min_silence_ms": ms, "utterances": counts,
                     "single_sentence_clips_split": sum(counts[n] != 1 for n in single),
                     "endpoint_delay_ms_mean": round(float(np.mean(delays)), 1)})
        print(json.dumps(rows[-1]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "endpointing.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    typer.run(main)
