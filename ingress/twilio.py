"""Telephony: the Twilio Media Streams protocol on ``/v1/twilio``, and a TwiML webhook.

Twilio (``<Connect><Stream url="wss://HOST/v1/twilio">``) opens a WebSocket and sends
JSON text frames: ``connected``, ``start`` (``streamSid``, ``callSid``,
``customParameters``, ``mediaFormat`` audio/x-mulaw 8000 Hz mono), ``media`` (20 ms of
base64 mu-law), ``mark`` (echo of a mark we sent, once the audio before it has played
or was cleared), ``dtmf`` and ``stop``.  We answer with ``media`` (base64 mu-law 8 kHz,
no header), a ``mark`` after each reply segment and ``clear`` on barge-in.

The call is a :class:`~ingress.session.CallerSession` like any other: caller audio is
decoded to PCM16 8 kHz and resampled to the bus rate by the session's chunker; reply
audio is resampled (soxr) to 8 kHz and mu-law encoded by :class:`TwilioTransport`.
Mark names carry the turn, a playback epoch and the turn's byte offset, so each echo
tells the session how much of the reply the caller has heard
(:meth:`~ingress.session.CallerSession.confirm_heard`); echoes of marks dropped by a
``clear`` belong to an older epoch and are ignored.  A ``dtmf`` key goes to the session's keypad
(:mod:`ingress.dtmf`); the ``record`` custom parameter (``false``: no audio archived) is the
caller protocol's ``record`` (:func:`record_for`), the ``language`` one its ``language``
(:func:`language_for`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from typing import Annotated, Any, Literal
from xml.sax.saxutils import quoteattr

import numpy as np
import soxr
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from ingress import metrics
from ingress.auth import CALL_SID_PATTERN, AuthError, Principal, twilio_signature_valid, twilio_url_candidates
from ingress.edge import (
    CLOSE_BAD_REQUEST,
    CLOSE_TIMEOUT,
    CLOSE_UNAUTHENTICATED,
    EdgeGuard,
    Rejection,
    peer_of,
    reject,
)
from ingress.g711 import ulaw_decode, ulaw_encode
from ingress.language import bus_language
from ingress.protocol import ProtocolError
from schemas.base import SESSION_ID_PATTERN
from schemas.desk import CALLER_ID_PATTERN
from schemas.voice import is_agent_leg

log = logging.getLogger(__name__)

TWILIO_RATE = 8000
"""Hz of Twilio's mu-law audio, both ways."""
FRAME_BYTES = 160
"""Outbound ``media`` payload size: 20 ms of 8 kHz mu-law, as Twilio itself sends."""
TOKEN_PARAMETER = "voxbus_token"
"""The ``<Stream>``'s ``<Parameter>`` carrying the call's stream token (:class:`ingress.auth.CallTokens`)."""
Sid = Annotated[str, StringConstraints(pattern=SESSION_ID_PATTERN)]
"""A Twilio SID (``streamSid``, ``callSid``): 1-64 characters of ``[A-Za-z0-9_.:-]``."""
DTMF_DIGIT = r"^[0-9*#A-Da-dw]$"
"""A DTMF key, as Twilio reports it (0-9, ``*``, ``#``, A-D)."""
RECORD = TypeAdapter(bool)
"""Reads the ``record`` custom parameter as pydantic reads a bool."""


class MediaFormat(BaseModel):
    """``start.mediaFormat``."""

    model_config = ConfigDict(extra="allow")
    encoding: str
    sampleRate: int  # noqa: N815 - Twilio's field name
    channels: int = 1


class StreamStart(BaseModel):
    """The ``start`` object of Twilio's ``start`` message."""

    model_config = ConfigDict(extra="allow")
    streamSid: Sid  # noqa: N815
    callSid: Sid | None = None  # noqa: N815
    accountSid: Sid | None = None  # noqa: N815
    tracks: list[str] = Field(default_factory=lambda: ["inbound"])
    customParameters: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    mediaFormat: MediaFormat  # noqa: N815


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Media(_Event):
    track: str = "inbound"
    payload: str


class MediaMessage(_Event):
    """``media``: 20 ms of base64 mu-law caller audio."""

    event: Literal["media"]
    media: _Media


class _Mark(_Event):
    name: Annotated[str, StringConstraints(max_length=200)]


class MarkMessage(_Event):
    """``mark``: Twilio has played (or cleared) the audio before a mark we sent."""

    event: Literal["mark"]
    mark: _Mark


class _Dtmf(_Event):
    digit: Annotated[str, StringConstraints(pattern=DTMF_DIGIT)]


class DtmfMessage(_Event):
    """``dtmf``: the caller pressed a key."""

    event: Literal["dtmf"]
    dtmf: _Dtmf


