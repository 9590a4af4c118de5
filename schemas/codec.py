"""msgpack wire codec for :mod:`schemas` records.

A record is encoded as a msgpack map of its fields (``bytes`` as msgpack bin, so PCM
travels without base64).  Decoding validates the map against the class named by its
``type`` field and rejects unknown versions, so a stage never acts on a malformed
record: it gets a :class:`SchemaError` and dead-letters the input.  Fields the class does
not know (a newer producer's) are dropped, and missing fields with a default (an older
producer's) take it: the compatibility rule of :mod:`schemas.base`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgpack
from pydantic import ValidationError

from schemas.analytics import (
    AgentWindow,
    DeskFact,
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SentimentCount,
    TurnsPerMinute,
)
from schemas.assist import Suggestion
from schemas.audio import AudioChunk, SessionControl, SynthAudio, Utterance
from schemas.base import MAX_RECORD_BYTES, TOLERANT, Record
from schemas.desk import QueueEvent, SessionCaller, Ticket
from schemas.events import DeadLetter, ErrorEvent, LiveTurns, StageHeartbeat, TurnCancel, TurnRecord, VadEvent
from schemas.sessions import SessionOwner
from schemas.text import IntentResult, ReplyText, RetrievalResult, Transcript
from schemas.tools import Booking, Handoff, HandoffUpdate, ToolCall, ToolResult
from schemas.voice import AgentAudio

R = TypeVar("R", bound=Record)

REGISTRY: dict[str, type[Record]] = {
    cls.model_fields["type"].default: cls
    for cls in (
        AudioChunk,
        SessionControl,
        Utterance,
        SynthAudio,
        Transcript,
        IntentResult,
        RetrievalResult,
        ReplyText,
        ErrorEvent,
        TurnRecord,
        DeadLetter,
        StageHeartbeat,
        LiveTurns,
        VadEvent,
        TurnCancel,
        TurnsPerMinute,
        IntentCount,
        SentimentCount,
        EscalationCount,
        LatencyPercentiles,
        ToolCall,
        ToolResult,
        Booking,
        Handoff,
        HandoffUpdate,
        SessionOwner,
        QueueEvent,
        Ticket,
        SessionCaller,
        DeskFact,
        AgentWindow,
        Suggestion,
        AgentAudio,
    )
}
"""Wire ``type`` tag -> record class."""

class SchemaError(ValueError):
    """A record could not be decoded or failed validation; ``str()`` is the reason."""


def encode(record: Record) -> bytes:
    """Encode ``record`` as msgpack bytes.

    Raises:
        TypeError: a field holds a value msgpack cannot encode (a bug in the caller).
        SchemaError: the encoded record is over :data:`schemas.base.MAX_RECORD_BYTES`: no
            producer could send it, and no consumer would accept it.
    """
    data = msgpack.packb(record.model_dump(mode="python"), use_bin_type=True)
    if len(data) > MAX_RECORD_BYTES:
        raise SchemaError(f"{record.type} record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")  # type: ignore[attr-defined]
    return data


def decode(data: bytes, *expected: type[R]) -> R:
    """Decode msgpack ``data`` into a validated record.

    Args:
        data: the record value as read from Kafka.
        *expected: accepted record classes; none means any registered class.

    Returns:
        The record, an instance of one of ``expected``; fields it does not know are dropped.

    Raises:
        SchemaError: over :data:`schemas.base.MAX_RECORD_BYTES`, not msgpack, not a map,
            unknown ``type``, unsupported version, a type outside ``expected``, a missing
            required field, or a field that fails validation (a bound of its schema).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SchemaError(f"record value must be bytes, got {type(data).__name__}")
    if len(data) > MAX_RECORD_BYTES:
        raise SchemaError(f"record of {len(data)} bytes exceeds {MAX_RECORD_BYTES}")
    try:
        fields: Any = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise SchemaError(f"not msgpack: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(fields, dict):
        raise SchemaError(f"record must be a msgpack map, got {type(fields).__name__}")
    tag = fields.get("type")
    cls = REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise SchemaError(f"unknown record type {tag!r}")
    if expected and cls not in expected:
        names = ", ".join(c.model_fields["type"].default for c in expected)
        raise SchemaError(f"record type {tag!r} is not accepted here (expected {names})")
    version = fields.get("v")
    if version not in cls.VERSIONS:
        raise SchemaError(f"{tag} version {version!r} unsupported (supported {sorted(cls.VERSIONS)})")
    try:
        return cls.model_validate(fields, context={TOLERANT: True})  # type: ignore[return-value]
    except ValidationError as exc:
        raise SchemaError(f"invalid {tag}: {_summarize(exc)}") from None


def _summarize(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)
