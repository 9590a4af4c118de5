"""The tts stage: reply sentences in, synthesized audio out (Piper; espeak-ng for a language without one)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from processors.base import Emit, Stage
from processors.cancel import CancelledTurns
from processors.tts.espeak_voice import EspeakUnavailable
from processors.tts.voices import Voices
from schemas import DEFAULT_LANGUAGE, Record, ReplyText, SynthAudio, TurnCancel
from streams.topics import EGRESS, REPLIES

log = logging.getLogger(__name__)


class TtsStage(Stage):
    """Synthesize each reply sentence as soon as it arrives.

    Consumes ``voxbus.replies``; produces :class:`SynthAudio` to ``voxbus.egress``.
    Sentences with ``speak=False`` (text channel) and sentences of turns cancelled on
    ``voxbus.control`` (barge-in) are skipped, and a sentence being synthesized stops at the
    next piece when its turn is cancelled.  The final sentence's
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
        """Load (and warm up) the English Piper voice; the others on first use."""
        self.voices = Voices(self.settings)
        self.cancelled = CancelledTurns()

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Remember the cancelled turn: its remaining sentences and pieces are not synthesized."""
        self.cancelled.add(cancel.session_id, cancel.turn_id)
        return []

    async def pcm(self, record: ReplyText) -> AsyncIterator[tuple[bytes, int]]:
        """The sentence's PCM16LE chunks with their rate (Hz), each synthesized off the event loop.

        Stops at once when the turn is cancelled (the voice synthesizes lazily, one bounded
        piece per call, :mod:`processors.tts.piper_voice`); yields nothing when no voice can
        speak the language or the voice fails.
        """
        if not record.text:
            return
        try:
            voice = self.voices.for_language(record.language)
            with contextlib.closing(voice.synthesize(record.text)) as chunks:
                while (record.session_id, record.turn_id) not in self.cancelled:
                    pcm = await asyncio.to_thread(next, chunks, None)
                    if pcm is None:
                        return
                    yield pcm, voice.sample_rate
        except EspeakUnavailable as exc:
            log.warning("no voice speaks %s: %s", record.language, exc)

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Synthesize one sentence, yielding each chunk as soon as the one after it is known.

        One chunk is held back so that the last one can carry ``final``; a final sentence
        with no audio ends with an empty chunk.  A turn cancelled meanwhile gets nothing more.
        """
        assert isinstance(record, ReplyText)
        if not record.speak or (record.session_id, record.turn_id) in self.cancelled:
            return
        marks = {**record.marks, f"tts.sentence{record.index}": time.time()}

        def emit(seq: int, pcm: bytes, rate: int, final: bool) -> Emit:
            return Emit(EGRESS, SynthAudio(
                session_id=record.session_id, egress_partition=record.egress_partition,
                turn_id=record.turn_id, index=record.index, seq=seq, sample_rate=rate, pcm=pcm,
                final=final, marks=marks,
            ))

        held: tuple[bytes, int] | None = None
        seq = 0
        async for chunk in self.pcm(record):
            if held is not None:
                yield emit(seq, *held, final=False)
                seq += 1
            held = chunk
        if (record.session_id, record.turn_id) in self.cancelled:
            return
        if held is not None:
            yield emit(seq, *held, final=record.final)
        elif record.final:
            yield emit(0, b"", self.voices.for_language(DEFAULT_LANGUAGE).sample_rate, final=True)
