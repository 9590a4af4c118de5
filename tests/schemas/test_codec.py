import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    AgentWindow,
    AudioChunk,
    DeadLetter,
    DeskFact,
    ErrorEvent,
    EscalationCount,
    IntentCount,
    IntentResult,
    LatencyPercentiles,
    LiveTurns,
    Passage,
    ReplyText,
    RetrievalResult,
    SchemaError,
    SentimentCount,
    SessionControl,
    StageHeartbeat,
    Suggestion,
    SynthAudio,
    Transcript,
    TurnCancel,
    TurnRecord,
    TurnsPerMinute,
    Utterance,
    VadEvent,
    decode,
    encode,
)
from schemas.audio import MAX_CHUNK_SAMPLES
from schemas.codec import REGISTRY
from schemas.desk import DISPOSITIONS, QueueEvent, SessionCaller, Ticket
from schemas.sessions import SessionOwner
from schemas.tools import Booking, ConversationLine, Handoff, HandoffUpdate, ToolCall, ToolResult
from schemas.voice import AgentAudio

session_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
turn_ids = st.from_regex(r"[A-Za-z0-9_]{1,20}", fullmatch=True)
pcm = st.binary(max_size=2048).map(lambda b: b[: len(b) // 2 * 2])
ts = st.floats(min_value=0, max_value=4e9, allow_nan=False)
marks = st.dictionaries(st.sampled_from(["vad.emit", "asr.end", "x.y"]), ts, max_size=3)
text = st.text(max_size=200)

STRATEGIES = {
    AudioChunk: st.integers(0, 10**6).flatmap(lambda seq: st.builds(
        AudioChunk, session_id=session_ids, seq=st.just(seq),
        start_sample=st.integers(0, seq * MAX_CHUNK_SAMPLES), pcm=pcm, recv_ts=ts)),
    SessionControl: st.builds(SessionControl, session_id=session_ids,
                              action=st.sampled_from(["start", "config", "end"]), ts=ts,
                              config=st.dictionaries(st.text(max_size=5), st.booleans() | st.integers(),
                                                     max_size=3)),
    Utterance: st.builds(Utterance, session_id=session_ids, turn_id=turn_ids, start_sample=st.just(0),
                         end_sample=st.integers(0, 10**6), pcm=pcm, speech_end_ts=ts, marks=marks),
    Transcript: st.builds(Transcript, session_id=session_ids, turn_id=turn_ids, text=text, marks=marks),
    IntentResult: st.builds(IntentResult, session_id=session_ids, turn_id=turn_ids, text=text,
                            intent=st.sampled_from(["billing", "other"]), confidence=st.floats(0, 1),
                            sentiment=st.sampled_from(["negative", "neutral", "positive"]),
                            sentiment_score=st.floats(-1, 1)),
    RetrievalResult: st.builds(RetrievalResult, session_id=session_ids, turn_id=turn_ids, text=text,
                               intent=st.just("refund"), confidence=st.floats(0, 1),
                               sentiment=st.just("neutral"), sentiment_score=st.just(0.0),
                               passages=st.lists(st.builds(Passage, text=text, source=text,
                                                           score=st.floats(-1, 1)), max_size=3)),
    ReplyText: st.builds(ReplyText, session_id=session_ids, turn_id=turn_ids, index=st.integers(0, 50),
                         text=text, final=st.booleans(),
                         sources=st.lists(st.sampled_from(["billing.md", "plans.md"]), max_size=3)),
    SynthAudio: st.builds(SynthAudio, session_id=session_ids, turn_id=turn_ids, index=st.integers(0, 9),
                          seq=st.integers(0, 99), sample_rate=st.just(22050), pcm=pcm),
    TurnRecord: st.builds(TurnRecord, session_id=session_ids, turn_id=turn_ids, source=st.just("voice"),
                          transcript=text, intent=st.just("billing"), confidence=st.floats(0, 1),
                          sentiment=st.just("neutral"), sentiment_score=st.just(0.0), reply_text=text,
                          marks=marks, latency_ms=st.dictionaries(st.text(max_size=8), st.floats(0, 1e5)),
                          ts=ts),
    DeadLetter: st.builds(DeadLetter, stage=st.just("asr"), topic=st.just("t"), partition=st.integers(0, 9),
                          offset=st.integers(0, 10**9), reason=text, payload=st.binary(max_size=100), ts=ts),
    StageHeartbeat: st.builds(StageHeartbeat, stage=st.just("vad"), instance=st.just("h:1"), ts=ts),
    LiveTurns: st.builds(LiveTurns, instance=st.just("h:1:0"), in_flight=st.integers(0, 99), ts=ts),
    ErrorEvent: st.builds(ErrorEvent, session_id=session_ids, stage=st.just("asr"), code=text, message=text),
    VadEvent: st.builds(VadEvent, session_id=session_ids, turn_id=turn_ids,
                        kind=st.sampled_from(["speech_start", "speech_end"]), sample=st.integers(0, 10**9),
                        ts=ts),
    TurnCancel: st.builds(TurnCancel, session_id=session_ids, turn_id=turn_ids,
                          reason=st.sampled_from(["barge_in", "backchannel", "hangup"]), heard_text=text,
                          heard_ms=st.floats(0, 1e6), ts=ts),
}


counts = st.integers(0, 10**6)
window_starts = st.integers(0, 60_000_000).map(lambda m: float(m * 60))
ms = st.floats(0, 1e6, allow_nan=False)
STRATEGIES.update({
    TurnsPerMinute: st.builds(TurnsPerMinute, window_start=window_starts, window_end=ts, turns=counts, ts=ts,
                              sessions=counts, voice=counts, text=counts, interrupted=counts),
    IntentCount: st.builds(IntentCount, window_start=window_starts, window_end=ts, turns=counts, ts=ts,
                           intent=st.sampled_from(["billing", "unknown"]), confidence_mean=st.floats(0, 1)),
    SentimentCount: st.builds(SentimentCount, window_start=window_starts, window_end=ts, turns=counts, ts=ts,
                              sentiment=st.sampled_from(["negative", "neutral", "positive"]),
                              score_mean=st.floats(-1, 1)),
    EscalationCount: st.builds(EscalationCount, window_start=window_starts, window_end=ts, turns=counts,
                               ts=ts, human_agent=counts, negative=counts,
                               session_ids=st.lists(session_ids, max_size=5)),
    LatencyPercentiles: st.builds(LatencyPercentiles, window_start=window_starts, window_end=ts, turns=counts,
                                  ts=ts, span=st.sampled_from(["asr", "voice_to_voice"]), mean_ms=ms,
                                  min_ms=ms, max_ms=ms, p50_ms=ms, p95_ms=ms, p99_ms=ms),
})

roles = st.sampled_from(["caller", "assistant", "agent"])
lines = st.lists(st.builds(ConversationLine, role=roles, text=text, turn_id=turn_ids), max_size=3)
strs = st.dictionaries(st.text(max_size=8), text, max_size=3)
tools = st.sampled_from(["book_appointment", "check_order_status", "escalate_to_human", "book_callback"])
call_ids = st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True)
STRATEGIES.update({
    ToolCall: st.builds(ToolCall, session_id=session_ids, turn_id=turn_ids, call_id=call_ids, tool=tools,
                        arguments=strs, intent=text, sentiment_score=st.floats(-1, 1), history=lines,
                        marks=marks),
    ToolResult: st.builds(ToolResult, session_id=session_ids, turn_id=turn_ids, call_id=call_ids, tool=tools,
                          status=st.sampled_from(["done", "need_info", "failed"]), arguments=strs,
                          missing=st.lists(text, max_size=3), say=text, data=strs, marks=marks),
    Booking: st.builds(Booking, session_id=session_ids, confirmation=st.just("HM-1A2B3C"), name=text,
                       service=text, day=text, time=text, turn_id=turn_ids, call_id=call_ids, ts=ts),
    Handoff: st.builds(Handoff, session_id=session_ids, turn_id=turn_ids,
                       reason=st.sampled_from(["requested", "repeated_failure", "negative_sentiment"]),
                       sentiment_score=st.floats(-1, 1), summary=text, transcript=lines, ts=ts),
    HandoffUpdate: st.builds(HandoffUpdate, session_id=session_ids,
                             kind=st.sampled_from(["caller", "taken", "agent"]), turn_id=turn_ids, text=text,
                             agent=st.text(max_size=20), ts=ts),
    SessionOwner: st.builds(SessionOwner, session_id=session_ids, principal=st.from_regex(r"key:[a-z]{1,20}",
                                                                                           fullmatch=True),
                            expires=ts, ts=ts),
    QueueEvent: st.builds(QueueEvent, session_id=session_ids,
                          kind=st.sampled_from(["claim", "release", "transfer", "expire", "end"]),
                          handoff_turn=turn_ids, agent=st.text(max_size=20), to_agent=st.text(max_size=20),
                          note=text, ts=ts),
})
caller_ids = st.from_regex(r"[A-Za-z0-9+_.:@-]{1,64}", fullmatch=True)
STRATEGIES.update({
    Ticket: st.builds(Ticket, id=st.from_regex(r"[0-9a-f]{32}", fullmatch=True), session_id=session_ids,
                      handoff_turn=turn_ids, agent=st.text(max_size=20), intent=text,
                      disposition=st.sampled_from(DISPOSITIONS), note=text,
                      status=st.sampled_from(["open", "resolved"]), caller_id=caller_ids | st.just(""),
                      resolved_by=st.text(max_size=20), resolution=text, created=ts, updated=ts),
    SessionCaller: st.builds(SessionCaller, session_id=session_ids, caller_id=caller_ids, ts=ts),
})
STRATEGIES[AgentAudio] = st.builds(AgentAudio, session_id=session_ids, agent=st.text(max_size=20),
                                   seq=st.integers(0, 10**6), epoch=st.integers(0, 2**50), pcm=pcm, ts=ts)

passages = st.lists(st.builds(Passage, text=text, source=text, score=st.floats(-1, 1)), max_size=3)
optional_s = st.none() | st.floats(0, 1e5)
STRATEGIES.update({  # agent assist and team analytics (schemas.assist, schemas.analytics)
    Suggestion: st.builds(Suggestion, session_id=session_ids, turn_id=turn_ids, handoff_turn=turn_ids,
                          caller_text=text, text=text, passages=passages, sources=st.lists(text, max_size=3),
                          error=st.sampled_from(["", "llm_failed"]), marks=marks, ts=ts),
    DeskFact: st.builds(DeskFact, kind=st.sampled_from(["taken", "handled", "sla_breach", "abandoned"]),
                        session_id=session_ids, handoff_turn=turn_ids, agent=st.text(max_size=20),
                        seconds=st.floats(0, 1e5), ts=ts),
    AgentWindow: st.builds(AgentWindow, window_start=window_starts, window_end=ts, turns=counts, ts=ts,
                           agent=st.text(max_size=20), calls_taken=counts, calls_handled=counts,
                           handle_s_mean=optional_s, handle_s_max=optional_s, wait_p50_s=optional_s,
                           wait_p95_s=optional_s, sla_breaches=counts, abandoned=counts),
})


def test_every_registered_record_has_a_strategy():
    assert set(STRATEGIES) == set(REGISTRY.values())


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_roundtrip(cls):
    @settings(max_examples=40, deadline=None)
    @given(STRATEGIES[cls])
    def check(record):
        assert decode(encode(record), cls) == record

    check()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_exception(data):
    with contextlib.suppress(SchemaError):
        decode(data)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10),
                       st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5) | st.binary(max_size=5),
                       max_size=6))
