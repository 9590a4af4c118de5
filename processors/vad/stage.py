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
from processors.vad.endpointing import EndpointConfig, Endpointer, SpeechEnd, SpeechStart
from processors.vad.silero import WINDOW_SAMPLES, SileroVad, VadState
from schemas import BUS_SAMPLE_RATE, AudioChunk, Record, SessionControl, Utterance, VadEvent
from streams.topics import AUDIO, EGRESS, UTTERANCES

log = logging.getLogger(__name__)


@dataclass
class Session:
    """Endpointing state of one caller session.

    ``audio`` holds int16 samples from ``audio_start`` (a session sample offset) to
    ``next_sample``; it is trimmed to the padding while nobody speaks.
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
        )
        self.sessions: dict[str, Session] = {}

    def new_session(self) -> Session:
        """A fresh endpointing state."""
        mode = self.settings.denoise
        floor = NoiseFloor(self.settings.denoise_floor_dbfs) if mode == "auto" else None
        denoiser = VadDenoiser(BUS_SAMPLE_RATE, floor) if mode != "off" else None
        return Session(Endpointer(self.config), denoiser)

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Feed a chunk to the session's endpointer; yield speech events and finished utterances."""
        if isinstance(record, SessionControl):
            session = self.sessions.pop(record.session_id, None)
            if record.action == "end" and session is not None:
                end = session.endpointer.flush(session.next_sample)
                if end is not None:
                    for emit in self.on_event(record.session_id, session, end):
                        yield emit
            if record.action in ("start", "config"):
                self.sessions[record.session_id] = session or self.new_session()
            return
        assert isinstance(record, AudioChunk)
        session = self.sessions.setdefault(record.session_id, self.new_session())
        if record.seq < session.next_seq:
            return  # a redelivered chunk: already endpointed
        session.egress_partition = record.egress_partition
        for event in self.feed(session, record):
            for emit in self.on_event(record.session_id, session, event):
                yield emit

    def on_event(self, session_id: str, session: Session, event: SpeechStart | SpeechEnd) -> list[Emit]:
        """The outputs of one endpointing event: a VadEvent, plus the utterance at a kept end."""
        start = event.sample if isinstance(event, SpeechStart) else event.start
        sample = event.sample if isinstance(event, SpeechStart) else event.end
        kept = isinstance(event, SpeechEnd) and not event.too_short
        vad_event = VadEvent(
            session_id=session_id, egress_partition=session.egress_partition, turn_id=f"a{start}",
            kind="speech_start" if isinstance(event, SpeechStart) else "speech_end",
            sample=sample, ts=session.wall_time(sample), utterance=kept,
        )
        emits = [Emit(EGRESS, vad_event)]
        if kept:
            emits.insert(0, self.utterance(session_id, session, event))
        return emits

    def feed(self, session: Session, chunk: AudioChunk) -> list[SpeechStart | SpeechEnd]:
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
        events: list[SpeechStart | SpeechEnd] = []
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

    def utterance(self, session_id: str, session: Session, end: SpeechEnd) -> Emit:
        """Cut the padded utterance ``end`` out of the session audio."""
        pad = self.config.samples(self.config.speech_pad_ms)
        start = max(session.audio_start, end.start - pad)
        stop = min(session.next_sample, end.end + pad)
        pcm = session.audio[start - session.audio_start: stop - session.audio_start]
        session.audio = session.audio[stop - session.audio_start:]
        session.audio_start = stop
        speech_end_ts = session.wall_time(end.end)
        return Emit(UTTERANCES, Utterance(
            session_id=session_id,
            egress_partition=session.egress_partition,
            turn_id=f"a{end.start}",
            start_sample=start,
            end_sample=stop,
            pcm=pcm.astype("<i2").tobytes(),
            speech_end_ts=speech_end_ts,
            marks={"vad.speech_end": speech_end_ts, "vad.emit": time.time()},
        ))
