"""Caller audio at the edge: validate, resample to the bus rate, cut into bus chunks."""

from __future__ import annotations

import numpy as np
import soxr

from ingress.protocol import SUPPORTED_RATES, ProtocolError
from schemas import BUS_SAMPLE_RATE


class Chunker:
    """Turn arbitrary-size PCM16 frames into fixed-size chunks at :data:`BUS_SAMPLE_RATE`.

    Args:
        input_rate: the caller's sample rate (Hz), one of :data:`SUPPORTED_RATES`.
        chunk_ms: chunk duration on the bus (ms).

    Raises:
        ProtocolError: unsupported ``input_rate``.
    """

    def __init__(self, input_rate: int, chunk_ms: int) -> None:
        if input_rate not in SUPPORTED_RATES:
            raise ProtocolError("bad_sample_rate",
                                f"sample_rate {input_rate} Hz is not one of {SUPPORTED_RATES}")
        self.chunk_samples = BUS_SAMPLE_RATE * chunk_ms // 1000
        self.resampler = (
            None if input_rate == BUS_SAMPLE_RATE
            else soxr.ResampleStream(input_rate, BUS_SAMPLE_RATE, 1, dtype="int16", quality="HQ")
        )
        self.pending = np.zeros(0, dtype=np.int16)
        self.samples_out = 0

    def push(self, frame: bytes) -> list[tuple[int, bytes]]:
        """Add one caller frame; return the completed ``(start_sample, pcm)`` chunks.

        Raises:
            ProtocolError: the frame is empty or has an odd byte count (not PCM16).
        """
        if not frame:
            raise ProtocolError("empty_frame", "audio frame has no bytes")
        if len(frame) % 2:
            raise ProtocolError("odd_length", f"PCM16 frame must have an even byte count, got {len(frame)}")
        samples = np.frombuffer(frame, dtype="<i2")
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples)
        self.pending = np.concatenate([self.pending, samples])
        return self._cut(final=False)

    def flush(self) -> list[tuple[int, bytes]]:
        """Return the last, possibly short, chunk (at the end of the session)."""
        if self.resampler is not None:
            self.pending = np.concatenate([self.pending, self.resampler.resample_chunk(
                np.zeros(0, dtype=np.int16), last=True)])
        return self._cut(final=True)

    def _cut(self, final: bool) -> list[tuple[int, bytes]]:
        chunks = []
        while self.pending.size >= self.chunk_samples or (final and self.pending.size):
            part, self.pending = self.pending[:self.chunk_samples], self.pending[self.chunk_samples:]
            chunks.append((self.samples_out, part.astype("<i2").tobytes()))
            self.samples_out += part.size
        return chunks
