"""A caller for ``/v1/stream``: stream a recording (``voxbus call``) or type a turn (``voxbus ask``).

A dropped connection (the ingress restarted, the network blinked) is reopened with
the same ``session_id`` and exponential backoff (:func:`connect`, :class:`Line`);
refusals (:data:`REFUSALS`) are not retried.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile
import soxr

from ingress.protocol import SUPPORTED_RATES

FRAME_MS = 20
"""Caller frame size (ms), as a telephony or WebRTC client sends."""
TRAILING_SILENCE_S = 1.5
"""Silence streamed after the recording before the caller may hang up (s): lets the VAD endpoint."""
REFUSALS = frozenset({1009, 4400, 4401, 4403, 4413})
"""Close codes that refuse the caller (bad request, credentials, too long): never retried."""
BACKOFF_S = (0.25, 1.0)
"""First and longest wait between two connection attempts (s); doubles in between.  A restarted
ingress serves again within seconds, and a caller retrying every 4 s lost up to 4 s of it
(``make chaos``); a refused connection costs the server nothing."""
RECONNECT_FOR_S = 60.0
"""How long :func:`call` keeps trying to reopen a dropped connection (s)."""


@dataclass
class TurnResult:
    """What the caller got for one turn (the keys printed by ``voxbus call``/``ask``)."""

    turn_id: str
    transcript: str = ""
    intent: str = ""
    reply_text: str = ""
    reply_audio: bytearray = field(default_factory=bytearray)
    reply_sample_rate: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    voice_to_voice_ms: float | None = None
    first_audio_at: float | None = None
    errors: list[str] = field(default_factory=list)

    def summary(self, audio_path: str | None = None) -> dict[str, Any]:
        """JSON-ready summary; ``reply_audio`` is the WAV path (or the byte count)."""
        seconds = len(self.reply_audio) / 2 / self.reply_sample_rate if self.reply_sample_rate else 0.0
        return {
            "turn_id": self.turn_id,
            "transcript": self.transcript,
            "intent": self.intent,
            "reply_text": self.reply_text,
            "reply_audio": {"path": audio_path, "seconds": round(seconds, 2)},
            "latency_ms": {**self.latency_ms, "voice_to_voice": self.voice_to_voice_ms},
            "errors": self.errors,
        }


def load_pcm16(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV/FLAC file as mono int16, resampled to 16 kHz if its rate is unsupported.

    Returns:
        (samples int16 of shape (n,), sample rate in Hz)

    Raises:
        soundfile.LibsndfileError: unreadable file.
    """
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate not in SUPPORTED_RATES:
        mono, rate = soxr.resample(mono, rate, 16000), 16000
    return (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16), rate


