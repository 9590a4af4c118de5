"""A session as a stereo recording: the caller on the left, voxbus (assistant and agent) on the right.

Made from the session's records, wherever they still are: the archive, the topics, or both
(merged; each message once).  The caller channel is the session's
:class:`schemas.AudioChunk` s on ``voxbus.audio``, each placed at its connection's epoch plus
its ``start_sample`` (exact, gaps and reconnections included).  The other channel is every
:class:`schemas.SynthAudio` of the session on ``voxbus.egress``: the bot's replies and the
agent's (an agent's reply is synthesized like the bot's), one sentence at a time, placed at the
Kafka timestamp of its first chunk (when the ingress got it and began to play it) or, when the
previous sentence is still playing then, right after it: the caller's play-out.  A reply the
caller cut short (barge-in) is in the recording as far as it was synthesized.

A session started with ``record: false`` (:mod:`processors.archive.consent`) has no recording:
:func:`build` refuses it.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
from aiokafka.errors import KafkaError

from processors.analytics.io import Read, read_topic
from processors.archive.consent import wants_recording
from processors.archive.layout import place
from processors.archive.reader import archive_root, read_archive
from schemas import BUS_SAMPLE_RATE, AudioChunk, SessionControl, SynthAudio
from streams.settings import Settings
from streams.topics import AUDIO, EGRESS

log = logging.getLogger(__name__)

SOURCES = ("auto", "archive", "topics")
"""Where :func:`session_reads` looks: ``auto`` both (the topics skipped if the broker cannot be
reached), ``archive`` or ``topics`` alone."""

RATE = BUS_SAMPLE_RATE
"""Sample rate (Hz) of a recording: the caller's (16 kHz); synthesized audio is resampled to it."""


class RecordingRefused(Exception):
    """The session was started with ``record: false``: it has no recording."""


class NoAudio(LookupError):
    """No audio of the session was found where :func:`session_reads` looked."""


@dataclass(frozen=True)
class Recording:
    """A session's stereo recording.

    Attributes:
        samples: int16 array of shape (n, 2): column 0 the caller, column 1 voxbus, at :data:`RATE`.
        start: wall-clock time (epoch s) of sample 0.
        caller_s: seconds of caller audio placed; voxbus_s: seconds of synthesized audio placed.
    """

    samples: np.ndarray
    start: float
    caller_s: float
    voxbus_s: float

    def wav(self) -> bytes:
        """The recording as a 16-bit PCM stereo WAV file at :data:`RATE` (its bytes: 4 per frame + header)."""
        out = io.BytesIO()
        soundfile.write(out, self.samples, RATE, subtype="PCM_16", format="WAV")
        return out.getvalue()

    def write(self, path: Path) -> None:
        """Write the recording to ``path`` as :meth:`wav`.

        Raises:
            OSError: the file cannot be written.
        """
        path.write_bytes(self.wav())


async def session_reads(settings: Settings, session_id: str, source: str = "auto") -> list[Read]:
    """The audio-topic and egress messages of ``session_id`` from ``source`` (:data:`SOURCES`), each once.

    Raises:
        ValueError: an unknown ``source``.
        aiokafka.errors.KafkaError / LookupError: ``source`` is ``topics`` and they cannot be read.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {source!r}")
    reads: list[Read] = []
    if source in ("auto", "archive"):
        reads.extend(read_archive(archive_root(settings), [AUDIO.name, EGRESS.name], sessions=[session_id]))
    if source in ("auto", "topics"):
        try:
            for topic in (AUDIO.name, EGRESS.name):
                async for read in read_topic(settings, topic):
                    if read.message.key == session_id.encode():
                        reads.append(read)
        except (KafkaError, LookupError, OSError) as exc:
            if source == "topics":
                raise
            log.warning("recording: topics not read (%s: %s); the archive alone", type(exc).__name__, exc)
    seen: set[tuple[str, int, int, int]] = set()
    unique = []
    for read in reads:
        if place(read.message) not in seen:
            seen.add(place(read.message))
            unique.append(read)
    return unique


def _caller(chunks: Iterable[AudioChunk]) -> list[tuple[float, np.ndarray]]:
    """Caller segments (start epoch s, int16 samples at :data:`RATE`), each chunk once."""
    unique = {(chunk.epoch, chunk.seq): chunk for chunk in chunks}
    out = []
    for chunk in unique.values():
        if chunk.epoch:
            start = chunk.epoch / 1000 + chunk.start_sample / BUS_SAMPLE_RATE
        else:  # a version-1 chunk has no epoch: its last byte arrived at recv_ts
            start = chunk.recv_ts - chunk.num_samples / BUS_SAMPLE_RATE
        out.append((start, np.frombuffer(chunk.pcm, "<i2")))
    return out


def _voxbus(synth: Iterable[tuple[float, SynthAudio]]) -> list[tuple[float, np.ndarray]]:
    """Synthesized segments (start epoch s, int16 at :data:`RATE`), one per sentence, in play-out order.

    Args:
        synth: (Kafka timestamp in epoch s, chunk) pairs.
    """
    sentences: dict[tuple[str, int], dict[int, tuple[float, SynthAudio]]] = defaultdict(dict)
    for ts, chunk in synth:
        sentences[(chunk.turn_id, chunk.index)].setdefault(chunk.seq, (ts, chunk))
    ordered = sorted(sentences.values(), key=lambda parts: min(ts for ts, _ in parts.values()))
    out, cursor = [], 0.0
    for parts in ordered:
        chunks = [parts[seq][1] for seq in sorted(parts)]
        pcm = np.frombuffer(b"".join(chunk.pcm for chunk in chunks), "<i2")
        if not pcm.size:
            continue
        rate = chunks[0].sample_rate
        if rate != RATE:
            pcm = np.clip(soxr.resample(pcm.astype(np.float32) / 32768, rate, RATE) * 32768, -32768, 32767)
            pcm = pcm.astype(np.int16)
        start = max(cursor, min(ts for ts, _ in parts.values()))
        out.append((start, pcm))
        cursor = start + pcm.size / RATE
    return out


def build(reads: Iterable[Read], session_id: str) -> Recording:
    """The stereo recording of ``session_id`` from its messages (any order, repeats allowed).

    Raises:
        RecordingRefused: a start or config record of the session says ``record: false``.
        NoAudio: there is no audio of the session among ``reads``.
    """
    chunks: list[AudioChunk] = []
    synth: list[tuple[float, SynthAudio]] = []
    for read in reads:
        record = read.record
        if getattr(record, "session_id", None) != session_id:
            continue
        if isinstance(record, SessionControl) and wants_recording(record) is False:
            raise RecordingRefused(f"session {session_id} was started with record: false")
        if isinstance(record, AudioChunk) and record.pcm:
            chunks.append(record)
        elif isinstance(record, SynthAudio) and record.pcm:
            synth.append((read.message.timestamp / 1000, record))
    left, right = _caller(chunks), _voxbus(synth)
    segments = left + right
    if not segments:
        raise NoAudio(f"no audio of session {session_id} (not archived, or past its retention)")
    start = min(begin for begin, _ in segments)
    end = max(begin + pcm.size / RATE for begin, pcm in segments)
    samples = np.zeros((int(round((end - start) * RATE)) + 1, 2), np.int16)
    for channel, placed in ((0, left), (1, right)):
        for begin, pcm in placed:
            offset = int(round((begin - start) * RATE))
            samples[offset:offset + pcm.size, channel] = pcm[: max(0, samples.shape[0] - offset)]
    seconds = [sum(pcm.size for _, pcm in placed) / RATE for placed in (left, right)]
    return Recording(samples, start, *seconds)
