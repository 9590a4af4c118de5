"""Audio records: what the caller said and what voxbus says back.

All audio on the bus is PCM16 little-endian mono (``pcm`` bytes, 2 bytes per sample).
Caller audio on the bus is at :data:`BUS_SAMPLE_RATE`; synthesized audio is at the
voice's native rate, stated in each record.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from schemas.base import (
    DEFAULT_LANGUAGE,
    EpochSeconds,
    Int64,
    Language,
    Marks,
    SessionRecord,
    TurnId,
    TurnRef,
)

BUS_SAMPLE_RATE = 16_000
"""Sample rate (Hz) of caller audio on the bus: what silero-vad and Whisper expect."""

BYTES_PER_SAMPLE = 2
"""PCM16: two bytes per mono sample."""

MAX_CHUNK_SAMPLES = BUS_SAMPLE_RATE
"""Most samples in one :class:`AudioChunk`: 1 s, the longest ``VOXBUS_CHUNK_MS`` allows
(1000 ms; 64 ms by default).  The ingress cuts every chunk of a connection but the last to
exactly that length, so a chunk's ``start_sample`` is at most ``seq`` times this."""

MAX_UTTERANCE_S = 31.0
"""Longest :class:`Utterance` (s): the vad stage ends one at ``VOXBUS_VAD_MAX_UTTERANCE_S``
(30 s, also Whisper's window) of speech and adds the padding on both sides
(``VOXBUS_VAD_SPEECH_PAD_MS``, 200 ms, at most ``VOXBUS_VAD_MIN_SILENCE_MS``, 400 ms) and one
32 ms VAD window: at most 30.83 s.  A longer setting cannot work: 32 s of PCM is over
:data:`schemas.base.MAX_RECORD_BYTES`."""


def _even_pcm(pcm: bytes) -> bytes:
    if len(pcm) % BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 needs an even byte count, got {len(pcm)} bytes")
    return pcm


class AudioChunk(SessionRecord):
    """A slice of caller audio, as cut by the ingress.

    Version 2 added ``epoch``; version-1 records still decode (``epoch`` 0).

    Attributes:
        epoch: the connection epoch: when (ms since the Unix epoch) the ingress opened
            the connection carrying this audio.  A caller that reconnects with its
            ``session_id`` starts a new epoch, whose ``seq`` and ``start_sample`` restart at 0.
        seq: 0-based chunk number within the connection; with ``session_id`` and
            ``epoch`` it makes the chunk's idempotency key.
        start_sample: offset of the first sample from the connection start, in samples;
            at most ``seq`` x :data:`MAX_CHUNK_SAMPLES` (no chunk runs ahead of the chunks
            before it, so a forged far-ahead chunk is refused at decode).
        sample_rate: Hz; always :data:`BUS_SAMPLE_RATE` on the bus.
        pcm: PCM16LE mono bytes, ``len(pcm) // 2`` samples, at most :data:`MAX_CHUNK_SAMPLES`.
        recv_ts: wall-clock time (epoch s) the ingress received the chunk's last byte.
        speak: whether replies to this audio are synthesized: False for a voice session
            that asked for text replies only.  On every chunk, not only on the session's
            start, because a restarted vad worker joins a call at its committed offset.
        language: the session's language (:data:`schemas.base.Language`); empty: the caller did not
            say, the asr stage detects it.  On every chunk, as ``speak`` (added with a default in
            version 2, the compatibility rule of :mod:`schemas.base`: an older consumer hears English).
    """

    type: Literal["audio_chunk"] = "audio_chunk"
    VERSIONS: ClassVar[frozenset[int]] = frozenset({1, 2})
    v: int = 2
    epoch: Int64 = Field(default=0, ge=0)
    seq: Int64 = Field(ge=0)
    start_sample: Int64 = Field(ge=0)
    sample_rate: Literal[16000] = BUS_SAMPLE_RATE
    pcm: bytes = Field(max_length=MAX_CHUNK_SAMPLES * BYTES_PER_SAMPLE)
    recv_ts: EpochSeconds
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE

    _check_pcm = field_validator("pcm")(_even_pcm)

    @model_validator(mode="after")
    def _position(self) -> AudioChunk:
        if self.start_sample > self.seq * MAX_CHUNK_SAMPLES:
            raise ValueError(f"start_sample {self.start_sample} runs ahead of chunk {self.seq} "
                             f"(at most {MAX_CHUNK_SAMPLES} samples per chunk before it)")
        return self

    @property
    def num_samples(self) -> int:
        """Number of samples in ``pcm``."""
        return len(self.pcm) // BYTES_PER_SAMPLE


