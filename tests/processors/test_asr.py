import numpy as np
import pytest

from processors.asr.stage import AsrStage
from schemas import Utterance
from streams.topics import EGRESS, TRANSCRIPTS
from tests.conftest import CLIPS, load_clip, wer


@pytest.mark.parametrize("clip", CLIPS)
def test_tiny_en_wer_on_real_speech(recognizer, clip):
    audio, reference = load_clip(clip)
    result = recognizer.transcribe(audio)
    assert wer(reference, result.text) <= 0.25, result.text


def test_silence_is_not_transcribed(recognizer):
    assert recognizer.transcribe(np.zeros(16000, dtype=np.float32)).text == ""


async def test_stage_emits_transcript_to_pipeline_and_caller(settings, recognizer):
    stage = AsrStage(settings)
    stage.recognizer = recognizer
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
    stage = AsrStage(settings)
    stage.recognizer = recognizer
    audio, reference = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    pcm = (audio * 32767).astype("<i2").tobytes()
    fields = dict(session_id="s2", turn_id="a0-0", start_sample=0, end_sample=audio.size, pcm=pcm,
                  speech_end_ts=1.0)
    assert [e async for e in stage.handle(Utterance(**fields, speculative=True, marks={"vad.emit": 1.0}))] == []
    stage.recognizer = None  # a second decode would fail
    emits = [e async for e in stage.handle(Utterance(**fields, marks={"vad.emit": 2.0}))]
    transcript = emits[0].record
    assert wer(reference, transcript.text) <= 0.25
    assert transcript.marks["asr.speculative"] < transcript.marks["asr.start"]
    assert not stage.speculations


async def test_speculation_is_skipped_under_a_backlog(settings, recognizer):
    stage = AsrStage(settings)
    stage.recognizer = recognizer
    audio, _ = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    pcm = (audio * 32767).astype("<i2").tobytes()
    records = [Utterance(session_id=f"s{i}", turn_id="a0-0", start_sample=0, end_sample=audio.size, pcm=pcm,
                         speech_end_ts=1.0, speculative=True) for i in range(2)]
    assert [e async for e in stage.handle_batch(records)] == []
    assert not stage.speculations
