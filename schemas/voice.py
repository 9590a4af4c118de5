"""An agent's own voice on the call: what they say to the caller, and their leg for the transcriber.

While an agent holds a handed-off session (:mod:`schemas.desk`), their microphone reaches the
caller as :class:`AgentAudio` on ``voxbus.egress``, produced to the caller's ``egress_partition``
(the ingress replica holding the caller's socket plays it, on a web page or as Twilio mu-law
media).  The same audio is also cut into :class:`schemas.audio.AudioChunk` s of the session's
*agent leg* (:func:`agent_leg`) on ``voxbus.audio``: the vad and asr stages transcribe it like any
caller's, and the generation stage never answers it (:func:`is_agent_leg`).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import Field, field_validator

from schemas.audio import BUS_SAMPLE_RATE, BYTES_PER_SAMPLE, MAX_CHUNK_SAMPLES, _even_pcm
from schemas.base import EpochSeconds, Int64, Name, SessionRecord

AGENT_LEG_PREFIX = "agent:"
"""How an agent leg's session id starts; the ingress refuses caller session ids that start so."""
MAX_SESSION_ID_CHARS = 64
"""Longest session id (:data:`schemas.base.SESSION_ID_PATTERN`)."""


def agent_leg(session_id: str) -> str:
    """The session id of ``session_id``'s agent leg: the agent's voice as the stages see it.

    ``agent:<session_id>``, or ``agent:`` and the first 58 hex digits of the SHA-256 of a
    session id too long for that (the result is at most 64 characters either way).

    Args:
        session_id: the caller's session id.

    Returns:
        A session id that no caller can hold.
    """
    leg = AGENT_LEG_PREFIX + session_id
    if len(leg) <= MAX_SESSION_ID_CHARS:
        return leg
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    return AGENT_LEG_PREFIX + digest[:MAX_SESSION_ID_CHARS - len(AGENT_LEG_PREFIX)]


def is_agent_leg(session_id: str) -> bool:
    """True for an agent leg's session id (:func:`agent_leg`): words never answered by the bot."""
    return session_id.startswith(AGENT_LEG_PREFIX)


class AgentAudio(SessionRecord):
    """A slice of an agent's voice for the caller of ``session_id`` (on ``voxbus.egress``).

    Attributes:
        agent: who speaks (the agent's principal with authentication on, else their name).
        seq: 0-based chunk number within the agent's voice connection (``epoch``).
        epoch: when (ms since the Unix epoch) the agent's replica opened the voice connection.
        sample_rate: Hz; always :data:`schemas.audio.BUS_SAMPLE_RATE`.
        pcm: PCM16LE mono bytes, at most :data:`schemas.audio.MAX_CHUNK_SAMPLES` samples (1 s).
        ts: wall-clock time (epoch s) the agent's replica received the slice's last byte.
    """

    type: Literal["agent_audio"] = "agent_audio"
    agent: Name
    seq: Int64 = Field(ge=0)
    epoch: Int64 = Field(default=0, ge=0)
    sample_rate: Literal[16000] = BUS_SAMPLE_RATE
    pcm: bytes = Field(max_length=MAX_CHUNK_SAMPLES * BYTES_PER_SAMPLE)
    ts: EpochSeconds

    _check_pcm = field_validator("pcm")(_even_pcm)
