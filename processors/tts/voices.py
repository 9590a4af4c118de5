"""Which voice speaks which language: Piper where a voice file is configured, else espeak-ng.

English is ``VOXBUS_PIPER_VOICE`` (en_US-joe-medium by default); a language named in
``VOXBUS_PIPER_VOICES`` is its Piper voice; any other language is espeak-ng's voice of that
code (:mod:`processors.tts.espeak_voice`), the documented fallback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Protocol

from processors.tts.espeak_voice import EspeakSynthesizer
from processors.tts.piper_voice import Synthesizer
from schemas import DEFAULT_LANGUAGE
from streams.settings import Settings

log = logging.getLogger(__name__)


class Voice(Protocol):
    """A loaded voice: PCM16LE mono chunks at ``sample_rate`` Hz for a text."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16LE mono chunks of ``text`` (at most :data:`processors.tts.piper_voice.CHUNK_S` each)."""
        ...


class Voices:
    """The voice of each language, loaded on first use (Piper English at construction).

    Args:
        settings: ``VOXBUS_PIPER_VOICE``, ``VOXBUS_PIPER_VOICES``, ``VOXBUS_ESPEAK_BIN``.

    Raises:
        processors.models.ModelNotFound: the default English voice's package is missing.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loaded: dict[str, Voice] = {DEFAULT_LANGUAGE: Synthesizer.from_settings(settings)}

    def for_language(self, language: str) -> Voice:
        """The voice of ``language`` (an ISO 639 code; empty: English).

        Raises:
            processors.tts.espeak_voice.EspeakUnavailable: no Piper voice is configured for the
                language and espeak-ng is not installed.
        """
        language = language or DEFAULT_LANGUAGE
        if language not in self.loaded:
            configured = self.settings.piper_voices.get(language)
            voice: Voice = (Synthesizer.from_settings(self.settings, configured) if configured
                            else EspeakSynthesizer(language, self.settings.espeak_bin))
            log.info("voice of %s: %s", language, configured or f"espeak-ng -v {language}")
            self.loaded[language] = voice
        return self.loaded[language]
