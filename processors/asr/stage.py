"""The asr stage: utterances in, transcripts out (faster-whisper)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator

import numpy as np

from processors.asr.languages import Recognizers
from processors.asr.whisper import Recognition
from processors.base import Emit, Stage
from processors.memory import trim_heap
from processors.metrics import ASR_REJECTED
from schemas import Record, Transcript, Utterance
from streams.settings import Settings
from streams.topics import EGRESS, TRANSCRIPTS, UTTERANCES

SPECULATIONS_KEPT = 256
"""Speculative recognitions kept for their confirmed utterance (oldest dropped first)."""

Heard = tuple[Recognition, str]
"""A recognition and the language it was decoded in."""

SpeculationKey = tuple[str, str, int, int]
"""(session id, turn id, start sample, end sample) of an utterance."""


def speculation_key(utterance: Utterance) -> SpeculationKey:
    """The key a speculative utterance and its confirmed twin share."""
    return utterance.session_id, utterance.turn_id, utterance.start_sample, utterance.end_sample


class AsrStage(Stage):
    """Transcribe each utterance.

    Consumes ``voxbus.utterances``; produces :class:`Transcript` to
    ``voxbus.transcripts`` (for the intent stage) and to ``voxbus.egress`` (for the
    caller).  An utterance rejected as noise (:mod:`processors.asr.rejection`: Whisper's
    no-speech signals, a repetition loop, a known hallucination on weak evidence) is
    counted in ``voxbus_asr_rejected_total{reason}`` and yields an empty transcript to
    the caller only: nothing is answered, and a reply it interrupted resumes.

    Speculative utterances (sent by the vad stage at a pause, before the end of the turn
    is confirmed) are decoded when nothing else waits, and their recognition is kept:
    the confirmed utterance with the same bounds (same session, so same partition and
    same worker) is then answered without decoding.  This takes the decode off the
    endpointing silence.  A speculation that is never confirmed (the caller went on
    speaking) costs one decode and is forgotten; under a backlog none is decoded.

    Each utterance is decoded in its session's language by that language's model
    (:mod:`processors.asr.languages`), one batch per language; an utterance of no stated
    language is detected first.  The transcript carries the language.
    """

    name = "asr"
    input = UTTERANCES
    accepts = (Utterance,)
    batch_setting = "asr_batch_size"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.speculations: OrderedDict[SpeculationKey, tuple[Heard, float]] = OrderedDict()
        """Recognitions of speculative utterances and their decode start (epoch s), by key."""

    def load(self) -> None:
        """Load the Whisper model of each language and run each once, so the first caller does not pay it."""
        self.recognizers = Recognizers(self.settings)
        self.recognizers.warm_up()

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Transcribe one utterance."""
        async for emit in self.handle_batch([record]):
            yield emit

    async def decode(self, utterances: list[Utterance]) -> tuple[list[Heard], float, float]:
        """Decode ``utterances`` in a thread (the worker keeps heartbeating), one batch per language.

        Returns:
            (one (recognition, language) per utterance, decode start, decode end), times in epoch s.
        """
        started = time.time()
        audios = [np.frombuffer(u.pcm, dtype="<i2").astype(np.float32) / 32768.0 for u in utterances]
        results = await asyncio.to_thread(self.recognize, audios, [u.language for u in utterances])
        return results, started, time.time()

    def recognize(self, audios: list[np.ndarray], languages: list[str]) -> list[Heard]:
        """Recognize each audio in its language (detected where empty), batched by language (blocking).

        With ``VOXBUS_ASR_TRIM_HEAP`` (default on) the freed decode buffers then go back to the OS
        (:func:`processors.memory.trim_heap`).
        """
        spoken = [language or self.recognizers.detect(audio)[0] for audio, language in zip(audios, languages,
                                                                                            strict=True)]
        heard: list[Heard | None] = [None] * len(audios)
        for language in dict.fromkeys(spoken):
            indices = [i for i, found in enumerate(spoken) if found == language]
            batch = self.recognizers.for_language(language).transcribe_batch([audios[i] for i in indices],
                                                                             language)
            for index, result in zip(indices, batch, strict=True):
                heard[index] = (result, language)
        if self.settings.asr_trim_heap:
            trim_heap()
        return heard  # type: ignore[return-value]

    async def speculate(self, utterance: Utterance) -> None:
        """Decode a speculative utterance and keep its recognition for the confirmed one."""
        [result], started, _ = await self.decode([utterance])
        self.speculations[speculation_key(utterance)] = (result, started)
        while len(self.speculations) > SPECULATIONS_KEPT:
            self.speculations.popitem(last=False)

    async def handle_batch(self, records: list[Record]) -> AsyncIterator[Emit]:
        """Transcribe utterances that were waiting together, from any sessions, in one batch.

        A speculative utterance is decoded only when it is alone (no backlog).
        """
        utterances = [r for r in records if isinstance(r, Utterance)]
        confirmed = [u for u in utterances if not u.speculative]
        if not confirmed:
            if len(utterances) == 1:
                await self.speculate(utterances[0])
            return
        known = {i: self.speculations.pop(speculation_key(u)) for i, u in enumerate(confirmed)
                 if speculation_key(u) in self.speculations}
        todo = [u for i, u in enumerate(confirmed) if i not in known]
        decoded, started, ended = await self.decode(todo) if todo else ([], 0.0, 0.0)
        results = iter(decoded)
        now = time.time()
        for index, utterance in enumerate(confirmed):
            if index in known:
                (result, language), speculated = known[index]
                marks = {"asr.start": now, "asr.end": now, "asr.speculative": speculated}
            else:
                (result, language), marks = next(results), {"asr.start": started, "asr.end": ended}
            if result.rejected:
                ASR_REJECTED.labels(result.rejected).inc()
            transcript = Transcript(
                session_id=utterance.session_id,
                egress_partition=utterance.egress_partition,
                turn_id=utterance.turn_id,
                text=result.text,
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                audio_seconds=(utterance.end_sample - utterance.start_sample) / utterance.sample_rate,
                speak=utterance.speak,
                language=language,
                marks={**utterance.marks, **marks},
            )
            if transcript.text:
                yield Emit(TRANSCRIPTS, transcript)
            yield Emit(EGRESS, transcript)
