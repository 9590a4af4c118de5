"""An agent's voice on one call, at the agent's replica: to the caller, to the transcriber, to the record.

Each bus chunk of the agent's microphone (cut as a caller's is, ``VOXBUS_CHUNK_MS``) becomes two
records:

* a :class:`schemas.AgentAudio` on ``voxbus.egress``, produced to the caller's partition (the
  replica holding the caller plays it, :mod:`ingress.agents.voice_play`);
* an :class:`schemas.AudioChunk` of the session's agent leg (:func:`schemas.agent_leg`) on
  ``voxbus.audio``: vad and asr transcribe it (the generation stage never answers it).

The leg's events come back on this replica's egress partition (:meth:`AgentLeg.deliver`): the
agent's page sees them like a caller's (``speech_started``, ``transcript``, ``turn_end``), every
console gets the words as an ``agent`` transcript line (:class:`schemas.HandoffUpdate`), and each
finished turn is a :class:`schemas.TurnRecord` of the caller's session with ``speaker="agent"``
on ``voxbus.turns``.  The leg reports each turn as replied at its end (``SessionControl``
``replied``), so an agent's next words are never taken as a continuation of the last.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ingress.agents.queue import AgentQueue, DeskSession
from ingress.audio import Chunker
from ingress.backpressure import Outbox
from ingress.edge import CLOSE_TOO_SLOW
from ingress.transport import Transport
from ingress.turns import Turn
from schemas import (
    AgentAudio,
    AudioChunk,
    ErrorEvent,
    HandoffUpdate,
    IntentResult,
    Record,
    SessionControl,
    SessionRecord,
    Transcript,
    VadEvent,
    agent_leg,
)
from streams.topics import AUDIO, EGRESS, HANDOFFS, TURNS

log = logging.getLogger(__name__)

TURN_PREFIX = "agent."
"""Prefix of an agent turn's id in the caller's session (transcript lines, turn records)."""


class AgentLeg:
    """One agent voice connection (an ``epoch``) on one handed-off session.

    Registered in the gateway's ``sessions`` under :attr:`leg_id`, so the leg's egress events
    reach :meth:`deliver`.

    Args:
        gateway: the ingress's Kafka side (``produce``, ``audio_budget``, ``settings``).
        queue: the shared queue (the agent's transcript lines are folded at once).
        session: the handed-off session the agent holds.
        agent: who speaks.
        transport: the agent's socket (events and audio to their page).
        sample_rate: Hz of the agent's PCM16 frames.

    Raises:
        ProtocolError: unsupported ``sample_rate``.
    """

    def __init__(self, gateway: Any, queue: AgentQueue, session: DeskSession, agent: str,
                 transport: Transport, sample_rate: int) -> None:
        settings = gateway.settings
        self.gateway = gateway
        self.queue = queue
        self.session_id = session.session_id
        self.caller_partition = session.egress_partition
        """Where the caller's replica reads (updated from the caller's own chunks, :meth:`caller_seen`)."""
        self.agent = agent
        self.transport = transport
        self.leg_id = agent_leg(session.session_id)
        self.partition = settings.ingress_slot
        self.epoch = int(time.time() * 1000)
        self.chunker = Chunker(sample_rate, settings.chunk_ms)
        budget, max_bytes = gateway.audio_budget, int(settings.session_buffer_s * 32000)
        self.to_stages = Outbox(lambda record: gateway.produce(AUDIO, record), budget, max_bytes)
        self.to_caller = Outbox(lambda record: gateway.produce(EGRESS, record), budget, max_bytes)
        self.seq = 0
        self.turns: dict[str, Turn] = {}
        self.closed = False

    def control(self, action: str, turn_id: str = "") -> None:
        """Queue a :class:`schemas.SessionControl` of the leg (``start``, ``replied``, ``end``)."""
        self.to_stages.put(SessionControl(
            session_id=self.leg_id, egress_partition=self.partition, epoch=self.epoch,
            action=action, turn_id=turn_id, config={"speak": False}, ts=time.time(),  # type: ignore[arg-type]
        ))

    def caller_seen(self, chunk: AudioChunk) -> None:
        """The caller's replica is the one of their latest chunk (a reconnected caller may have moved)."""
        self.caller_partition = chunk.egress_partition

    def on_audio(self, frame: bytes) -> int:
        """Cut one frame of the agent's microphone into bus chunks for the caller and the transcriber.

        Returns:
            How many chunks were shed (the broker is behind; the caller hears a gap).

        Raises:
            ProtocolError: the frame is not valid PCM16.
        """
        if self.closed:
            return 0
        now = time.time()
        return sum(not self._chunk(start, pcm, now) for start, pcm in self.chunker.push(frame))

    def _chunk(self, start_sample: int, pcm: bytes, received: float) -> bool:
        seq, self.seq = self.seq, self.seq + 1
        if not self.to_stages.put(AudioChunk(
                session_id=self.leg_id, egress_partition=self.partition, epoch=self.epoch, seq=seq,
                start_sample=start_sample, pcm=pcm, recv_ts=received, speak=False)):
            return False
        return self.to_caller.put(AgentAudio(
            session_id=self.session_id, egress_partition=self.caller_partition, agent=self.agent[:255],
            seq=seq, epoch=self.epoch, pcm=pcm, ts=received))

    async def close(self) -> None:
        """Send the last audio, end the leg on the bus and wait (bounded) for the broker to take it all."""
        if self.closed:
            return
        now = time.time()
        for start, pcm in self.chunker.flush():
            self._chunk(start, pcm, now)
        self.closed = True
        self.control("end")
        await self.to_caller.close()
        await self.to_stages.close()

    # -- the leg's events, from vad, asr and intent ------------------------------------------
    async def deliver(self, event: SessionRecord) -> None:
        """One egress event of the leg: to the agent's page, the consoles and the record."""
        turn_id = getattr(event, "turn_id", "")
        if not turn_id or event.session_id != self.leg_id:
            return
        turn = self.turns.setdefault(turn_id, Turn(turn_id, speak=False))
        if isinstance(event, VadEvent | Transcript | IntentResult | ErrorEvent):
            turn.absorb(event)
        if isinstance(event, VadEvent):
            kind = "speech_started" if event.kind == "speech_start" else "speech_ended"
            await self.transport.send_event({"type": kind, "turn_id": turn_id})
            if event.kind == "speech_end":
                if event.utterance:
                    self.control("replied", turn_id)  # nothing continues an agent's turn
                else:
                    self.turns.pop(turn_id, None)
        elif isinstance(event, Transcript):
            if not event.text:
                self.turns.pop(turn_id, None)  # no speech heard
                return
            await self.transport.send_event({"type": "transcript", "turn_id": turn_id, "text": event.text,
                                             "source": "voice"})
            update = HandoffUpdate(session_id=self.session_id, egress_partition=self.caller_partition,
                                   kind="agent", turn_id=TURN_PREFIX + turn_id, text=event.text,
                                   agent=self.agent[:128], ts=time.time())
            await self._produce(HANDOFFS, update)
            self.queue.apply(update)
        elif isinstance(event, IntentResult):
            await self._finish(turn)
        elif isinstance(event, ErrorEvent):
            self.turns.pop(turn_id, None)

    async def _finish(self, turn: Turn) -> None:
        """The agent's turn is understood (its intent is known): a turn record of the caller's session."""
        self.turns.pop(turn.turn_id, None)
        if not turn.transcript:
            return
        record = turn.record(self.session_id, self.caller_partition).model_copy(
            update={"turn_id": TURN_PREFIX + turn.turn_id, "speaker": "agent"})
        await self._produce(TURNS, record)
        await self.transport.send_event({"type": "turn_end", "turn_id": turn.turn_id,
                                         "transcript": turn.transcript, "intent": turn.intent})

    async def _produce(self, topic: Any, record: Record) -> None:
        try:
            await self.gateway.produce(topic, record)
        except Exception as exc:  # the broker is gone: the record is lost, the call goes on
            log.warning("agent leg %s: %s not produced: %s: %s", self.leg_id, record.type,
                        type(exc).__name__, exc)

    async def too_slow(self) -> None:
        """The agent's page does not read its events: close their voice socket (4420)."""
        await self.transport.close(CLOSE_TOO_SLOW, b"too_slow: events were not read fast enough")
