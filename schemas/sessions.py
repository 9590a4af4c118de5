"""Session ownership: which principal a session id belongs to (topic ``voxbus.sessions``).

Every ingress replica writes a :class:`SessionOwner` when it admits a session and reads
the topic back at startup (:mod:`ingress.ownership`), so a session id stays bound to
the principal that opened it across replicas and restarts.  It decodes with
:func:`schemas.codec.decode` like every record.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from schemas.base import EpochSeconds, Int64, SessionRecord

PrincipalId = Annotated[str, StringConstraints(min_length=1, max_length=300)]
"""A principal id as :class:`ingress.auth.Principal` names it (``key:NAME``, ``jwt:SUB``...)."""


class SessionOwner(SessionRecord):
    """The session ``session_id`` belongs to ``principal`` until ``expires``.

    Attributes:
        principal: the owner's principal id.
        expires: wall-clock end of the binding (epoch s): the admission time plus the
            longest session plus the binding's time to live.
        ts: when the session was admitted (epoch s).
        epoch: the connection epoch this claim proposes (0 in claims of older releases); the
            connection's epoch is the one every replica folds from the claims of the session
            in partition order (:mod:`ingress.epochs`).
    """

    type: Literal["session_owner"] = "session_owner"
    principal: PrincipalId
    expires: EpochSeconds
    ts: EpochSeconds
    epoch: Int64 = Field(default=0, ge=0)