class StopMessage(_Event):
    """``stop``: the call ended."""

    event: Literal["stop"]


MESSAGES: dict[str, type[_Event]] = {"media": MediaMessage, "mark": MarkMessage, "dtmf": DtmfMessage,
                                     "stop": StopMessage}
"""The messages a call acts on after ``start``, by ``event``; others (``connected``...) are ignored."""


def parse_message(data: dict[str, Any]) -> _Event | None:
    """The typed message of ``data``; None for an event the call ignores.

    Raises:
        ProtocolError: ``bad_message``: a field of the wrong type or format.
    """
    model = MESSAGES.get(data.get("event"))  # type: ignore[arg-type]
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "message"
        raise ProtocolError("bad_message", f"{data['event']}: {where}: {first['msg']}") from None


def mark_name(turn_id: str, epoch: int, offset: int) -> str:
    """The name of the mark sent after a reply segment: ``turn:epoch:offset``."""
    return f"{turn_id}:{epoch}:{offset}"


class TwilioTransport:
    """Reply audio, marks and clears on a Twilio media stream.

    Args:
        ws: Twilio's socket.
        stream_sid: the stream's ``streamSid`` (on every message we send).
    """

    def __init__(self, ws: web.WebSocketResponse, stream_sid: str) -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self.lock = asyncio.Lock()
        self.epoch = 0
        self.resamplers: dict[str, tuple[int, soxr.ResampleStream]] = {}
        self.media_sent = 0
        self.marks_sent = 0

    @property
    def closed(self) -> bool:
        """True once the socket is closed or closing."""
        return self.ws.closed

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message, separators=(",", ":")))

    async def send_event(self, payload: dict[str, Any]) -> None:
        """A phone shows no events; errors are logged."""
        if payload.get("type") == "error":
            log.warning("twilio stream %s: %s %s", self.stream_sid, payload.get("code"),
                        payload.get("message"))

    def _to_ulaw(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool) -> bytes:
        rate, stream = self.resamplers.get(turn_id, (0, None))
        if stream is None or rate != sample_rate:
            stream = soxr.ResampleStream(sample_rate, TWILIO_RATE, 1, dtype="int16", quality="HQ")
            self.resamplers[turn_id] = (sample_rate, stream)
        samples = np.frombuffer(pcm, dtype="<i2")
        out = stream.resample_chunk(samples, last=final)
        if final:
            self.resamplers.pop(turn_id, None)
        return ulaw_encode(out)

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        """The segment as 20 ms ``media`` messages, then a ``mark`` at its end."""
        if not sample_rate:
            return
        payload = self._to_ulaw(turn_id, pcm, sample_rate, final)
        if not payload:
            return
        async with self.lock:
            for start in range(0, len(payload), FRAME_BYTES):
                chunk = base64.b64encode(payload[start:start + FRAME_BYTES]).decode()
                await self._send({"event": "media", "streamSid": self.stream_sid,
                                  "media": {"payload": chunk}})
                self.media_sent += 1
            await self._send({"event": "mark", "streamSid": self.stream_sid,
                              "mark": {"name": mark_name(turn_id, self.epoch, offset)}})
            self.marks_sent += 1

    async def stop_playback(self, turn_id: str) -> None:
        """``clear``: Twilio drops the audio it buffered (and echoes the marks it drops)."""
        async with self.lock:
            self.epoch += 1
            self.resamplers.pop(turn_id, None)
            await self._send({"event": "clear", "streamSid": self.stream_sid})

    def heard(self, name: str) -> tuple[str, int] | None:
        """(turn id, bytes heard) from an echoed mark of the current epoch; None for others."""
        turn_id, _, rest = name.rpartition(":")
        turn_id, _, epoch = turn_id.rpartition(":")
        try:
            if int(epoch) != self.epoch:
                return None
            return turn_id, int(rest)
        except ValueError:
            return None

    async def close(self, code: int, message: bytes) -> None:
        """Close the socket."""
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)


def _json(msg_data: str) -> dict[str, Any]:
    try:
        data = json.loads(msg_data)
    except ValueError:
        raise ProtocolError("bad_json", "not a JSON message") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_message", "not a JSON object")
    return data


