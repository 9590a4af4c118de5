"""silero-vad speech probability from its ONNX model, run with onnxruntime.

The model file ships in the ``silero-vad`` package (``silero_vad/data/silero_vad.onnx``).
The calling convention (a 512-sample window at 16 kHz, prefixed by the last 64 samples
of the previous window, plus a recurrent state of shape (2, batch, 128)) is that of
``silero_vad.utils_vad.OnnxWrapper``; it is reimplemented here without torch so the
vad worker stays small and keeps one state per caller session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import onnxruntime as ort

WINDOW_SAMPLES = 512
"""Samples per VAD decision at 16 kHz (32 ms), fixed by the silero v5+ model."""
CONTEXT_SAMPLES = 64
"""Samples of the previous window prepended to each window (silero v5+)."""
SAMPLE_RATE = 16_000


@dataclass
class VadState:
    """Recurrent state of one audio stream: the model state and the last 64 samples."""

    state: np.ndarray = field(default_factory=lambda: np.zeros((2, 1, 128), dtype=np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, dtype=np.float32))


class SileroVad:
    """Speech probability per 32 ms window.

    Args:
        model_path: silero-vad ONNX file; default: the one in the ``silero-vad`` package.
    """

    def __init__(self, model_path: str | None = None) -> None:
        path = model_path or str(resources.files("silero_vad") / "data" / "silero_vad.onnx")
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def probability(self, window: np.ndarray, state: VadState) -> float:
        """Return P(speech) for one window, updating ``state`` in place.

        Args:
            window: float32 array of :data:`WINDOW_SAMPLES` samples in [-1, 1] at 16 kHz.
            state: the stream's recurrent state.

        Raises:
            ValueError: ``window`` does not have :data:`WINDOW_SAMPLES` samples.
        """
        if window.shape != (WINDOW_SAMPLES,):
            raise ValueError(f"window must have shape ({WINDOW_SAMPLES},), got {window.shape}")
        x = np.concatenate([state.context, window]).astype(np.float32)[np.newaxis, :]
        out, state.state = self.session.run(None, {"input": x, "state": state.state, "sr": self._sr})
        state.context = window[-CONTEXT_SAMPLES:].astype(np.float32)
        return float(out[0, 0])
