"""Denoising for the VAD decision path only.

Measured here: noisereduce in front of Whisper raised tiny.en WER on real speech from
8.9 % to 15-20 %, because spectral gating removes speech energy the recognizer uses.
So voxbus denoises only what the VAD *decides on* (fewer false starts in noise) and
always gives the recognizer the original audio (``denoise = "vad"``, the default).
The WER effect of each placement is measured in ``benchmarks/denoise_wer.py``.
"""

from __future__ import annotations

import numpy as np
import noisereduce

CONTEXT_S = 0.5
"""Seconds of past audio given to the spectral gate with each chunk (its noise estimate)."""


class VadDenoiser:
    """Non-stationary spectral gating (noisereduce) over a rolling context.

    Args:
        sample_rate: Hz of the audio.
    """

    def __init__(self, sample_rate: int = 16_000) -> None:
        self.sample_rate = sample_rate
        self.context = np.zeros(0, dtype=np.float32)

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Return the denoised ``chunk`` (float32, same shape).

        Args:
            chunk: float32 samples in [-1, 1].
        """
        window = np.concatenate([self.context, chunk])
        self.context = window[-int(CONTEXT_S * self.sample_rate):]
        if window.size < self.sample_rate // 4:
            return chunk
        with np.errstate(invalid="ignore", divide="ignore"):  # digital silence gives 0/0
            cleaned = noisereduce.reduce_noise(
                y=window, sr=self.sample_rate, stationary=False, n_fft=512, time_mask_smooth_ms=32
            )
        return np.nan_to_num(cleaned[-chunk.size:]).astype(np.float32)
