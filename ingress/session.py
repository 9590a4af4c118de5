"""One caller's WebSocket session at the ingress."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ingress import metrics
from ingress.audio import Chunker
from ingress.protocol import ProtocolError, Start
from ingress.turns import Turn
from schemas import (
    AudioChunk, ErrorEvent, IntentResult, ReplyText, SessionControl, SessionRecord, SynthAudio, Transcript,
    VadEvent,
)
from streams.topics import AUDIO, TRANSCRIPTS, TURNS

if TYPE_CHECKING:
    from ingress.gateway import Gateway

log = logging.getLogger(__name__)


class CallerSession:
    """Audio in, events out, for one session id on one socket.

    Args:
        gateway: the ingress's Kafka side (producer, routing).
        ws: the caller's socket.
        session_id: the session.
        start: the caller's start message.
    """

    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse, session_id: str, start: Start) -> None:
        self.gateway = gateway
        self.ws = ws
        self.session_id = session_id
        self.speak = start.speak
        self.chunker = Chunker(start.sample_rate, gateway.settings.chunk_ms)
        self.seq = 0
        self.turns: dict[str, Turn] = {}
        self.partition = gateway.settings.ingress_slot

    # -- caller -> bus ------------------------------------------------------------------
    async def open(self) -> None:
        """Announce the session on the bus and tell the caller it is ready."""
        await self.gateway.produce(AUDIO, SessionControl(
            session_id=self.session_id, egress_partition=self.partition, action="start",
            config={"speak": self.speak}, ts=time.time(),
        ))
        await self.send_json({"type": "ready", "session_id": self.session_id,
                              "sample_rate": 16000, "chunk_ms": self.gateway.settings.chunk_ms})

    async def on_audio(self, frame: bytes) -> None:
        """Chunk one PCM frame onto ``voxbus.audio``.

        Raises:
            ProtocolError: the frame is not valid PCM16.
        """
        now = time.time()
        for start_sample, pcm in self.chunker.push(frame):
            await self._produce_chunk(start_sample, pcm, now)

    async def _produce_chunk(self, start_sample: int, pcm: bytes, recv_ts: float) -> None:
        await self.gateway.produce(AUDIO, AudioChunk(
            session_id=self.session_id, egress_partition=self.partition, seq=self.seq,
            start_sample=start_sample, pcm=pcm, recv_ts=recv_ts,
        ))
        self.seq += 1

    async def on_text(self, text: str) -> None:
        """Start a text-channel turn: straight to ``voxbus.transcripts``, no vad/asr/tts."""
        now = time.time()
        turn_id = f"t{int(now * 1000)}"
        transcript = Transcript(
            session_id=self.session_id, egress_partition=self.partition, turn_id=turn_id, text=text,
            source="text", speak=False, marks={"ingress.text": now},
        )
        turn = self.turns[turn_id] = Turn(turn_id, source="text", speak=False)
        turn.absorb(transcript)
        await self.gateway.produce(TRANSCRIPTS, transcript)

    async def close(self) -> None:
        """Flush the last audio and end the session on the bus."""
        now = time.time()
        for start_sample, pcm in self.chunker.flush():
            await self._produce_chunk(start_sample, pcm, now)
        await self.gateway.produce(AUDIO, SessionControl(
            session_id=self.session_id, egress_partition=self.partition, action="end", ts=now,
        ))

    # -- bus -> caller ------------------------------------------------------------------
    async def deliver(self, event: SessionRecord) -> None:
        """Send one egress event to the caller and close its turn when complete."""
        turn_id = getattr(event, "turn_id", "")
        turn = self.turns.setdefault(turn_id, Turn(turn_id)) if turn_id else None
        if turn is not None:
            turn.absorb(event)  # type: ignore[arg-type]
        await self.send_event(event)
        if turn is not None and turn.complete:
            await self.finish_turn(turn)

    async def send_event(self, event: SessionRecord) -> None:
        """Translate a bus record into the caller protocol."""
        if isinstance(event, VadEvent):
            kind = "speech_started" if event.kind == "speech_start" else "speech_ended"
            await self.send_json({"type": kind, "turn_id": event.turn_id})
        elif isinstance(event, Transcript):
            await self.send_json({"type": "transcript", "turn_id": event.turn_id, "text": event.text,
                                  "source": event.source})
        elif isinstance(event, IntentResult):
            await self.send_json({"type": "intent", "turn_id": event.turn_id, "intent": event.intent,
                                  "confidence": event.confidence, "sentiment": event.sentiment,
                                  "sentiment_score": event.sentiment_score})
        elif isinstance(event, ReplyText):
            await self.send_json({"type": "reply_text", "turn_id": event.turn_id, "index": event.index,
                                  "text": event.text, "final": event.final})
        elif isinstance(event, SynthAudio):
            await self.send_json({"type": "reply_audio", "turn_id": event.turn_id, "index": event.index,
                                  "seq": event.seq, "sample_rate": event.sample_rate, "final": event.final,
                                  "bytes": len(event.pcm)})
            if event.pcm and not self.ws.closed:
                await self.ws.send_bytes(event.pcm)
        elif isinstance(event, ErrorEvent):
            await self.send_error(event.code, event.message, turn_id=event.turn_id, stage=event.stage)

    async def finish_turn(self, turn: Turn) -> None:
        """Tell the caller the turn is over and publish its analytics record."""
        self.turns.pop(turn.turn_id, None)
        record = turn.record(self.session_id, self.partition)
        await self.send_json({"type": "turn_end", "turn_id": turn.turn_id, "transcript": turn.transcript,
                              "intent": turn.intent, "reply_text": record.reply_text,
                              "latency_ms": record.latency_ms, "voice_to_voice_ms": record.voice_to_voice_ms})
        if not turn.transcript:
            return  # no speech recognized: nothing to analyse
        await self.gateway.produce(TURNS, record)
        metrics.TURNS.labels(record.source).inc()
        if record.voice_to_voice_ms is not None:
            metrics.VOICE_TO_VOICE.observe(record.voice_to_voice_ms / 1000.0)
        for span, ms in record.latency_ms.items():
            metrics.STAGE_LATENCY.labels(span).observe(ms / 1000.0)

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one JSON event if the socket is still open."""
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(payload))

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        """Send an ``error`` event."""
        await self.send_json({"type": "error", "code": code, "message": message, **extra})


def protocol_error_event(exc: ProtocolError) -> dict[str, str]:
    """The ``error`` event for a protocol violation."""
    metrics.REJECTIONS.labels(exc.code).inc()
    return {"type": "error", "code": exc.code, "message": str(exc)}
