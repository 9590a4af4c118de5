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


class SessionRecord(Record):
    """A record that belongs to one caller session.

    ``egress_partition`` is the partition of ``voxbus.egress`` read by the ingress
    replica that holds the caller's socket: every caller-facing event of the session
    is produced there, so a reply reaches that replica and no other.
    """

    session_id: SessionId
    egress_partition: int = Field(ge=0, default=0)
