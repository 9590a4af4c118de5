"""The backchannel rule on a real short acknowledgement: a recorded "hmm" is a turn not to answer."""

from __future__ import annotations

import numpy as np
import soundfile

from ingress.playback import is_backchannel
from tests.conftest import DATA
from tests.processors.conftest import chunks, collect, is_turn

HMM = DATA / "backchannels" / "hedgewars_default_hmm.wav"  # tests/data/README.md


async def test_a_real_hmm_is_one_turn_heard_as_a_backchannel(vad_stage, recognizer, settings):
    audio, rate = soundfile.read(HMM, dtype="float32")
    assert rate == 16000
    padded = np.concatenate([np.zeros(8000, np.float32), audio, np.zeros(16000, np.float32)])
    [turn] = [e.record for e in await collect(vad_stage, chunks("hmm-1", padded)) if is_turn(e)]
    heard = recognizer.transcribe(np.frombuffer(turn.pcm, "<i2").astype(np.float32) / 32768.0)
    assert heard.text, f"rejected as {heard.rejected}: the caller's 'hmm' is speech"
    phrases, max_words = settings.backchannel_phrases, settings.backchannel_max_words
    assert is_backchannel(heard.text, phrases, max_words), heard.text