class SessionControl(SessionRecord):
    """Start, configure or end a session; keyed and ordered with the session's audio.

    Version 2 added ``epoch``; version-1 records still decode (``epoch`` 0).  Version 3
    added the ``replied`` action and ``turn_id``.

    Attributes:
        epoch: the connection epoch (ms since the Unix epoch) the action belongs to;
            a ``start`` of a newer epoch resets a stage's state of the session, and
            records of an older epoch are stale.
        action: ``start`` (first record of a connection), ``config`` (settings change),
            ``replied`` (the reply to ``turn_id`` began to reach the caller: from here on, the
            caller's speech answers it rather than continues the turn) or ``end`` (the caller
            hung up; stages flush and drop session state).
        turn_id: for ``replied``, the caller turn whose reply began; else empty.
        config: free-form per-session settings as the caller asked (e.g. ``{"speak": False}``),
            for the log; the stages act on the records' own fields (``AudioChunk.speak``).
        ts: wall-clock time (epoch s) of the action at the ingress.
    """

    type: Literal["session_control"] = "session_control"
    VERSIONS: ClassVar[frozenset[int]] = frozenset({1, 2, 3})
    v: int = 3
    epoch: Int64 = Field(default=0, ge=0)
    action: Literal["start", "config", "replied", "end"]
    turn_id: TurnRef = ""
    config: dict[str, str | bool | Int64 | float] = Field(default_factory=dict)
    ts: EpochSeconds


class Utterance(SessionRecord):
    """One speech segment found by VAD endpointing: the unit of a caller turn.

    Attributes:
        turn_id: deterministic id (``"a<start_sample>"``) so a reprocessed chunk
            stream yields the same turn id.
        start_sample / end_sample: segment bounds from the session start, in samples
            at ``sample_rate`` (padding included).
        pcm: PCM16LE mono bytes of the segment, undenoised; at most :data:`MAX_UTTERANCE_S`.
        speech_end_ts: wall-clock time (epoch s) at which the caller stopped
            speaking (estimated from chunk receive times).
        speculative: sent at a pause (``VOXBUS_VAD_EARLY_SILENCE_MS``) before the end of
            the turn is confirmed: the asr stage may decode it ahead and must not emit for
            it; the confirmed utterance (same turn id and bounds) follows unless the caller
            goes on speaking.
        speak: whether the reply is synthesized (the audio chunks' ``speak``).
        language: the audio chunks' ``language`` (empty: detected by the asr stage).
    """

    type: Literal["utterance"] = "utterance"
    turn_id: TurnId
    start_sample: Int64 = Field(ge=0)
    end_sample: Int64 = Field(ge=0)
    sample_rate: Literal[16000] = BUS_SAMPLE_RATE
    pcm: bytes = Field(max_length=int(MAX_UTTERANCE_S * BUS_SAMPLE_RATE) * BYTES_PER_SAMPLE)
    speech_end_ts: EpochSeconds
    speculative: bool = False
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE
    marks: Marks = Field(default_factory=dict)

    _check_pcm = field_validator("pcm")(_even_pcm)

    @model_validator(mode="after")
    def _bounds(self) -> Utterance:
        if self.end_sample < self.start_sample:
            raise ValueError("end_sample precedes start_sample")
        return self


class SynthAudio(SessionRecord):
    """A chunk of synthesized reply audio for one reply sentence.

    Attributes:
        turn_id: the turn this audio answers.
        index: sentence index within the reply (0-based).
        seq: chunk number within the sentence (0-based).
        sample_rate: Hz of ``pcm`` (the voice's native rate, 22050 for Piper medium).
        pcm: PCM16LE mono bytes.
        final: True on the last chunk of the last sentence of the turn.
    """

    type: Literal["synth_audio"] = "synth_audio"
    turn_id: TurnId
    index: int = Field(ge=0)
    seq: int = Field(ge=0)
    sample_rate: int = Field(gt=0, le=192_000)
    pcm: bytes
    final: bool = False
    marks: Marks = Field(default_factory=dict)

    _check_pcm = field_validator("pcm")(_even_pcm)
