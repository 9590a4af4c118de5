"""One caller's session at the ingress, whatever carries it (see :mod:`ingress.transport`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from ingress import greeting, metrics
from ingress.agents.callers import announce_caller
from ingress.agents.voice_play import play_agent_audio
from ingress.audio import Chunker
from ingress.backpressure import NOTICE_INTERVAL_S, Outbox
from ingress.dtmf import Keypad
from ingress.edge import CLOSE_TOO_SLOW
from ingress.health import degraded_event
from ingress.playback import is_backchannel
from ingress.protocol import ProtocolError
from ingress.turns import Turn
from schemas import (
    DEFAULT_LANGUAGE,
    AgentAudio,
    AudioChunk,
    ErrorEvent,
    IntentResult,
    ReplyText,
    SessionControl,
    SessionRecord,
    SynthAudio,
    Transcript,
    TurnCancel,
    VadEvent,
)
from streams.topics import AUDIO, CONTROL, TRANSCRIPTS, TURNS

if TYPE_CHECKING:
    from ingress.gateway import Gateway
    from ingress.transport import Transport

log = logging.getLogger(__name__)

class CallerSession:
    """Audio in, events out, for one session id on one connection (one ``epoch``).

    ``epoch`` is set from the session's claim on the bus before :meth:`open`
    (:mod:`ingress.epochs`): it orders the connections of the session on every replica.

    Records to the bus go through an :class:`~ingress.backpressure.Outbox` (bounded,
    shedding audio with an ``overloaded`` event when the broker falls behind).  Events
    of turns already finished (a stage's at-least-once redelivery) are dropped.

    Args:
        gateway: the ingress's Kafka side (producer, routing).
        transport: the caller's connection (JSON/PCM socket, Twilio media stream...).
        session_id: the session.
        sample_rate: Hz of the caller's PCM16 audio.
        speak: False for text replies only.
        caller_id: who the caller is (:data:`schemas.desk.CallerId`), announced at open; empty: unknown.
        record: the caller's ``record`` wish (False: no audio archived, :mod:`processors.archive.consent`);
            None: not stated.
        language: the session's bus language (:mod:`ingress.language`; empty: the asr stage detects it),
            on every record the session writes and for its greeting.

    Raises:
        ProtocolError: unsupported ``sample_rate``.
    """

    def __init__(self, gateway: Gateway, transport: Transport, session_id: str, sample_rate: int,
                 speak: bool = True, caller_id: str = "", record: bool | None = None,
                 language: str = DEFAULT_LANGUAGE) -> None:
        self.caller_id = caller_id
        self.language = language
        self.record = record
        self.gateway = gateway
        self.transport = transport
        self.session_id = session_id
        self.speak = speak
        self.ended = False
        self.chunker = Chunker(sample_rate, gateway.settings.chunk_ms)
        self.epoch = 0
        self.outbox = Outbox(lambda record: gateway.produce(AUDIO, record), gateway.audio_budget,
                             max_bytes=int(gateway.settings.session_buffer_s * 32000))
        self.overload_notified = 0.0
        self.seq = 0
        self.turns: dict[str, Turn] = {}
        self.cancelled: set[str] = set()
        self.partition = gateway.settings.ingress_slot
        self.text_times: deque[float] = deque()
        self.last_text_ms = 0
        self.keypad = Keypad(self)

    # -- caller -> bus ------------------------------------------------------------------
    async def open(self) -> None:
        """Announce the session on the bus and tell the caller it is ready."""
        self.outbox.put(SessionControl(
            session_id=self.session_id, egress_partition=self.partition, epoch=self.epoch, action="start",
            config={"speak": self.speak, "language": self.language,
                    **({} if self.record is None else {"record": self.record})},
            ts=time.time(),
        ))
        if self.caller_id:
            await announce_caller(self.gateway, self.session_id, self.partition, self.caller_id)
        await self.send_json({"type": "ready", "session_id": self.session_id,
                              "sample_rate": 16000, "chunk_ms": self.gateway.settings.chunk_ms})
        if not all(self.gateway.pipeline.values()):
            await self.send_json(degraded_event(self.gateway.pipeline))

    async def pipeline_changed(self, capable: dict[str, bool]) -> None:
        """Tell the caller what the pipeline can do now (a ``degraded`` event, :mod:`ingress.health`)."""
        await self.send_json(degraded_event(capable))

    async def on_audio(self, frame: bytes) -> None:
        """Chunk one PCM frame onto ``voxbus.audio`` (through the outbox; never waits for Kafka).

        Raises:
            ProtocolError: the frame is not valid PCM16.
        """
        if self.ended:
            return
        now = time.time()
        shed = sum(not self._queue_chunk(start, pcm, now) for start, pcm in self.chunker.push(frame))
        if shed and time.monotonic() - self.overload_notified >= NOTICE_INTERVAL_S:
            self.overload_notified = time.monotonic()
            await self.send_error("overloaded", "the service is behind: some of your audio was dropped",
                                  buffered_s=round(self.outbox.buffered_s, 2))

    def _queue_chunk(self, start_sample: int, pcm: bytes, recv_ts: float) -> bool:
        """Queue one bus chunk; False if it was shed (its ``seq`` and samples are skipped)."""
        self.seq += 1
        return self.outbox.put(AudioChunk(
            session_id=self.session_id, egress_partition=self.partition, epoch=self.epoch, seq=self.seq - 1,
            start_sample=start_sample, pcm=pcm, recv_ts=recv_ts, speak=self.speak, language=self.language,
        ))

    async def on_text(self, text: str, speak: bool = False) -> str | None:
        """Start a text-channel turn: straight to ``voxbus.transcripts``, no vad/asr, no tts unless ``speak``.

        A turn with no reply after ``turn_timeout_s`` ends with ``turn_timeout``.

        Returns:
            The turn id; None once the session has ended.

        Raises:
            ProtocolError: ``rate_limited`` (over ``text_turns_per_minute``) or ``too_many_turns``
                (``max_pending_text_turns`` still unanswered): the turn is dropped, the session goes on.
        """
        if self.ended:
            return
        self._admit_text(time.monotonic())
        now = time.time()
        self.last_text_ms = max(int(now * 1000), self.last_text_ms + 1)  # unique within the session
        turn_id = f"t{self.last_text_ms}"
        transcript = Transcript(
            session_id=self.session_id, egress_partition=self.partition, turn_id=turn_id, text=text,
            source="text", speak=speak, language=self.language or DEFAULT_LANGUAGE,
            marks={"ingress.text": now},
        )
        turn = self.turns[turn_id] = Turn(turn_id, source="text", speak=speak)
        turn.absorb(transcript)
        self.gateway.live.changed()
        await self.gateway.produce(TRANSCRIPTS, transcript)
        self.watch_turn(turn)
        return turn_id

    def _admit_text(self, now: float) -> None:
        """Count one text turn against the session's rate and its unanswered turns.

        Raises:
            ProtocolError: ``rate_limited`` or ``too_many_turns``.
        """
        settings = self.gateway.settings
        times = self.text_times
        while times and times[0] <= now - 60.0:
            times.popleft()
        if settings.text_turns_per_minute and len(times) >= settings.text_turns_per_minute:
            raise ProtocolError("rate_limited",
                                f"at most {settings.text_turns_per_minute} text turns a minute")
        pending = sum(t.source == "text" and not t.complete for t in self.turns.values())
        if settings.max_pending_text_turns and pending >= settings.max_pending_text_turns:
            raise ProtocolError("too_many_turns",
                                f"wait for an answer: {pending} text turns are still unanswered")
        times.append(now)

    async def close(self) -> None:
        """Flush the last audio, end the session on the bus and cancel its unanswered text turns (once).

        A cancellation the broker does not take is logged: the stages then answer the turn
        to no one, as before the hang-up was known.
        """
        if self.ended:
            return
        self.ended = True
        self.keypad.close()
        now = time.time()
        for start_sample, pcm in self.chunker.flush():
            self._queue_chunk(start_sample, pcm, now)
        self.outbox.put(SessionControl(
            session_id=self.session_id, egress_partition=self.partition, epoch=self.epoch, action="end",
            ts=now,
        ))
        await self.outbox.close()
        for turn in list(self.turns.values()):
            if turn.source == "text" and not turn.complete and turn.turn_id not in self.cancelled:
                try:
                    await self.cancel(turn, "hangup")
                except Exception as exc:  # the broker is unreachable: the session is over either way
                    log.warning("session %s: cancelling turn %s failed: %s: %s", self.session_id,
                                turn.turn_id, type(exc).__name__, exc)

    # -- bus -> caller ------------------------------------------------------------------
    async def deliver(self, event: SessionRecord) -> None:
        """Send one egress event to the caller, run barge-in, and close turns when complete."""
        if isinstance(event, AgentAudio):  # an agent's own voice, no turn (ingress.agents.voice_play)
            await play_agent_audio(self.transport, event)
            return
        turn_id = getattr(event, "turn_id", "")
        if not turn_id:
            await self.send_event(event)
            return
        if turn_id in self.cancelled:
            return  # the caller barged in on this turn: nothing more of it reaches them
        if (self.session_id, turn_id) in self.gateway.finished:
            metrics.DUPLICATES.inc()
            return  # redelivered by an at-least-once stage after the turn ended for the caller
        turn = self.turns.setdefault(turn_id, Turn(turn_id))
        if isinstance(event, ReplyText | SynthAudio) and turn.repeats(event):
            metrics.DUPLICATES.inc()
            return
        first_sentence = isinstance(event, ReplyText) and "ingress.first_reply_text" not in turn.marks
        turn.absorb(event)  # type: ignore[arg-type]
        self.gateway.live.changed()  # the turn may have left (or entered) flight: ingress.live_turns
        if first_sentence and turn.speak and not self.gateway.pipeline["speaking"]:
            turn.speak = False  # tts is down: the reply is text only, the turn ends with its text
        if isinstance(event, SynthAudio):
            await self.play(turn, event)
        else:
            await self.send_event(event)
        if turn.reply_began():  # the caller's next words answer it (processors.vad.continuation)
            self.outbox.put(SessionControl(session_id=self.session_id, egress_partition=self.partition,
                                           epoch=self.epoch, action="replied", turn_id=turn_id,
                                           ts=time.time()))
        if isinstance(event, VadEvent) and event.continues in self.turns:  # one turn of both (vad stage)
            await self.continued(self.turns[event.continues], event)
        if isinstance(event, VadEvent):
            await self.on_speech(turn, event)
            if event.kind == "speech_end" and event.utterance:
                self.watch_turn(turn)
        elif isinstance(event, Transcript) and turn.source == "voice":
            if not self.language and event.text:  # detected on the first utterance: the session's from now on
                self.language = event.language
            await self.decide_barge_in(turn)
        await self.finish_if_complete(turn)
        self.gateway.live.changed()  # a barge-in or a continuation may have dropped a turn

    async def on_speech(self, caller_turn: Turn, event: VadEvent) -> None:
        """Speech onset pauses every reply in flight; a too-short blip resumes them."""
        if not self.gateway.settings.barge_in:
            return
        if event.kind == "speech_start":
            for turn in list(self.turns.values()):
                finished = turn.complete and not turn.playback.playing()
                replying = turn.transcript or turn.source == greeting.SOURCE  # a reply on its way
                if turn is caller_turn or turn.paused_by or not replying or finished:
                    continue
                turn.paused_by = caller_turn.turn_id
                turn.marks["barge_in.onset"] = event.ts
                if turn.playback.pause():
                    turn.marks["ingress.playback_stop"] = time.time()
                    await self.transport.stop_playback(turn.turn_id)
        elif not event.utterance:
            await self.resume_paused_by(caller_turn.turn_id)

    def watch_turn(self, turn: Turn) -> None:
        """End ``turn`` with a ``turn_timeout`` error if no reply starts within ``turn_timeout_s``."""
        timeout = self.gateway.settings.turn_timeout_s
        if timeout > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(timeout, lambda: loop.create_task(self.expire_turn(turn)))

    async def expire_turn(self, turn: Turn) -> None:
        """The pipeline is behind: tell the caller the turn got no answer, and close it."""
        if turn.turn_id not in self.turns or turn.sentences or turn.complete or turn.paused_by:
            return
        metrics.TURN_TIMEOUTS.inc()
        self.gateway.admission.observe(self.gateway.settings.turn_timeout_s * 1000.0)
        await self.send_error("turn_timeout", "no answer in time: please ask again", turn_id=turn.turn_id)
        turn.failed = True
        self.gateway.live.changed()
        await self.finish_if_complete(turn)

    async def decide_barge_in(self, caller_turn: Turn) -> None:
        """Once the interrupting words are known: a backchannel resumes, anything else cancels."""
        paused = [t for t in self.turns.values() if t.paused_by == caller_turn.turn_id]
        if not paused:
            return
        settings = self.gateway.settings
        text = caller_turn.transcript
        if not text or is_backchannel(text, settings.backchannel_phrases, settings.backchannel_max_words):
            await self.resume_paused_by(caller_turn.turn_id)
            if text:
                caller_turn.dropped = True
                await self.cancel(caller_turn, "backchannel")
            return
        for turn in paused:
            heard = turn.playback.heard_at_pause
            turn.interrupted = True
            turn.heard_text = turn.playback.heard_text(turn.sentences, heard)
            heard_ms = 1000.0 * heard / max(1, turn.playback.bytes_per_second)
            await self.cancel(turn, "barge_in", heard_ms=heard_ms)
            await self.finish_turn(turn)

    async def resume_paused_by(self, caller_turn_id: str) -> None:
        """Resume replies paused by a caller turn that proved not to be an interruption."""
        for turn in list(self.turns.values()):
            if turn.paused_by == caller_turn_id:
                turn.paused_by = ""
                pcm = turn.playback.resume()
                if pcm:
                    await self.send_audio(turn, pcm, final=turn.audio_done)
                await self.finish_if_complete(turn)

    async def cancel(self, turn: Turn, reason: str, heard_ms: float = 0.0) -> None:
        """Publish a turn cancellation so every stage drops the turn's remaining work."""
        self.cancelled.add(turn.turn_id)
        await self.gateway.produce(CONTROL, TurnCancel(
            session_id=self.session_id, egress_partition=self.partition, turn_id=turn.turn_id,
            reason=reason, heard_text=turn.heard_text, heard_ms=heard_ms, ts=time.time(),  # type: ignore[arg-type]
        ))

    async def continued(self, turn: Turn, event: VadEvent) -> None:
        """The caller's speech may continue ``turn`` (vad stage): hold its reply; if it did, drop the turn."""
        if event.kind == "speech_start":
            turn.paused_by = event.turn_id
            if turn.playback.pause():
                await self.transport.stop_playback(turn.turn_id)
        elif not event.utterance:  # a blip: the turn goes on
            await self.resume_paused_by(event.turn_id)
        else:  # cancelled on the bus by the vad stage
            self.cancelled.add(turn.turn_id)
            turn.dropped, turn.paused_by, turn.sentences = True, "", {}
            await self.finish_turn(turn)

    async def play(self, turn: Turn, chunk: SynthAudio) -> None:
        """Send reply audio unless the turn is paused by a possible barge-in."""
        pcm = turn.playback.add(chunk.pcm, chunk.sample_rate, chunk.index)
        if pcm or (chunk.final and not turn.paused_by):
            await self.send_audio(turn, pcm, final=chunk.final)

    async def send_audio(self, turn: Turn, pcm: bytes, final: bool) -> None:
        """Hand reply audio (ending at the turn's ``playback.sent`` offset) to the transport."""
        playback = turn.playback
        await self.transport.send_audio(turn.turn_id, pcm, playback.sample_rate, final, playback.sent)

    def confirm_heard(self, turn_id: str, heard_bytes: int) -> None:
        """The caller reports having heard ``heard_bytes`` of a turn's reply (e.g. a Twilio ``mark`` echo)."""
        turn = self.turns.get(turn_id)
        if turn is None or turn.paused_by or turn_id in self.cancelled or turn.playback.paused:
            return
        turn.playback.confirm(min(heard_bytes, turn.playback.sent))

    async def send_event(self, event: SessionRecord) -> None:
        """Translate a bus record (other than audio) into the caller protocol."""
        if isinstance(event, VadEvent):
            kind = "speech_started" if event.kind == "speech_start" else "speech_ended"
            await self.send_json({"type": kind, "turn_id": event.turn_id})
        elif isinstance(event, Transcript):
            await self.send_json({"type": "transcript", "turn_id": event.turn_id, "text": event.text,
                                  "source": event.source, "language": event.language})
        elif isinstance(event, IntentResult):
            await self.send_json({"type": "intent", "turn_id": event.turn_id, "intent": event.intent,
                                  "confidence": event.confidence, "sentiment": event.sentiment,
                                  "sentiment_score": event.sentiment_score})
        elif isinstance(event, ReplyText):
            await self.send_json({"type": "reply_text", "turn_id": event.turn_id, "index": event.index,
                                  "text": event.text, "final": event.final, "sources": event.sources,
                                  "language": event.language})
        elif isinstance(event, ErrorEvent):
            await self.send_error(event.code, event.message, turn_id=event.turn_id, stage=event.stage)

    async def finish_if_complete(self, turn: Turn) -> None:
        """Finish ``turn`` once complete, not held by a barge-in decision, and played out.

        Until its audio has played, the caller can still barge in on the turn, so it
        stays open; a timer finishes it when playback ends.
        """
        if not (turn.complete and not turn.paused_by and turn.turn_id in self.turns):
            return
        remaining = turn.playback.remaining()
        if remaining > 0:
            loop = asyncio.get_running_loop()
            loop.call_later(remaining + 0.05, lambda: loop.create_task(self.finish_if_complete(turn)))
            return
        await self.finish_turn(turn)

    async def finish_turn(self, turn: Turn) -> None:
        """Tell the caller the turn is over and publish its analytics record."""
        if self.turns.pop(turn.turn_id, None) is None:
            return
        self.gateway.finished.add(self.session_id, turn.turn_id)
        record = turn.record(self.session_id, self.partition)
        await self.send_json({"type": "turn_end", "turn_id": turn.turn_id, "transcript": turn.transcript,
                              "intent": turn.intent, "reply_text": record.reply_text,
                              "interrupted": turn.interrupted, "heard_text": turn.heard_text,
                              "latency_ms": record.latency_ms, "voice_to_voice_ms": record.voice_to_voice_ms})
        if not turn.transcript or turn.dropped:
            return  # no speech recognized, or a backchannel: nothing to analyse
        await self.gateway.produce(TURNS, record)
        metrics.TURNS.labels(record.source).inc()
        if turn.interrupted:
            metrics.BARGE_INS.inc()
        if record.voice_to_voice_ms is not None:
            metrics.VOICE_TO_VOICE.observe(record.voice_to_voice_ms / 1000.0)
            self.gateway.admission.observe(record.voice_to_voice_ms)
        for span, ms in record.latency_ms.items():
            metrics.STAGE_LATENCY.labels(span).observe(ms / 1000.0)

    async def too_slow(self) -> None:
        """The caller cannot keep up with its events (:mod:`ingress.mailbox`): close it with 4420."""
        metrics.REJECTIONS.labels("too_slow").inc()
        log.info("session %s: closed (4420): the caller does not read its events", self.session_id)
        await self.transport.close(CLOSE_TOO_SLOW, b"too_slow: events were not read fast enough")

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one caller-protocol event (dropped once the connection is closed)."""
        if not self.transport.closed:
            await self.transport.send_event(payload)

    async def send_error(self, code: str, message: str, **extra: Any) -> None:
        """Send an ``error`` event."""
        await self.send_json({"type": "error", "code": code, "message": message, **extra})


def protocol_error_event(exc: ProtocolError) -> dict[str, str]:
    """The ``error`` event for a protocol violation."""
    metrics.REJECTIONS.labels(exc.code).inc()
    return {"type": "error", "code": exc.code, "message": str(exc)}
