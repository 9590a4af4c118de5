"""WebRTC media of a caller session: the caller's decoded Opus in, the reply track out.

aiortc decodes the caller's Opus to :class:`av.AudioFrame` objects (48 kHz, RFC 7587);
:class:`MicDecoder` turns them into PCM16 mono at the bus rate with av's resampler
(libswresample).  Reply audio arrives at the voice's rate; :class:`ReplyTrack` resamples
each turn's audio to 48 kHz (soxr), queues it and plays it out in 20 ms frames in real
time (silence between replies), which aiortc encodes to Opus.  The track knows what it
has played, so it reports each turn's position as it plays it (the caller's playback
position, :meth:`ingress.session.CallerSession.confirm_heard`) and the end of each segment.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import soxr
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from schemas import BUS_SAMPLE_RATE

OPUS_RATE = 48000
"""Hz of WebRTC's Opus audio (its RTP clock rate is always 48 kHz, RFC 7587)."""
FRAME_SAMPLES = 960
"""Samples of one reply frame: 20 ms at 48 kHz, aiortc's packetization time."""
BYTES_PER_SAMPLE = 2

Progress = Callable[[str, int, bool], None]
"""``(turn_id, heard_bytes, segment_done)``: the track played a turn up to ``heard_bytes`` of its PCM16."""


class MicDecoder:
    """The caller's decoded frames (any rate and layout) as PCM16LE mono at :data:`BUS_SAMPLE_RATE`."""

    def __init__(self) -> None:
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=BUS_SAMPLE_RATE)

    def pcm(self, frame: av.AudioFrame) -> bytes:
        """PCM16LE mono bytes for ``frame`` (may be empty while the resampler fills)."""
        return b"".join(bytes(out.planes[0])[:out.samples * BYTES_PER_SAMPLE]
                        for out in self.resampler.resample(frame))


@dataclass
class _Segment:
    """Reply audio queued for the caller: ``samples`` (int16, 48 kHz) cover bytes ``[start, end)``."""

    turn_id: str
    samples: np.ndarray
    start: int
    end: int
    played: int = 0

    def heard(self) -> int:
        """The turn's byte offset the caller has heard once ``played`` samples are out (even)."""
        share = self.played / len(self.samples) if len(self.samples) else 1.0
        return (self.start + int((self.end - self.start) * share)) // BYTES_PER_SAMPLE * BYTES_PER_SAMPLE


class ReplyTrack(MediaStreamTrack):
    """The ingress's audio track to the caller: queued reply audio, else silence, in real time.

    Args:
        on_progress: called with each turn's position as its audio goes out (every frame),
            ``segment_done`` True when one :meth:`enqueue` call's audio has all gone out.
    """

    kind = "audio"

    def __init__(self, on_progress: Progress) -> None:
        super().__init__()
        self.on_progress = on_progress
        self.segments: deque[_Segment] = deque()
        self.resamplers: dict[str, tuple[int, soxr.ResampleStream]] = {}
        self.started: float | None = None
        self.pts = 0

    def enqueue(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        """Queue a segment of a turn's reply: PCM16LE mono at ``sample_rate`` Hz, ending at ``offset``."""
        rate, stream = self.resamplers.get(turn_id, (0, None))
        if stream is None or rate != sample_rate:
            stream = soxr.ResampleStream(sample_rate, OPUS_RATE, 1, dtype="int16", quality="HQ")
            self.resamplers[turn_id] = (sample_rate, stream)
        samples = stream.resample_chunk(np.frombuffer(pcm, dtype="<i2"), last=final)
        if final:
            del self.resamplers[turn_id]
        self.segments.append(_Segment(turn_id, samples, offset - len(pcm), offset))

    def flush(self, turn_id: str) -> None:
        """Drop what is queued of ``turn_id`` (barge-in); a resumed reply starts a fresh resampler."""
        self.segments = deque(s for s in self.segments if s.turn_id != turn_id)
        self.resamplers.pop(turn_id, None)

    @property
    def queued_s(self) -> float:
        """Seconds of reply audio queued and not yet played."""
        return sum(len(s.samples) - s.played for s in self.segments) / OPUS_RATE

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms frame (s16 mono, 48 kHz), at its real-time moment.

        Raises:
            MediaStreamError: the track has ended.
        """
        if self.readyState != "live":
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        else:
            self.pts += FRAME_SAMPLES
            await asyncio.sleep(self.started + self.pts / OPUS_RATE - time.monotonic())
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self.segments:
            segment = self.segments[0]
            take = min(FRAME_SAMPLES - filled, len(segment.samples) - segment.played)
            out[filled:filled + take] = segment.samples[segment.played:segment.played + take]
            segment.played += take
            filled += take
            done = segment.played >= len(segment.samples)
            if done:
                self.segments.popleft()
            self.on_progress(segment.turn_id, segment.heard(), done)
        frame = av.AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = OPUS_RATE
        frame.pts = self.pts
        frame.time_base = fractions.Fraction(1, OPUS_RATE)
        return frame
