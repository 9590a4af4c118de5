"""Typed, versioned records of the voxbus bus, msgpack on the wire (:mod:`schemas.codec`)."""

from schemas.analytics import (
    AgentWindow,
    DeskFact,
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SentimentCount,
    TurnsPerMinute,
    WindowedRecord,
)
from schemas.assist import Suggestion
from schemas.audio import BUS_SAMPLE_RATE, AudioChunk, SessionControl, SynthAudio, Utterance
from schemas.base import DEFAULT_LANGUAGE, MAX_RECORD_BYTES, MAX_TEXT_CHARS, Language, Record, SessionRecord
from schemas.codec import SchemaError, decode, encode
from schemas.desk import QueueEvent, SessionCaller, Ticket
from schemas.events import (
    DEAD_LETTER_PAYLOAD_BYTES,
    DeadLetter,
    ErrorEvent,
    LiveTurns,
    StageHeartbeat,
    TurnCancel,
    TurnRecord,
    VadEvent,
)
from schemas.sessions import SessionOwner
from schemas.text import Intent, IntentResult, Passage, ReplyText, RetrievalResult, Sentiment, Transcript
from schemas.tools import (
    Booking,
    ConversationLine,
    Handoff,
    HandoffReason,
    HandoffUpdate,
    ToolCall,
    ToolName,
    ToolResult,
    ToolStatus,
)
from schemas.voice import AgentAudio, agent_leg, is_agent_leg

__all__ = [
    "BUS_SAMPLE_RATE",
    "DEAD_LETTER_PAYLOAD_BYTES",
    "DEFAULT_LANGUAGE",
    "MAX_RECORD_BYTES",
    "MAX_TEXT_CHARS",
    "AgentAudio",
    "AgentWindow",
    "AudioChunk",
    "Booking",
    "ConversationLine",
    "DeadLetter",
    "DeskFact",
    "ErrorEvent",
    "EscalationCount",
    "Handoff",
    "HandoffReason",
    "HandoffUpdate",
    "Intent",
    "IntentCount",
    "IntentResult",
    "Language",
    "LatencyPercentiles",
    "LiveTurns",
    "Passage",
    "QueueEvent",
    "Record",
    "ReplyText",
    "RetrievalResult",
    "SchemaError",
    "Sentiment",
    "SentimentCount",
    "SessionCaller",
    "SessionControl",
    "SessionOwner",
    "SessionRecord",
    "StageHeartbeat",
    "Suggestion",
    "SynthAudio",
    "Ticket",
    "ToolCall",
    "ToolName",
    "ToolResult",
    "ToolStatus",
    "Transcript",
    "TurnCancel",
    "TurnRecord",
    "TurnsPerMinute",
    "Utterance",
    "VadEvent",
    "WindowedRecord",
    "agent_leg",
    "decode",
    "encode",
    "is_agent_leg",
]
