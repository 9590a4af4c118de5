"""espeak-ng text-to-speech: the voice of a language no Piper voice is configured for.

No Spanish Piper voice ships in a package reachable here; espeak-ng (Debian's ``espeak-ng``,
GPL-3.0, formant synthesis: intelligible, robotic) speaks about a hundred languages.  It runs as a
subprocess per sentence, the text on its standard input (never on its command line), and writes a
RIFF WAV to its standard output; the PCM is cut into the same chunks as Piper's.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator

from processors.tts.piper_voice import CHUNK_S

ESPEAK_RATE = 22_050
"""espeak-ng's output sample rate (Hz), as its WAV header states."""
TIMEOUT_S = 30.0
"""Longest synthesis of one sentence (s); espeak-ng takes about 50 ms for a short one here."""


class EspeakUnavailable(RuntimeError):
    """The espeak-ng executable is missing or failed."""


class EspeakSynthesizer:
    """espeak-ng speaking one language.

    Args:
        language: an espeak-ng voice name; ISO 639-1 codes are voices (``es``: Spanish, Spain).
        executable: the espeak-ng program (name on ``PATH`` or path).
        words_per_minute: speaking rate; None: espeak-ng's default (175).

    Raises:
        EspeakUnavailable: ``executable`` is not found.
    """

    def __init__(self, language: str, executable: str = "espeak-ng",
                 words_per_minute: int | None = None) -> None:
        found = shutil.which(executable)
        if found is None:
            raise EspeakUnavailable(f"{executable} not found (Debian: apt-get install espeak-ng)")
        rate = [] if words_per_minute is None else ["-s", str(words_per_minute)]
        self.command = [found, "-v", language, *rate, "-b", "1", "--stdout"]
        self.sample_rate = ESPEAK_RATE

    def synthesize(self, text: str) -> Iterator[bytes]:
        """Yield PCM16LE mono chunks of at most :data:`CHUNK_S` at :attr:`sample_rate` Hz.

        Raises:
            EspeakUnavailable: espeak-ng failed, timed out, or wrote no WAV.
        """
        try:
            done = subprocess.run(self.command, input=text.encode("utf-8"), capture_output=True,
                                  timeout=TIMEOUT_S, check=True)
        except (subprocess.SubprocessError, OSError) as exc:
            raise EspeakUnavailable(f"espeak-ng failed: {type(exc).__name__}") from None
        wav = done.stdout
        start = wav.find(b"data", 12)
        if not wav.startswith(b"RIFF") or start < 0:
            raise EspeakUnavailable("espeak-ng wrote no WAV")
        if struct.unpack_from("<I", wav, 24)[0] != self.sample_rate:
            raise EspeakUnavailable(f"espeak-ng wrote a rate other than {self.sample_rate} Hz")
        pcm = wav[start + 8:]
        pcm = pcm[:len(pcm) - len(pcm) % 2]
        step = int(CHUNK_S * self.sample_rate) * 2
        for offset in range(0, len(pcm), step):
            yield pcm[offset:offset + step]
