import numpy as np
import pytest

from schemas import Utterance
from streams.topics import EGRESS, TRANSCRIPTS
from tests.conftest import CLIPS, load_clip, wer
from tests.processors.conftest import asr_stage


@pytest.mark.parametrize("clip", CLIPS)
def test_tiny_en_wer_on_real_speech(recognizer, clip):
    audio, reference = load_clip(clip)
    result = recognizer.transcribe(audio)
    assert wer(reference, result.text) <= 0.25, result.text


def test_silence_is_not_transcribed(recognizer):
    assert recognizer.transcribe(np.zeros(16000, dtype=np.float32)).text == ""


async def test_stage_emits_transcript_to_pipeline_and_caller(settings, recognizer):
    stage = asr_stage(settings, recognizer)
    audio, reference = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    pcm = (audio * 32767).astype("<i2").tobytes()
    utterance = Utterance(session_id="s", egress_partition=2, turn_id="a0", start_sample=0,
                          end_sample=audio.size, pcm=pcm, speech_end_ts=1.0, marks={"vad.emit": 1.0})
    emits = [e async for e in stage.handle(utterance)]
    assert [e.topic for e in emits] == [TRANSCRIPTS, EGRESS]
    transcript = emits[0].record
    assert transcript.egress_partition == 2 and transcript.turn_id == "a0"
    assert wer(reference, transcript.text) <= 0.25
    assert transcript.marks["asr.end"] >= transcript.marks["asr.start"] >= 1.0


def test_batched_decode_matches_one_by_one(recognizer):
    clips = [load_clip(name) for name in CLIPS[:3]]
    batched = recognizer.transcribe_batch([audio for audio, _ in clips])
    for (audio, reference), result in zip(clips, batched, strict=True):
        assert wer(reference, result.text) <= 0.25, result.text
        assert result.text == recognizer.transcribe(audio).text


async def test_a_confirmed_speculation_is_not_decoded_twice(settings, recognizer):
    stage = asr_stage(settings, recognizer)
    audio, reference = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    pcm = (audio * 32767).astype("<i2").tobytes()
    fields = dict(session_id="s2", turn_id="a0-0", start_sample=0, end_sample=audio.size, pcm=pcm,
                  speech_end_ts=1.0)
    speculation = Utterance(**fields, speculative=True, marks={"vad.emit": 1.0})
    assert [e async for e in stage.handle(speculation)] == []
    stage.recognizers = None  # a second decode would fail
    emits = [e async for e in stage.handle(Utterance(**fields, marks={"vad.emit": 2.0}))]
    transcript = emits[0].record
    assert wer(reference, transcript.text) <= 0.25
    assert transcript.marks["asr.speculative"] < transcript.marks["asr.start"]
    assert not stage.speculations


async def test_speculation_is_skipped_under_a_backlog(settings, recognizer):
    stage = asr_stage(settings, recognizer)
    audio, _ = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    pcm = (audio * 32767).astype("<i2").tobytes()
    records = [Utterance(session_id=f"s{i}", turn_id="a0-0", start_sample=0, end_sample=audio.size, pcm=pcm,
                         speech_end_ts=1.0, speculative=True) for i in range(2)]
    assert [e async for e in stage.handle_batch(records)] == []
    assert not stage.speculations


def utterance_of(audio: np.ndarray, language: str) -> Utterance:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    return Utterance(session_id="s", turn_id="a0", start_sample=0, end_sample=audio.size, pcm=pcm,
                     speech_end_ts=1.0, language=language)


@pytest.mark.parametrize("clip", ["jfk", "sense_and_sensibility_01_austen_64kb-0880"])
async def test_real_english_of_no_stated_language_is_detected_as_english(settings, recognizer, clip):
    """Language ``auto``: faster-whisper base detects it; English is then heard by tiny.en."""
    stage = asr_stage(settings, recognizer)
    audio, reference = load_clip(clip)
    language, probability = stage.recognizers.detect(audio)
    assert language == "en" and probability >= settings.language_detect_floor
    [transcript, _to_caller] = [e.record async for e in stage.handle(utterance_of(audio, ""))]
    assert transcript.language == "en" and wer(reference, transcript.text) <= 0.25, transcript.text


async def test_a_spanish_session_is_heard_in_spanish_by_the_multilingual_model(settings, recognizer):
    """espeak-ng's Spanish voice (synthetic: no Spanish recording is installable here), forced to es."""
    import soxr

    from processors.tts.espeak_voice import EspeakSynthesizer

    voice = EspeakSynthesizer("es")
    pcm = b"".join(voice.synthesize("Quiero cambiar de plan."))
    audio = soxr.resample(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, voice.sample_rate, 16000)
    stage = asr_stage(settings, recognizer)
    [transcript, _to_caller] = [e.record async for e in stage.handle(utterance_of(audio, "es"))]
    assert transcript.language == "es" and "plan" in transcript.text.lower(), transcript.text


def sharing_the_model(recognizer, pad_s: float):
    """A Recognizer on ``recognizer``'s loaded model with encoder window padding ``pad_s``."""
    from processors.asr.whisper import Recognizer

    shell = Recognizer.__new__(Recognizer)
    shell.model, shell.batched, shell.beam_size = recognizer.model, recognizer.batched, 5
    shell.window_pad_s = pad_s
    return shell


@pytest.fixture
def encoded_positions(monkeypatch) -> list[int]:
    """The encoder positions (half the frames) of every encode while the test runs."""
    from processors.asr.whisper import WindowedWhisperModel

    positions: list[int] = []
    encode = WindowedWhisperModel.encode

    def spy(model, features):
        out = encode(model, features)
        positions.append(out.shape[1])
        return out

    monkeypatch.setattr(WindowedWhisperModel, "encode", spy)
    return positions


def test_a_windowed_decode_encodes_the_utterance_and_its_padding_not_30_s(recognizer, encoded_positions):
    from processors.asr.whisper import window_frames

    audio, reference = load_clip("jfk")
    windowed, whole = sharing_the_model(recognizer, 10.0), sharing_the_model(recognizer, 0.0)
    shapes = encoded_positions
    assert wer(reference, windowed.transcribe(audio).text) <= 0.25
    assert shapes == [window_frames(audio.size, 10.0) // 2] and shapes[0] < 1500
    assert recognizer.model.window_frames is None  # only while decoding
    whole.transcribe(audio)
    assert shapes[-1] == 1500  # the whole window without padding set
    assert window_frames(16000 * 40, 0.0) == 3000 and window_frames(16000, 0.5) == 150


def test_a_windowed_decode_that_is_rejected_is_decoded_again_on_the_whole_window(
        recognizer, encoded_positions):
    import soundfile

    from tests.conftest import DATA

    windowed, positions = sharing_the_model(recognizer, 10.0), encoded_positions
    music, _ = soundfile.read(DATA / "nonspeech" / "moh_macroform_the_simplicity_0s.wav", dtype="float32")
    result = windowed.transcribe(music)  # 3 s of music on hold: rejected either way
    assert result.rejected and positions[0] < 1500 and positions[-1] == 1500
    speech, _ = load_clip("jfk")
    positions.clear()
    assert windowed.transcribe(speech).text and max(positions) < 1500  # accepted: decoded once, windowed
    positions.clear()
    out = windowed.transcribe_batch([speech, music])
    assert out[0].text and out[1].rejected and positions[-1] == 1500  # only the rejected one again
