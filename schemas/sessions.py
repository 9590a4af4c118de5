"""Session ownership: which principal a session id belongs to (topic ``voxbus.sessions``).

Every ingress replica writes a :class:`SessionOwner` when it admits a session and reads
the topic back at startup (:mod:`ingress.ownership`), so a session id stays bound to
the principal that opened it across replicas and restarts.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgpack
from pydantic import StringConstraints, ValidationError

from schemas.base import EpochSeconds, SessionRecord
from schemas.codec import SchemaError

PrincipalId = Annotated[str, StringConstraints(min_length=1, max_length=300)]
"""A principal id as :class:`ingress.auth.Principal` names it (``key:NAME``, ``jwt:SUB``...)."""


class SessionOwner(SessionRecord):
    """The session ``session_id`` belongs to ``principal`` until ``expires``.

    Attributes:
        principal: the owner's principal id.
        expires: wall-clock end of the binding (epoch s): the admission time plus the
            longest session plus the binding's time to live.
        ts: when the session was admitted (epoch s).
    """

    type: Literal["session_owner"] = "session_owner"
    principal: PrincipalId
    expires: EpochSeconds
    ts: EpochSeconds


def decode_owner(data: bytes) -> SessionOwner:
    """Decode one ``voxbus.sessions`` record (encoded with :func:`schemas.codec.encode`).

    Raises:
        SchemaError: not msgpack, not a ``session_owner`` record, or an unsupported version.
    """
    try:
        fields = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise SchemaError(f"not msgpack: {type(exc).__name__}") from None
    try:
        record = SessionOwner.model_validate(fields)
    except ValidationError as exc:
        raise SchemaError(f"invalid session_owner: {exc.error_count()} errors, first at "
                          f"{'.'.join(map(str, exc.errors()[0]['loc'])) or '<root>'}") from None
    if record.v not in SessionOwner.VERSIONS:
        raise SchemaError(f"session_owner version {record.v} unsupported")
    return record
