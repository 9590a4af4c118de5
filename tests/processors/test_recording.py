"""Recordings from a session's records: caller left, voxbus right, placed by their clocks; record: false."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
from aiokafka.structs import ConsumerRecord

from processors.analytics.io import Read
from processors.archive.recording import RATE, NoAudio, RecordingRefused, build
from schemas import AudioChunk, SessionControl, SynthAudio, encode

EPOCH_MS = 1_700_000_000_000


def read(record, topic: str, timestamp_s: float, offset: int) -> Read:
    value = encode(record)
    message = ConsumerRecord(topic, 0, offset, int(timestamp_s * 1000), 0, record.session_id.encode(), value,
                             None, 0, len(value), ())
    return Read(message, record)


def tone(samples: int, value: int) -> bytes:
    return np.full(samples, value, "<i2").tobytes()


def call(record: bool = True) -> list[Read]:
    """1 s of caller audio in two chunks, a 0.5 s reply sentence at 2 s and a second one sent before
    the first finished playing (so it plays right after it)."""
    t0 = EPOCH_MS / 1000
    out = [read(SessionControl(session_id="s", epoch=EPOCH_MS, action="start", ts=t0,
                               config={} if record else {"record": False}), "voxbus.audio", t0, 0)]
    for seq in range(2):
        chunk = AudioChunk(session_id="s", epoch=EPOCH_MS, seq=seq, start_sample=seq * 8000,
                           pcm=tone(8000, 1000), recv_ts=t0 + (seq + 1) * 0.5)
        out += [read(chunk, "voxbus.audio", t0 + 0.5, 1 + seq)] * 2  # at-least-once: a repeat
    for index, at in ((0, 2.0), (1, 2.1)):
        synth = SynthAudio(session_id="s", turn_id="a0", index=index, seq=0, sample_rate=22050,
                           pcm=tone(11025, 2000 + index), final=index == 1)
        out.append(read(synth, "voxbus.egress", t0 + at, index))
    return out


def test_channels_are_placed_by_their_clocks(tmp_path):
    made = build(reversed(call()), "s")
    left, right = made.samples[:, 0], made.samples[:, 1]
    assert made.start == pytest.approx(EPOCH_MS / 1000)
    assert made.caller_s == pytest.approx(1.0) and made.voxbus_s == pytest.approx(1.0, abs=0.01)
    assert (left[:RATE] == 1000).all() and not left[RATE:].any()  # the repeat placed once, at its sample
    first = np.flatnonzero(right)[0]
    assert first == 2 * RATE  # the first sentence at its Kafka timestamp
    # the second sentence arrived while the first played: right after it, not at 2.1 s
    assert abs(int(right[first + RATE // 2 - 200]) - 2000) < 20
    assert abs(int(right[first + RATE // 2 + 200]) - 2001) < 20
    made.write(tmp_path / "call.wav")
    data, rate = soundfile.read(tmp_path / "call.wav", dtype="int16")
    assert rate == RATE and data.shape == made.samples.shape and (data == made.samples).all()


def test_record_false_has_no_recording_and_nothing_is_no_audio():
    with pytest.raises(RecordingRefused):
        build(call(record=False), "s")
    with pytest.raises(NoAudio):
        build(call(), "another-session")
