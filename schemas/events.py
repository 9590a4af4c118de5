"""Operational records: caller-facing errors, barge-in, analytics, dead letters, liveness."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.base import (
    MAX_RECORD_BYTES,
    EpochSeconds,
    Int64,
    Marks,
    Name,
    Record,
    SessionRecord,
    Text,
    TurnId,
    TurnRef,
)

DEAD_LETTER_PAYLOAD_BYTES = MAX_RECORD_BYTES - 32 * 1024
"""Most bytes of the rejected record a :class:`DeadLetter` keeps (its first bytes): whatever is
left of :data:`schemas.base.MAX_RECORD_BYTES` by 32 KiB, room for the reason (at most
:data:`schemas.base.MAX_TEXT_CHARS` characters, 16,000 bytes in UTF-8), the stage, the topic
and the other fields.  Every record that could have been valid is kept whole."""


class ErrorEvent(SessionRecord):
    """An error the caller must hear about (the turn failed, the stage timed out).

    Attributes:
        turn_id: the failed turn, or empty when the error is session-wide.
        stage: the stage that failed.
        code: a stable machine-readable code, e.g. ``llm_timeout``.
        message: a human-readable explanation.
    """

    type: Literal["error_event"] = "error_event"
    turn_id: TurnRef = ""
    stage: Name
    code: Name
    message: Text


class VadEvent(SessionRecord):
    """The VAD heard the caller start or stop speaking (to ``voxbus.egress``).

    ``speech_start`` opens a turn at the caller (and is the barge-in signal);
    ``speech_end`` closes the speech part: ``utterance`` is False when the segment was
    too short to be a turn (a cough, a backchannel), so no transcript will follow.

    Attributes:
        turn_id: the turn (``"a<start_sample>"``, as on the utterance).
        kind: ``speech_start`` or ``speech_end``.
        sample: session sample offset of the event (16 kHz).
        ts: wall-clock time (epoch s) at which that sample reached the ingress.
        utterance: for ``speech_end``, whether an utterance was emitted.
        continues: the earlier turn this one continues (the caller resumed before its
            reply was heard), else empty.  On ``speech_start``: the turn this speech may
            continue (its reply is held); on a ``speech_end`` with an utterance: the turn
            it does continue, cancelled (``continuation``), whose words this utterance holds;
            on one without: the turn whose reply goes on.
    """

    type: Literal["vad_event"] = "vad_event"
    turn_id: TurnRef
    kind: Literal["speech_start", "speech_end"]
    sample: Int64 = Field(ge=0)
    ts: EpochSeconds
    utterance: bool = True
    continues: TurnRef = ""


class TurnCancel(SessionRecord):
    """Drop all work for a turn (topic ``voxbus.control``, keyed by session).

    Produced by the ingress when the caller barges in on a reply (``barge_in``), when
    a caller turn was only a backchannel ("mm-hm") that must not be answered
    (``backchannel``), or when the caller hangs up (``hangup``); by the vad stage when
    the caller's next words continue the turn (``continuation``: the next turn answers
    both, and the cancelled one leaves the conversation history).  Version 2 added
    ``continuation``.

    Attributes:
        turn_id: the turn to drop.
        reason: why.
        heard_text: for ``barge_in``, the part of the reply the caller actually heard;
            the conversation history keeps only that.
        heard_ms: reply audio played to the caller before the stop (ms).
        ts: wall-clock time (epoch s) of the decision.
    """

    type: Literal["turn_cancel"] = "turn_cancel"
    VERSIONS: ClassVar[frozenset[int]] = frozenset({1, 2})
    v: int = 2
    turn_id: TurnRef
    reason: Literal["barge_in", "backchannel", "hangup", "continuation"]
    heard_text: str = ""
    heard_ms: float = 0.0
    ts: EpochSeconds


class TurnRecord(SessionRecord):
    """One completed turn, for analytics (topic ``voxbus.turns``).

    Attributes:
        turn_id: the turn.
        source: ``voice`` or ``text``.
        transcript: what the caller said.
        intent / confidence / sentiment / sentiment_score: from the intent stage.
        reply_text: the full reply as produced.
        marks: every stage's wall-clock timestamps (epoch s).
        latency_ms: derived per-stage latencies (ms), keys as in
            :func:`ingress.turns.stage_latencies`.
        voice_to_voice_ms: end of caller speech to first reply audio byte sent (ms),
            None on the text channel.
        interrupted: the caller barged in; ``heard_text`` is what they heard.
        ts: wall-clock time (epoch s) the record was made.
        speaker: who spoke the turn: ``caller``, or ``agent`` (an agent's own voice while they hold
            the session, :mod:`schemas.voice`; no reply, ``transcript`` is what the agent said).
    """

    type: Literal["turn_record"] = "turn_record"
    turn_id: TurnId
    source: Literal["voice", "text"]
    transcript: Text
    intent: Name
    confidence: float
    sentiment: Name
    sentiment_score: float
    reply_text: str
    marks: Marks
    latency_ms: dict[str, float]
    voice_to_voice_ms: float | None = None
    interrupted: bool = False
    heard_text: str = ""
    ts: EpochSeconds
    speaker: Literal["caller", "agent"] = "caller"


class DeadLetter(Record):
    """A record a stage could not process, with the reason (topic ``voxbus.dead-letter``).

    Attributes:
        stage: the stage that rejected it.
        topic / partition / offset: where the record was read.
        reason: why (decode error, schema violation, processing exception).
        payload: the original record value, byte for byte, cut to its first
            :data:`DEAD_LETTER_PAYLOAD_BYTES` when it is longer.
        payload_size: the length of the original record value (bytes).
        session_id: the record's key when it had one.
        ts: wall-clock time (epoch s) of the rejection.
    """

    type: Literal["dead_letter"] = "dead_letter"
    stage: Name
    topic: Name
    partition: int
    offset: int
    reason: Text
    payload: bytes = Field(max_length=DEAD_LETTER_PAYLOAD_BYTES)
    payload_size: int = Field(default=0, ge=0)
    session_id: str = Field(default="", max_length=64)
    ts: EpochSeconds


class StageHeartbeat(Record):
    """Liveness of one stage worker, produced every few seconds (``voxbus.heartbeats``).

    Attributes:
        stage: stage name (``vad``, ``asr``...).
        instance: worker instance id (host:pid).
        ts: wall-clock time (epoch s).
        ready: True once the worker's models are loaded and it consumes.
    """

    type: Literal["stage_heartbeat"] = "stage_heartbeat"
    stage: Name
    instance: Name
    ts: EpochSeconds
    ready: bool = True


class LiveTurns(Record):
    """How many live callers' turns one ingress replica has in flight (``voxbus.heartbeats``).

    A turn is in flight from the end of the caller's speech (the vad stage's ``speech_end``)
    until the first byte of its reply reaches the caller: the part of a turn that
    voice-to-voice measures.  Produced when the count changes and every second while it is
    above zero; a yielding recorded call (``VOXBUS_CALLS_YIELD``, :mod:`ingress.live_turns`)
    on any replica waits while one is.

    Attributes:
        instance: the replica (``host:pid:slot``).
        in_flight: live turns in flight there (recorded calls' turns are not counted).
        ts: wall-clock time (epoch s).
    """

    type: Literal["live_turns"] = "live_turns"
    instance: Name
    in_flight: int = Field(ge=0, le=2**31 - 1)
    ts: EpochSeconds
