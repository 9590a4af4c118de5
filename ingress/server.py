"""The ingress web server.

Routes: ``/v1/stream`` (callers: JSON + PCM16), ``/v1/webrtc`` (callers over WebRTC, :mod:`ingress.webrtc`),
``/v1/twilio`` (Twilio Media Streams),
``/v1/twilio/twiml`` (a voice webhook answering TwiML), ``/livez`` (the process answers),
``/readyz`` (this ingress can take callers), ``/healthz`` (the whole pipeline), ``/metrics`` and
``/`` (the browser voice page, ``static/``), ``/analytics`` and ``/agent`` (the agent
console, :mod:`ingress.agents`).  Both caller endpoints go through the same
edge checks (:mod:`ingress.edge`) and run a :class:`~ingress.session.CallerSession`
behind a transport adapter (:mod:`ingress.transport`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.http_websocket import WSMessage
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingress import metrics, ports, twilio
from ingress.agents import add_routes as add_agent_routes
from ingress.analytics import add_routes as add_analytics_routes
from ingress.calls import add_routes as add_call_routes
from ingress.connections import admit_load, attach, detach, on_client_message, parse_message
from ingress.edge import (
    CLOSE_BAD_REQUEST,
    CLOSE_FRAME_TOO_LARGE,
    CLOSE_TIMEOUT,
    CLOSE_TOO_LONG,
    EdgeGuard,
    Rejection,
    count_rejection,
    peer_of,
    reject,
)
from ingress.gateway import Gateway
from ingress.greeting import greet
from ingress.logs import AccessLogger
from ingress.logs import install as install_log_filter
from ingress.protocol import ProtocolError, Start
from ingress.session import CallerSession, protocol_error_event
from ingress.transport import JsonTransport
from ingress.webrtc import add_routes as add_webrtc_routes
from streams.settings import Settings, get_settings
from streams.standby import take_over

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
"""Default largest WebSocket frame (bytes, ``VOXBUS_MAX_FRAME_BYTES``): 8 s of 16 kHz PCM16 -> 1009."""
START_TIMEOUT_S = 10.0
"""A socket that sends no start message within this many seconds is closed."""
CLOSE_START_TIMEOUT = CLOSE_TIMEOUT
HEARTBEAT_S = 20.0
"""WebSocket ping interval; a peer that stops answering is dropped."""
STATIC = Path(__file__).parent / "static"

GATEWAY = web.AppKey("gateway", Gateway)
GUARD = web.AppKey("guard", EdgeGuard)


async def frames(ws: web.WebSocketResponse, settings: Settings, opened: float,
                 peer: str = "") -> AsyncIterator[WSMessage]:
    """The caller's data frames until it closes.

    Raises:
        Rejection: 4408 no frame for ``idle_timeout_s``; 4413 the session reached ``max_session_s``.
    """
    last = time.monotonic()
    deadline = opened + settings.max_session_s
    while True:
        now = time.monotonic()
        if now >= deadline:
            raise Rejection(CLOSE_TOO_LONG, "session_too_long",
                            f"sessions last at most {settings.max_session_s:g} s")
        wait = min(deadline, last + settings.idle_timeout_s) - now
        if wait <= 0:
            raise Rejection(CLOSE_TIMEOUT, "idle_timeout", f"no frame for {settings.idle_timeout_s:g} s")
        try:
            msg = await asyncio.wait_for(ws.receive(), wait)
        except TimeoutError:
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return
        if msg.type == WSMsgType.ERROR:
            if getattr(msg.data, "code", None) == CLOSE_FRAME_TOO_LARGE:  # aiohttp closed it with 1009
                count_rejection("frame_too_large", CLOSE_FRAME_TOO_LARGE, peer,
                                f"a frame over {settings.max_frame_bytes} bytes")
            return
        last = time.monotonic()
        yield msg


# -- /v1/stream ------------------------------------------------------------------------
async def stream(request: web.Request) -> web.WebSocketResponse:
    """A caller session over WebSocket (protocol in :mod:`ingress.protocol`)."""
    gateway, guard = request.app[GATEWAY], request.app[GUARD]
    settings = gateway.settings
    opened = time.monotonic()
    ws = _socket(settings)
    await ws.prepare(request)
    peer = peer_of(request)
    try:
        guard.check_origin(request)
        principal = guard.authenticate(request)
        assert principal is not None
        with guard.awaiting_start(principal, peer):
            started = await _start(gateway, ws)
        if started is None:
            return ws
        session, named = started
        admit_load(gateway, session.session_id, resuming=named)
        admission = guard.admit(principal, session.session_id, named=named)
        session.epoch = await guard.claim(admission, session.partition)
    except Rejection as rejection:
        await reject(ws, rejection, peer)
        return ws
    await attach(gateway, session)
    try:
        await session.open()
        if not named or admission.first:  # a new session, not a reconnection
            await greet(session)
        async for msg in frames(ws, settings, opened, peer):
            try:
                if msg.type == WSMsgType.BINARY:
                    await session.on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT and not await on_client_message(session, msg.data):
                    break
            except ProtocolError as exc:
                await session.send_json(protocol_error_event(exc))
    except Rejection as rejection:
        await reject(ws, rejection, peer)
    finally:
        await detach(gateway, guard, session, admission)
        if not ws.closed:
            await ws.close()
    return ws


def _socket(settings: Settings) -> web.WebSocketResponse:
    """A caller socket accepting frames of up to ``max_frame_bytes`` (aiohttp refuses its limit itself)."""
    return web.WebSocketResponse(max_msg_size=settings.max_frame_bytes + 1, heartbeat=HEARTBEAT_S)


async def _start(gateway: Gateway, ws: web.WebSocketResponse) -> tuple[CallerSession, bool] | None:
    """Read and validate the start message: (session, whether the caller named its id).

    Rejects the socket with 4400/4408 (and returns None) otherwise.
    """
    try:
        msg = await ws.receive(timeout=START_TIMEOUT_S)
    except TimeoutError:
        metrics.REJECTIONS.labels("start_timeout").inc()
        await ws.close(code=CLOSE_START_TIMEOUT, message=b"no start message")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    try:
        if msg.type != WSMsgType.TEXT:
            raise ProtocolError("expected_start", "the first frame must be a JSON start message")
        start = parse_message(msg.data)
        if not isinstance(start, Start):
            raise ProtocolError("expected_start", "the first frame must be a JSON start message")
        session_id = start.session_id or uuid.uuid4().hex
        session = CallerSession(gateway, JsonTransport(ws), session_id, start.sample_rate, start.speak,
                                start.caller_id or "", record=start.record, language=start.language)
        return session, start.session_id is not None
    except ProtocolError as exc:
        await ws.send_str(json.dumps(protocol_error_event(exc)))
        await ws.close(code=CLOSE_BAD_REQUEST, message=exc.code.encode())
        return None


# -- /v1/twilio ------------------------------------------------------------------------
async def twilio_stream(request: web.Request) -> web.WebSocketResponse:
    """A phone call over Twilio Media Streams (see :mod:`ingress.twilio`)."""
    gateway, guard = request.app[GATEWAY], request.app[GUARD]
    settings = gateway.settings
    opened = time.monotonic()
    ws = _socket(settings)
    await ws.prepare(request)
    peer = peer_of(request)
    try:
        guard.check_origin(request)
        signed = twilio.check_signature(request, guard)
        with guard.awaiting_start(None, peer):
            start = await twilio.read_start(ws, START_TIMEOUT_S)
        if start is None:
            return ws
        principal = twilio.call_principal(guard, start, signed)
        if principal is None:
            principal = guard.authenticate(request, extra=start.customParameters)
        assert principal is not None
        session_id = twilio.session_id_for(start, principal)
        transport = twilio.TwilioTransport(ws, start.streamSid)
        session = CallerSession(gateway, transport, session_id, twilio.TWILIO_RATE,
                                caller_id=twilio.caller_id_for(start), record=twilio.record_for(start),
                                language=twilio.language_for(start))
        admit_load(gateway, session_id)
        call = principal.kind == "twilio"
        admission = guard.admit(principal, session_id, exclusive=call)
        session.epoch = await guard.claim(admission, session.partition)
    except Rejection as rejection:
        await twilio.reject_twilio(ws, rejection, request)
        return ws
    log.info("twilio call %s stream %s: session %s", start.callSid, start.streamSid, session_id)
    await attach(gateway, session)
    try:
        await session.open()
        if admission.first:  # a new call (a PBX's named session may be a reconnection)
            await greet(session)
        async for msg in frames(ws, settings, opened, peer):
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                if not await twilio.handle_message(session, transport, twilio._json(msg.data)):
                    break
            except ProtocolError as exc:
                metrics.REJECTIONS.labels(exc.code).inc()
                log.warning("twilio stream %s: dropped a message: %s", start.streamSid, exc)
    except Rejection as rejection:
        await twilio.reject_twilio(ws, rejection, request)
    finally:
        await detach(gateway, guard, session, admission)
        if not ws.closed:
            await ws.close()
    return ws


# -- http ------------------------------------------------------------------------------
async def livez(request: web.Request) -> web.Response:
    """200 while the process serves requests (Kubernetes liveness: nothing else is asked)."""
    return web.json_response({"alive": True})


async def readyz(request: web.Request) -> web.Response:
    """200 when this ingress can take callers (started, its broker answers, bindings loaded), else 503.

    Stages are not asked: a pipeline missing a stage still takes callers and tells them what
    works (a ``degraded`` event), so one stage's rollout takes no ingress out of its Service.
    """
    ready, details = await request.app[GATEWAY].ready()
    return web.json_response(details, status=200 if ready else 503)


async def healthz(request: web.Request) -> web.Response:
    """200 when the broker and every stage are up, 503 otherwise (JSON details either way)."""
    healthy, details = await request.app[GATEWAY].health()
    return web.json_response(details, status=200 if healthy else 503)


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus exposition of the ingress metrics."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    """The voice page (Harbor Mobile demo of the ``<voice-mic>`` component)."""
    return web.FileResponse(STATIC / "index.html")


def make_app(settings: Settings | None = None, gateway: Gateway | None = None) -> web.Application:
    """Build the ingress aiohttp application (Kafka clients start with the app).

    Args:
        settings: defaults to the process's settings.
        gateway: the Kafka side; defaults to a :class:`Gateway` on ``settings`` (tests pass a fake).
    """
    settings = settings or get_settings()
    app = web.Application(middlewares=[ports.by_port(settings)])
    app[GATEWAY] = gateway or Gateway(settings)
    app[GUARD] = EdgeGuard(settings, app[GATEWAY].ledger)

    async def lifecycle(app: web.Application) -> object:
        await app[GATEWAY].start()
        yield
        await app[GATEWAY].stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/v1/twilio", twilio_stream)
    app.router.add_route("*", "/v1/twilio/twiml", twilio.twiml)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/", index)
    add_analytics_routes(app, app[GATEWAY], app[GUARD])
    add_agent_routes(app, app[GATEWAY], app[GUARD])
    add_call_routes(app, app[GATEWAY], app[GUARD])  # /v1/calls: recorded calls (ingress.calls)
    add_webrtc_routes(app, app[GATEWAY], app[GUARD])  # /v1/webrtc: callers over WebRTC (ingress.webrtc)
    if STATIC.is_dir():
        app.router.add_static("/static", STATIC)
    return app


SHUTDOWN_TIMEOUT_S = 5.0
"""Seconds a shutting-down ingress gives its request handlers to end (callers reconnect elsewhere)."""


def server_options(settings: Settings) -> dict[str, Any]:
    """The aiohttp runner's options: the scrubbed access log, the idle-connection and the shutdown timeouts.

    A connection with no complete request (idle, or a half-open request) is closed after
    ``http_keepalive_timeout_s`` (aiohttp's default holds it 75 s). At shutdown, handlers still
    running :data:`SHUTDOWN_TIMEOUT_S` after the callers' sockets were closed are cancelled
    (aiohttp's default waits 60 s).
    """
    return {"access_log_class": AccessLogger, "keepalive_timeout": settings.http_keepalive_timeout_s,
            "shutdown_timeout": SHUTDOWN_TIMEOUT_S}


def run(settings: Settings | None = None, standby: bool = False) -> None:
    """Serve the ingress on ``host:port`` and ``agent_port`` (:mod:`ingress.ports`) until SIGINT/SIGTERM.

    Args:
        settings: defaults to the process's settings.
        standby: a warm standby (``voxbus up`` with ``VOXBUS_STAGE_STANDBY``): imported and built,
            it waits until told to take over (:func:`streams.standby.take_over`), then connects to
            the broker and listens; it exits if never told.

    Raises:
        ValueError: inconsistent edge settings (see :class:`~ingress.edge.EdgeGuard`).
    """
    settings = settings or get_settings()
    install_log_filter()
    app = make_app(settings)
    if standby and not take_over("ingress"):
        return
    web.run_app(app, host=settings.host, port=settings.port,
                sock=ports.agent_sockets(settings), print=None, handle_signals=True,
                **server_options(settings))


__all__ = ["make_app", "run", "server_options"]
