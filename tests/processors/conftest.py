"""Stage fixtures: stages with their real models, loaded once per test session."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import AudioChunk, Utterance


def chunks(session_id: str, audio: np.ndarray, chunk_samples: int = 1024, t0: float = 1000.0):
    """Cut float32 16 kHz audio into bus chunks as the ingress would."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    for seq, start in enumerate(range(0, pcm.size, chunk_samples)):
        part = pcm[start:start + chunk_samples]
        yield AudioChunk(session_id=session_id, seq=seq, start_sample=start, pcm=part.tobytes(),
                         recv_ts=t0 + (start + part.size) / 16000)


async def collect(stage, records):
    out = []
    for record in records:
        async for emit in stage.handle(record):
            out.append(emit)
    return out


@pytest.fixture(scope="session")
def vad_stage(settings):
    from processors.vad.stage import VadStage

    stage = VadStage(settings)
    stage.load()
    return stage


def is_turn(emit) -> bool:
    """A confirmed utterance (not the vad stage's speculative copy sent at a pause)."""
    return isinstance(emit.record, Utterance) and not emit.record.speculative


@pytest.fixture(scope="session")
def turn_vad_stage(settings):
    """The vad stage with the Smart Turn end-of-turn model (the default stage is silence-only)."""
    from processors.vad.stage import VadStage

    stage = VadStage(settings.model_copy(update={"vad_turn_model": "smart-turn"}))
    stage.load()
    return stage


def asr_stage(settings, recognizer):
    """An asr stage whose English model is the shared ``recognizer`` (the others load on first use)."""
    from processors.asr.languages import Recognizers
    from processors.asr.stage import AsrStage

    stage = AsrStage(settings)
    stage.recognizers = Recognizers(settings, {Recognizers(settings).english: recognizer})
    return stage
