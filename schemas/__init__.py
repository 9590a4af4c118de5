"""Typed, versioned records of the voxbus bus, msgpack on the wire (:mod:`schemas.codec`)."""

from schemas.analytics import (
    EscalationCount, IntentCount, LatencyPercentiles, SentimentCount, TurnsPerMinute, WindowedRecord,
)
from schemas.audio import BUS_SAMPLE_RATE, AudioChunk, SessionControl, SynthAudio, Utterance
from schemas.base import Record, SessionRecord
from schemas.codec import SchemaError, decode, encode
from schemas.events import DeadLetter, ErrorEvent, StageHeartbeat, TurnCancel, TurnRecord, VadEvent
from schemas.text import Intent, IntentResult, Passage, ReplyText, RetrievalResult, Sentiment, Transcript

__all__ = [
    "BUS_SAMPLE_RATE",
    "AudioChunk",
    "DeadLetter",
    "ErrorEvent",
    "EscalationCount",
    "Intent",
    "IntentCount",
    "IntentResult",
    "LatencyPercentiles",
    "Passage",
    "Record",
    "ReplyText",
    "RetrievalResult",
    "SchemaError",
    "Sentiment",
    "SentimentCount",
    "SessionControl",
    "SessionRecord",
    "StageHeartbeat",
    "SynthAudio",
    "Transcript",
    "TurnCancel",
    "TurnRecord",
    "TurnsPerMinute",
    "Utterance",
    "VadEvent",
    "WindowedRecord",
    "decode",
    "encode",
]
