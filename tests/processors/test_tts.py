import numpy as np
import pytest
import soxr

from processors.tts.piper_voice import Synthesizer, pieces
from processors.tts.stage import TtsStage
from schemas import ReplyText, TurnCancel
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


def test_pieces_end_at_clause_marks_then_word_gaps_and_fit_the_bound():
    sentence = list("ab cd, ef gh; ij kl mn")
    assert pieces(sentence, 100) == [sentence]
    assert pieces(sentence, 7) == [list("ab cd,"), list("ef gh;"), list("ij kl"), list("mn")]
    assert pieces(sentence, 8) == [list("ab cd,"), list("ef gh;"), list("ij kl mn")]
    assert pieces(list("abcdefgh ij"), 4) == [list("abcd"), list("efgh"), list("ij")]
    assert pieces([], 4) == [[]]
    for limit in range(1, 12):
        assert all(len(p) <= limit for p in pieces(sentence, limit))


def test_a_long_sentence_is_synthesized_in_bounded_pieces(settings):
    synth = Synthesizer.from_settings(settings.model_copy(update={"tts_max_phonemes": 60}))
    calls = []
    original = synth.voice.synthesize

    def spy(text, *args, **kwargs):
        calls.append(len(text) - 4)  # the phonemes between [[ and ]]
        return original(text, *args, **kwargs)

    synth.voice.synthesize = spy
    text = ("Your plan includes unlimited calls and texts, twenty gigabytes of data at full speed, "
            "and roaming in thirty countries at no extra cost.")
    chunks = synth.synthesize(text)
    next(chunks)
    assert len(calls) == 1  # lazily: the first piece plays while the rest is not yet synthesized
    audio = b"".join([*chunks])
    assert len(calls) > 2 and max(calls) <= 60
    assert audio


async def test_a_cancelled_turn_stops_mid_sentence(tts):
    text = " ".join(["Your plan includes unlimited calls and texts, and roaming at no extra cost."] * 4)
    reply = ReplyText(session_id="s", turn_id="cancel-me", index=0, text=text, final=True)
    whole = [e async for e in tts.handle(reply.model_copy(update={"turn_id": "whole"}))]
    emits = []
    async for emit in tts.handle(reply):
        emits.append(emit)
        if len(emits) == 1:
            await tts.on_cancel(TurnCancel(session_id="s", turn_id="cancel-me", reason="barge_in", ts=0.0))
    assert len(emits) <= 2 < len(whole)
    assert not any(e.record.final for e in emits)
