"""``/v1/webrtc``: a caller session over WebRTC, signalled WHIP-style (RFC 9725) over authenticated HTTP.

* ``POST /v1/webrtc`` with ``Content-Type: application/sdp`` and the browser's offer: an
  audio section (``sendrecv``: the microphone in, replies out, Opus) and a data channel,
  every ICE candidate in it (no trickle).  Credentials exactly as for ``/v1/stream``
  (``Authorization: Bearer``, ``?api_key=``, ``?access_token=``), and the start message's
  fields as query parameters: ``session_id`` (resume), ``speak``, ``caller_id``, ``record``,
  ``language``.  The
  origin, ownership, rate, concurrency and load checks are the socket's
  (:mod:`ingress.edge`, :mod:`ingress.admission`).  Answer: ``201`` with the SDP answer and
  ``Location: /v1/webrtc/{session_id}``; a refusal is JSON ``{"type": "error", "code",
  "message", "close_code"}`` with the HTTP status of its close code (401, 403, 409, 429,
  503; 400/413/415 for a bad offer).
* ``DELETE /v1/webrtc/{session_id}``: the same principal hangs up (``204``).

The browser opens the ``voxbus`` data channel; once it is open the session starts (a
``ready`` event) and runs the WebSocket's caller protocol on it (:mod:`ingress.webrtc_transport`):
the same :class:`~ingress.session.CallerSession`: the greeting of a new session, turns, keys
(``dtmf``), barge-in and playback position.
A call whose channel does not open within :data:`CONNECT_TIMEOUT_S` is dropped; a call
ends on ``{"type": "end"}``, ``DELETE``, the channel or the peer connection closing,
``VOXBUS_IDLE_TIMEOUT_S`` without media or message (4408) or ``VOXBUS_MAX_SESSION_S`` (4413).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

from aiohttp import web
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydantic import ValidationError

from ingress import webrtc_ice
from ingress.connections import admit_load, attach, detach, on_client_message
from ingress.edge import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_LIMITED,
    CLOSE_REPLACED,
    CLOSE_TIMEOUT,
    CLOSE_TOO_LONG,
    CLOSE_UNAUTHENTICATED,
    Admission,
    EdgeGuard,
    Rejection,
    count_rejection,
    peer_of,
)
from ingress.gateway import Gateway
from ingress.greeting import greet
from ingress.protocol import ProtocolError, Start
from ingress.session import CallerSession, protocol_error_event
from ingress.webrtc_media import MicDecoder
from ingress.webrtc_transport import WebRTCTransport
from schemas import BUS_SAMPLE_RATE

log = logging.getLogger(__name__)

CHANNEL = "voxbus"
"""Label of the data channel carrying the caller protocol."""
CONNECT_TIMEOUT_S = 10.0
"""A call whose data channel is not open this long after its answer is dropped (as a socket's start)."""
MAX_OFFER_BYTES = 64 * 1024
"""Largest SDP offer accepted (a browser's audio + data offer is 2-6 KB)."""
STATUS_OF_CLOSE = {CLOSE_BAD_REQUEST: 400, CLOSE_UNAUTHENTICATED: 401, CLOSE_FORBIDDEN: 403,
                   CLOSE_REPLACED: 409, CLOSE_LIMITED: 429}
"""Edge close code -> HTTP status of a refused offer (any other: 503, try again later)."""
START_FIELDS = ("session_id", "speak", "caller_id", "record", "language")
"""The start message's fields an offer's query may carry (:class:`ingress.protocol.Start`)."""
TICK_S = 1.0
"""How often a call checks its idle and length limits (s)."""


class WebRTCCall:
    """One caller's peer connection, running its :class:`~ingress.session.CallerSession`.

    Args:
        gateway: the ingress's Kafka side.
        guard: the edge checks (the admission is released through it).
        principal_id: who placed the call (only they may ``DELETE`` it).

    Raises:
        ValueError: a bad ``VOXBUS_WEBRTC_ICE_SERVERS``.
    """

    def __init__(self, gateway: Gateway, guard: EdgeGuard, principal_id: str) -> None:
        self.gateway, self.guard, self.principal_id = gateway, guard, principal_id
        self.settings = gateway.settings
        self.networks = webrtc_ice.parse_networks(self.settings.webrtc_ice_networks)
        self.pc = RTCPeerConnection(webrtc_ice.configuration(self.settings.webrtc_ice_servers))
        self.transport = WebRTCTransport(self.end)
        self.done = asyncio.Event()
        self.channel_open = asyncio.Event()
        self.mic: MediaStreamTrack | None = None
        self.mic_arrived = asyncio.Event()
        self.messages: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.last_activity = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    async def answer(self, offer: str) -> str:
        """Take the caller's offer (candidates outside the ICE networks dropped); the SDP answer.

        Raises:
            ValueError: aiortc cannot use the offer.
        """
        sdp = webrtc_ice.filter_candidates(offer, self.networks)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not any(t.kind == "audio" for t in self.pc.getTransceivers()):
            raise ValueError("the offer has no audio section")
        self.pc.addTrack(self.transport.track)
        with webrtc_ice.gathering_on(self.networks):
            await self.pc.setLocalDescription(await self.pc.createAnswer())  # gathers the host candidates
        return self.pc.localDescription.sdp

    def start(self, session: CallerSession, admission: Admission, new: bool) -> None:
        """Run the call in the background once answered (:meth:`run`); ``new``: not a reconnection."""
        self.task = asyncio.get_running_loop().create_task(self.run(session, admission, new))

    def end(self) -> None:
        """End the call (idempotent): the caller hung up, or the ingress closed it."""
        self.done.set()

    async def run(self, session: CallerSession, admission: Admission, new: bool) -> None:
        """Wait for the data channel, then serve the session until the call ends; release everything.

        A ``new`` session (not a reconnection) is greeted once open (:func:`ingress.greeting.greet`).
        """
        opened = time.monotonic()
        try:
            waits = [asyncio.ensure_future(event.wait()) for event in (self.channel_open, self.done)]
            await asyncio.wait(waits, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
            if not self.channel_open.is_set() or self.done.is_set():  # never connected, or hung up first
                if not self.done.is_set():
                    count_rejection("connect_timeout", CLOSE_TIMEOUT, session.session_id,
                                    f"no data channel within {CONNECT_TIMEOUT_S:g} s")
                self.guard.release(admission)
                return
            await attach(self.gateway, session)
            try:
                self.transport.confirm_heard = session.confirm_heard
                await session.open()
                if new:
                    await greet(session)
                await self._serve(session, opened)
            except Rejection as rejection:
                count_rejection(rejection.reason, rejection.code, session.session_id, str(rejection))
                await self.transport.send_event({"type": "error", "code": rejection.reason,
                                                 "message": str(rejection), "close_code": rejection.code})
                await self.transport.close(rejection.code, rejection.close_message)
            finally:
                await detach(self.gateway, self.guard, session, admission)
        finally:
            self.transport.ended = True
            self.transport.track.stop()
            await self.pc.close()

    async def _serve(self, session: CallerSession, opened: float) -> None:
        """Feed the microphone and the channel's messages to ``session`` until the call ends.

        Raises:
            Rejection: 4408 no media nor message for ``idle_timeout_s``; 4413 ``max_session_s`` reached.
        """
        settings = self.settings
        tasks = [asyncio.create_task(self._pump_mic(session)), asyncio.create_task(self._read(session))]
        try:
            while not self.done.is_set():
                now = time.monotonic()
                if now >= opened + settings.max_session_s:
                    raise Rejection(CLOSE_TOO_LONG, "session_too_long",
                                    f"sessions last at most {settings.max_session_s:g} s")
                if now - self.last_activity >= settings.idle_timeout_s:
                    raise Rejection(CLOSE_TIMEOUT, "idle_timeout",
                                    f"no audio nor message for {settings.idle_timeout_s:g} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.done.wait(), TICK_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump_mic(self, session: CallerSession) -> None:
        """The caller's decoded microphone frames, at the bus rate, into the session."""
        await self.mic_arrived.wait()
        assert self.mic is not None
        decoder = MicDecoder()
        while True:
            try:
                frame = await self.mic.recv()
            except MediaStreamError:
                return  # the peer connection closed: its state change ends the call
            self.last_activity = time.monotonic()
            pcm = decoder.pcm(frame)
            if pcm:
                await session.on_audio(pcm)

    async def _read(self, session: CallerSession) -> None:
        """The caller protocol's messages from the data channel (``text``, ``end``)."""
        while True:
            data = await self.messages.get()
            self.last_activity = time.monotonic()
            try:
                if not isinstance(data, str):
                    raise ProtocolError("expected_text", "data channel messages are JSON (audio: RTP)")
                if not await on_client_message(session, data):
                    self.end()
                    return
            except ProtocolError as exc:
                await session.send_json(protocol_error_event(exc))

    # -- aiortc events --------------------------------------------------------------------
    def _on_channel(self, channel: RTCDataChannel) -> None:
        if channel.label != CHANNEL or self.transport.channel is not None:
            return
        self.transport.channel = channel
        channel.on("message", self.messages.put_nowait)
        channel.on("close", self.end)
        if channel.readyState == "open":
            self.channel_open.set()
        else:
            channel.on("open", self.channel_open.set)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.mic is None:
            self.mic = track
            self.mic_arrived.set()

    def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self.end()


CALLS = web.AppKey("webrtc_calls", dict)
GATEWAY = web.AppKey("webrtc_gateway", Gateway)
GUARD = web.AppKey("webrtc_guard", EdgeGuard)


def _refused(rejection: Rejection, peer: str) -> web.Response:
    count_rejection(rejection.reason, rejection.code, peer, str(rejection))
    return web.json_response({"type": "error", "code": rejection.reason, "message": str(rejection),
                              "close_code": rejection.code}, status=STATUS_OF_CLOSE.get(rejection.code, 503))


def _bad_offer(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"type": "error", "code": code, "message": message,
                              "close_code": CLOSE_BAD_REQUEST}, status=status)


def _start_of(query: Any) -> Start:
    """The start message the offer's query parameters stand for (the socket's first frame).

    Raises:
        Rejection: 4400 ``bad_message``: a field the start message refuses.
    """
    fields: dict[str, Any] = {"type": "start", "sample_rate": BUS_SAMPLE_RATE}
    fields.update({name: query[name] for name in START_FIELDS if name in query})
    try:
        return Start.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Rejection(CLOSE_BAD_REQUEST, "bad_message",
                        f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None


async def _read_offer(request: web.Request) -> str | web.Response:
    """The request's SDP offer, or the 415/413/400 answer."""
    if request.content_type != "application/sdp":
        return _bad_offer(415, "bad_offer", "the body must be an SDP offer (Content-Type: application/sdp)")
    body = await request.content.read(MAX_OFFER_BYTES + 1)
    if len(body) > MAX_OFFER_BYTES:
        return _bad_offer(413, "offer_too_large", f"an offer has at most {MAX_OFFER_BYTES} bytes")
    try:
        sdp = body.decode("utf-8")
    except UnicodeDecodeError:
        return _bad_offer(400, "bad_offer", "the offer is not UTF-8 text")
    if not sdp.startswith("v=0") or "m=audio" not in sdp or "m=application" not in sdp:
        return _bad_offer(400, "bad_offer", "the offer needs an audio section and a data channel")
    return sdp


async def post_offer(request: web.Request) -> web.Response:
    """``POST /v1/webrtc``: admit the caller as a socket's, answer its offer, start its call (module doc)."""
    gateway, guard = request.app[GATEWAY], request.app[GUARD]
    peer = peer_of(request)
    try:
        guard.check_origin(request)
        principal = guard.authenticate(request)
        assert principal is not None
        start = _start_of(request.query)
    except Rejection as rejection:
        return _refused(rejection, peer)
    offer = await _read_offer(request)
    if isinstance(offer, web.Response):
        return offer
    named = start.session_id is not None
    session_id = start.session_id or uuid.uuid4().hex
    call = WebRTCCall(gateway, guard, principal.id)
    session = CallerSession(gateway, call.transport, session_id, BUS_SAMPLE_RATE, start.speak,
                            start.caller_id or "", record=start.record, language=start.language)
    try:
        admit_load(gateway, session_id, resuming=named)
        admission = guard.admit(principal, session_id, named=named)
        session.epoch = await guard.claim(admission, session.partition)
    except Rejection as rejection:
        await call.pc.close()
        return _refused(rejection, peer)
    try:
        answer = await call.answer(offer)
    except ValueError as exc:
        guard.release(admission)
        await call.pc.close()
        return _bad_offer(400, "bad_offer", f"the offer cannot be used: {str(exc)[:200]}")
    calls: dict[str, WebRTCCall] = request.app[CALLS]
    calls[session_id] = call
    call.start(session, admission, new=not named or admission.first)
    assert call.task is not None
    call.task.add_done_callback(lambda _: calls.pop(session_id) if calls.get(session_id) is call else None)
    log.info("webrtc call from %s: session %s", principal.id, session_id)
    return web.Response(status=201, text=answer, content_type="application/sdp",
                        headers={"Location": f"/v1/webrtc/{session_id}"})


async def delete_call(request: web.Request) -> web.Response:
    """``DELETE /v1/webrtc/{session_id}``: hang up a call this principal placed (204; 404 otherwise)."""
    try:
        principal = request.app[GUARD].authenticate(request)
    except Rejection as rejection:
        return _refused(rejection, peer_of(request))
    call = request.app[CALLS].get(request.match_info["session_id"])
    if call is None or principal is None or call.principal_id != principal.id:
        return web.json_response({"type": "error", "code": "not_found", "message": "no such call"},
                                 status=404)
    call.end()
    return web.Response(status=204)


async def _hang_up_all(app: web.Application) -> None:
    """Shutdown: end every call and wait for them (their sessions end on the bus before Kafka stops)."""
    calls = list(app[CALLS].values())
    for call in calls:
        await call.transport.close(1001, b"going_away: the ingress is shutting down")
    await asyncio.gather(*(c.task for c in calls if c.task is not None), return_exceptions=True)


def add_routes(app: web.Application, gateway: Gateway, guard: EdgeGuard) -> None:
    """Register ``/v1/webrtc`` on the ingress app.

    Raises:
        ValueError: a bad ``VOXBUS_WEBRTC_ICE_NETWORKS`` or ``VOXBUS_WEBRTC_ICE_SERVERS`` (checked here,
            not at the first call).
    """
    webrtc_ice.parse_ice_servers(gateway.settings.webrtc_ice_servers)
    webrtc_ice.parse_networks(gateway.settings.webrtc_ice_networks)
    app[GATEWAY], app[GUARD], app[CALLS] = gateway, guard, {}
    app.router.add_post("/v1/webrtc", post_offer)
    app.router.add_delete("/v1/webrtc/{session_id}", delete_call)
    app.on_shutdown.append(_hang_up_all)
