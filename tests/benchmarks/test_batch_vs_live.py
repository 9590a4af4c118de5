"""The batch-vs-live benchmark's recorded call and its summary: what is counted as beside the call."""

import io

import soundfile

from benchmarks.batch_vs_live import call_recording, summary
from benchmarks.caller import TurnResult
from tests.conftest import DATA


def test_the_recorded_call_is_every_recording_with_gaps():
    clips = sorted(DATA.glob("*.wav"))
    audio, rate = soundfile.read(io.BytesIO(call_recording(DATA, copies=2, gap_s=0.5)), dtype="int16")
    expected = 2 * sum(soundfile.info(str(clip)).frames + rate // 2 for clip in clips)
    assert rate == 16000 and audio.ndim == 1 and audio.size == expected


def test_only_turns_that_ended_while_the_call_ran_are_beside_it():
    turns = [TurnResult("voxbus", 1, 0, i, f"clip#{i}", speech_end_at=10.0 * i, first_audio_at=10.0 * i + 0.8)
             for i in range(4)]
    call = {"status": "done", "error": "", "turns": 9, "completion_s": 25.0, "yielded_s": 3.2,
            "posted_at": 0.0, "ended_at": 25.0}
    out = summary(turns, call)
    assert out["voice_to_voice_ms"]["n"] == 4 and out["beside_call_voice_to_voice_ms"]["n"] == 3
    assert out["call"] == {"status": "done", "error": "", "turns": 9, "completion_s": 25.0, "yielded_s": 3.2}
    assert all(not key.endswith("_at") for row in out["turns"] for key in row)
    assert "call" not in summary(turns, None)
