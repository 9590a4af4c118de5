"""The vad stage over gaps in a session's audio: short ones are silence, long ones are skipped.

A restarted vad worker resumes a call at its committed offset, minutes into it, with no
state: the gap since sample 0 must not be zero-filled and run through silero.
"""

import numpy as np
import pytest

from schemas import Utterance
from tests.conftest import load_clip
from tests.processors.conftest import chunks, collect, is_turn

CLIP = "sense_and_sensibility_01_austen_64kb-0880"
RATE = 16000


@pytest.fixture
def windows(vad_stage, monkeypatch):
    """Count the silero windows the stage runs."""
    calls = []
    probability = vad_stage.vad.probability
    monkeypatch.setattr(vad_stage.vad, "probability", lambda *a: calls.append(1) or probability(*a))
    return calls


def shifted(session_id: str, audio: np.ndarray, by_samples: int, first_seq: int) -> list:
    """The chunks of ``audio`` as they arrive ``by_samples`` into the connection."""
    return [c.model_copy(update={"start_sample": c.start_sample + by_samples, "seq": c.seq + first_seq})
            for c in chunks(session_id, audio)]


async def test_a_restarted_worker_joins_a_call_ten_minutes_in_without_filling_the_gap(vad_stage, windows):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(RATE, dtype=np.float32)])
    ten_minutes = 600 * RATE
    out = await collect(vad_stage, shifted("vad-gap-restart", audio, ten_minutes, first_seq=9375))
    [utterance] = [e.record for e in out if is_turn(e)]
    assert ten_minutes < utterance.start_sample < utterance.end_sample < ten_minutes + audio.size
    assert len(utterance.pcm) == 2 * (utterance.end_sample - utterance.start_sample)
    assert len(windows) <= audio.size // 512 + 1, "only the audio received is run through silero"


async def test_a_long_gap_ends_the_speech_before_it_and_the_next_turn_keeps_its_samples(vad_stage, windows):
    audio, _ = load_clip(CLIP)
    speech = audio[: int(1.5 * RATE)]
    before = list(chunks("vad-gap-mid", speech))
    gap = 30 * RATE  # chunks lost (or a worker restart) while the caller spoke
    after = shifted("vad-gap-mid", np.concatenate([audio, np.zeros(RATE, dtype=np.float32)]),
                    speech.size + gap, first_seq=len(before) + gap // 1024)
    out = await collect(vad_stage, before + after)
    first, second = [e.record for e in out if is_turn(e)]
    assert isinstance(first, Utterance) and first.end_sample <= speech.size, "ended at the gap"
    assert second.start_sample > speech.size + gap
    assert int(second.turn_id[1:].split("-")[0]) > speech.size + gap, "samples still count from the start"
    assert len(windows) <= (speech.size + audio.size + RATE) // 512 + 2


async def test_a_short_gap_is_heard_as_silence(vad_stage, windows):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), audio, np.zeros(RATE, dtype=np.float32)])
    whole = await collect(vad_stage, chunks("vad-gap-none", audio))
    lost = [c for c in chunks("vad-gap-short", audio) if c.seq not in (2, 3, 4)]  # 192 ms shed in silence
    holed = await collect(vad_stage, lost)
    assert [(e.record.start_sample, e.record.end_sample) for e in holed if is_turn(e)] == [
        (e.record.start_sample, e.record.end_sample) for e in whole if is_turn(e)]
