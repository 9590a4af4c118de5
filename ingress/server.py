"""The ingress web server: ``/v1/stream`` (callers), ``/healthz``, ``/metrics``, ``/`` (web page)."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from ingress import metrics
from ingress.gateway import Gateway
from ingress.protocol import ClientMessage, End, ProtocolError, Start, Text
from ingress.session import CallerSession, protocol_error_event
from streams.settings import Settings, get_settings

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
"""Largest WebSocket frame accepted (bytes): 8 s of 16 kHz PCM16; larger frames close with 1009."""
START_TIMEOUT_S = 10.0
"""A socket that sends no start message within this many seconds is closed."""
CLOSE_BAD_REQUEST = 4400
"""WebSocket close code for a session that could not start (bad start message)."""
CLOSE_START_TIMEOUT = 4408
STATIC = Path(__file__).parent / "static"

GATEWAY = web.AppKey("gateway", Gateway)


def _parse(data: str) -> Start | Text | End:
    try:
        return ClientMessage.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "message"
        code = "bad_json" if first["type"] == "json_invalid" else "bad_message"
        raise ProtocolError(code, f"{where}: {first['msg']}") from None


async def stream(request: web.Request) -> web.WebSocketResponse:
    """A caller session over WebSocket (protocol in :mod:`ingress.protocol`)."""
    gateway = request.app[GATEWAY]
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_BYTES, heartbeat=20.0)
    await ws.prepare(request)
    session: CallerSession | None = None
    try:
        session = await _start(gateway, ws)
        if session is None:
            return ws
        async for msg in ws:
            try:
                if msg.type == WSMsgType.BINARY:
                    await session.on_audio(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    message = _parse(msg.data)
                    if isinstance(message, End):
                        break
                    if isinstance(message, Text):
                        await session.on_text(message.text)
                    else:
                        raise ProtocolError("already_started", "the session has already started")
            except ProtocolError as exc:
                await ws.send_str(json.dumps(protocol_error_event(exc)))
    finally:
        if session is not None:
            gateway.sessions.pop(session.session_id, None)
            metrics.ACTIVE_SESSIONS.dec()
            await session.close()
        if not ws.closed:
            await ws.close()
    return ws


async def _start(gateway: Gateway, ws: web.WebSocketResponse) -> CallerSession | None:
    """Read and validate the start message; reject the socket with 4400/4408 otherwise."""
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
        start = _parse(msg.data)
        if not isinstance(start, Start):
            raise ProtocolError("expected_start", "the first frame must be a JSON start message")
        session_id = start.session_id or uuid.uuid4().hex
        session = CallerSession(gateway, ws, session_id, start)
    except ProtocolError as exc:
        await ws.send_str(json.dumps(protocol_error_event(exc)))
        await ws.close(code=CLOSE_BAD_REQUEST, message=exc.code.encode())
        return None
    gateway.sessions[session_id] = session
    metrics.ACTIVE_SESSIONS.inc()
    await session.open()
    return session


async def healthz(request: web.Request) -> web.Response:
    """200 when the broker and every stage are up, 503 otherwise (JSON details either way)."""
    healthy, details = await request.app[GATEWAY].health()
    return web.json_response(details, status=200 if healthy else 503)


async def prometheus(request: web.Request) -> web.Response:
    """Prometheus exposition of the ingress metrics."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def index(request: web.Request) -> web.FileResponse:
    """The demo voice page."""
    return web.FileResponse(STATIC / "index.html")


def make_app(settings: Settings | None = None) -> web.Application:
    """Build the ingress aiohttp application (Kafka clients start with the app)."""
    settings = settings or get_settings()
    app = web.Application()
    app[GATEWAY] = Gateway(settings)

    async def lifecycle(app: web.Application) -> object:
        await app[GATEWAY].start()
        yield
        await app[GATEWAY].stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/", index)
    if STATIC.is_dir():
        app.router.add_static("/static", STATIC)
    return app


def run(settings: Settings | None = None) -> None:
    """Serve the ingress on ``settings.host:settings.port`` until SIGINT/SIGTERM."""
    settings = settings or get_settings()
    web.run_app(make_app(settings), host=settings.host, port=settings.port, print=None,
                shutdown_timeout=5.0, handle_signals=True)


__all__ = ["make_app", "run"]