def test_arbitrary_maps_are_rejected_or_valid(fields):
    with contextlib.suppress(SchemaError):
        decode(msgpack.packb(fields, use_bin_type=True))


def _chunk(**over):
    fields = AudioChunk(session_id="s1", seq=0, start_sample=0, pcm=b"\0\0", recv_ts=1.0).model_dump()
    fields.update(over)
    return msgpack.packb(fields, use_bin_type=True)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\xc1garbage", "not msgpack"),
    (msgpack.packb([1, 2]), "must be a msgpack map"),
    (_chunk(type="nope"), "unknown record type"),
    (_chunk(v=99), "version 99 unsupported"),
    (_chunk(pcm=b"\0"), "even byte count"),
    (_chunk(session_id="bad id!"), "session_id"),
])
def test_rejections_name_the_reason(data, reason):
    with pytest.raises(SchemaError, match=reason):
        decode(data)


def test_missing_field_is_rejected():
    fields = AudioChunk(session_id="s1", seq=0, start_sample=0, pcm=b"", recv_ts=1.0).model_dump()
    del fields["seq"]
    with pytest.raises(SchemaError, match="seq"):
        decode(msgpack.packb(fields, use_bin_type=True))


def test_type_outside_expected_is_rejected():
    record = Transcript(session_id="s", turn_id="t", text="hi")
    with pytest.raises(SchemaError, match="not accepted here"):
        decode(encode(record), AudioChunk)
