"""Recorded calls in, results out: ``POST /v1/calls``, ``GET /v1/calls/{id}`` and ``/v1/calls/{id}/audio``.

A posted recording (:mod:`ingress.recorded`) becomes a session of its own, marked
as batch work (``SessionControl.config["batch"]``): its audio is cut into bus chunks
as a caller's is (:class:`~ingress.audio.Chunker`) and produced to ``voxbus.audio``,
so the same stages (vad, asr, intent, retrieval, generation, tts) answer its turns
and the ingress publishes each turn's record on ``voxbus.turns``.

Batch work is kept off live callers' way by how it is fed: at most
``VOXBUS_CALLS_CONCURRENCY`` calls per ingress at once (the others wait their turn),
each produced at ``VOXBUS_CALLS_SPEED`` x real time, so the extra load is bounded
(one call at 4x is the audio of four callers); with ``VOXBUS_CALLS_YIELD`` (on by
default) the feed waits between two chunks while a live caller's turn is in flight on
any replica (:mod:`ingress.live_turns`), at most ``VOXBUS_CALLS_YIELD_MAX_S`` at a time;
a call is refused with 503 while admission control refuses new sessions
(:mod:`ingress.admission`).  Work of the call already on the bus is not held back: a
decode or a reply of the call in progress when a live turn starts runs to its end.

A call is ``done`` when the vad stage has committed past the call's ``end`` record
(every utterance is cut: the turns are known) and every turn is complete (its reply
text and audio received, or no speech heard, or an error), its record on
``voxbus.turns``.  A call not done ``VOXBUS_CALLS_TIMEOUT_S`` after its audio is
``failed``.  Calls live in the memory of the ingress that took them (the last
``VOXBUS_CALLS_KEPT``); only their principal may read them (404 for anyone else).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np
import soundfile
import soxr
from aiohttp import web
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ingress.audio import Chunker
from ingress.auth import CALLER, Principal
from ingress.edge import CLOSE_FORBIDDEN, CLOSE_LIMITED, Admission, EdgeGuard, Rejection
from ingress.gateway import Gateway
from ingress.live_turns import LiveLoad
from ingress.recorded import AudioInputError, decode, read_upload
from ingress.turns import Turn
from schemas import (
    BUS_SAMPLE_RATE,
    AudioChunk,
    ReplyText,
    SessionControl,
    SessionRecord,
    SynthAudio,
    VadEvent,
)
from streams.app import group_id
from streams.clients import security_kwargs
from streams.topics import AUDIO, TURNS

log = logging.getLogger(__name__)

DONE_POLL_S = 0.5
"""Interval between two looks at whether a call is done (s)."""
STATUS_OF_REJECTION = {CLOSE_LIMITED: 429, CLOSE_FORBIDDEN: 403}
"""Edge close code -> HTTP status for a refused call (any other: 503, try again later)."""


def error(status: int, code: str, message: str) -> web.Response:
    """A JSON error answer: ``{"error": code, "message": message}``."""
    return web.json_response({"error": code, "message": message}, status=status)


class RecordedCall:
    """One posted recording: its session on the bus, its turns as the egress reports them.

    It is the session object the gateway routes the call's egress events to
    (``deliver``, ``too_slow``), as for a connected caller.

    Args:
        gateway: the ingress's Kafka side.
        principal_id: who posted it (only they may read it).
        samples: int16 16 kHz mono audio, shape (n,).
    """

    def __init__(self, gateway: Gateway, principal_id: str, samples: np.ndarray) -> None:
        self.gateway = gateway
        self.id = uuid.uuid4().hex
        self.principal_id = principal_id
        self.samples = samples
        self.status = "running"
        self.error = ""
        self.epoch = 0
        self.partition = gateway.settings.ingress_slot
        self.turns: dict[str, Turn] = {}
        self.audio: dict[str, tuple[int, bytearray]] = {}
        self.published: set[str] = set()
        self.end: TopicPartition | None = None
        self.end_offset = -1
        self.yields: list[tuple[float, float]] = []
        """(monotonic s, s waited) of each wait of the feed for live turns (:meth:`feed`)."""

    # -- bus -> call --------------------------------------------------------------------
    async def deliver(self, event: SessionRecord) -> None:
        """Merge one egress event into its turn; publish the turn's record once it is complete."""
        turn_id = getattr(event, "turn_id", "")
        if not turn_id or turn_id in self.published:
            return
        turn = self.turns.setdefault(turn_id, Turn(turn_id))
        if isinstance(event, ReplyText | SynthAudio) and turn.repeats(event):
            return
        turn.absorb(event)  # type: ignore[arg-type]
        if isinstance(event, SynthAudio) and event.pcm:
            rate, pcm = self.audio.setdefault(turn_id, (event.sample_rate, bytearray()))
            same = event.sample_rate == rate
            pcm.extend(event.pcm if same else _resample(event.pcm, event.sample_rate, rate))
        if isinstance(event, VadEvent) and event.kind == "speech_end" and event.utterance and event.continues:
            earlier = self.turns.get(event.continues)  # its words are in this one (vad continuation)
            if earlier is not None:
                # superseded, even if it was answered already: at 4x real time its reply can be
                # over before the caller goes on, and the call's result would hold its words twice
                earlier.dropped = True
                if event.continues not in self.published:
                    await self._publish(earlier)
        if turn.complete:
            await self._publish(turn)

    async def _publish(self, turn: Turn) -> None:
        """The turn is over: remember it, and put its record on ``voxbus.turns`` (if words were heard)."""
        self.published.add(turn.turn_id)
        self.gateway.finished.add(self.id, turn.turn_id)
        if turn.transcript and not turn.dropped:
            await self.gateway.produce(TURNS, turn.record(self.id, self.partition))

    async def too_slow(self) -> None:
        """The call's egress mailbox overflowed (:mod:`ingress.mailbox`): the call fails."""
        self.status, self.error = "failed", "too_slow: the call's events could not be kept up with"

    # -- call -> bus --------------------------------------------------------------------
    async def feed(self, speed: float, live: LiveLoad | None = None) -> None:
        """Produce the session: ``start`` (batch), the audio chunks at ``speed`` x real time, ``end``.

        With ``live``, before each chunk the feed waits while a live caller's turn is in flight
        (:meth:`ingress.live_turns.LiveLoad.until_idle`, at most ``calls_yield_max_s`` at a
        time, each wait kept in :attr:`yields`); the time waited does not count against the pace
        (no burst after it).

        Raises:
            aiokafka.errors.KafkaError: the broker did not take a record.
        """
        settings = self.gateway.settings
        control = {"session_id": self.id, "egress_partition": self.partition, "epoch": self.epoch}
        await self.gateway.produce(AUDIO, SessionControl(**control, action="start", ts=time.time(),
                                                         config={"batch": True, "speak": True}))
        chunker = Chunker(BUS_SAMPLE_RATE, settings.chunk_ms)
        chunks = chunker.push(self.samples.astype("<i2").tobytes()) + chunker.flush()
        began, waited = time.monotonic(), 0.0
        for seq, (start_sample, pcm) in enumerate(chunks):
            ahead = start_sample / BUS_SAMPLE_RATE / speed - (time.monotonic() - began - waited)
            if ahead > 0:
                await asyncio.sleep(ahead)
            if live is not None and live.busy():
                at = time.monotonic()
                self.yields.append((at, await live.until_idle(settings.calls_yield_max_s)))
                waited += self.yields[-1][1]
            chunk = AudioChunk(**control, seq=seq, start_sample=start_sample, pcm=pcm, recv_ts=time.time())
            await self.gateway.produce(AUDIO, chunk)
        written = await self.gateway.produce(AUDIO, SessionControl(**control, action="end", ts=time.time()))
        self.end, self.end_offset = TopicPartition(AUDIO.name, written.partition), written.offset

    def all_answered(self) -> bool:
        """True when every turn the egress reported is over."""
        return all(turn_id in self.published for turn_id in self.turns)

    # -- call -> client -----------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The call as ``GET /v1/calls/{id}`` answers it: id, status, the turns in order, ``yielded_s``.

        ``yielded_s`` is how long its feed has waited for live turns so far (s).
        """
        order = sorted(self.turns, key=lambda t: int(t[1:]) if t[1:].isdigit() else 0)
        turns = [{"turn_id": t.turn_id, "transcript": t.transcript, "intent": t.intent or None,
                  "sentiment": t.sentiment if t.intent else None, "reply_text": t.reply_text}
                 for t in (self.turns[turn_id] for turn_id in order)
                 if t.transcript and not t.dropped]
        body: dict[str, Any] = {"id": self.id, "status": self.status, "turns": turns,
                                "yielded_s": round(sum(s for _, s in self.yields), 3)}
        if self.error:
            body["error"] = self.error
        return body

    def reply_wav(self) -> bytes:
        """The reply audio of every turn, in turn order, as one PCM16 mono WAV (at the voice's rate)."""
        order = sorted(self.audio, key=lambda t: int(t[1:]) if t[1:].isdigit() else 0)
        rate = self.audio[order[0]][0] if order else BUS_SAMPLE_RATE
        pcm = b"".join(bytes(self.audio[turn_id][1]) for turn_id in order)
        out = io.BytesIO()
        soundfile.write(out, np.frombuffer(pcm, dtype="<i2"), rate, format="WAV", subtype="PCM_16")
        return out.getvalue()


def _resample(pcm: bytes, rate: int, to_rate: int) -> bytes:
    """PCM16 mono ``pcm`` from ``rate`` to ``to_rate`` Hz (soxr)."""
    return soxr.resample(np.frombuffer(pcm, dtype="<i2"), rate, to_rate).astype("<i2").tobytes()


class CallService:
    """The recorded calls of this ingress: admit, feed (``calls_concurrency`` at a time), watch, keep.

    Args:
        gateway: the ingress's Kafka side (producer, egress routing, settings).
        guard: the edge checks (credentials, per-principal rate and concurrency limits).
    """

    def __init__(self, gateway: Gateway, guard: EdgeGuard) -> None:
        self.gateway = gateway
        self.guard = guard
        self.settings = gateway.settings
        self.calls: OrderedDict[str, RecordedCall] = OrderedDict()
        self.slots = asyncio.Semaphore(self.settings.calls_concurrency)
        self.tasks: set[asyncio.Task[None]] = set()
        self.admin: AIOKafkaAdminClient | None = None
        self.admin_lock = asyncio.Lock()

    async def _admin(self) -> AIOKafkaAdminClient:
        """The admin client that reads the vad stage's committed offsets, connected on first use.

        Connected lazily, so an ingress starts (and serves live callers) whether or not
        anyone posts a recording, and whatever the broker's state at start.
        """
        async with self.admin_lock:
            if self.admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.bootstrap,
                                            **security_kwargs(self.settings))
                await admin.start()
                self.admin = admin
            return self.admin

    async def stop(self) -> None:
        """Stop the calls in flight and close the admin client."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.admin is not None:
            await self.admin.close()

    def submit(self, call: RecordedCall, admission: Admission) -> None:
        """Keep ``call`` (forgetting the oldest finished ones beyond ``calls_kept``) and run it."""
        self.calls[call.id] = call
        while len(self.calls) > self.settings.calls_kept:
            oldest = next((c for c in self.calls.values() if c.status != "running"), None)
            if oldest is None:
                break
            del self.calls[oldest.id]
        task = asyncio.get_running_loop().create_task(self._run(call, admission), name=f"call-{call.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, call: RecordedCall, admission: Admission) -> None:
        """Feed the call when a slot is free, then wait for it to be done (or fail)."""
        try:
            async with self.slots:
                call.epoch = await self.guard.claim(admission, call.partition)
                self.gateway.sessions[call.id] = call
                live = self.gateway.live if self.settings.calls_yield else None
                await call.feed(self.settings.calls_speed, live)
                await self._until_done(call)
        except Rejection as rejection:
            call.status, call.error = "failed", f"{rejection.reason}: {rejection}"
        except Exception as exc:  # the broker failed us: the call fails, the ingress goes on
            log.warning("recorded call %s failed: %s: %s", call.id, type(exc).__name__, exc)
            call.status, call.error = "failed", f"internal: {type(exc).__name__}"
        finally:
            if self.gateway.sessions.get(call.id) is call:
                del self.gateway.sessions[call.id]
            self.guard.release(admission)

    async def _until_done(self, call: RecordedCall) -> None:
        """Wait until the vad stage is past the call's end and every turn is over; or time out."""
        deadline = time.monotonic() + self.settings.calls_timeout_s
        while call.status == "running":
            if await self._vad_past_end(call) and call.all_answered():
                call.status = "done"
                return
            if time.monotonic() > deadline:
                call.status = "failed"
                call.error = f"timeout: not done in {self.settings.calls_timeout_s:g} s"
                return
            await asyncio.sleep(DONE_POLL_S)

    async def _vad_past_end(self, call: RecordedCall) -> bool:
        """True once the vad stage's group has committed past the call's ``end`` record."""
        assert call.end is not None
        admin = await self._admin()
        offsets = await admin.list_consumer_group_offsets(group_id("vad"), partitions=[call.end])
        meta = offsets.get(call.end)
        return meta is not None and meta.offset > call.end_offset


