"""The caller protocol of ``/v1/stream`` (JSON text frames + binary PCM frames).

Client -> server:

* ``{"type": "start", "sample_rate": 16000, "encoding": "pcm_s16le", "session_id"?: str, "speak"?: bool,
  "caller_id"?: str, "record"?: bool, "language"?: str}`` first frame of a session; ``language`` (a BCP-47
  tag, or ``auto``: detected on the first utterance; :mod:`ingress.language`) is the session's, English
  when not given; ``session_id`` resumes a session after a
  reconnect; ``caller_id`` (a phone number or customer id, :data:`schemas.desk.CallerId`) files the
  session's tickets and history under it for the agents; ``record: false`` keeps the session's audio out
  of the archive and recordings (:mod:`processors.archive.consent`).
* binary frames: PCM16LE mono audio at ``sample_rate``.
* ``{"type": "text", "text": "..."}``: a turn through the text channel.
* ``{"type": "dtmf", "digit": "0"}``: a key of the caller's keypad (``0-9 * # A-D``, :mod:`ingress.dtmf`).
* ``{"type": "end"}``: the caller hangs up (closing the socket does the same).

Server -> client: ``ready``, ``speech_started``/``speech_ended``, ``transcript``,
``intent``, ``reply_text``, ``reply_audio`` (a JSON header, then one binary frame of
``bytes`` PCM16LE bytes unless 0), ``playback_stop``, ``turn_end``, ``error`` and ``degraded``
(what the pipeline can do now, :func:`ingress.health.degraded_event`); see ``README.md``.
Credentials and close codes: :mod:`ingress.auth`, :mod:`ingress.edge`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, field_validator

from ingress.language import bus_language
from schemas.base import DEFAULT_LANGUAGE, SESSION_ID_PATTERN
from schemas.desk import CALLER_ID_PATTERN
from schemas.voice import AGENT_LEG_PREFIX, is_agent_leg

SUPPORTED_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)
"""Caller sample rates (Hz) the ingress accepts and resamples to the bus rate."""
DTMF_KEY = r"^[0-9*#A-D]$"
"""A DTMF key (ITU-T Q.23: 0-9, ``*``, ``#``, A-D)."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(_Message):
    """Open a session (or resume one with ``session_id``)."""

    type: Literal["start"]
    sample_rate: int
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    session_id: Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)] | None = None
    speak: bool = True
    caller_id: Annotated[str, StringConstraints(pattern=CALLER_ID_PATTERN)] | None = None
    record: bool | None = None
    language: str = DEFAULT_LANGUAGE
    """The bus language (:func:`ingress.language.bus_language` of the stated tag; empty: detect)."""

    @field_validator("language", mode="before")
    @classmethod
    def _bus_language(cls, value: object) -> str:
        if not isinstance(value, str):
            raise ValueError("language must be a string (a BCP-47 tag or 'auto')")
        return bus_language(value)

    @field_validator("session_id")
    @classmethod
    def _not_an_agent_leg(cls, value: str | None) -> str | None:
        if value is not None and is_agent_leg(value):
            raise ValueError(f"session ids starting with {AGENT_LEG_PREFIX!r} are agents' (schemas.voice)")
        return value


class Text(_Message):
    """A caller turn typed instead of spoken."""

    type: Literal["text"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)]


class Dtmf(_Message):
    """A key the caller pressed (a telephone keypad's: ``0-9``, ``*``, ``#``, ``A``-``D``)."""

    type: Literal["dtmf"]
    digit: Annotated[str, StringConstraints(pattern=DTMF_KEY)]


class End(_Message):
    """The caller hangs up."""

    type: Literal["end"]


ClientMessage = TypeAdapter(Annotated[Start | Text | Dtmf | End, Field(discriminator="type")])
"""Validator of any client JSON message."""


class ProtocolError(ValueError):
    """A client frame broke the protocol; ``code`` is sent to the client with the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
