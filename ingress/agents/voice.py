"""``GET /v1/agent/sessions/{session_id}/voice``: the agent speaks to the caller and hears them, live.

A WebSocket for the agent holding the session (the ``agent`` role with authentication on: a
caller's credential gets 403 before the upgrade; 404 for an unknown session, 409 unless the
session is held by this agent).  It speaks the caller protocol of ``/v1/stream``
(:mod:`ingress.protocol`), so the console's ``<voice-mic>`` element is its client:

* agent -> server: ``{"type": "start", "sample_rate": 16000, ...}``, then binary PCM16LE mono
  frames of the agent's microphone; ``{"type": "end"}`` (or closing) ends the agent's voice.
  Typed replies go through ``POST .../reply`` (a ``text`` message here is refused, ``use_reply``).
* server -> agent: ``ready``; the caller's voice as ``reply_audio`` (turn id :data:`CALLER_TURN`,
  16 kHz) then a binary frame, read from ``voxbus.audio`` (:mod:`ingress.agents.voice_relay`);
  ``speech_started``/``speech_ended``, ``transcript`` and ``turn_end`` of the agent's own words
  (:mod:`ingress.agents.voice_leg`); ``error``.

The agent's voice reaches the caller through the bus (:mod:`ingress.agents.voice_leg`,
:mod:`ingress.agents.voice_play`), so agent and caller may be on different replicas.  Once the
agent no longer holds the session (released, transferred, ended) the socket is closed with 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from ingress.agents import routes
from ingress.agents.queue import TAKEN
from ingress.agents.voice_leg import AgentLeg
from ingress.agents.voice_relay import CallerAudio
from ingress.backpressure import NOTICE_INTERVAL_S
from ingress.edge import CLOSE_BAD_REQUEST, CLOSE_FORBIDDEN, CLOSE_REPLACED, CLOSE_TRY_AGAIN, Rejection
from ingress.protocol import ClientMessage, End, ProtocolError, Start, Text
from ingress.transport import JsonTransport
from schemas import AudioChunk

log = logging.getLogger(__name__)

CALLER_TURN = "caller"
"""The turn id of the caller's voice on the agent's page (``reply_audio``)."""
START_TIMEOUT_S = 10.0
"""Longest wait for the start message (s), as on ``/v1/stream``."""
HEARTBEAT_S = 20.0
"""WebSocket ping interval (s), as on ``/v1/stream``."""
WATCH_S = 1.0
"""How often (s) the socket checks that the agent still holds the session."""


def parse(data: str) -> Any:
    """One client message of the caller protocol.

    Raises:
        ProtocolError: not valid JSON, or no message of the protocol.
    """
    try:
        return ClientMessage.validate_json(data)
    except ValidationError as exc:
        raise ProtocolError("bad_message", str(exc.errors()[0]["msg"])) from None


async def started(ws: web.WebSocketResponse) -> Start | None:
    """The start message; None once the socket is closed (4400 for a bad one, 4408 for none)."""
    try:
        msg = await ws.receive(timeout=START_TIMEOUT_S)
    except TimeoutError:
        await ws.close(code=4408, message=b"no start message")
        return None
    if msg.type != WSMsgType.TEXT:
        await ws.close(code=CLOSE_BAD_REQUEST, message=b"expected_start")
        return None
    try:
        start = parse(msg.data)
        if not isinstance(start, Start):
            raise ProtocolError("expected_start", "the first frame must be a JSON start message")
    except ProtocolError as exc:
        await ws.send_str(json.dumps({"type": "error", "code": exc.code, "message": str(exc)}))
        await ws.close(code=CLOSE_BAD_REQUEST, message=exc.code.encode())
        return None
    return start


async def watch(queue: Any, session_id: str, agent: str, transport: JsonTransport) -> None:
    """Close the agent's socket (4403) once they no longer hold the session (until cancelled)."""
    while True:
        await asyncio.sleep(WATCH_S)
        session = queue.sessions.get(session_id)
        if session is None or session.status != TAKEN or session.agent != agent:
            state = f"{session.status}, held by {session.agent or 'nobody'}" if session else "gone"
            await transport.send_event({"type": "error", "code": "not_held",
                                        "message": f"the session is {state}: your voice is off"})
            await transport.close(CLOSE_FORBIDDEN, b"not_held: the session is no longer yours")
            return


