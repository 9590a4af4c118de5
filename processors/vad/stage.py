"""The vad stage: caller audio chunks in, utterances out (silero-vad endpointing).

Delivery across a crash (issue 16).  The stage keeps an open utterance's audio in memory,
so it holds its input (:attr:`VadStage.holds_input`): the committed offset of an audio
partition never passes the first chunk of audio a session still holds (an utterance still
open, audio not yet endpointed: from ``Session.audio_start``), and a restarted or replacing
worker reads that audio again and endpoints it from there.  What it reads again includes
chunks of other sessions of the partition whose utterances were already sent; a confirmed
utterance, once the broker has it, is recorded per session in a changelog-backed table
(``voxbus-vad-emitted-changelog``: the connection epoch and the utterance's last sample), and a
session that starts afresh in a worker resumes after its recorded utterance: chunks at or below
that sample are skipped, so nothing is cut or sent twice.  The record is written after the
utterance is acknowledged and reaches the broker before the offset past it is committed, so a
crash loses no utterance; a crash in the few milliseconds between the two sends it again, most
likely with the same turn id (absorbed downstream).  After a restart a continuation cannot join
the turn before the crash (its audio is not read again): it is a turn of its own; and the VAD,
fresh and without the audio before the held chunks, may hear the open utterance start a few
windows later, so its turn id can differ from the ``speech_start`` sent before the crash.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from processors.base import Emit, Stage
from processors.metrics import TURN_VERDICTS
from processors.vad.continuation import ClosedTurn, Continuation
from processors.vad.denoise import NoiseFloor, VadDenoiser, window_levels
from processors.vad.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechPause, SpeechStart
from processors.vad.silero import WINDOW_SAMPLES, SileroVad, VadState
from processors.vad.turn_model import COMPLETE_THRESHOLD, TurnModel
from schemas import (
    BUS_SAMPLE_RATE,
    DEFAULT_LANGUAGE,
    AudioChunk,
    Record,
    SessionControl,
    TurnCancel,
    Utterance,
    VadEvent,
)
from streams.tables import session_table
from streams.topics import AUDIO, CONTROL, EGRESS, UTTERANCES

if TYPE_CHECKING:
    import faust

    from streams.settings import Settings

log = logging.getLogger(__name__)

Event = SpeechStart | SpeechPause | SpeechEnd

SESSION_EXPIRY_S = 600.0
"""A session with no record for this long (s) is forgotten: longer than the ingress's
idle timeout (``VOXBUS_IDLE_TIMEOUT_S``, 120 s), after which the ingress has closed it."""
MAX_FILLED_GAP_S = 1.0
"""Longest gap (s) in a session's audio heard as silence (chunks shed or lost: the endpointer
hears the pause).  A longer gap, such as the minutes since sample 0 of a call a restarted
worker joins at its committed offset, is skipped: speech in progress ends at the gap and the
timeline jumps, so the work stays that of the audio received."""
MARK_EXPIRY_S = 2 * SESSION_EXPIRY_S
"""A session's record of its last utterance sent is forgotten this long (s) after it was written:
a partition's committed offset lags by at most the audio a session holds, which is kept no longer
than :data:`SESSION_EXPIRY_S` (a session gone quiet mid-utterance)."""


def turn_id(start_sample: int, epoch: int) -> str:
    """The id of the turn whose speech starts at ``start_sample`` of connection ``epoch``."""
    return f"a{start_sample}-{epoch}"


def chunk_end(chunk: AudioChunk) -> int:
    """The sample just after ``chunk``'s audio (from the connection start)."""
    return chunk.start_sample + len(chunk.pcm) // 2


def turn_epoch(turn: str) -> int:
    """The connection epoch of a turn id made by :func:`turn_id`."""
    return int(turn.rsplit("-", 1)[1])


