"""The tts stage: reply sentences in, synthesized audio out (Piper; espeak-ng for a language without one)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from processors.base import Emit, Stage
from processors.cancel import CancelledTurns
from processors.tts.espeak_voice import EspeakUnavailable
from processors.tts.voices import Voices
from schemas import Record, ReplyText, SynthAudio, TurnCancel
from streams.topics import EGRESS, REPLIES

log = logging.getLogger(__name__)


class TtsStage(Stage):
    """Synthesize each reply sentence as soon as it arrives.

    Consumes ``voxbus.replies``; produces :class:`SynthAudio` to ``voxbus.egress``.
    Sentences with ``speak=False`` (text channel) and sentences of turns cancelled on
    ``voxbus.control`` (barge-in) are skipped.  The final sentence's
    last chunk carries ``final=True`` (an empty chunk when the sentence is empty).

    Each sentence is spoken by the voice of its language (:mod:`processors.tts.voices`).  A
    sentence no voice can speak (espeak-ng missing or failing) is logged and left silent: the
    caller still reads it, and a final sentence still ends the turn with its empty last chunk.
    """

    name = "tts"
    input = REPLIES
    accepts = (ReplyText,)
    control = True

    def load(self) -> None:
        """Load the English Piper voice (the others on first use)."""
        self.voices = Voices(self.settings)
        list(self.voices.for_language("en").synthesize("Hello."))  # warm-up: the first synthesis is slow
        self.cancelled = CancelledTurns()

    def speak(self, text: str, language: str) -> tuple[list[bytes], int]:
        """Synthesize ``text`` in ``language``'s voice (blocking); no chunks if no voice can.

        Returns:
            (PCM16LE mono chunks, sample rate in Hz).
        """
        try:
            voice = self.voices.for_language(language)
            return (list(voice.synthesize(text)) if text else []), voice.sample_rate
        except EspeakUnavailable as exc:
            log.warning("no voice speaks %s: %s", language, exc)
            return [], self.voices.for_language("en").sample_rate

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Remember the cancelled turn so its remaining sentences are not synthesized."""
        self.cancelled.add(cancel.session_id, cancel.turn_id)
        return []

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Synthesize one sentence, yielding chunks as Piper produces them."""
        assert isinstance(record, ReplyText)
        if not record.speak or (record.session_id, record.turn_id) in self.cancelled:
            return
        chunks, rate = await asyncio.to_thread(self.speak, record.text, record.language)
        if record.final and not chunks:
            chunks = [b""]
        marks = {**record.marks, f"tts.sentence{record.index}": time.time()}
        for seq, pcm in enumerate(chunks):
            yield Emit(EGRESS, SynthAudio(
                session_id=record.session_id, egress_partition=record.egress_partition,
                turn_id=record.turn_id, index=record.index, seq=seq, sample_rate=rate, pcm=pcm,
                final=record.final and seq == len(chunks) - 1, marks=marks,
            ))
