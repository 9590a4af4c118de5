"""The benchmark's utterances: real recordings cut at silero-vad's speech boundaries, computed offline.

Each recording in ``tests/data`` is run once through silero-vad (the ``silero-vad``
package, torch-free ONNX model) with voxbus's endpointing threshold and minimum
silence.  Every speech segment becomes one utterance: the recording from
``pad_ms`` before the segment to ``pad_ms`` after it, with ``speech_end`` the sample
(relative to the clip) just after the last speech sample.  A recording whose pauses are
all shorter than the minimum silence (most of them) is one utterance; one with long
pauses (jfk.wav) is several, so no system can endpoint in the middle of an utterance.

The same list, and so the same speech-end definition, is used for both systems.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Utterance:
    """One spoken turn of a simulated caller.

    Attributes:
        name: ``<recording>#<segment>``.
        pcm: int16 mono 16 kHz samples the caller plays (speech plus up to ``pad_ms`` each side).
        speech_end: index in ``pcm`` just after the last speech sample (silero-vad's end).
        speech_start: index in ``pcm`` of the first speech sample.
    """

    name: str
    pcm: np.ndarray
    speech_start: int
    speech_end: int

    @property
    def seconds(self) -> float:
        """Length of :attr:`pcm` in seconds."""
        return self.pcm.size / SAMPLE_RATE

    def describe(self) -> dict[str, float | str]:
        """JSON-ready summary (no audio)."""
        return {"name": self.name, "seconds": round(self.seconds, 3),
                "speech_start_s": round(self.speech_start / SAMPLE_RATE, 3),
                "speech_end_s": round(self.speech_end / SAMPLE_RATE, 3)}


def speech_segments(audio: np.ndarray, threshold: float, min_silence_ms: int,
                    min_speech_ms: int = 250) -> list[tuple[int, int]]:
    """silero-vad speech segments ``[(start, end), ...]`` in samples (no padding).

    Args:
        audio: float32 mono at 16 kHz.
        threshold: speech probability threshold (voxbus ``VAD_THRESHOLD``).
        min_silence_ms: silence that separates segments (voxbus ``VAD_MIN_SILENCE_MS``).
        min_speech_ms: shorter segments are dropped (voxbus ``VAD_MIN_SPEECH_MS``).
    """
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad(onnx=True)
    found = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), model, threshold=threshold,
        sampling_rate=SAMPLE_RATE, min_speech_duration_ms=min_speech_ms,
        min_silence_duration_ms=min_silence_ms, speech_pad_ms=0,
    )
    return [(int(s["start"]), int(s["end"])) for s in found]


EXCLUDED = ("cards_five_five",)
"""Recordings not used: "five five" is the test suite's stand-in for a backchannel
("mm-hm"), not a question; Pipecat's Whisper filter drops it as non-speech and voxbus
does not answer it either."""


def load_utterances(data_dir: Path, threshold: float = 0.5, min_silence_ms: int = 400,
                    pad_ms: int = 200, min_utterance_s: float = 0.8,
                    exclude: tuple[str, ...] = EXCLUDED) -> list[Utterance]:
    """Cut every ``*.wav`` of ``data_dir`` (but ``exclude``) into utterances, sorted by name.

    Segments with less than ``min_utterance_s`` of speech are skipped (too short to be
    a question).

    Raises:
        ValueError: a recording is not 16 kHz, or no utterance was found.
    """
    pad = pad_ms * SAMPLE_RATE // 1000
    out: list[Utterance] = []
    for path in sorted(Path(data_dir).glob("*.wav")):
        if path.stem in exclude:
            continue
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path} is {rate} Hz; the benchmark plays 16 kHz recordings")
        mono = audio.mean(axis=1)
        pcm = (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16)
        for index, (start, end) in enumerate(speech_segments(mono, threshold, min_silence_ms)):
            if (end - start) / SAMPLE_RATE < min_utterance_s:
                continue
            lo, hi = max(0, start - pad), min(pcm.size, end + pad)
            out.append(Utterance(f"{path.stem}#{index}", pcm[lo:hi].copy(), start - lo, end - lo))
    if not out:
        raise ValueError(f"no utterance found in {data_dir}")
    return out
