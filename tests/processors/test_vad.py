import numpy as np
import pytest

from processors.vad.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechStart
from schemas import SessionControl, Utterance
from tests.conftest import load_clip
from tests.processors.conftest import chunks, collect, is_turn


def test_endpointer_hysteresis_and_min_silence():
    cfg = EndpointConfig(threshold=0.5, min_silence_ms=96, min_speech_ms=64, speech_pad_ms=0)
    ep = Endpointer(cfg)
    probs = [0.1, 0.9, 0.9, 0.9, 0.4, 0.9, 0.1, 0.1, 0.1, 0.1]  # 0.4 is above the 0.35 stop threshold
    events = [ep.step(i * 512, (i + 1) * 512, p) for i, p in enumerate(probs)]
    assert events[1] == SpeechStart(512)
    ends = [e for e in events if isinstance(e, SpeechEnd)]
    assert ends == [SpeechEnd(512, 6 * 512, False)]


def test_endpointer_drops_short_blips():
    ep = Endpointer(EndpointConfig(min_silence_ms=64, min_speech_ms=250))
    events = [ep.step(i * 512, (i + 1) * 512, p) for i, p in enumerate([0.9, 0.1, 0.1, 0.1, 0.1])]
    [end] = [e for e in events if isinstance(e, SpeechEnd)]
    assert end.too_short


async def test_one_utterance_from_a_real_recording(vad_stage):
    audio, _ = load_clip("sense_and_sensibility_01_austen_64kb-0880")
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])  # the caller waits silently
    out = await collect(vad_stage, chunks("vad-1", audio))
    utterances = [e.record for e in out if is_turn(e)]
    assert len(utterances) == 1
    kinds = [(e.record.type, getattr(e.record, "kind", "") or getattr(e.record, "speculative", ""))
             for e in out]
    assert kinds == [("vad_event", "speech_start"), ("utterance", True), ("utterance", False),
                     ("vad_event", "speech_end")]
    speculative = out[1].record  # sent at the pause, 200 ms before the end is confirmed
    assert (speculative.turn_id, speculative.start_sample, speculative.end_sample, speculative.pcm) == (
        utterances[0].turn_id, utterances[0].start_sample, utterances[0].end_sample, utterances[0].pcm)
    assert speculative.marks["vad.emit"] <= utterances[0].marks["vad.emit"]
    u = utterances[0]
    assert isinstance(u, Utterance) and u.turn_id.startswith("a")
    duration = (u.end_sample - u.start_sample) / 16000
    assert 1.5 < duration < 3.5
    assert len(u.pcm) == 2 * (u.end_sample - u.start_sample)
    assert u.marks["vad.emit"] >= u.speech_end_ts


async def test_silence_and_noise_make_no_utterance(vad_stage):
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(16000 * 3)).astype(np.float32)
    assert await collect(vad_stage, chunks("vad-2", noise)) == []


async def test_session_end_flushes_speech_in_progress(vad_stage):
    audio, _ = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    records = list(chunks("vad-3", audio[: int(1.5 * 16000)]))
    records.append(SessionControl(session_id="vad-3", action="end", ts=2000.0))
    out = await collect(vad_stage, records)
    assert len([e for e in out if is_turn(e)]) == 1


async def test_redelivered_chunks_are_ignored(vad_stage):
    audio, _ = load_clip("sense_and_sensibility_01_austen_64kb-0880")
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    records = list(chunks("vad-4", audio))
    replayed = records[:40] + records[20:40] + records[40:]  # a consumer restart re-reads 20 chunks
    out = await collect(vad_stage, replayed)
    assert len([e for e in out if is_turn(e)]) == 1


@pytest.mark.parametrize("clip", ["jfk"])
async def test_pauses_split_long_speech_into_turns(vad_stage, clip):
    audio, _ = load_clip(clip)
    audio = np.concatenate([audio, np.zeros(16000, dtype=np.float32)])
    out = [e for e in await collect(vad_stage, chunks("vad-5", audio)) if is_turn(e)]
    assert len(out) >= 2
    starts = [e.record.start_sample for e in out]
    assert starts == sorted(starts)


@pytest.mark.parametrize(("snr_db", "denoised"), [(None, False), (10.0, True), (5.0, True)])
async def test_auto_denoise_follows_the_noise_floor(vad_stage, snr_db, denoised):
    speech, _ = load_clip("sense_and_sensibility_01_austen_64kb-0930")
    audio = np.concatenate([speech, np.zeros(8000, np.float32)])
    if snr_db is not None:  # white noise at snr_db below the speech level, through the pause too
        noise = np.random.default_rng(1).standard_normal(audio.size).astype(np.float32)
        audio = audio + noise * np.sqrt(np.mean(speech**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    session = f"vad-floor-{snr_db}"
    out = await collect(vad_stage, chunks(session, audio))
    assert vad_stage.settings.denoise == "auto"
    assert vad_stage.sessions[session].denoiser.active is denoised
    assert len([e for e in out if is_turn(e)]) >= 1


def test_noise_floor_hysteresis():
    from processors.vad.denoise import FLOOR_HISTORY, NoiseFloor

    floor = NoiseFloor(threshold_dbfs=-40.0)
    assert not floor.observe(np.full(4, -20.0))  # too few measurements to decide
    assert floor.observe(np.full(8, -30.0))
    assert floor.observe(np.full(FLOOR_HISTORY, -43.0))  # within the 6 dB hysteresis: stays on
    assert not floor.observe(np.full(FLOOR_HISTORY, -50.0))
