"""Noise is not a turn: reject recognitions that Whisper's own signals mark as non-speech.

The thresholds are Whisper's defaults (openai-whisper ``transcribe()``, the same in
faster-whisper): ``no_speech_threshold=0.6``, ``logprob_threshold=-1.0`` and
``compression_ratio_threshold=2.4``.  Whisper itself drops a segment only when both
no-speech signals agree (faster-whisper then returns no segment); voxbus also rejects:

* a recognition with no word left, or on the no-speech side of both signals
  (``no_speech``), including those Whisper dropped;
* a repetition loop Whisper could not decode its way out of (``repetition``: gzip
  compression ratio above 2.4 after the temperature fallbacks);
* a decode Whisper itself scores as failed (``failed_decode``: mean token
  log-probability below -1.0 even for the best of its temperature fallbacks).  Whisper
  keeps such text unless P(no speech) confirms; on music on hold it is random sampled
  text ("www.beadaholique.com"), and on 145 real telephone prompts (Debian
  ``asterisk-core-sounds-en-wav``) it happened twice: monkey sounds and a misheard
  "IAX".  A caller is better asked again than answered on words Whisper did not hear;
* a known Whisper hallucination on non-speech audio when P(no speech) is past its
  threshold (``hallucination``: the text is in the list of Barański et al., ICASSP
  2025).  A caller clearly saying "Thank you." keeps P(no speech) low and is answered.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

NO_SPEECH_THRESHOLD = 0.6
"""Whisper's ``no_speech_threshold``: P(no speech) above this is the no-speech side."""
LOGPROB_THRESHOLD = -1.0
"""Whisper's ``logprob_threshold`` (mean token log-probability, nats): below is a failed decode."""
COMPRESSION_RATIO_THRESHOLD = 2.4
"""Whisper's ``compression_ratio_threshold``: above this the text repeats itself."""
HALLUCINATIONS_FILE = Path(__file__).parent / "whisper_hallucinations.json"
"""The hallucination list (its source, normalization and MIT licence are in the file)."""


def normalize(text: str) -> str:
    """The list's normalization: lower case, anything but ``a-z0-9`` a space, spaces collapsed."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


@cache
def hallucinations() -> frozenset[str]:
    """Every transcription Whisper produced on non-speech audio in Barański et al.'s corpus."""
    return frozenset(json.loads(HALLUCINATIONS_FILE.read_text(encoding="utf-8"))["phrases"])


def rejection(text: str, no_speech_prob: float, avg_logprob: float, compression_ratio: float) -> str:
    """Why a recognition is not a caller's turn, or ``""`` if it is one.

    Args:
        text: the recognized text.
        no_speech_prob: Whisper's P(no speech) of the utterance (its highest over segments).
        avg_logprob: mean token log-probability (nats).
        compression_ratio: gzip compression ratio of the text (its highest over segments).

    Returns:
        ``"no_speech"``, ``"repetition"``, ``"failed_decode"``, ``"hallucination"`` or ``""``.
    """
    words = normalize(text)
    if not words or (no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD):
        return "no_speech"
    if compression_ratio > COMPRESSION_RATIO_THRESHOLD:
        return "repetition"
    if avg_logprob < LOGPROB_THRESHOLD:
        return "failed_decode"
    if no_speech_prob > NO_SPEECH_THRESHOLD and words in hallucinations():
        return "hallucination"
    return ""
