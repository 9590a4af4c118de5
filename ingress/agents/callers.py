"""Who a session's caller is, on the bus: a :class:`schemas.SessionCaller` on ``voxbus.handoffs``.

The replica that holds the caller's socket announces the caller id the session started with
(the start message's ``caller_id``, a Twilio call's ``caller_id`` or ``from`` parameter), so the
replica of whichever agent ends the call files the ticket under it
(:mod:`ingress.agents.wrapup`), and a caller's sessions can be listed by it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schemas import SessionCaller
from streams.topics import HANDOFFS

log = logging.getLogger(__name__)


async def announce_caller(gateway: Any, session_id: str, egress_partition: int, caller_id: str) -> None:
    """Write the session's caller id to ``voxbus.handoffs``; a broker failure is logged, not raised.

    The call goes on without it: its tickets then carry no caller id.

    Args:
        gateway: the ingress's Kafka side (``produce``).
        session_id: the session.
        egress_partition: its egress partition (the caller's replica).
        caller_id: a :data:`schemas.desk.CallerId` (validated by the start's parser).
    """
    record = SessionCaller(session_id=session_id, egress_partition=egress_partition, caller_id=caller_id,
                           ts=time.time())
    try:
        await gateway.produce(HANDOFFS, record)
    except Exception as exc:
        log.warning("session %s: caller id not announced: %s: %s", session_id, type(exc).__name__, exc)
