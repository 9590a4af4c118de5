"""End-of-turn classifier: Smart Turn v3.2 (an audio model), run with onnxruntime.

Smart Turn v3.2 (Daily, BSD-2-Clause) is a Whisper-tiny encoder with a linear head that
reads the last 8 s of a caller's audio and outputs the probability that the caller has
finished their turn.  Its int8 ONNX file (~8.7 MB) ships inside the ``pipecat-ai`` wheel
on PyPI (``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``); voxbus
installs that wheel without its dependencies and only reads the file (the ``pipecat``
package is never imported).

The model's input is the log-mel spectrogram of Whisper's feature extractor with a
chunk length of 8 s: the window is zero-padded on the left to 8 s (the newest audio
always sits at the end), normalized to zero mean and unit variance, and turned into
80 Slaney mel bands of 25 ms frames every 10 ms (OpenAI Whisper ``audio.py``:
``N_FFT = 400``, ``HOP_LENGTH = 160``; the Hugging Face ``WhisperFeatureExtractor`` with
``do_normalize=True``, as Smart Turn's own ``inference.py`` calls it).  The output
``logits`` (shape ``(batch, 1)``) is already a sigmoid probability; a turn is complete
above 0.5 (Smart Turn's and pipecat's decision threshold).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from processors.models import ModelNotFound, package_dir

SAMPLE_RATE = 16_000
"""Input rate of the model (Hz)."""
WINDOW_SAMPLES = 8 * SAMPLE_RATE
"""Audio the model reads: the last 8 s (Smart Turn v3's training window)."""
N_FFT = 400
"""Whisper's STFT size: 25 ms at 16 kHz."""
HOP = 160
"""Whisper's STFT hop: 10 ms at 16 kHz."""
N_MELS = 80
"""Mel bands of Whisper tiny (and so of Smart Turn's encoder)."""
FRAMES = WINDOW_SAMPLES // HOP
"""Feature frames per window (800): the STFT's last frame is dropped, as Whisper does."""
COMPLETE_THRESHOLD = 0.5
"""P(complete) above which a turn has ended (Smart Turn's and pipecat's threshold)."""
NORM_EPS = 1e-7
"""Variance floor of the waveform normalization (``WhisperFeatureExtractor``'s)."""
MODEL_FILE = Path("audio") / "turn" / "smart_turn" / "data" / "smart-turn-v3.2-cpu.onnx"
"""Where the model sits inside the installed ``pipecat`` package."""


def smart_turn_model() -> Path:
    """Path of the Smart Turn v3.2 ONNX file of the installed ``pipecat-ai`` wheel.

    Raises:
        ModelNotFound: ``pipecat-ai`` is not installed (``pip install --no-deps pipecat-ai``).
    """
    path = package_dir("pipecat") / MODEL_FILE
    if not path.exists():
        raise ModelNotFound(f"{path} does not exist (pip install --no-deps pipecat-ai==1.14.0)")
    return path


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (Auditory Toolbox): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    logarithmic = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


@cache
def mel_filters() -> np.ndarray:
    """Whisper's mel filterbank: triangles on the Slaney scale, each of unit area.

    The same bank as ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`` (Slaney
    scale and normalization, 0 to 8000 Hz), which Whisper's ``mel_filters.npz`` stores.

    Returns:
        float64 array of shape ``(N_MELS, N_FFT // 2 + 1)``: weights per mel band and FFT bin.
    """
    bins = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - low) / (centre - low)
    falling = (high - bins[None, :]) / (high - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (high - low))


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last :data:`WINDOW_SAMPLES` of ``audio``, zero-padded on the left if shorter.

    Args:
        audio: float32 mono samples in [-1, 1] at 16 kHz, any length.

    Returns:
        float32 array of shape ``(WINDOW_SAMPLES,)``.
    """
    audio = np.asarray(audio, dtype=np.float32)[-WINDOW_SAMPLES:]
    return np.pad(audio, (WINDOW_SAMPLES - audio.size, 0))


def log_mel(window: np.ndarray) -> np.ndarray:
    """Whisper log-mel features of one 8 s window, as Smart Turn v3 reads them.

    Args:
        window: float32 array of shape ``(WINDOW_SAMPLES,)`` at 16 kHz (see :func:`last_window`).

    Returns:
        float32 array of shape ``(N_MELS, FRAMES)`` = (80, 800), roughly in [-1, 1].

    Raises:
        ValueError: ``window`` does not have :data:`WINDOW_SAMPLES` samples.
    """
    if window.shape != (WINDOW_SAMPLES,):
        raise ValueError(f"window must have shape ({WINDOW_SAMPLES},), got {window.shape}")
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + NORM_EPS)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")  # a centred STFT
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:FRAMES]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * hann, axis=-1)) ** 2  # (FRAMES, N_FFT // 2 + 1)
    mel = np.log10(np.maximum(mel_filters() @ power.T, 1e-10))
    mel = np.maximum(mel, mel.max() - 8.0)  # Whisper's 80 dB dynamic range
    return ((mel + 4.0) / 4.0).astype(np.float32)


class TurnModel:
    """Smart Turn v3.2: P(the caller finished the turn) from the end of their audio.

    Args:
        model_path: the ONNX file; default: the one of the installed ``pipecat-ai`` wheel.
        threads: onnxruntime intra-op threads (one: the vad worker is single-threaded).
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(model_path or smart_turn_model()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, clips: list[np.ndarray]) -> np.ndarray:
        """P(complete) of each clip, computed in one batched call.

        Args:
            clips: float32 mono arrays at 16 kHz in [-1, 1], each ending at the pause (the
                newest sample last); only the last 8 s of each is read.

        Returns:
            float32 array of shape ``(len(clips),)``, each in [0, 1].
        """
        if not clips:
            return np.zeros(0, dtype=np.float32)
        features = np.stack([log_mel(last_window(clip)) for clip in clips])  # (N, 80, 800)
        (output,) = self.session.run(None, {"input_features": features})
        return np.asarray(output, dtype=np.float32).reshape(len(clips))