@dataclass
class Session:
    """Endpointing state of one caller session.

    ``audio`` holds int16 samples from ``audio_start`` (a sample offset from the start of
    connection ``epoch``) to ``next_sample``; it is trimmed to the padding while nobody speaks
    (and no ended turn may still be continued: then from that turn's start).  ``pending``
    holds the (denoised) float32 samples not yet run through the VAD.  ``cut_until`` is the
    last sample of the last confirmed utterance.
    """

    endpointer: Endpointer
    denoiser: VadDenoiser | None
    continuation: Continuation
    vad: VadState = field(default_factory=VadState)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    audio_start: int = 0
    next_sample: int = 0
    cut_until: int = 0
    next_seq: int = 0
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    arrivals: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=4096))
    egress_partition: int = 0
    speak: bool = True
    language: str = DEFAULT_LANGUAGE
    epoch: int = 0
    last_seen: float = field(default_factory=time.monotonic)

    def wall_time(self, sample: int) -> float:
        """Estimate the wall-clock time (epoch s) at which ``sample`` reached the ingress."""
        for end_sample, recv_ts in self.arrivals:
            if end_sample >= sample:
                return recv_ts - (end_sample - sample) / BUS_SAMPLE_RATE
        return time.time()


class VadStage(Stage):
    """Endpoint each session's audio into utterances.

    Consumes ``voxbus.audio`` (:class:`AudioChunk`, :class:`SessionControl`); produces
    :class:`Utterance` to ``voxbus.utterances`` and :class:`VadEvent` (speech start and
    end, the barge-in signal) to ``voxbus.egress``.  The recognizer always gets the
    original audio; denoising (if enabled) only feeds the VAD decision.

    Each connection of a session is an ``epoch`` (a caller who reconnects starts a new
    one, at sample 0): a newer epoch resets the session's state, records of an older
    one are dropped, and turn ids (``a<start_sample>-<epoch>``) stay unique across
    connections.  A session with no record for :data:`SESSION_EXPIRY_S` (its ingress
    died and the caller never came back) is forgotten.  A gap in a session's audio of up
    to :data:`MAX_FILLED_GAP_S` is heard as silence; a longer one is skipped.

    With the end-of-turn model (``VOXBUS_VAD_TURN_MODEL=smart-turn``), each pause of
    ``vad_turn_pause_ms`` is judged by Smart Turn v3.2 on the turn's last 8 s of audio:
    a complete turn ends there, an incomplete one goes on until speech resumes (same
    turn) or ``vad_max_silence_ms`` passes.  The sessions that pause within one batch of
    records share one model call.  Speculative decoding (``vad_early_silence_ms`` > 0)
    sends the speculative utterance at the pause, before the model is asked: the asr
    stage decodes it while the model judges and, if the turn is incomplete, while it
    waits; a complete verdict confirms it at once.

    Continuations (``vad_continuation_ms`` > 0, :mod:`processors.vad.continuation`): speech
    resuming within that silence after a turn ended, and no later than
    ``vad_continuation_reaction_ms`` after the ingress reports its reply began to reach the
    caller (``SessionControl(action="replied")``), continues the turn.
    Its ``speech_start`` names the turn it may continue (``continues``: the ingress holds
    that reply); its utterance (speculative and confirmed) spans both pieces, its
    ``speech_end`` names the continued turn, and a :class:`TurnCancel` (``continuation``)
    on ``voxbus.control`` drops that turn's reply everywhere.  The turn model judges the
    pause on the whole thought's audio.

    A crash loses no audio and sends no utterance twice (see the module docstring): the
    stage holds its input from each session's ``audio_start`` (:meth:`needs`), records its
    utterances once produced (:meth:`produced`) and resumes a session after the last one.
    """

    name = "vad"
    input = AUDIO
    accepts = (AudioChunk, SessionControl)
    batch_setting = "vad_batch_size"
    holds_input = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.marks: MutableMapping[str, list[float]] = {}
        """Session id -> [epoch, last sample, wall time (s)] of its last utterance produced."""

    def bind(self, app: faust.App) -> None:
        """Keep :attr:`marks` in a table (changelog topic ``voxbus-vad-emitted-changelog``)."""
        import faust

        self.marks = session_table(app, "emitted", self.settings.partitions,
                                   schema=faust.Schema(key_type=str, key_serializer="json",
                                                       value_serializer="json"))

    def load(self) -> None:
        """Load the silero-vad ONNX model, and the turn model unless it is off."""
        self.vad = SileroVad()
        s = self.settings
        self.turn_model = TurnModel() if s.vad_turn_model == "smart-turn" else None
        pad = min(s.vad_speech_pad_ms, s.vad_min_silence_ms)
        self.config = EndpointConfig(
            threshold=s.vad_threshold,
            min_silence_ms=s.vad_min_silence_ms,
            min_speech_ms=s.vad_min_speech_ms,
            speech_pad_ms=pad,
            max_utterance_s=s.vad_max_utterance_s,
            early_silence_ms=s.vad_early_silence_ms,
            turn_model=self.turn_model is not None,
            turn_pause_ms=s.vad_turn_pause_ms,
            max_silence_ms=max(s.vad_max_silence_ms, s.vad_turn_pause_ms, pad),
        )
        self.sessions: dict[str, Session] = {}
        self.swept = time.monotonic()

    def new_session(self, epoch: int = 0) -> Session:
        """A fresh endpointing state."""
        mode = self.settings.denoise
        floor = NoiseFloor(self.settings.denoise_floor_dbfs) if mode == "auto" else None
        denoiser = VadDenoiser(BUS_SAMPLE_RATE, floor) if mode != "off" else None
        cfg = self.config
        continuation = Continuation(
            window=cfg.samples(self.settings.vad_continuation_ms),
            max_samples=cfg.samples(cfg.max_utterance_s * 1000 + 2 * cfg.speech_pad_ms),
            reaction=cfg.samples(self.settings.vad_continuation_reaction_ms),
        )
        return Session(Endpointer(cfg), denoiser, continuation, epoch=epoch)

    def session_for(self, session_id: str, epoch: int) -> Session | None:
        """The state of ``session_id`` for a record of connection ``epoch``.

        Returns:
            A fresh state for a new session or a newer epoch, the current state for the
            same epoch, None for a stale record of an older epoch.
        """
        session = self.sessions.get(session_id)
        if session is not None and epoch < session.epoch:
            log.debug("session %s: dropped a record of connection epoch %d (current %d)",
                     session_id, epoch, session.epoch)
            return None
        if session is None or epoch > session.epoch:
            session = self.sessions[session_id] = self.new_session(epoch)
            mark = self.marks.get(session_id)
            if mark is not None and mark[0] == epoch:  # this worker took over: resume after what was sent
                session.audio_start = session.next_sample = session.cut_until = int(mark[1])
                log.info("session %s: resumed at sample %d, after its last utterance sent", session_id,
                         session.next_sample)
        session.last_seen = time.monotonic()
        return session

    def expire_sessions(self) -> None:
        """Forget sessions silent for :data:`SESSION_EXPIRY_S` (checked at most once a minute)."""
        now = time.monotonic()
        if now - self.swept < 60.0:
            return
        self.swept = now
        for session_id in [k for k, v in self.sessions.items() if now - v.last_seen > SESSION_EXPIRY_S]:
            log.info("session %s: no record for %.0f s; state dropped", session_id, SESSION_EXPIRY_S)
            del self.sessions[session_id]
        written_before = time.time() - MARK_EXPIRY_S
        for session_id in [k for k, mark in self.marks.items() if mark[2] < written_before]:
            del self.marks[session_id]

    def needs(self, record: Record) -> bool:
        """True while ``record`` is a chunk with audio its session still holds (from ``audio_start``).

        Audio of a confirmed utterance is not held (:meth:`produced` recorded it): a worker
        taking over resumes after it.
        """
        if not isinstance(record, AudioChunk):
            return False
        session = self.sessions.get(record.session_id)
        if session is None or session.epoch != record.epoch:
            return False
        return chunk_end(record) > max(session.audio_start, session.cut_until)

    def produced(self, emits: list[Emit]) -> None:
        """Record each confirmed utterance produced as its session's last (:attr:`marks`)."""
        for emit in emits:
            record = emit.record
            if isinstance(record, Utterance) and not record.speculative:
                self.marks[record.session_id] = [turn_epoch(record.turn_id), record.end_sample, time.time()]

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Endpoint one record (see :meth:`handle_batch`)."""
        async for emit in self.handle_batch([record]):
            yield emit

    async def handle_batch(self, records: list[Record]) -> AsyncIterator[Emit]:
        """Endpoint records that were waiting together; yield speech events and utterances.

        Each session's records are processed in order.  A session whose endpointer pauses
        for a verdict stops there; once every session has either paused or run out of
        records, the pauses are judged in one batched model call, and the paused sessions
        go on.  Outputs of one session keep their order.
        """
        self.expire_sessions()
        queues: dict[str, deque[Record]] = {}
        for record in records:
            queues.setdefault(record.session_id, deque()).append(record)  # type: ignore[attr-defined]
        while queues:
            paused: list[tuple[str, Session, SpeechPause]] = []
            for session_id, queue in list(queues.items()):
                emits, pause = self.advance(session_id, queue)
                for emit in emits:
                    yield emit
                if pause is None:
                    del queues[session_id]
                else:
                    paused.append((session_id, self.sessions[session_id], pause))
            if paused:
                for emit in await self.judge(paused):
                    yield emit

    def advance(self, session_id: str, queue: deque[Record]) -> tuple[list[Emit], SpeechPause | None]:
        """Run one session's records until a pause awaits the turn model or none are left.

        Returns:
            (the outputs so far, the pause awaiting a verdict or None).
        """
        emits: list[Emit] = []
        session = self.sessions.get(session_id)
        if session is not None:
            if session.endpointer.awaiting:  # its verdict was lost to an error: judge it again
                return emits, session.pause
            pause = self.collect(session_id, session, self.run_windows(session), emits)  # windows left
            if pause is not None:
                return emits, pause
        while queue:
            record = queue.popleft()
            session = self.session_for(session_id, record.epoch)  # type: ignore[attr-defined]
            if session is None:
                continue
            if isinstance(record, SessionControl):
                if record.action == "replied":
                    session.continuation.replied(record.turn_id, session.next_sample)
                elif record.action == "end":
                    del self.sessions[session_id]
                    end = session.endpointer.flush(session.next_sample)
                    if end is not None:
                        emits += self.on_event(session_id, session, end)
                continue
            assert isinstance(record, AudioChunk)
            if record.seq < session.next_seq or chunk_end(record) <= session.next_sample:
                continue  # redelivered, or sent before this worker took over: already endpointed
            session.egress_partition, session.speak = record.egress_partition, record.speak
            session.language = record.language
            if record.start_sample - session.next_sample > MAX_FILLED_GAP_S * BUS_SAMPLE_RATE:
                emits += self.skip_gap(session_id, session, record.start_sample)
            pause = self.collect(session_id, session, self.feed(session, record), emits)
            if pause is not None:
                return emits, pause
        return emits, None

    def collect(self, session_id: str, session: Session, events: list[Event],
                emits: list[Emit]) -> SpeechPause | None:
        """Append the outputs of ``events`` to ``emits``, up to a pause awaiting a verdict.

        With speculation on, the pause's speculative utterance is among the outputs: sent
        before the verdict, so the asr stage decodes while the model judges, whatever it says.

        Returns:
            That pause (kept as ``session.pause``; the end it may be follows the verdict), or None.
        """
        for event in events:
            if isinstance(event, SpeechPause) and session.endpointer.awaiting:
                session.pause = event
                if self.config.early_silence_ms:  # the asr stage decodes while the model judges
                    emits += self.on_event(session_id, session, event)
                return event
            emits += self.on_event(session_id, session, event)
        return None

    async def judge(self, paused: list[tuple[str, Session, SpeechPause]]) -> list[Emit]:
        """Judge the pauses with the turn model in one call (in a thread); apply each verdict.

        The model reads each turn's padded audio from its start (a continued turn's: the
        whole thought; at most the last 8 s) up to the last window endpointed, the pause's
        silence included.

        Returns:
            Per pause judged complete, the confirmed utterance and speech end; nothing for an
            incomplete one (its speculative utterance went out with the pause, :meth:`collect`).
        """
        assert self.turn_model is not None
        clips = []
        for _, session, pause in paused:
            start = self.bounds(session, pause)[0] - session.audio_start
            stop = session.next_sample - session.pending.size - session.audio_start
            clips.append(session.audio[start:stop].astype(np.float32) / 32768.0)
        probabilities = await asyncio.to_thread(self.turn_model.probabilities, clips)
        emits: list[Emit] = []
        for (session_id, session, _), probability in zip(paused, probabilities, strict=True):
            complete = bool(probability > COMPLETE_THRESHOLD)
            TURN_VERDICTS.labels("complete" if complete else "incomplete").inc()
            end = session.endpointer.decide(complete)
            if end is not None:
                emits += self.on_event(session_id, session, end)
        return emits

    def on_event(self, session_id: str, session: Session, event: Event) -> list[Emit]:
        """The outputs of one endpointing event: a VadEvent, plus the utterance at a kept end.

        A pause yields only the speculative utterance (the caller hears of nothing).  A
        kept end that continues an earlier turn also cancels that turn on ``voxbus.control``.
        """
        if isinstance(event, SpeechPause):
            return [self.utterance(session_id, session, event)]
        kept = isinstance(event, SpeechEnd) and not event.too_short
        if isinstance(event, SpeechStart):
            session.continuation.speech_start(event.sample)
            continued = session.continuation.continuing  # may continue it: its reply is held
        elif kept:
            continued = self.bounds(session, event)[2]
        else:  # a blip: the reply it held goes on
            continued = session.continuation.continuing
            session.continuation.blip()
        start = event.sample if isinstance(event, SpeechStart) else event.start
        sample = event.sample if isinstance(event, SpeechStart) else event.end
        vad_event = VadEvent(
            session_id=session_id, egress_partition=session.egress_partition,
            turn_id=turn_id(start, session.epoch),
            kind="speech_start" if isinstance(event, SpeechStart) else "speech_end",
            sample=sample, ts=session.wall_time(sample), utterance=kept,
            continues=continued.turn_id if continued is not None else "",
        )
        emits = [Emit(EGRESS, vad_event)]
        if kept:
            emits.insert(0, self.utterance(session_id, session, event))
        if kept and continued is not None:
            emits.append(Emit(CONTROL, TurnCancel(
                session_id=session_id, egress_partition=session.egress_partition,
                turn_id=continued.turn_id, reason="continuation", ts=time.time(),
            )))
        return emits

    def skip_gap(self, session_id: str, session: Session, resume_sample: int) -> list[Emit]:
        """Jump the session's timeline to ``resume_sample``, ending any speech at the gap.

        Returns:
            The outputs of the utterance in progress, ended at the gap (as at a hang-up).
        """
        log.info("session %s: %.1f s of audio missing; skipped, not zero-filled", session_id,
                 (resume_sample - session.next_sample) / BUS_SAMPLE_RATE)
        end = session.endpointer.flush(session.next_sample)
        emits = self.on_event(session_id, session, end) if end is not None else []
        session.continuation.reset()
        session.vad = VadState()
        session.audio = np.zeros(0, dtype=np.int16)
        session.pending = np.zeros(0, dtype=np.float32)
        session.audio_start = session.next_sample = resume_sample
        return emits

    def feed(self, session: Session, chunk: AudioChunk) -> list[Event]:
        """Append ``chunk`` to the session and run VAD over its complete windows.

        Stops after a pause that awaits the turn model (the rest waits in ``pending``).
        """
        samples = np.frombuffer(chunk.pcm, dtype="<i2")
        gap = chunk.start_sample - session.next_sample
        if gap > 0:  # lost chunks: keep the timeline with silence
            samples = np.concatenate([np.zeros(gap, dtype=np.int16), samples])
        elif gap < 0:  # it began before the point this worker resumed at
            samples = samples[-gap:]
        session.audio = np.concatenate([session.audio, samples])
        session.next_sample += samples.size
        session.next_seq = chunk.seq + 1
        session.arrivals.append((session.next_sample, chunk.recv_ts))
        raw = samples.astype(np.float32) / 32768.0
        floats = session.denoiser(raw) if session.denoiser is not None else raw
        session.pending = np.concatenate([session.pending, floats])
        events = self.run_windows(session)
        floor = session.denoiser.floor if session.denoiser is not None else None
        if floor is not None and not session.endpointer.triggered and not events:
            floor.observe(window_levels(raw))
        return events

    def run_windows(self, session: Session) -> list[Event]:
        """Run VAD over the session's complete pending windows, up to a pause awaiting a verdict.

        While nobody speaks, the audio is trimmed to the padding plus one window, or to the
        start of an ended turn that may still be continued.
        """
        events: list[Event] = []
        window_start = session.next_sample - session.pending.size
        while session.pending.size >= WINDOW_SAMPLES and not session.endpointer.awaiting:
            window, session.pending = session.pending[:WINDOW_SAMPLES], session.pending[WINDOW_SAMPLES:]
            probability = self.vad.probability(window, session.vad)
            event = session.endpointer.step(window_start, window_start + WINDOW_SAMPLES, probability)
            if event is not None:
                events.append(event)
            window_start += WINDOW_SAMPLES
        if not session.endpointer.triggered and not events:
            session.continuation.expire(window_start)
            first = session.next_sample - self.config.samples(self.config.speech_pad_ms) - WINDOW_SAMPLES
            kept_from = session.continuation.keep_from()
            first = min(first, kept_from) if kept_from is not None else first
            if first > session.audio_start:
                session.audio = session.audio[first - session.audio_start:]
                session.audio_start = first
        return events

    def bounds(self, session: Session, end: SpeechEnd | SpeechPause) -> tuple[int, int, ClosedTurn | None]:
        """The padded utterance of ``end``: (start sample, stop sample, the turn it continues or None).

        A continued turn's utterance starts where that turn's did.
        """
        pad = self.config.samples(self.config.speech_pad_ms)
        stop = min(session.next_sample, end.end + pad)
        continued = session.continuation.merged_start(stop)
        start = continued.start if continued is not None else max(session.audio_start, end.start - pad)
        return start, stop, continued

    def utterance(self, session_id: str, session: Session, end: SpeechEnd | SpeechPause) -> Emit:
        """Cut the padded utterance ``end`` (see :meth:`bounds`) out of the session audio.

        A pause copies it (speculative; the audio stays for the confirmed utterance, which
        then has the same bounds: the pause comes after at least the padding's silence).
        A confirmed end that was not forced may be continued: its audio is kept (see
        :meth:`run_windows`).
        """
        start, stop, _ = self.bounds(session, end)
        pcm = session.audio[start - session.audio_start: stop - session.audio_start]
        speculative = isinstance(end, SpeechPause)
        if not speculative:
            session.cut_until = stop
            forced = isinstance(end, SpeechEnd) and end.forced
            closed = None if forced else ClosedTurn(turn_id(end.start, session.epoch), start, end.end)
            session.continuation.close(closed)
            drop = start if session.continuation.closed is not None else stop
            session.audio = session.audio[drop - session.audio_start:]
            session.audio_start = drop
        speech_end_ts = session.wall_time(end.end)
        return Emit(UTTERANCES, Utterance(
            session_id=session_id,
            egress_partition=session.egress_partition,
            turn_id=turn_id(end.start, session.epoch),
            start_sample=start,
            end_sample=stop,
            pcm=pcm.astype("<i2").tobytes(),
            speech_end_ts=speech_end_ts,
            speculative=speculative,
            speak=session.speak,
            language=session.language,
            marks={"vad.speech_end": speech_end_ts, "vad.emit": time.time()},
        ))