def write_wav(path: str | Path, pcm: bytes, sample_rate: int) -> None:
    """Write PCM16LE mono ``pcm`` at ``sample_rate`` Hz as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm)


class Receiver:
    """Collect server events into :class:`TurnResult` objects."""

    def __init__(self) -> None:
        self.turns: dict[str, TurnResult] = {}
        self.done: list[TurnResult] = []
        self.pending_audio: dict[str, Any] | None = None
        self.last_event = time.monotonic()
        self.errors: list[dict[str, Any]] = []
        self.lost: list[TurnResult] = []
        self.turn_finished = asyncio.Event()

    def abandon_open_turns(self) -> None:
        """The connection dropped: turns still open will not end on it (moved to :attr:`lost`)."""
        for turn in self.turns.values():
            turn.errors.append("connection_lost: the connection dropped before the turn ended")
            self.lost.append(turn)
        self.turns.clear()
        self.pending_audio = None

    def turn(self, turn_id: str) -> TurnResult:
        """The result object of ``turn_id``."""
        return self.turns.setdefault(turn_id, TurnResult(turn_id))

    def on_binary(self, data: bytes) -> None:
        """Attach one audio frame to the turn announced by the last ``reply_audio`` header."""
        header, self.pending_audio = self.pending_audio, None
        if header is None:
            return
        turn = self.turn(header["turn_id"])
        turn.first_audio_at = turn.first_audio_at or time.monotonic()
        turn.reply_sample_rate = header["sample_rate"]
        turn.reply_audio.extend(data)

    def on_event(self, event: dict[str, Any]) -> None:
        """Apply one JSON event."""
        self.last_event = time.monotonic()
        kind, turn_id = event.get("type"), event.get("turn_id", "")
        if kind == "reply_audio":
            self.pending_audio = event if event.get("bytes") else None
        elif kind == "error":
            self.errors.append(event)
            if turn_id:
                self.turn(turn_id).errors.append(f"{event.get('code')}: {event.get('message')}")
        elif kind == "turn_end":
            turn = self.turns.pop(turn_id, TurnResult(turn_id))
            turn.transcript, turn.intent = event["transcript"], event["intent"]
            turn.reply_text, turn.latency_ms = event["reply_text"], event["latency_ms"]
            turn.voice_to_voice_ms = event["voice_to_voice_ms"]
            if turn.transcript:
                self.done.append(turn)
            self.turn_finished.set()
        elif turn_id:
            self.turn(turn_id)

    async def run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read the socket until it closes."""
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.on_event(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.on_binary(msg.data)


class Refused(RuntimeError):
    """The server refused the session (``code``: its close code, if it closed the socket)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


async def _open(session: aiohttp.ClientSession, url: str,
                start: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    ws = await session.ws_connect(url, max_msg_size=16 * 1024 * 1024)
    await ws.send_str(json.dumps({"type": "start", **start}))
    msg = await ws.receive(timeout=30)
    ready = json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT else {}
    if ready.get("type") != "ready":
        await ws.close()
        raise Refused(f"session refused: {ready or msg}", ready.get("close_code") or ws.close_code)
    return ws, ready


async def connect(session: aiohttp.ClientSession, url: str, start: dict[str, Any],
                  retry_for_s: float = 0.0) -> tuple[aiohttp.ClientWebSocketResponse, dict[str, Any]]:
    """Open a session on ``url`` (``start``: the start message's fields but ``type``).

    While the ingress is unreachable or restarting, retries with exponential backoff
    (:data:`BACKOFF_S`) for up to ``retry_for_s`` seconds.

    Returns:
        (the socket, the ``ready`` event)

    Raises:
        Refused: the server refused the session with one of :data:`REFUSALS`, or kept
            refusing it until ``retry_for_s`` ran out.
        aiohttp.ClientError | OSError | TimeoutError: unreachable after ``retry_for_s``.
    """
    deadline = time.monotonic() + retry_for_s
    wait = BACKOFF_S[0]
    while True:
        try:
            return await _open(session, url, start)
        except Refused as exc:
            if exc.code in REFUSALS or time.monotonic() + wait > deadline:
                raise
        except (aiohttp.ClientError, OSError, TimeoutError):
            if time.monotonic() + wait > deadline:
                raise
        await asyncio.sleep(wait)
        wait = min(BACKOFF_S[1], 2 * wait)


class Line:
    """A caller's connection that comes back: a dropped socket is reopened with the same session id.

    Args:
        http: the client session.
        url: the ``/v1/stream`` URL.
        start: the start message's fields (``session_id`` is filled in once known).
        receiver: gets every event, across connections.
        reconnect_for_s: how long to keep trying to reopen (s).
    """

    def __init__(self, http: aiohttp.ClientSession, url: str, start: dict[str, Any], receiver: Receiver,
                 reconnect_for_s: float = RECONNECT_FOR_S) -> None:
        self.http, self.url, self.start, self.receiver = http, url, dict(start), receiver
        self.reconnect_for_s = reconnect_for_s
        self.reconnects = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, retry_for_s: float = 0.0) -> dict[str, Any]:
        """Open the session (the first time, or again); return the ``ready`` event."""
        self.ws, ready = await connect(self.http, self.url, self.start, retry_for_s)
        self.start["session_id"] = ready["session_id"]
        self.reader = asyncio.create_task(self.receiver.run(self.ws))
        return ready

    async def send_bytes(self, data: bytes) -> None:
        """Send one audio frame; if the connection dropped, reopen it first (the frame is then sent there).

        Raises:
            Refused: the server refused the resumed session.
        """
        assert self.ws is not None
        if self.ws.closed:
            await self.reopen()
        try:
            await self.ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            await self.reopen()

    async def reopen(self) -> None:
        """Reopen a dropped connection with the same session id (open turns are abandoned).

        Raises:
            Refused: the socket was closed with a refusal, or the session was refused again.
        """
        assert self.ws is not None
        if self.ws.close_code in REFUSALS:
            raise Refused(f"the server closed the session with {self.ws.close_code}", self.ws.close_code)
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        self.receiver.abandon_open_turns()
        await self.open(self.reconnect_for_s)
        self.reconnects += 1

    async def close(self) -> None:
        """Hang up (``end``) and close the socket."""
        if self.ws is not None and not self.ws.closed:
            await self.ws.send_str(json.dumps({"type": "end"}))
            await self.ws.close()
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)


async def call(url: str, path: str | Path, realtime: bool = True, timeout_s: float = 120.0,
               session_id: str | None = None, speak: bool = True, language: str = "") -> list[TurnResult]:
    """Stream a recording as a caller would and return every answered turn.

    The recording is sent in :data:`FRAME_MS` frames (at real time unless
    ``realtime`` is False), followed by silence until every started turn has ended,
    then the caller hangs up.  A dropped connection is reopened with the same session
    id (:class:`Line`); turns open at the drop are not returned.  With ``speak`` False
    the replies come as text only (the start message's ``speak``); ``language`` is the start
    message's (a BCP-47 tag or ``auto``; empty: not sent, English).

    Raises:
        Refused: the server refused the session.
        TimeoutError: turns still open after ``timeout_s`` seconds.
    """
    samples, rate = load_pcm16(path)
    frame = rate * FRAME_MS // 1000
    silence = np.zeros(frame, dtype=np.int16).tobytes()
    async with aiohttp.ClientSession() as http:
        start: dict[str, Any] = {"sample_rate": rate, "speak": speak}
        if language:
            start["language"] = language
        if session_id:
            start["session_id"] = session_id
        receiver = Receiver()
        line = Line(http, url, start, receiver)
        await line.open()
        started = time.monotonic()
        deadline = started + timeout_s
        for sent, offset in enumerate(range(0, samples.size, frame), start=1):
            await line.send_bytes(samples[offset:offset + frame].tobytes())
            if realtime:
                await asyncio.sleep(max(0.0, started + sent * FRAME_MS / 1000 - time.monotonic()))
        audio_end = time.monotonic()
        while time.monotonic() < deadline:
            quiet = time.monotonic() - max(audio_end, receiver.last_event)
            if time.monotonic() - audio_end > TRAILING_SILENCE_S and not receiver.turns and quiet > 1.0:
                break
            await line.send_bytes(silence)
            await asyncio.sleep(FRAME_MS / 1000)
        else:
            raise TimeoutError(f"turns {sorted(receiver.turns)} still open after {timeout_s:.0f} s")
        await line.close()
    return receiver.done


async def ask(url: str, text: str, timeout_s: float = 60.0, session_id: str | None = None,
              language: str = "") -> TurnResult:
    """Send one text-channel turn (in ``language``, a BCP-47 tag; empty: English) and wait for its reply.

    Raises:
        RuntimeError: the server refused the session or reported an error.
        TimeoutError: no reply within ``timeout_s`` seconds.
    """
    async with aiohttp.ClientSession() as http:
        start: dict[str, Any] = {"sample_rate": 16000, "speak": False}
        if language:
            start["language"] = language
        if session_id:
            start["session_id"] = session_id
        ws, _ready = await _open(http, url, start)
        receiver = Receiver()
        reader = asyncio.create_task(receiver.run(ws))
        await ws.send_str(json.dumps({"type": "text", "text": text}))
        try:
            await asyncio.wait_for(receiver.turn_finished.wait(), timeout_s)
        finally:
            await ws.close()
            await asyncio.gather(reader, return_exceptions=True)
        if not receiver.done:
            raise RuntimeError(f"no answer: {receiver.errors}")
        return receiver.done[0]
