"""Real non-speech a caller's line carries, from Debian packages (issue 14: no answers to noise).

Each kind is built from real recordings only, 16 kHz mono float32:

* ``traffic``, ``machines`` (wind, engines, machinery: the closest to a fan's steady noise
  found in a package) and ``crowd`` (an audience's applause and "oooh"): the OpenSFX sound
  set of the Debian package ``openttd-opensfx`` (``opensfx.cat``: CC0, CC-BY 3.0 and
  CC-BY-SA 3.0 field recordings from freesound.org and pdsounds.org, credited in its
  ``readme.txt``), the sounds of each kind one after the other;
* ``typing``: the IBM Model M key press and release recordings of ``bucklespring-data``
  (GPL-2+), keys drawn and struck at a typist's pace (seeded);
* ``babble``: :data:`BABBLE_TALKERS` real talkers at once (the speech recordings handed in,
  each from a drawn offset and looped), the construction of babble noise from single talkers
  (with six or more, no talker is intelligible).

An OpenSFX ``.cat`` file is a table of (offset, size) pairs, 8 bytes each, the first
offset giving the table's size, then per sound a length-prefixed title and a RIFF WAV.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 16_000
BABBLE_TALKERS = 8
"""Talkers summed into babble (the NOISEX-92 babble is a canteen of about 100; 8 is past the
six at which single talkers stop being intelligible)."""
KINDS: dict[str, tuple[str, ...]] = {
    "traffic": ("train", "bus", "truck", "car", "level crossing", "jet", "plane", "ship", "ferry"),
    "machines": ("wind", "machinery", "sawmill", "helicopter", "jackhammer", "chainsaw", "propeller"),
    "crowd": ("applause", "oooh"),
}
"""OpenSFX sounds of each kind, by words of their titles (lower case)."""
TOYLAND = "toyland"
"""OpenSFX's cartoon variants (boings, slide whistles): not real noise, left out."""
KEY_INTERVAL_S = (0.08, 0.35)
"""Time between two key strokes (s): 3-12 keys a second, a typist's range."""
WORD_PAUSE_S = (0.3, 1.2)
"""A typist's pause after about one stroke in six (s)."""


def as_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    """Mono float32 at 16 kHz (channels averaged, soxr resampling)."""
    audio = audio.mean(axis=1) if audio.ndim == 2 else audio
    return (audio if rate == RATE else soxr.resample(audio, rate, RATE)).astype(np.float32)


def opensfx(cat: Path) -> dict[str, np.ndarray]:
    """Every sound of an OpenSFX ``.cat`` file by its title (see the module docstring).

    Raises:
        ValueError: the file is not an OpenSFX catalogue.
    """
    data = cat.read_bytes()
    count = (struct.unpack_from("<I", data)[0] & 0x7FFFFFFF) // 8
    sounds = {}
    for i in range(count):
        offset, size = struct.unpack_from("<II", data, 8 * i)
        offset &= 0x7FFFFFFF
        length = data[offset]
        title = data[offset + 1: offset + 1 + length].rstrip(b"\0").decode("latin-1")
        body = data[offset + 1 + length: offset + size]
        if body[:4] != b"RIFF":
            continue  # OpenSFX's empty placeholders
        audio, rate = soundfile.read(io.BytesIO(body), dtype="float32")
        sounds[title] = as_16k(audio, rate)
    if not sounds:
        raise ValueError(f"{cat}: no sound found (not an OpenSFX catalogue)")
    return sounds


def opensfx_kinds(cat: Path) -> dict[str, np.ndarray]:
    """The ``traffic``, ``machines`` and ``crowd`` recordings of ``cat``, each kind's sounds joined."""
    sounds = opensfx(cat)
    out = {}
    for kind, words in KINDS.items():
        picked = [audio for title, audio in sounds.items()
                  if TOYLAND not in title.lower() and any(w in title.split(".")[0].lower() for w in words)]
        out[kind] = np.concatenate(picked)
    return out


def typing(keys: Path, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of typing: real key strokes (press then release) of ``keys`` at a typist's pace.

    Args:
        keys: bucklespring's ``wav`` directory (``<scancode>-0.wav`` press, ``-1.wav`` release).
        seconds: length of the result.
        rng: draws the keys and the intervals.
    """
    codes = sorted(p.name[:-6] for p in keys.glob("*-0.wav") if (keys / f"{p.name[:-6]}-1.wav").exists())
    strokes = {c: [as_16k(*soundfile.read(keys / f"{c}-{n}.wav", dtype="float32")) for n in (0, 1)]
               for c in codes}
    out = np.zeros(int(seconds * RATE), dtype=np.float32)
    at = 0.0
    while True:
        press, release = strokes[codes[int(rng.integers(len(codes)))]]
        start = int(at * RATE)
        up = start + int(rng.uniform(0.05, 0.12) * RATE)
        if up + release.size > out.size:
            return np.clip(out, -1, 1)
        out[start:start + press.size] += press
        out[up:up + release.size] += release
        at += rng.uniform(*KEY_INTERVAL_S) + (rng.uniform(*WORD_PAUSE_S) if rng.random() < 1 / 6 else 0.0)


def babble(speech: list[np.ndarray], seconds: float, rng: np.random.Generator) -> np.ndarray:
    """``seconds`` of :data:`BABBLE_TALKERS` real talkers at once, at the loudness of one.

    Args:
        speech: float32 16 kHz recordings of single talkers (each drawn once while enough remain).
        seconds: length of the result.
        rng: draws the recordings and their offsets.
    """
    size = int(seconds * RATE)
    mixed = np.zeros(size, dtype=np.float64)
    for i in rng.choice(len(speech), size=BABBLE_TALKERS, replace=len(speech) < BABBLE_TALKERS):
        talker = speech[int(i)]
        mixed += np.roll(np.resize(talker, size), int(rng.integers(size)))
    level = np.sqrt(np.mean(np.concatenate(speech) ** 2) / np.mean(mixed**2))
    return np.clip(mixed * level, -1, 1).astype(np.float32)
