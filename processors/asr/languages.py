"""Which Whisper model hears which language, and the language of a caller who did not say.

English is heard by ``VOXBUS_WHISPER_MODEL`` (tiny.en: English-only, the fastest); a language named
in ``VOXBUS_WHISPER_MODELS`` by its model; any other language by ``VOXBUS_WHISPER_MODEL_MULTILINGUAL``
(faster-whisper base by default, :func:`processors.models.whisper_multilingual_dir`).  Every
decode is forced to the session's language: Whisper's own detection, run on each utterance,
misheard synthetic Spanish here, and a caller's language does not change within a call.

A session started with language ``auto`` (empty on the bus) is detected on its utterance by the
multilingual model; a detection under ``VOXBUS_LANGUAGE_DETECT_FLOOR`` is taken as English.
"""

from __future__ import annotations

import numpy as np

from processors.asr.whisper import Recognizer
from processors.models import whisper_model_dir, whisper_multilingual_dir
from schemas import DEFAULT_LANGUAGE
from streams.settings import Settings


class Recognizers:
    """The Whisper models of every configured language, each loaded once (first use, or :meth:`warm_up`).

    Args:
        settings: ``VOXBUS_WHISPER_*`` and ``VOXBUS_LANGUAGE_DETECT_FLOOR``.
        loaded: recognizers already loaded, by model path or size (a test's shared one).

    Raises:
        processors.models.ModelNotFound: a default model's package is missing (at construction).
    """

    def __init__(self, settings: Settings, loaded: dict[str, Recognizer] | None = None) -> None:
        self.settings = settings
        self.english = settings.whisper_model or str(whisper_model_dir())
        self.multilingual = settings.whisper_model_multilingual or str(whisper_multilingual_dir())
        self.loaded: dict[str, Recognizer] = dict(loaded or {})

    def model_for(self, language: str) -> str:
        """The model path or size that hears ``language`` (an ISO 639 code, not empty)."""
        if language == DEFAULT_LANGUAGE:
            return self.english
        return self.settings.whisper_models.get(language) or self.multilingual

    def recognizer(self, model: str) -> Recognizer:
        """The loaded recognizer of ``model`` (loading it the first time, blocking)."""
        if model not in self.loaded:
            self.loaded[model] = Recognizer.from_settings(self.settings, model)
        return self.loaded[model]

    def for_language(self, language: str) -> Recognizer:
        """The recognizer of ``language``."""
        return self.recognizer(self.model_for(language))

    def warm_up(self) -> None:
        """Load every configured model and decode 1 s of silence with each (the first caller pays neither)."""
        silence = np.zeros(16_000, dtype=np.float32)
        for model in dict.fromkeys([self.english, self.multilingual, *self.settings.whisper_models.values()]):
            self.recognizer(model).transcribe(silence)

    def detect(self, audio: np.ndarray) -> tuple[str, float]:
        """The language of an utterance of a caller who did not say which (blocking).

        Args:
            audio: float32 mono samples in [-1, 1] at 16 kHz.

        Returns:
            (language, Whisper's probability of the language it detected): :data:`schemas.DEFAULT_LANGUAGE`
            when that probability is under ``VOXBUS_LANGUAGE_DETECT_FLOOR``.
        """
        language, probability = self.recognizer(self.multilingual).detect(audio)
        sure = probability >= self.settings.language_detect_floor
        return (language if sure else DEFAULT_LANGUAGE), probability
