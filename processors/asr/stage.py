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
    batch_setting = "asr_batch_size"

    def load(self) -> None:
        """Load the Whisper model and run it once, so the first caller does not pay the warm-up."""
        self.recognizer = Recognizer.from_settings(self.settings)
        self.recognizer.transcribe(np.zeros(16_000, dtype=np.float32))

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Transcribe one utterance."""
        async for emit in self.handle_batch([record]):
            yield emit

    async def handle_batch(self, records: list[Record]) -> AsyncIterator[Emit]:
        """Transcribe utterances that were waiting together, from any sessions, in one batch.

        Decoding runs in a thread, so the worker keeps heartbeating meanwhile.
        """
        utterances = [r for r in records if isinstance(r, Utterance)]
        started = time.time()
        audios = [np.frombuffer(u.pcm, dtype="<i2").astype(np.float32) / 32768.0 for u in utterances]
        results = await asyncio.to_thread(self.recognizer.transcribe_batch, audios)
        ended = time.time()
        for utterance, audio, result in zip(utterances, audios, results, strict=True):
            transcript = Transcript(
                session_id=utterance.session_id,
                egress_partition=utterance.egress_partition,
                turn_id=utterance.turn_id,
                text=result.text,
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                audio_seconds=audio.size / utterance.sample_rate,
                marks={**utterance.marks, "asr.start": started, "asr.end": ended},
            )
            if transcript.text:
                yield Emit(TRANSCRIPTS, transcript)
            yield Emit(EGRESS, transcript)
