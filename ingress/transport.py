"""How a caller session talks back to its caller: the transport adapter of :class:`CallerSession`.

A :class:`~ingress.session.CallerSession` runs the conversation (chunking, turns,
barge-in) and speaks to its caller only through a :class:`Transport`: send an event,
send reply audio, stop playback, close.  ``/v1/stream`` uses :class:`JsonTransport`
(JSON events + binary PCM16 frames); ``/v1/twilio`` uses
:class:`ingress.twilio.TwilioTransport` (Twilio Media Streams ``media``/``mark``/``clear``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from aiohttp import web


class Transport(Protocol):
    """What a session needs from its caller's connection."""

    @property
    def closed(self) -> bool:
        """True once the connection is gone (sends are then dropped)."""

    async def send_event(self, payload: dict[str, Any]) -> None:
        """Send one caller-protocol event (``ready``, ``transcript``, ``turn_end``...)."""

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        """Play PCM16LE mono reply audio; ``offset``: the turn's byte offset at its end."""

    async def stop_playback(self, turn_id: str) -> None:
        """Barge-in: the caller must stop playing ``turn_id`` now and drop what it buffered."""

    async def close(self, code: int, message: bytes) -> None:
        """Close the connection with a WebSocket close code."""


class JsonTransport:
    """``/v1/stream``: JSON text events; reply audio as a ``reply_audio`` header then one binary frame.

    Args:
        ws: the caller's socket.
    """

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.lock = asyncio.Lock()  # a reply_audio header and its binary frame are never split

    @property
    def closed(self) -> bool:
        """True once the socket is closed or closing."""
        return self.ws.closed

    async def send_event(self, payload: dict[str, Any]) -> None:
        """Send one JSON event if the socket is still open."""
        async with self.lock:
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        """One ``reply_audio`` header and its binary frame (none when ``bytes`` is 0).

        The header's ``offset`` is the turn's reply byte offset at the frame's end, so a client
        can tell a frame delivered twice from the next one.
        """
        header = {"type": "reply_audio", "turn_id": turn_id, "sample_rate": sample_rate, "final": final,
                  "bytes": len(pcm), "offset": offset}
        async with self.lock:
            if self.ws.closed:
                return
            await self.ws.send_str(json.dumps(header))
            if pcm and not self.ws.closed:
                await self.ws.send_bytes(pcm)

    async def stop_playback(self, turn_id: str) -> None:
        """The ``playback_stop`` event: the client flushes its audio queue."""
        await self.send_event({"type": "playback_stop", "turn_id": turn_id})

    async def close(self, code: int, message: bytes) -> None:
        """Close the socket."""
        if not self.ws.closed:
            await self.ws.close(code=code, message=message)
