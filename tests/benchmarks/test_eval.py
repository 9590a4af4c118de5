"""The quality report's pure helpers; no voxbus stack and no models (see ``make eval``)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval import mix, session_transcript, wer
from voxbus.client import TurnResult


def test_session_transcript_joins_turns_in_speech_order():
    turns = [TurnResult("a48000-0", transcript="ask not"), TurnResult("a1024-0", transcript="And so,"),
             TurnResult("a512-1", transcript="what you can do"), TurnResult("a9000-0", transcript="")]
    assert session_transcript(turns) == "And so, ask not what you can do"
    assert session_transcript([]) == ""


def test_wer_normalizes_case_punctuation_and_digits():
    assert wer(["Five, five."], ["five 5"]) == 0.0
    assert wer(["one two"], [""]) == 1.0


@pytest.mark.parametrize("snr_db", [10.0, 5.0])
def test_mix_adds_noise_at_the_requested_snr(snr_db):
    audio = (0.3 * np.sin(np.arange(16000) / 10)).astype(np.float32)
    noisy = mix(audio, snr_db)
    measured = 10 * np.log10(np.mean(audio**2) / np.mean((noisy - audio) ** 2))
    assert measured == pytest.approx(snr_db, abs=0.2)
    assert mix(audio, None) is audio