async def stream(request: web.Request) -> web.StreamResponse:
    """The agent's voice socket (module docstring).

    Raises:
        web.HTTPUnauthorized, web.HTTPForbidden: as :func:`ingress.agents.routes.agent_of`; 403 also
            for a browser ``Origin`` not allowed.
        web.HTTPNotFound, web.HTTPConflict, web.HTTPServiceUnavailable: as
            :func:`ingress.agents.routes.session_of` and :func:`ingress.agents.routes.held_by`.
    """
    agent = routes.agent_of(request, dict(request.query))
    try:
        request.app[routes.GUARD].check_origin(request)
    except Rejection as rejection:
        raise web.HTTPForbidden(text=str(rejection)) from None
    desk, session = await routes.session_of(request)
    routes.held_by(session, agent)
    gateway = desk.gateway
    ws = web.WebSocketResponse(max_msg_size=gateway.settings.max_frame_bytes + 1, heartbeat=HEARTBEAT_S)
    await ws.prepare(request)
    start = await started(ws)
    if start is None:
        return ws
    transport = JsonTransport(ws)
    try:
        leg = AgentLeg(gateway, desk.queue, session, agent, transport, start.sample_rate)
    except ProtocolError as exc:
        await transport.send_event({"type": "error", "code": exc.code, "message": str(exc)})
        await ws.close(code=CLOSE_BAD_REQUEST, message=exc.code.encode())
        return ws

    async def hear(chunk: AudioChunk) -> None:
        leg.caller_seen(chunk)
        await transport.send_audio(CALLER_TURN, chunk.pcm, chunk.sample_rate, False, 0)

    relay = CallerAudio(gateway.settings, session.session_id, hear)
    try:
        await relay.start()
    except Exception as exc:
        log.warning("session %s: the caller's audio cannot be followed: %s: %s", session.session_id,
                    type(exc).__name__, exc)
        await ws.close(code=CLOSE_TRY_AGAIN, message=b"unavailable: the caller's audio cannot be read")
        return ws
    older = gateway.sessions.get(leg.leg_id)
    if isinstance(older, AgentLeg):  # the agent's voice opened again (another tab, a reconnection)
        await older.transport.close(CLOSE_REPLACED, b"session_replaced: the voice opened elsewhere")
    gateway.sessions[leg.leg_id] = leg
    leg.control("start")
    await transport.send_event({"type": "ready", "session_id": session.session_id, "sample_rate": 16000,
                                "chunk_ms": gateway.settings.chunk_ms})
    watcher = asyncio.create_task(watch(desk.queue, session.session_id, agent, transport))
    try:
        await converse(ws, leg, transport)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await relay.stop()
        if gateway.sessions.get(leg.leg_id) is leg:
            del gateway.sessions[leg.leg_id]
        await leg.close()
        if not ws.closed:
            await ws.close()
    return ws


async def converse(ws: web.WebSocketResponse, leg: AgentLeg, transport: JsonTransport) -> None:
    """The agent's frames until ``end`` or the socket closes; a bad frame gets an ``error`` event."""
    noticed = 0.0
    async for msg in ws:
        try:
            if msg.type == WSMsgType.BINARY:
                if leg.on_audio(msg.data) and time.monotonic() - noticed >= NOTICE_INTERVAL_S:
                    noticed = time.monotonic()
                    raise ProtocolError("overloaded", "the service is behind: some of your audio was dropped")
            elif msg.type == WSMsgType.TEXT:
                message = parse(msg.data)
                if isinstance(message, End):
                    return
                if isinstance(message, Text):
                    raise ProtocolError("use_reply", "type replies in the reply box (POST .../reply)")
                raise ProtocolError("already_started", "the voice has already started")
        except ProtocolError as exc:
            await transport.send_event({"type": "error", "code": exc.code, "message": str(exc)})
