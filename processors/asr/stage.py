"""The asr stage: utterances in, transcripts out (faster-whisper)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from processors.asr.whisper import Recognizer
from processors.base import Emit, Stage
from schemas import Record, Transcript, Utterance
from streams.topics import EGRESS, TRANSCRIPTS, UTTERANCES


class AsrStage(Stage):
    """Transcribe each utterance.

    Consumes ``voxbus.utterances``; produces :class:`Transcript` to
    ``voxbus.transcripts`` (for the intent stage) and to ``voxbus.egress`` (for the
    caller).  A segment Whisper judges to hold no speech yields an empty transcript
    to the caller only, which closes the turn there.
    """

    name = "asr"
    input = UTTERANCES
    accepts = (Utterance,)

    def load(self) -> None:
        """Load the Whisper model."""
        self.recognizer = Recognizer.from_settings(self.settings)

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Transcribe one utterance (in a thread, so the worker stays responsive)."""
        assert isinstance(record, Utterance)
        started = time.time()
        audio = np.frombuffer(record.pcm, dtype="<i2").astype(np.float32) / 32768.0
        result = await asyncio.to_thread(self.recognizer.transcribe, audio)
        transcript = Transcript(
            session_id=record.session_id,
            egress_partition=record.egress_partition,
            turn_id=record.turn_id,
            text=result.text,
            avg_logprob=result.avg_logprob,
            no_speech_prob=result.no_speech_prob,
            audio_seconds=audio.size / record.sample_rate,
            marks={**record.marks, "asr.start": started, "asr.end": time.time()},
        )
        if transcript.text:
            yield Emit(TRANSCRIPTS, transcript)
        yield Emit(EGRESS, transcript)
