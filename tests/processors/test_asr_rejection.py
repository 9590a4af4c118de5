"""Noise is not a turn: Whisper's hallucinations on real music-on-hold are rejected, real speech is not."""

import numpy as np
import pytest
import soundfile

from processors.asr.rejection import hallucinations, normalize, rejection
from processors.metrics import ASR_REJECTED
from schemas import Utterance
from streams.topics import EGRESS
from tests.conftest import DATA, load_clip
from tests.processors.conftest import asr_stage, chunks, collect, is_turn

# Real music-on-hold (asterisk-moh-opsound, Debian): 3 s on which Whisper tiny.en writes a
# well-known hallucination ("Thank you.") or, when its decode fails, sampled text.
MUSIC_HALLUCINATED = ["moh_manolo_camp_morning_coffee_30s", "moh_macroform_the_simplicity_0s"]


def load(folder: str, name: str, dtype: str = "float32") -> np.ndarray:
    audio, rate = soundfile.read(DATA / folder / f"{name}.wav", dtype=dtype)
    assert rate == 16000
    return audio


def utterance(folder: str, name: str, session: str) -> Utterance:
    """The recording's own PCM16 samples as one utterance."""
    pcm = load(folder, name, "int16")
    return Utterance(session_id=session, turn_id="a0-0", start_sample=0, end_sample=pcm.size,
                     pcm=pcm.astype("<i2").tobytes(), speech_end_ts=1.0, marks={"vad.emit": 1.0})


def test_the_list_is_the_published_one():
    phrases = hallucinations()
    assert len(phrases) == 30407
    assert {"thank you", "thanks for watching", "subtitles by the amara org community"} <= phrases
    assert normalize("Thank you.") == "thank you" and normalize("I'm not sure!") == "i m not sure"


def test_rule_on_whispers_signals():
    assert rejection("", 0.1, -0.2, 1.0) == "no_speech"
    assert rejection(".", 0.57, -1.47, 0.11) == "no_speech"  # Whisper's output on reno_project-system
    assert rejection("text", 0.7, -1.2, 1.0) == "no_speech"  # both of Whisper's no-speech signals
    assert rejection("the the the the the the the the the the the the", 0.1, -0.3, 4.0) == "repetition"
    assert rejection("Thank you.", 0.89, -1.0, 0.56) == "hallucination"  # weak: P(no speech) alone
    assert rejection("www.beadaholique.com", 0.51, -1.07, 0.71) == "failed_decode"  # music, sampled text
    assert rejection("each.", 0.22, -1.13, 0.56) == "failed_decode"  # a misheard "IAX"
    assert rejection("Thank you.", 0.08, -0.13, 0.56) == ""  # a caller saying it clearly
    assert rejection("When is my bill due?", 0.89, -0.5, 0.9) == ""  # not a known hallucination


@pytest.mark.parametrize("clip", MUSIC_HALLUCINATED)
async def test_real_music_is_not_a_turn(settings, recognizer, clip):
    stage = asr_stage(settings, recognizer)
    reasons = ("no_speech", "repetition", "failed_decode", "hallucination")
    before = sum(ASR_REJECTED.labels(reason)._value.get() for reason in reasons)
    emits = [e async for e in stage.handle(utterance("nonspeech", clip, f"moh-{clip[:20]}"))]
    assert [e.topic for e in emits] == [EGRESS]  # told to the caller only: nothing is answered
    assert emits[0].record.text == ""
    assert sum(ASR_REJECTED.labels(reason)._value.get() for reason in reasons) == before + 1



async def test_a_real_thank_you_is_a_turn(settings, recognizer):
    stage = asr_stage(settings, recognizer)
    emits = [e async for e in stage.handle(utterance("prompts", "auth_thankyou", "thanks"))]
    assert normalize(emits[0].record.text) == "thank you" and len(emits) == 2


@pytest.mark.parametrize("clip", ["jfk", "sense_and_sensibility_01_austen_64kb-0880", "cards_five_five"])
def test_real_speech_is_not_rejected(recognizer, clip):
    result = recognizer.transcribe(load_clip(clip)[0])
    assert result.text and not result.rejected


async def test_vad_makes_no_utterance_of_real_music(vad_stage):
    audio = load("nonspeech", "moh_reno_project_system_0s")  # 20 s of music on hold
    out = await collect(vad_stage, chunks("moh-vad", np.concatenate([audio, np.zeros(16000, np.float32)])))
    assert not [e for e in out if is_turn(e)]
