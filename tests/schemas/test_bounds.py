"""The schemas' bounds (issue 13, finding 5): a forged record is refused at decode, with its reason."""

from __future__ import annotations

import faust
import msgpack
import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import ValidationError

from schemas import (
    DEAD_LETTER_PAYLOAD_BYTES,
    MAX_RECORD_BYTES,
    MAX_TEXT_CHARS,
    AudioChunk,
    Booking,
    DeadLetter,
    ErrorEvent,
    Passage,
    Record,
    ReplyText,
    RetrievalResult,
    SchemaError,
    SessionOwner,
    StageHeartbeat,
    Transcript,
    Utterance,
    decode,
    encode,
)
from schemas.audio import MAX_CHUNK_SAMPLES, MAX_UTTERANCE_S

RATE = 16000
SID = "s" * 64
"""The longest session id: the longest Kafka key."""
TOO_LONG = "x" * (MAX_TEXT_CHARS + 1)


def packed(record: Record, **fields: object) -> bytes:
    """``record`` as a hostile producer would write it: ``fields`` changed, nothing validated."""
    return msgpack.packb({**record.model_dump(mode="python"), **fields}, use_bin_type=True)


CHUNK = AudioChunk(session_id=SID, seq=10, start_sample=640, pcm=b"\0\0" * 1024, recv_ts=1.0)
UTTERANCE = Utterance(session_id=SID, turn_id="a0-1", start_sample=0, end_sample=1, pcm=b"\0\0",
                      speech_end_ts=1.0)


def test_every_record_a_stage_accepts_fits_in_a_faust_produce_request():
    limit = faust.App("bounds").conf.producer_max_request_size
    largest = DefaultRecordBatchBuilder.estimate_size_in_bytes(SID.encode(), b"\0" * MAX_RECORD_BYTES, [])
    assert largest <= limit


def test_the_longest_utterance_the_vad_stage_cuts_fits():
    # VOXBUS_VAD_MAX_UTTERANCE_S (30 s) + 400 ms of padding on each side + one 32 ms window
    samples = 30 * RATE + 2 * 6400 + 512
    marks = {"vad.emit": 1.0, "vad.speech_end": 1.0}
    record = UTTERANCE.model_copy(update={"pcm": b"\0\0" * samples, "marks": marks})
    assert decode(encode(record), Utterance) == record


@pytest.mark.parametrize(("value", "reason"), [
    (packed(CHUNK, start_sample=600 * RATE), "start_sample 9600000 runs ahead of chunk 10"),
    (packed(CHUNK, seq=0, start_sample=1), "start_sample 1 runs ahead of chunk 0"),
    (packed(CHUNK, pcm=b"\0\0" * (MAX_CHUNK_SAMPLES + 1)), "pcm: Data should have at most 32000 bytes"),
    (packed(CHUNK, start_sample=2**64 - 1), "start_sample: Input should be less than or equal to"),
])
def test_a_forged_audio_chunk_is_refused(value, reason):
    with pytest.raises(SchemaError, match=reason):
        decode(value, AudioChunk)


def test_a_chunk_a_restarted_worker_reads_minutes_into_a_call_is_accepted():
    ten_minutes_in = packed(CHUNK, seq=9375, start_sample=600 * RATE)  # 64 ms chunks
    assert decode(ten_minutes_in, AudioChunk).start_sample == 600 * RATE


def test_an_utterance_over_the_longest_the_vad_stage_cuts_is_refused():
    with pytest.raises(ValidationError, match=f"at most {int(MAX_UTTERANCE_S * RATE) * 2} bytes"):
        Utterance(**{**UTTERANCE.model_dump(), "pcm": b"\0\0" * int(31.2 * RATE)})
    with pytest.raises(SchemaError, match=r"record of 4000\d{3} bytes exceeds 998976"):
        decode(packed(UTTERANCE, pcm=b"\0\0" * (125 * RATE)), Utterance)


def test_a_record_over_the_bound_is_neither_encoded_nor_decoded():
    record = UTTERANCE.model_construct(**{**UTTERANCE.model_dump(), "pcm": b"\0\0" * 500_000})
    with pytest.raises(SchemaError, match="utterance record of 1000\\d{3} bytes exceeds 998976"):
        encode(record)
    with pytest.raises(SchemaError, match="record of 1000\\d{3} bytes exceeds 998976"):
        decode(packed(record))


REPLY = ReplyText(session_id="s", turn_id="a0-1", index=0, text="Hi.")
TRANSCRIPT = Transcript(session_id="s", turn_id="a0-1", text="hi")
RETRIEVAL = RetrievalResult(session_id="s", turn_id="a0-1", text="hi", intent="billing", confidence=1.0,
                            sentiment="neutral", sentiment_score=0.0,
                            passages=[Passage(text="Bills are monthly.", source="billing.md", score=0.9)])
PASSAGE = RETRIEVAL.passages[0].model_dump()
ERROR = ErrorEvent(session_id="s", stage="asr", code="stage_error", message="failed")
BOOKING = Booking(session_id="s", confirmation="HM-1", name="Ann", service="repair", day="Tuesday",
                  time="3 PM", turn_id="a0-1", call_id="rules-1", ts=1.0)
HEARTBEAT = StageHeartbeat(stage="vad", instance="host:1", ts=1.0)


@pytest.mark.parametrize(("value", "reason"), [
    (packed(TRANSCRIPT, text=TOO_LONG), "invalid transcript: text: String should have at most 4000 char"),
    (packed(REPLY, text=TOO_LONG), "invalid reply_text: text: String should have at most 4000 characters"),
    (packed(RETRIEVAL, passages=[{**PASSAGE, "text": TOO_LONG}]), "passages.0.text: .* at most 4000"),
    (packed(RETRIEVAL, passages=[{**PASSAGE, "source": "x" * 256}]), "passages.0.source: .* at most 255"),
    (packed(RETRIEVAL, passages=[PASSAGE] * 21), "passages: List should have at most 20 items"),
    (packed(ERROR, message=TOO_LONG), "invalid error_event: message: String should have at most 4000"),
    (packed(ERROR, code="x" * 256), "invalid error_event: code: String should have at most 255"),
    (packed(BOOKING, name=TOO_LONG), "invalid booking: name: String should have at most 4000"),
    (packed(HEARTBEAT, stage="x" * 256), "invalid stage_heartbeat: stage: String should have at most 255"),
])
def test_an_over_long_text_is_refused_with_its_reason(value, reason):
    with pytest.raises(SchemaError, match=reason):
        decode(value)


def test_a_dead_letter_of_the_longest_payload_and_reason_fits():
    letter = DeadLetter(stage="x" * 255, topic="t" * 255, partition=0, offset=2**62,
                        reason="\U0001f600" * MAX_TEXT_CHARS, payload=b"\xff" * DEAD_LETTER_PAYLOAD_BYTES,
                        payload_size=2**40, session_id=SID, ts=1.0)
    assert decode(encode(letter), DeadLetter) == letter


def test_a_session_owner_decodes_like_every_record_tolerating_a_newer_field():
    owner = SessionOwner(session_id="s1", principal="key:alice", expires=2.0, ts=1.0)
    assert decode(packed(owner, region="eu")) == owner
    with pytest.raises(SchemaError, match="record type 'session_owner' is not accepted here"):
        decode(encode(owner), Transcript)
