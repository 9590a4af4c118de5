"""Smart Turn v3.2 in the vad stage, on real speech: complete turns end early, cut ones wait."""

import numpy as np
import pytest

from processors.vad.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechPause
from processors.vad.turn_model import FRAMES, N_MELS, WINDOW_SAMPLES, TurnModel, last_window, log_mel
from schemas import Utterance
from tests.conftest import load_clip
from tests.processors.conftest import chunks, is_turn

RATE = 16000
COMPLETE = "sense_and_sensibility_01_austen_64kb-0870"  # one whole sentence, read
PAD = 3200  # the stage's 200 ms speech pad (samples)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


async def endpoint(stage, session_id: str, audio: np.ndarray, seq0: int = 0):
    """Feed ``audio`` chunk by chunk; return (emit, sample at which it was produced) pairs."""
    out = []
    for chunk in chunks(session_id, audio):
        async for emit in stage.handle(chunk):
            out.append((emit, chunk.start_sample + len(chunk.pcm) // 2))
    return out


@pytest.mark.parametrize("clip", ["jfk", COMPLETE])
def test_features_match_the_whisper_feature_extractor(clip):
    from transformers import WhisperFeatureExtractor

    window = last_window(load_clip(clip)[0])
    reference = WhisperFeatureExtractor(chunk_length=8)(
        window, sampling_rate=RATE, padding="max_length", max_length=WINDOW_SAMPLES, truncation=True,
        do_normalize=True, return_tensors="np").input_features[0]
    features = log_mel(window)
    assert features.shape == (N_MELS, FRAMES) and features.dtype == np.float32
    assert np.abs(features - reference).max() < 1e-4


def test_last_window_pads_on_the_left_and_keeps_the_end():
    audio = np.arange(1, 11, dtype=np.float32)
    window = last_window(audio)
    assert window.shape == (WINDOW_SAMPLES,) and window[-10:].tolist() == audio.tolist()
    assert not window[:-10].any()
    long = np.arange(WINDOW_SAMPLES + 5, dtype=np.float32)
    assert last_window(long)[0] == 5


def test_model_scores_a_whole_sentence_over_one_cut_mid_sentence(turn_vad_stage):
    audio, _ = load_clip(COMPLETE)
    whole = np.concatenate([audio, silence(0.2)])
    cut = np.concatenate([audio[: int(0.6 * audio.size)], silence(0.2)])  # "... how much there might"
    model: TurnModel = turn_vad_stage.turn_model
    batched = model.probabilities([whole, cut])
    assert batched[0] > 0.5 > batched[1]
    assert np.allclose(batched, [model.probabilities([whole])[0], model.probabilities([cut])[0]], atol=1e-4)


def test_endpointer_waits_for_the_verdict():
    cfg = EndpointConfig(min_silence_ms=96, min_speech_ms=64, speech_pad_ms=0, turn_model=True,
                         turn_pause_ms=64, max_silence_ms=320)
    ep = Endpointer(cfg)
    speech = [ep.step(i * 512, (i + 1) * 512, 0.9) for i in range(4)]
    assert ep.step(4 * 512, 5 * 512, 0.1) is None
    pause = ep.step(5 * 512, 6 * 512, 0.1)
    assert isinstance(pause, SpeechPause) and ep.awaiting and speech[0] is not None
    with pytest.raises(RuntimeError):
        ep.step(6 * 512, 7 * 512, 0.1)
    assert ep.decide(False) is None  # incomplete: the silence goes on past min_silence_ms
    events = [ep.step(i * 512, (i + 1) * 512, 0.1) for i in range(6, 14)]
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends == [SpeechEnd(0, 4 * 512, False)]
    assert events.index(ends[0]) == 13 - 6  # window 13 ends 320 ms after the silence began (window 4)


async def test_a_complete_sentence_ends_at_the_short_silence(turn_vad_stage, vad_stage):
    audio, _ = load_clip(COMPLETE)
    audio = np.concatenate([audio, silence(1.0)])
    delays = {}
    for name, stage in (("model", turn_vad_stage), ("silence", vad_stage)):
        out = await endpoint(stage, f"turn-complete-{name}", audio)
        [(utterance, at)] = [(e.record, at) for e, at in out if is_turn(e)]
        delays[name] = (at - (utterance.end_sample - PAD)) / RATE * 1000  # end of speech to emitted, ms
        # the speculative copy goes out at the pause (with the model: before the verdict), so the
        # asr stage decodes while the end is decided, and the confirmed utterance follows it
        sent = [e.record for e, _ in out if isinstance(e.record, Utterance)]
        assert [u.speculative for u in sent] == [True, False], name
        assert (sent[0].start_sample, sent[0].end_sample) == (sent[1].start_sample, sent[1].end_sample)
    assert delays["model"] <= 300 < delays["silence"], delays


async def test_a_sentence_cut_mid_way_waits_for_the_rest(turn_vad_stage, vad_stage):
    audio, _ = load_clip(COMPLETE)
    split = int(0.6 * audio.size)
    hesitant = np.concatenate([audio[:split], silence(1.5), audio[split:], silence(3.5)])  # 1.5 s hesitation
    model_out = await endpoint(turn_vad_stage, "turn-cut-model", hesitant)
    silence_out = await endpoint(vad_stage, "turn-cut-silence", hesitant)
    model_turns = [e.record for e, _ in model_out if is_turn(e)]
    silence_turns = [e.record for e, _ in silence_out if is_turn(e)]
    assert len(silence_turns) == 2  # silence alone cuts the caller off at the hesitation
    [turn] = model_turns
    assert turn.end_sample > split + int(1.5 * RATE)  # one turn over both halves


async def test_an_incomplete_turn_is_speculated_then_confirmed_after_the_max_silence(turn_vad_stage):
    audio, _ = load_clip(COMPLETE)
    cut = np.concatenate([audio[: int(0.6 * audio.size)], silence(3.5)])
    out = await endpoint(turn_vad_stage, "turn-max-silence", cut)
    utterances = [(e.record, at) for e, at in out if isinstance(e.record, Utterance)]
    [(speculative, spoken_at), (confirmed, confirmed_at)] = utterances
    assert speculative.speculative and not confirmed.speculative
    assert (speculative.start_sample, speculative.end_sample, speculative.pcm) == (
        confirmed.start_sample, confirmed.end_sample, confirmed.pcm)
    max_silence = turn_vad_stage.settings.vad_max_silence_ms * RATE // 1000
    speech_end = confirmed.end_sample - PAD
    assert confirmed_at - speech_end >= max_silence > spoken_at - speech_end


async def test_sessions_pausing_together_share_one_model_call(turn_vad_stage, monkeypatch):
    calls = []
    probabilities = turn_vad_stage.turn_model.probabilities
    monkeypatch.setattr(turn_vad_stage.turn_model, "probabilities", lambda clips: calls.append(len(clips))
                        or probabilities(clips))
    audio, _ = load_clip(COMPLETE)
    audio = np.concatenate([audio, silence(1.0)])
    streams = [list(chunks(f"turn-batch-{i}", audio)) for i in range(3)]
    emitted = []
    for records in zip(*streams, strict=True):  # one chunk of each session per wake-up
        emitted += [e async for e in turn_vad_stage.handle_batch(list(records))]
    assert calls == [3]
    assert sorted(e.record.session_id for e in emitted if is_turn(e)) == [f"turn-batch-{i}" for i in range(3)]
