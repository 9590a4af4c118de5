"""Denoising for the VAD decision path only, switched on by the measured noise floor.

Measured here: noisereduce in front of Whisper raised tiny.en WER on real speech from
8.9 % to 15-20 %, because spectral gating removes speech energy the recognizer uses.
So voxbus denoises only what the VAD *decides on* (fewer false starts in noise) and
always gives the recognizer the original audio.  The WER effect of each placement is
measured by ``make eval`` (:mod:`benchmarks.eval`).

Spectral gating is not free: about 0.26 CPU seconds per second of audio on this
machine (one caller = a quarter of a core), which made the vad worker the bottleneck at
4 concurrent callers.  In ``auto`` mode (the default) a session is denoised only while
its noise floor is high: clean calls pay nothing.
"""

from __future__ import annotations

from collections import deque

import noisereduce
import numpy as np

CONTEXT_S = 0.5
"""Seconds of past audio given to the spectral gate with each chunk (its noise estimate)."""
FLOOR_WINDOW_SAMPLES = 512
"""Samples per level measurement (32 ms at 16 kHz, one silero-vad window)."""
FLOOR_HISTORY = 64
"""Non-speech level measurements kept (about 2 s of non-speech)."""
FLOOR_MIN_COUNT = 8
"""Measurements needed before the floor decides (256 ms of non-speech)."""
FLOOR_PERCENTILE = 20
"""The floor is this percentile of the non-speech levels: pauses between words, which are
quieter than the noise-free signal around them, do not count as noise."""
HYSTERESIS_DB = 6.0
"""Denoising, once on, stays on until the floor falls this far below the threshold."""


def window_levels(chunk: np.ndarray) -> np.ndarray:
    """RMS level (dBFS) of each whole :data:`FLOOR_WINDOW_SAMPLES` window of ``chunk``.

    Args:
        chunk: float32 samples in [-1, 1], shape (n,).

    Returns:
        float64 array of shape (n // FLOOR_WINDOW_SAMPLES,).
    """
    whole = chunk[: chunk.size - chunk.size % FLOOR_WINDOW_SAMPLES].reshape(-1, FLOOR_WINDOW_SAMPLES)
    rms = np.sqrt(np.mean(np.square(whole, dtype=np.float64), axis=1))
    return 20.0 * np.log10(rms + 1e-9)


class NoiseFloor:
    """Tracks a stream's noise floor from the levels of its non-speech windows.

    Args:
        threshold_dbfs: floor above which the stream counts as noisy; measured on the test
            recordings: clean speech -53..-42 dBFS, white noise at 20 dB SNR -45..-36,
            at 10 dB -37..-26 (see ``VOXBUS_DENOISE_FLOOR_DBFS``).
    """

    def __init__(self, threshold_dbfs: float) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.levels: deque[float] = deque(maxlen=FLOOR_HISTORY)
        self.noisy = False

    def observe(self, non_speech: np.ndarray) -> bool:
        """Add the levels (dBFS) of windows heard as non-speech; return whether the stream is noisy."""
        self.levels.extend(non_speech.tolist())
        if len(self.levels) >= FLOOR_MIN_COUNT:
            floor = float(np.percentile(self.levels, FLOOR_PERCENTILE))
            off_below = self.threshold_dbfs - (HYSTERESIS_DB if self.noisy else 0.0)
            self.noisy = floor > off_below
        return self.noisy


class VadDenoiser:
    """Non-stationary spectral gating (noisereduce) over a rolling context.

    Args:
        sample_rate: Hz of the audio.
        floor: when given, chunks are gated only while ``floor.noisy`` (``auto`` mode);
            None: always.
    """

    def __init__(self, sample_rate: int = 16_000, floor: NoiseFloor | None = None) -> None:
        self.sample_rate = sample_rate
        self.floor = floor
        self.context = np.zeros(0, dtype=np.float32)

    @property
    def active(self) -> bool:
        """Whether the next chunk will be gated."""
        return self.floor is None or self.floor.noisy

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Return the denoised ``chunk`` (float32, same shape), or ``chunk`` itself while inactive.

        Args:
            chunk: float32 samples in [-1, 1].
        """
        window = np.concatenate([self.context, chunk])
        self.context = window[-int(CONTEXT_S * self.sample_rate):]
        if not self.active or window.size < self.sample_rate // 4:
            return chunk
        with np.errstate(invalid="ignore", divide="ignore"):  # digital silence gives 0/0
            cleaned = noisereduce.reduce_noise(
                y=window, sr=self.sample_rate, stationary=False, n_fft=512, time_mask_smooth_ms=32
            )
        return np.nan_to_num(cleaned[-chunk.size:]).astype(np.float32)
