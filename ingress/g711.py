"""G.711 mu-law <-> PCM16, as telephony (Twilio Media Streams) carries it.

The codec is libsndfile's (through ``soundfile``, a maintained package voxbus
already depends on): its mu-law encoder and decoder are run once over every possible
input to build two lookup tables, so coding a 20 ms frame is a numpy indexing
operation.  (The stdlib ``audioop`` is deprecated and gone in Python 3.13, and
``audioop-lts`` only installs on 3.13+.)
"""

from __future__ import annotations

import functools
import io

import numpy as np
import soundfile


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """(mu-law byte -> int16 sample [256], uint16 view of an int16 sample -> mu-law byte [65536])."""
    codes = np.arange(256, dtype=np.uint8).tobytes()
    decode, _ = soundfile.read(io.BytesIO(codes), dtype="int16", format="RAW", subtype="ULAW",
                               samplerate=8000, channels=1)
    samples = np.arange(65536, dtype=np.uint16).view(np.int16)
    out = io.BytesIO()
    soundfile.write(out, samples, 8000, format="RAW", subtype="ULAW")
    encode = np.frombuffer(out.getvalue(), dtype=np.uint8)
    assert decode.shape == (256,) and encode.shape == (65536,)
    return decode.astype(np.int16), encode.copy()


def ulaw_decode(data: bytes) -> np.ndarray:
    """Mu-law bytes -> int16 samples."""
    return _tables()[0][np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: np.ndarray) -> bytes:
    """Int16 samples -> mu-law bytes."""
    return _tables()[1][np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)].tobytes()
