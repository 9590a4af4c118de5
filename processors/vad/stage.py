"""The vad stage: caller audio chunks in, utterances out (silero-vad endpointing)."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from processors.base import Emit, Stage
from processors.vad.denoise import NoiseFloor, VadDenoiser, window_levels
from processors.vad.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechPause, SpeechStart
from processors.vad.silero import WINDOW_SAMPLES, SileroVad, VadState
from schemas import BUS_SAMPLE_RATE, AudioChunk, Record, SessionControl, Utterance, VadEvent
from streams.topics import AUDIO, EGRESS, UTTERANCES

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 600.0
"""A session with no record for this long (s) is forgotten: longer than the ingress's
idle timeout (``VOXBUS_IDLE_TIMEOUT_S``, 120 s), after which the ingress has closed it."""
MAX_FILLED_GAP_S = 1.0
"""Longest gap (s) in a session's audio heard as silence (chunks shed or lost: the endpointer
hears the pause).  A longer gap, such as the minutes since sample 0 of a call a restarted
worker joins at its committed offset, is skipped: speech in progress ends at the gap and the
timeline jumps, so the work stays that of the audio received."""


def turn_id(start_sample: int, epoch: int) -> str:
    """The id of the turn whose speech starts at ``start_sample`` of connection ``epoch``."""
    return f"a{start_sample}-{epoch}"


@dataclass
class Session:
    """Endpointing state of one caller session.

    ``audio`` holds int16 samples from ``audio_start`` (a sample offset from the start of
    connection ``epoch``) to ``next_sample``; it is trimmed to the padding while nobody speaks.
    """

    endpointer: Endpointer
    denoiser: VadDenoiser | None
    vad: VadState = field(default_factory=VadState)
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    audio_start: int = 0
    next_sample: int = 0
    next_seq: int = 0
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    arrivals: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=4096))
    egress_partition: int = 0
    speak: bool = True
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
    """

    name = "vad"
    input = AUDIO
    accepts = (AudioChunk, SessionControl)

    def load(self) -> None:
        """Load the silero-vad ONNX model."""
        self.vad = SileroVad()
        s = self.settings
        self.config = EndpointConfig(
            threshold=s.vad_threshold,
            min_silence_ms=s.vad_min_silence_ms,
            min_speech_ms=s.vad_min_speech_ms,
            speech_pad_ms=min(s.vad_speech_pad_ms, s.vad_min_silence_ms),
            max_utterance_s=s.vad_max_utterance_s,
            early_silence_ms=s.vad_early_silence_ms,
        )
        self.sessions: dict[str, Session] = {}
        self.swept = time.monotonic()

    def new_session(self, epoch: int = 0) -> Session:
        """A fresh endpointing state."""
        mode = self.settings.denoise
        floor = NoiseFloor(self.settings.denoise_floor_dbfs) if mode == "auto" else None
        denoiser = VadDenoiser(BUS_SAMPLE_RATE, floor) if mode != "off" else None
        return Session(Endpointer(self.config), denoiser, epoch=epoch)

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

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Feed a chunk to the session's endpointer; yield speech events and finished utterances."""
        self.expire_sessions()
        session = self.session_for(record.session_id, record.epoch)  # type: ignore[attr-defined]
        if session is None:
            return
        if isinstance(record, SessionControl):
            if record.action == "end":
                del self.sessions[record.session_id]
                end = session.endpointer.flush(session.next_sample)
                if end is not None:
                    for emit in self.on_event(record.session_id, session, end):
                        yield emit
            return
        assert isinstance(record, AudioChunk)
        if record.seq < session.next_seq:
            return  # a redelivered chunk: already endpointed
        session.egress_partition, session.speak = record.egress_partition, record.speak
        if record.start_sample - session.next_sample > MAX_FILLED_GAP_S * BUS_SAMPLE_RATE:
            for emit in self.skip_gap(record.session_id, session, record.start_sample):
                yield emit
        for event in self.feed(session, record):
            for emit in self.on_event(record.session_id, session, event):
                yield emit

    def on_event(self, session_id: str, session: Session,
                 event: SpeechStart | SpeechPause | SpeechEnd) -> list[Emit]:
        """The outputs of one endpointing event: a VadEvent, plus the utterance at a kept end.

        A pause yields only the speculative utterance (the caller hears of nothing).
        """
        if isinstance(event, SpeechPause):
            return [self.utterance(session_id, session, event)]
        start = event.sample if isinstance(event, SpeechStart) else event.start
        sample = event.sample if isinstance(event, SpeechStart) else event.end
        kept = isinstance(event, SpeechEnd) and not event.too_short
        vad_event = VadEvent(
            session_id=session_id, egress_partition=session.egress_partition,
            turn_id=turn_id(start, session.epoch),
            kind="speech_start" if isinstance(event, SpeechStart) else "speech_end",
            sample=sample, ts=session.wall_time(sample), utterance=kept,
        )
        emits = [Emit(EGRESS, vad_event)]
        if kept:
            emits.insert(0, self.utterance(session_id, session, event))
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
        session.vad = VadState()
        session.audio = np.zeros(0, dtype=np.int16)
        session.pending = np.zeros(0, dtype=np.float32)
        session.audio_start = session.next_sample = resume_sample
        return emits

    def feed(self, session: Session, chunk: AudioChunk) -> list[SpeechStart | SpeechPause | SpeechEnd]:
        """Append ``chunk`` to the session and run VAD over every complete window."""
        samples = np.frombuffer(chunk.pcm, dtype="<i2")
        gap = chunk.start_sample - session.next_sample
        if gap > 0:  # lost chunks: keep the timeline with silence
            samples = np.concatenate([np.zeros(gap, dtype=np.int16), samples])
        session.audio = np.concatenate([session.audio, samples])
        session.next_sample += samples.size
        session.next_seq = chunk.seq + 1
        session.arrivals.append((session.next_sample, chunk.recv_ts))
        raw = samples.astype(np.float32) / 32768.0
        floats = session.denoiser(raw) if session.denoiser is not None else raw
        session.pending = np.concatenate([session.pending, floats])
        events: list[SpeechStart | SpeechPause | SpeechEnd] = []
        window_start = session.next_sample - session.pending.size
        while session.pending.size >= WINDOW_SAMPLES:
            window, session.pending = session.pending[:WINDOW_SAMPLES], session.pending[WINDOW_SAMPLES:]
            probability = self.vad.probability(window, session.vad)
            event = session.endpointer.step(window_start, window_start + WINDOW_SAMPLES, probability)
            if event is not None:
                events.append(event)
            window_start += WINDOW_SAMPLES
        if not session.endpointer.triggered and not events:
            if session.denoiser is not None and session.denoiser.floor is not None:
                session.denoiser.floor.observe(window_levels(raw))
            keep = self.config.samples(self.config.speech_pad_ms) + WINDOW_SAMPLES
            if session.audio.size > keep:
                session.audio_start += session.audio.size - keep
                session.audio = session.audio[-keep:]
        return events

    def utterance(self, session_id: str, session: Session, end: SpeechEnd | SpeechPause) -> Emit:
        """Cut the padded utterance ``end`` out of the session audio.

        A pause copies it (speculative; the audio stays for the confirmed utterance, which
        then has the same bounds: the pause comes after at least the padding's silence).
        """
        pad = self.config.samples(self.config.speech_pad_ms)
        start = max(session.audio_start, end.start - pad)
        stop = min(session.next_sample, end.end + pad)
        pcm = session.audio[start - session.audio_start: stop - session.audio_start]
        speculative = isinstance(end, SpeechPause)
        if not speculative:
            session.audio = session.audio[stop - session.audio_start:]
            session.audio_start = stop
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
            marks={"vad.speech_end": speech_end_ts, "vad.emit": time.time()},
        ))