SERVICE = web.AppKey("calls", CallService)


def _principal(request: web.Request) -> Principal | web.Response:
    """The caller's principal (as on the sockets), or the 401 JSON answer."""
    try:
        return request.app[SERVICE].guard.authorize(request, CALLER)
    except web.HTTPUnauthorized as exc:
        return error(401, "unauthenticated", exc.text or "credentials required")


def _owned(request: web.Request) -> RecordedCall | web.Response:
    """The call named in the path, if the caller posted it; else the 401 or 404 JSON answer."""
    principal = _principal(request)
    if isinstance(principal, web.Response):
        return principal
    call = request.app[SERVICE].calls.get(request.match_info["id"])
    if call is None or call.principal_id != principal.id:
        return error(404, "not_found", "no such call")
    return call


async def post_call(request: web.Request) -> web.Response:
    """``POST /v1/calls``: take a recording, start its session; 202 ``{"id", "status": "running"}``."""
    service = request.app[SERVICE]
    principal = _principal(request)
    if isinstance(principal, web.Response):
        return principal
    settings = service.settings
    try:
        samples = decode(await read_upload(request, settings.calls_max_bytes), settings.max_session_s)
    except AudioInputError as exc:
        return error(exc.status, exc.code, str(exc))
    call = RecordedCall(service.gateway, principal.id, samples)
    try:
        service.gateway.admission.check()
        admission = service.guard.admit(principal, call.id, named=False)
    except Rejection as rejection:
        return error(STATUS_OF_REJECTION.get(rejection.code, 503), rejection.reason, str(rejection))
    service.submit(call, admission)
    seconds = samples.size / BUS_SAMPLE_RATE
    log.info("recorded call %s: %.1f s of audio from %s", call.id, seconds, principal.id)
    return web.json_response({"id": call.id, "status": call.status}, status=202)


async def get_call(request: web.Request) -> web.Response:
    """``GET /v1/calls/{id}``: ``{id, status, turns: [{transcript, intent, sentiment, reply_text}]}``."""
    call = _owned(request)
    if isinstance(call, web.Response):
        return call
    return web.json_response(call.view())


async def get_call_audio(request: web.Request) -> web.Response:
    """``GET /v1/calls/{id}/audio``: the reply audio as WAV once the call is done (409 before)."""
    call = _owned(request)
    if isinstance(call, web.Response):
        return call
    if call.status == "running":
        return error(409, "not_done", "the call is still running")
    return web.Response(body=call.reply_wav(), content_type="audio/wav")


def add_routes(app: web.Application, gateway: Gateway, guard: EdgeGuard) -> None:
    """Serve the recorded-call API on ``app`` (its service starts and stops with the app)."""
    app[SERVICE] = CallService(gateway, guard)

    async def lifecycle(app: web.Application) -> Any:
        yield
        with contextlib.suppress(Exception):
            await app[SERVICE].stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/v1/calls", post_call)
    app.router.add_get("/v1/calls/{id}", get_call)
    app.router.add_get("/v1/calls/{id}/audio", get_call_audio)
