import numpy as np
import pytest
import soxr

from processors.tts.piper_voice import Synthesizer
from processors.tts.stage import TtsStage
from schemas import ReplyText
from tests.conftest import wer


@pytest.fixture(scope="module")
def tts(settings):
    stage = TtsStage(settings)
    stage.load()
    return stage


async def test_speech_round_trips_through_whisper(tts, recognizer):
    text = "Your bill is due on the fifteenth of each month."
    reply = ReplyText(session_id="s", turn_id="t", index=0, text=text, final=True)
    emits = [e async for e in tts.handle(reply)]
    assert emits[-1].record.final and all(not e.record.final for e in emits[:-1])
    pcm = b"".join(e.record.pcm for e in emits)
    rate = emits[0].record.sample_rate
    audio = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, rate, 16000)
    assert 1.5 < audio.size / 16000 < 6
    assert wer(text, recognizer.transcribe(audio).text) <= 0.2


async def test_text_channel_and_empty_final(tts):
    silent = ReplyText(session_id="s", turn_id="t", index=0, text="Hello there.", speak=False)
    assert [e async for e in tts.handle(silent)] == []
    end = ReplyText(session_id="s", turn_id="t", index=3, text="", final=True)
    [emit] = [e async for e in tts.handle(end)]
    assert emit.record.final and emit.record.pcm == b""


def test_chunks_are_bounded(settings):
    synth = Synthesizer.from_settings(settings)
    chunks = list(synth.synthesize("One. Two sentences here, and a longer third one to make audio."))
    assert max(map(len, chunks)) <= synth.sample_rate  # 0.5 s of PCM16


async def test_a_spanish_sentence_is_spoken_by_espeak_ng(tts):
    """No Piper voice is configured for Spanish: espeak-ng (Debian's) speaks it, at its 22.05 kHz."""
    reply = ReplyText(session_id="s", turn_id="t", index=0, text="La factura vence el día 15.", final=True,
                      language="es")
    emits = [e async for e in tts.handle(reply)]
    assert emits[-1].record.final and {e.record.sample_rate for e in emits} == {22050}
    assert 1.0 < sum(len(e.record.pcm) for e in emits) / 2 / 22050 < 5


async def test_a_language_no_voice_can_speak_stays_silent_but_ends_the_turn(settings):
    stage = TtsStage(settings.model_copy(update={"espeak_bin": "no-such-espeak"}))
    stage.load()
    reply = ReplyText(session_id="s", turn_id="t", index=0, text="Bonjour.", final=True, language="fr")
    [emit] = [e async for e in stage.handle(reply)]
    assert emit.record.final and emit.record.pcm == b""
