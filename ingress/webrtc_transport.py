"""The WebRTC transport of a :class:`~ingress.session.CallerSession`: events on a data channel, audio on RTP.

The caller protocol's events are the WebSocket's (:mod:`ingress.protocol`), as JSON text
messages on the ``voxbus`` data channel the caller opens.  Reply audio goes out on the
peer connection's audio track (:class:`~ingress.webrtc_media.ReplyTrack`) instead of binary
frames, so ``reply_audio`` is a header alone (``bytes``: how much was queued, ``offset``:
the turn's byte offset at its end).  Two events exist only here:

* ``reply_played`` ``{turn_id, offset}``: a segment announced by ``reply_audio`` has gone out
  to the caller (the page counts it played; jitter buffering adds a few tens of ms);
* ``close`` ``{code, reason}``: the ingress ends the call with a WebSocket close code
  (:mod:`ingress.edge`), then closes the peer connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import RTCDataChannel

from ingress.webrtc_media import ReplyTrack

log = logging.getLogger(__name__)


class WebRTCTransport:
    """A session's caller on a peer connection.

    Args:
        on_close: called once when the ingress closes the call (:meth:`close`); it ends the peer connection.

    Attributes:
        channel: the caller's ``voxbus`` data channel, once it has arrived.
        track: the reply audio track (add it to the peer connection).
        confirm_heard: ``(turn_id, heard_bytes)``: the playback position as the reply track plays
            (:meth:`~ingress.session.CallerSession.confirm_heard`); set once the session exists.
    """

    def __init__(self, on_close: Callable[[], None]) -> None:
        self.channel: RTCDataChannel | None = None
        self.track = ReplyTrack(self._progress)
        self.on_close = on_close
        self.confirm_heard: Callable[[str, int], None] | None = None
        self.ended = False

    @property
    def closed(self) -> bool:
        """True until the data channel is open, and once the call is over (sends are then dropped)."""
        return self.ended or self.channel is None or self.channel.readyState != "open"

    async def send_event(self, payload: dict[str, Any]) -> None:
        """Send one caller-protocol event on the data channel, if it is open."""
        if not self.closed:
            self.channel.send(json.dumps(payload))  # type: ignore[union-attr]

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        """Queue reply audio on the track and announce it (``reply_audio``, a header without a frame)."""
        if self.closed or not sample_rate:
            return
        self.track.enqueue(turn_id, pcm, sample_rate, final, offset)
        await self.send_event({"type": "reply_audio", "turn_id": turn_id, "sample_rate": sample_rate,
                               "final": final, "bytes": len(pcm), "offset": offset})

    async def stop_playback(self, turn_id: str) -> None:
        """Barge-in: drop the turn's queued audio from the track, and tell the page (``playback_stop``)."""
        self.track.flush(turn_id)
        await self.send_event({"type": "playback_stop", "turn_id": turn_id})

    async def close(self, code: int, message: bytes) -> None:
        """Tell the caller why (``close``), then end the call."""
        if self.ended:
            return
        await self.send_event({"type": "close", "code": code, "reason": message.decode(errors="replace")})
        self.ended = True
        self.on_close()

    def _progress(self, turn_id: str, heard: int, done: bool) -> None:
        if self.confirm_heard is not None:
            self.confirm_heard(turn_id, heard)
        if done and not self.closed:
            self.channel.send(json.dumps({"type": "reply_played", "turn_id": turn_id,  # type: ignore[union-attr]
                                          "offset": heard}))
