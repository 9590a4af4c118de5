"""A voice session that asked for text replies only (``"speak": false``): no stage synthesizes.

The setting rides on every audio chunk (a restarted vad worker that joins the call midway
never sees its start record), then on the utterance and the transcript; the later stages
copy ``speak`` from their input, and the tts stage skips what is not to be spoken.
"""

import numpy as np

from processors.tts.stage import TtsStage
from schemas import ReplyText
from tests.conftest import load_clip
from tests.processors.conftest import asr_stage, chunks, collect, is_turn

CLIP = "sense_and_sensibility_01_austen_64kb-0880"


async def test_a_text_only_voice_session_is_never_synthesized(vad_stage, settings, recognizer):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    quiet = [c.model_copy(update={"speak": False}) for c in chunks("vad-text-only", audio)]
    [utterance] = [e.record for e in await collect(vad_stage, quiet) if is_turn(e)]
    assert utterance.speak is False
    asr = asr_stage(settings, recognizer)
    transcripts = [e.record async for e in asr.handle(utterance)]
    assert transcripts and all(t.speak is False and t.text for t in transcripts)
    tts = TtsStage(settings)  # no voice loaded: a sentence to synthesize would fail
    tts.cancelled = set()
    reply = ReplyText(session_id="vad-text-only", turn_id=utterance.turn_id, index=0, text="Hello there.",
                      final=True, speak=transcripts[0].speak)
    assert [e async for e in tts.handle(reply)] == []


async def test_a_spoken_session_stays_spoken(vad_stage):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    [utterance] = [e.record for e in await collect(vad_stage, chunks("vad-spoken", audio)) if is_turn(e)]
    assert utterance.speak is True
