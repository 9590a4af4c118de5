"""The tts stage: reply sentences in, synthesized audio out (Piper)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from processors.base import Emit, Stage
from processors.cancel import CancelledTurns
from processors.tts.piper_voice import Synthesizer
from schemas import Record, ReplyText, SynthAudio, TurnCancel
from streams.topics import EGRESS, REPLIES


class TtsStage(Stage):
    """Synthesize each reply sentence as soon as it arrives.

    Consumes ``voxbus.replies``; produces :class:`SynthAudio` to ``voxbus.egress``.
    Sentences with ``speak=False`` (text channel) and sentences of turns cancelled on
    ``voxbus.control`` (barge-in) are skipped.  The final sentence's
    last chunk carries ``final=True`` (an empty chunk when the sentence is empty).
    """

    name = "tts"
    input = REPLIES
    accepts = (ReplyText,)
    control = True

    def load(self) -> None:
        """Load the Piper voice."""
        self.synthesizer = Synthesizer.from_settings(self.settings)
        list(self.synthesizer.synthesize("Hello."))  # warm-up: the first synthesis is slow
        self.cancelled = CancelledTurns()

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Remember the cancelled turn so its remaining sentences are not synthesized."""
        self.cancelled.add(cancel.session_id, cancel.turn_id)
        return []

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Synthesize one sentence, yielding chunks as Piper produces them."""
        assert isinstance(record, ReplyText)
        if not record.speak or (record.session_id, record.turn_id) in self.cancelled:
            return
        chunks = await asyncio.to_thread(lambda: list(self.synthesizer.synthesize(record.text)) if record.text else [])
        if record.final and not chunks:
            chunks = [b""]
        marks = {**record.marks, f"tts.sentence{record.index}": time.time()}
        for seq, pcm in enumerate(chunks):
            yield Emit(EGRESS, SynthAudio(
                session_id=record.session_id, egress_partition=record.egress_partition, turn_id=record.turn_id,
                index=record.index, seq=seq, sample_rate=self.synthesizer.sample_rate, pcm=pcm,
                final=record.final and seq == len(chunks) - 1, marks=marks,
            ))
