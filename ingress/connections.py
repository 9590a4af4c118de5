"""A caller connection's session on this ingress, whatever carries it (WebSocket, Twilio, WebRTC).

Admission against load, registration for egress events, release at the end, and the
caller protocol's JSON messages after the start (``text``, ``end``): the pieces every
caller endpoint shares (:mod:`ingress.server`, :mod:`ingress.webrtc`).
"""

from __future__ import annotations

import logging

from pydantic import ValidationError

from ingress import metrics
from ingress.edge import CLOSE_REPLACED, Admission, EdgeGuard
from ingress.gateway import Gateway
from ingress.protocol import ClientMessage, Dtmf, End, ProtocolError, Start, Text
from ingress.session import CallerSession

log = logging.getLogger(__name__)


def parse_message(data: str) -> Start | Text | Dtmf | End:
    """Validate one client JSON message (:mod:`ingress.protocol`).

    Raises:
        ProtocolError: ``bad_json`` (not JSON) or ``bad_message`` (not a known message).
    """
    try:
        return ClientMessage.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "message"
        code = "bad_json" if first["type"] == "json_invalid" else "bad_message"
        raise ProtocolError(code, f"{where}: {first['msg']}") from None


async def on_client_message(session: CallerSession, data: str) -> bool:
    """Act on one JSON message of a started session; False once the caller hangs up (``end``).

    Raises:
        ProtocolError: a malformed message, a second ``start`` (``already_started``), or a text
            turn the session refuses (:meth:`~ingress.session.CallerSession.on_text`).
    """
    message = parse_message(data)
    if isinstance(message, End):
        return False
    if isinstance(message, Text):
        await session.on_text(message.text)
        return True
    if isinstance(message, Dtmf):  # a key (ingress.dtmf)
        await session.keypad.press(message.digit)
        return True
    raise ProtocolError("already_started", "the session has already started")


def admit_load(gateway: Gateway, session_id: str, resuming: bool = False) -> None:
    """Check that this ingress and the stages can take the session (before any limit counts it).

    A start that resumes a session bound on the bus (a reconnection) passes the capacity
    check (:mod:`ingress.admission`): the call already exists and is never cut.

    Args:
        gateway: the ingress's Kafka side.
        session_id: the session starting.
        resuming: the caller named the id (it may resume a session).

    Raises:
        Rejection: 1013 ``overloaded``: the audio buffer is saturated, or (a new session)
            the stages cannot answer it in budget.
    """
    gateway.audio_budget.admit()
    if not (resuming and gateway.ledger.owner(session_id) is not None):
        gateway.admission.check()


async def attach(gateway: Gateway, session: CallerSession) -> None:
    """Register ``session`` for its egress events; a live connection of the same session is replaced.

    The older connection's session ends on the bus first (so the vad stage starts the
    resumed one afresh), then its connection closes with 4409.
    """
    old = gateway.sessions.get(session.session_id)
    if isinstance(old, CallerSession) and old is not session:
        log.info("session %s resumed on a newer connection; closing the older one", session.session_id)
        await old.close()
        await old.transport.close(CLOSE_REPLACED, b"session_replaced: resumed on a newer connection")
    gateway.sessions[session.session_id] = session
    gateway.live.changed()  # a replaced session's turns are no longer this replica's (ingress.live_turns)
    metrics.ACTIVE_SESSIONS.inc()


async def detach(gateway: Gateway, guard: EdgeGuard, session: CallerSession, admission: Admission) -> None:
    """Unregister ``session`` (unless a newer connection holds its id), free its slot, end it on the bus.

    Unless a newer connection claimed the session (here or on another replica: a later epoch on the
    bus), the session has ended: ``gateway.ended`` is told (the agent queue's hang-up).
    """
    if gateway.sessions.get(session.session_id) is session:
        del gateway.sessions[session.session_id]
        gateway.live.changed()  # its turns in flight are no more (ingress.live_turns)
    metrics.ACTIVE_SESSIONS.dec()
    guard.release(admission)
    await session.close()
    if gateway.ledger.epochs.last.get(session.session_id, 0) <= session.epoch:
        for ended in gateway.ended:
            await ended(session.session_id)