async def read_start(ws: web.WebSocketResponse, timeout_s: float) -> StreamStart | None:
    """Wait for ``connected`` then ``start``; None if Twilio hung up first.

    Raises:
        Rejection: 4408 no ``start`` in time; 4400 a malformed ``start`` or an unsupported media format.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Rejection(CLOSE_TIMEOUT, "start_timeout", "no start message")
        try:
            msg = await asyncio.wait_for(ws.receive(), remaining)
        except TimeoutError:
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return None
        if msg.type != WSMsgType.TEXT:
            raise Rejection(CLOSE_BAD_REQUEST, "bad_message", "Twilio messages are JSON text frames")
        try:
            data = _json(msg.data)
        except ProtocolError as exc:
            raise Rejection(CLOSE_BAD_REQUEST, exc.code, str(exc)) from None
        event = data.get("event")
        if event == "connected":
            continue
        if event != "start":
            raise Rejection(CLOSE_BAD_REQUEST, "expected_start",
                            f"expected connected/start, got {str(event)[:40]!r}")
        try:
            fields = {"streamSid": data.get("streamSid", ""), **data.get("start", {})}
            start = StreamStart.model_validate(fields)
        except (ValidationError, TypeError) as exc:
            raise Rejection(CLOSE_BAD_REQUEST, "bad_message", f"start: {str(exc).splitlines()[0]}") from None
        fmt = start.mediaFormat
        if (fmt.encoding.lower(), fmt.sampleRate, fmt.channels) != ("audio/x-mulaw", TWILIO_RATE, 1):
            raise Rejection(CLOSE_BAD_REQUEST, "bad_media_format",
                            f"need audio/x-mulaw 8000 Hz mono, got {fmt.encoding[:40]} {fmt.sampleRate} Hz")
        return start


def check_signature(request: web.Request, guard: EdgeGuard) -> bool:
    """True if the handshake carries a valid ``X-Twilio-Signature`` (of the public URL).

    Raises:
        Rejection: 4401 a bad signature, or none while a Twilio auth token is configured
            and no key or JWT could stand in for it (authentication off).
    """
    settings = guard.settings
    token = settings.twilio_auth_token
    if not token:
        return False
    signature = request.headers.get("X-Twilio-Signature", "")
    if signature:
        urls = twilio_url_candidates(settings.public_url, request.scheme, request.host, request.path_qs)
        if twilio_signature_valid(token, signature, urls):
            return True
        raise Rejection(CLOSE_UNAUTHENTICATED, "unauthenticated", "invalid_signature: bad X-Twilio-Signature")
    if not guard.auth.enabled:
        raise Rejection(CLOSE_UNAUTHENTICATED, "unauthenticated",
                        "missing_signature: X-Twilio-Signature is required")
    return False


def call_principal(guard: EdgeGuard, start: StreamStart, signed: bool) -> Principal | None:
    """Who the stream is: its call (a valid stream token), or a key/JWT holder (a PBX).

    Returns:
        ``twilio:<callSid>`` for a stream with a valid token of its own call; None when the
        stream is a key/JWT holder's (or anonymous: authentication off), see
        :meth:`~ingress.edge.EdgeGuard.authenticate`.

    Raises:
        Rejection: 4401 a token that is forged, another call's or expired; a signed
            stream without a token (while a Twilio auth token is configured).
    """
    token = start.customParameters.get(TOKEN_PARAMETER)
    tokens = guard.call_tokens
    if tokens is None or (token is None and not signed):
        return None
    if token is None:
        raise Rejection(CLOSE_UNAUTHENTICATED, "unauthenticated",
                        f"missing_stream_token: the stream needs its <Parameter name=\"{TOKEN_PARAMETER}\">")
    try:
        tokens.verify(token, start.callSid or "")
    except AuthError as exc:
        raise Rejection(CLOSE_UNAUTHENTICATED, "unauthenticated", f"{exc.reason}: {exc}") from None
    return Principal(f"twilio:{start.callSid}", "twilio", "twilio")


def session_id_for(start: StreamStart, principal: Principal) -> str:
    """A call's session id: a Twilio call's ``callSid``; else the ``session_id`` parameter or ``callSid``.

    Raises:
        Rejection: 4400 when neither is a valid session id, or it is an agent leg's (:mod:`schemas.voice`).
    """
    session_id = start.callSid or start.streamSid
    if principal.kind != "twilio":
        session_id = start.customParameters.get("session_id") or session_id
    if not re.fullmatch(SESSION_ID_PATTERN.strip("^$"), session_id) or is_agent_leg(session_id):
        raise Rejection(CLOSE_BAD_REQUEST, "bad_session_id", "session_id/callSid is not a valid session id")
    return session_id


def caller_id_for(start: StreamStart) -> str:
    """The call's caller id: the ``caller_id`` custom parameter, else ``from``; empty without either.

    ``from`` is what TwiML ``<Parameter name="from" value="{{From}}"/>`` passes: the caller's number.

    Raises:
        Rejection: 4400 when the value is not a :data:`schemas.desk.CallerId`.
    """
    caller_id = start.customParameters.get("caller_id") or start.customParameters.get("from") or ""
    if caller_id and not re.fullmatch(CALLER_ID_PATTERN, caller_id):
        raise Rejection(CLOSE_BAD_REQUEST, "bad_caller_id", "caller_id/from is not a valid caller id")
    return caller_id


def record_for(start: StreamStart) -> bool | None:
    """The call's ``record`` wish, from ``<Parameter name="record" value="false"/>`` in its ``<Stream>``.

    Returns:
        False or True as pydantic reads a bool (``false``, ``0``, ``no``, ``off``; ``true``, ``1``, ``yes``,
        ``on``); None without the parameter.

    Raises:
        Rejection: 4400 ``bad_record``: another value.
    """
    value = start.customParameters.get("record")
    if value is None:
        return None
    try:
        return RECORD.validate_python(value)
    except ValidationError:
        raise Rejection(CLOSE_BAD_REQUEST, "bad_record", "record must be true or false") from None


def language_for(start: StreamStart) -> str:
    """The call's bus language, from ``<Parameter name="language" value="es-MX"/>`` in its ``<Stream>``.

    Returns:
        :func:`ingress.language.bus_language` of the parameter (English without it; empty for ``auto``).

    Raises:
        Rejection: 4400 ``bad_language``: no BCP-47 tag.
    """
    try:
        return bus_language(start.customParameters.get("language"))
    except ValueError as exc:
        raise Rejection(CLOSE_BAD_REQUEST, "bad_language", str(exc)) from None


async def handle_message(session: Any, transport: TwilioTransport, data: dict[str, Any]) -> bool:
    """Apply one Twilio message to the session; return False on ``stop``.

    Raises:
        ProtocolError: a malformed message (``bad_message``, ``bad_payload``): dropped, the call goes on.
    """
    message = parse_message(data)
    if isinstance(message, MediaMessage):
        if message.media.track not in ("inbound", "inbound_track"):
            return True
        try:
            payload = base64.b64decode(message.media.payload, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_payload", "media payload is not base64") from None
        if payload:
            await session.on_audio(ulaw_decode(payload).astype("<i2").tobytes())
    elif isinstance(message, MarkMessage):
        heard = transport.heard(message.mark.name)
        if heard is not None:
            session.confirm_heard(*heard)
    elif isinstance(message, DtmfMessage):
        metrics.DTMF.inc()
        log.info("twilio stream %s: DTMF %s", transport.stream_sid, message.dtmf.digit)
        await session.keypad.press(message.dtmf.digit.upper())
    elif isinstance(message, StopMessage):
        return False
    return True


async def twiml(request: web.Request) -> web.Response:
    """Voice webhook: TwiML that connects the call to ``/v1/twilio``.

    With a Twilio auth token configured, the request must carry Twilio's signature of the
    public URL (403 otherwise) and a ``CallSid`` (400), and the ``<Stream>`` carries the
    call's stream token as a ``<Parameter>``.
    """
    from ingress.server import GUARD

    guard: EdgeGuard = request.app[GUARD]
    settings = guard.settings
    params = list((await request.post()).items()) if request.method == "POST" else []
    parameter = ""
    if settings.twilio_auth_token:
        urls = twilio_url_candidates(settings.public_url, request.scheme, request.host, request.path_qs)
        signature = request.headers.get("X-Twilio-Signature", "")
        pairs = [(str(k), str(v)) for k, v in params]
        if not twilio_signature_valid(settings.twilio_auth_token, signature, urls, pairs):
            metrics.REJECTIONS.labels("twiml_bad_signature").inc()
            log.info("rejected %s: TwiML webhook with a bad X-Twilio-Signature", peer_of(request))
            raise web.HTTPForbidden(text="invalid X-Twilio-Signature")
        call_sid = str(dict(pairs).get("CallSid") or request.query.get("CallSid", ""))
        if not re.fullmatch(CALL_SID_PATTERN, call_sid):
            raise web.HTTPBadRequest(text="CallSid missing or malformed")
        assert guard.call_tokens is not None
        token = guard.call_tokens.issue(call_sid)
        parameter = f"<Parameter name={quoteattr(TOKEN_PARAMETER)} value={quoteattr(token)} />"
    if settings.public_url:
        base = settings.public_url.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    else:
        base = f"wss://{request.host}"
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Connect>'
            f"<Stream url={quoteattr(base + '/v1/twilio')}>{parameter}</Stream></Connect></Response>")
    return web.Response(text=body, content_type="text/xml")


async def reject_twilio(ws: web.WebSocketResponse, rejection: Rejection, request: web.Request) -> None:
    """Close Twilio's socket with a code (Twilio shows no JSON events)."""
    await reject(ws, rejection, peer_of(request), error_event=False)
