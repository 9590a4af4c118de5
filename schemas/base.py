"""Base class of every record on the voxbus bus.

Every record is a frozen pydantic model with two wire fields besides its own:
``type`` (a literal tag that names the schema, used by :mod:`schemas.codec` to pick the
class when decoding) and ``v`` (the schema version).

Compatibility rule (rolling upgrades: for a while, releases N and N+1 run side by side):

* **Compatible, same** ``v``: adding a field with a default, to a record or to a value
  nested in one (:class:`Part`).  A consumer one release behind ignores the field (the
  decoder drops fields it does not know); a consumer one release ahead reads the
  default from a producer one release behind.
* **Incompatible, a new** ``v``: anything else (removing or renaming a field, changing its
  type, meaning or bounds, adding a required field, adding a value to a closed set such
  as an intent).  Release N lists the new version in :attr:`Record.VERSIONS` and reads
  both; only release N+1 writes it.  A version a consumer does not list is dead-lettered.
* **Strict encode**: building a record (or a :class:`Part`) with a field it does not have
  raises, so a producer's misspelt field fails in its own code and tests instead of being
  dropped by every consumer.  Only :func:`schemas.codec.decode` is tolerant.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, model_validator

SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"

SessionId = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
"""A session id: 1-64 characters from ``[A-Za-z0-9_.:-]``; the Kafka message key."""

TurnId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
"""A turn id, unique within its session and deterministic for a given utterance."""

TurnRef = Annotated[str, StringConstraints(max_length=64)]
"""A turn id as a :data:`TurnId`, or empty when a record concerns no one turn (at most 64 characters)."""

MAX_RECORD_BYTES = 1_000_000 - 1024
"""Largest encoded record (bytes) that :mod:`schemas.codec` writes or reads.

Below the producers' request limit, so any record a stage accepts, or makes, can be produced:
faust's ``producer_max_request_size`` is 1,000,000 bytes by default (aiokafka's 1 MiB is not
used by the stages), less 1 KiB for the record batch's and the record's headers and the key (a
session id, at most 64 bytes).  The largest record of a call, an utterance of
:data:`schemas.audio.MAX_UTTERANCE_S`, is 992,000 bytes of PCM and a few hundred of fields.
"""

MAX_TEXT_CHARS = 4000
"""Longest text on the bus (characters): a transcript, a reply sentence, an agent's reply, a
knowledge-base passage, a reason.  Twice a caller's text turn (at most 2000 characters,
:class:`ingress.protocol.Text`), and more than Whisper can write for one utterance (its
decoder holds 448 tokens) or the LLM for a reply (``VOXBUS_LLM_MAX_TOKENS``, 64 tokens)."""

LANGUAGE_PATTERN = r"^(?:[a-z]{2,3})?$"
"""A language on the bus: a BCP-47 primary language subtag in lower case (ISO 639-1 or -3: ``en``,
``es``), or empty where a caller did not say and the asr stage detects it."""

Language = Annotated[str, StringConstraints(pattern=LANGUAGE_PATTERN)]
"""A session's language, :data:`LANGUAGE_PATTERN`; records default to :data:`DEFAULT_LANGUAGE`."""

DEFAULT_LANGUAGE = "en"
"""The language of a record that does not say (every record of a producer older than the field)."""

Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
"""A text of at most :data:`MAX_TEXT_CHARS` characters."""

MAX_NAME_CHARS = 255
"""Longest name on the bus (characters): a stage, an error code, a label, a file (POSIX
``NAME_MAX``), a worker instance (``host:pid``; a host name has at most 253 characters, RFC 1035),
a topic (Kafka allows 249)."""

Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
"""A name or label of at most :data:`MAX_NAME_CHARS` characters."""

Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""An integer msgpack can carry (signed 64-bit)."""

EpochSeconds = Annotated[float, Field(ge=0.0)]
"""Wall-clock time as seconds since the Unix epoch (``time.time()``)."""

Marks = dict[str, EpochSeconds]
"""Per-stage wall-clock timestamps (epoch seconds) keyed ``"<stage>.<event>"``.

Each stage copies the marks of the record it consumed and adds its own, so the
last record of a turn carries the timeline needed to compute per-stage latency.
"""


TOLERANT = "tolerant"
"""Validation context key: when true, fields a model does not know are dropped (decoding)."""


class Part(BaseModel):
    """A frozen model of the bus: strict when built, tolerant of unknown fields when decoded.

    Unknown fields raise, except under the validation context ``{TOLERANT: True}``
    (:func:`schemas.codec.decode`), where they are dropped, at every nesting level.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: object, info: ValidationInfo) -> object:
        """Drop the keys of ``data`` that are not fields, when decoding a newer producer's record."""
        if isinstance(data, dict) and info.context and info.context.get(TOLERANT):
            return {key: value for key, value in data.items() if key in cls.model_fields}
        return data


class Record(Part):
    """A versioned, typed record.

    Subclasses declare ``type: Literal["..."]`` and set :attr:`VERSIONS`, the schema
    versions this code can read (see the compatibility rule above).
    """

    VERSIONS: ClassVar[frozenset[int]] = frozenset({1})
    v: int = 1
    """Schema version of the record on the wire."""

    def with_marks(self, **marks: float) -> Record:
        """Return a copy whose ``marks`` has ``marks`` added.

        Keys use ``__`` for the dot in ``"<stage>.<event>"`` (``asr__end=t``).

        Raises:
            AttributeError: the record type carries no ``marks`` field.
        """
        merged = dict(self.marks)  # type: ignore[attr-defined]
        merged.update({key.replace("__", "."): value for key, value in marks.items()})
        return self.model_copy(update={"marks": merged})

    def message_key(self) -> str | None:
        """The Kafka message key of the record: None (no key) unless the record type has one."""
        return None


class SessionRecord(Record):
    """A record that belongs to one caller session.

    ``egress_partition`` is the partition of ``voxbus.egress`` read by the ingress
    replica that holds the caller's socket: every caller-facing event of the session
    is produced there, so a reply reaches that replica and no other.
    """

    session_id: SessionId
    egress_partition: int = Field(ge=0, default=0)

    def message_key(self) -> str:
        """The session id: a session's records share a partition, in order."""
        return self.session_id
