"""A recording of a real two-turn call: the caller's words on the left, the replies on the right, from the
topics and from the archive alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import numpy as np
import pytest
import soundfile

from processors.archive.reader import archive_root, read_archive
from processors.archive.recording import RATE, NoAudio, build, session_reads
from tests.conftest import load_clip, wer
from voxbus.client import call

pytestmark = pytest.mark.integration

CLIPS = ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0920")
GAP_S = 20.0
"""Silence between the two questions: longer than a reply (VOXBUS_LLM_MAX_TOKENS 64 tokens, under 20 s of
speech), so the second question does not barge in on the first reply."""


def speech(channel: np.ndarray, pause_s: float = 1.0) -> list[np.ndarray]:
    """The stretches of ``channel`` (int16) with sound, split at ``pause_s`` of digital silence, as float32.

    Whisper is given only where there is sound: a long silence is where it makes up words.
    """
    loud = np.flatnonzero(np.abs(channel.astype(np.int32)) > 64)
    if not loud.size:
        return []
    cuts = np.flatnonzero(np.diff(loud) > pause_s * RATE)
    starts, ends = np.r_[loud[0], loud[cuts + 1]], np.r_[loud[cuts], loud[-1]]
    return [channel[a:b + 1].astype(np.float32) / 32768 for a, b in zip(starts, ends, strict=True)]


def heard(recognizer, channel: np.ndarray) -> str:
    return " ".join(recognizer.transcribe(part).text for part in speech(channel))


@pytest.fixture(scope="module")
def two_turn_call(url, stack, tmp_path_factory):
    audio = [load_clip(name) for name in CLIPS]
    path = tmp_path_factory.mktemp("recording") / "two_questions.wav"
    soundfile.write(path, np.concatenate([audio[0][0], np.zeros(int(GAP_S * RATE), np.float32), audio[1][0]]),
                    RATE, subtype="PCM_16")
    session_id = f"rec-{uuid.uuid4().hex[:8]}"
    turns = asyncio.run(call(url, path, session_id=session_id, timeout_s=180))
    return session_id, turns, " ".join(reference for _, reference in audio)


def test_callers_words_left_replies_right(two_turn_call, stack, recognizer, tmp_path):
    session_id, turns, reference = two_turn_call
    assert len(turns) >= 2, [t.transcript for t in turns]
    made = build(asyncio.run(session_reads(stack, session_id, "topics")), session_id)
    made.write(tmp_path / "call.wav")
    samples, rate = soundfile.read(tmp_path / "call.wav", dtype="int16")
    assert rate == RATE and samples.shape[1] == 2
    caller = heard(recognizer, samples[:, 0])
    assert wer(reference, caller) <= 0.3, caller
    replies = " ".join(turn.reply_text for turn in turns)
    voxbus = heard(recognizer, samples[:, 1])
    assert wer(replies, voxbus) <= 0.4, (replies, voxbus)
    # the first reply starts after the caller's first question ended, and before the second began
    first_reply = np.flatnonzero(samples[:, 1])[0] / RATE
    question = load_clip(CLIPS[0])[0].size / RATE
    assert question < first_reply < question + GAP_S
    print(f"\nrecording {samples.shape[0] / RATE:.1f} s; caller heard: {caller!r}; voxbus heard: {voxbus!r}")


def test_the_archive_alone_makes_the_same_recording(two_turn_call, stack):
    session_id, _turns, _reference = two_turn_call
    from_topics = build(asyncio.run(session_reads(stack, session_id, "topics")), session_id)
    root = archive_root(stack)
    deadline = time.monotonic() + 90  # VOXBUS_ARCHIVE_FLUSH_S (10 s) after the last record, on a busy machine
    archived = None
    while time.monotonic() < deadline:
        with contextlib.suppress(NoAudio):  # nothing written yet
            archived = build(read_archive(root, ["audio", "egress"], sessions=[session_id]), session_id)
        if archived is not None and np.array_equal(archived.samples, from_topics.samples):
            break
        time.sleep(2)
    assert archived is not None and archived.start == from_topics.start
    assert np.array_equal(archived.samples, from_topics.samples)
