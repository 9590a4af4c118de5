"""Base class of every record on the voxbus bus.

Every record is a frozen pydantic model with two wire fields besides its own:
``type`` (a literal tag that names the schema, used by :mod:`schemas.codec` to pick the
class when decoding) and ``v`` (the schema version).  Unknown fields are rejected, so
a producer that drifts from the schema is caught at the first consumer instead of
being silently ignored.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

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


class Record(BaseModel):
    """A versioned, typed record.

    Subclasses declare ``type: Literal["..."]`` and set :attr:`VERSIONS`, the schema
    versions this code can read.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

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
