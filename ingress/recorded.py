"""A recorded call's audio file at the edge: read it within a size limit, decode it, resample it.

``POST /v1/calls`` (:mod:`ingress.calls`) takes the file as the raw request body or as
the multipart form field ``file``.  libsndfile (through soundfile) decodes WAV, FLAC,
Ogg (Vorbis/Opus) and, from libsndfile 1.1 on, MP3; soxr resamples to the bus rate.
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable

import numpy as np
import soundfile
import soxr
from aiohttp import BodyPartReader, web

from schemas import BUS_SAMPLE_RATE

MEDIA_TYPES = frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/flac",
                         "audio/x-flac", "audio/ogg", "audio/mpeg", "audio/mp3"})
"""Accepted media types; libsndfile reads the format itself from the file's header."""
UNTYPED = frozenset({"application/octet-stream", ""})
"""Multipart part types also accepted (a client that did not name the part's type)."""
READ_CHUNK = 64 * 1024
"""Bytes read from the request at a time."""


class AudioInputError(Exception):
    """A recorded call the ingress cannot take: ``status`` (400, 413, 415) and a short ``code``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _check_type(media_type: str, untyped: bool) -> None:
    """Refuse a media type that is not audio this server decodes (``untyped``: also accept none).

    Raises:
        AudioInputError: 415 ``unsupported_media_type``.
    """
    if media_type in MEDIA_TYPES or (untyped and media_type in UNTYPED):
        return
    raise AudioInputError(415, "unsupported_media_type",
                          f"Content-Type {media_type[:60]!r} is not one of {', '.join(sorted(MEDIA_TYPES))} "
                          "(or multipart/form-data with a field 'file')")


async def _read_limited(read_chunk: Callable[[], Awaitable[bytes]], max_bytes: int) -> bytes:
    """Read an aiohttp stream (``read_chunk()`` -> bytes, b"" at its end) of at most ``max_bytes``.

    Raises:
        AudioInputError: 413 ``too_large``.
    """
    body = bytearray()
    while chunk := await read_chunk():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise AudioInputError(413, "too_large", f"the audio file is over {max_bytes} bytes")
    return bytes(body)


async def read_upload(request: web.Request, max_bytes: int) -> bytes:
    """The uploaded file's bytes.

    Args:
        request: a raw audio body (``Content-Type`` one of :data:`MEDIA_TYPES`) or
            ``multipart/form-data`` with the field ``file``.
        max_bytes: largest file accepted (``VOXBUS_CALLS_MAX_BYTES``).

    Raises:
        AudioInputError: 413 over ``max_bytes`` (by ``Content-Length`` or as read); 415 an
            unsupported type; 400 a multipart body without a ``file`` field.
    """
    if request.content_length is not None and request.content_length > max_bytes:
        raise AudioInputError(413, "too_large", f"the request is over {max_bytes} bytes")
    if request.content_type == "multipart/form-data":
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if isinstance(part, BodyPartReader) and part.name == "file":
                    media = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                    _check_type(media, untyped=True)
                    return await _read_limited(lambda: part.read_chunk(READ_CHUNK), max_bytes)
        except ValueError as exc:  # aiohttp: a malformed multipart body
            raise AudioInputError(400, "bad_multipart", f"malformed multipart body: {exc}") from None
        raise AudioInputError(400, "missing_file", "the multipart body has no field 'file'")
    _check_type(request.content_type.lower(), untyped=False)
    return await _read_limited(lambda: request.content.read(READ_CHUNK), max_bytes)


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    """Decode an audio file to PCM16 mono at :data:`~schemas.audio.BUS_SAMPLE_RATE`.

    Channels are averaged; other rates are resampled by soxr (``HQ``).

    Args:
        data: the file's bytes.
        max_seconds: longest recording accepted (``VOXBUS_MAX_SESSION_S``).

    Returns:
        int16 samples of shape (n,), 16 kHz.

    Raises:
        AudioInputError: 400 ``undecodable`` (not audio libsndfile reads, or no samples);
            413 ``too_long`` (over ``max_seconds``).
    """
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            if sound.frames > max_seconds * sound.samplerate:
                raise AudioInputError(413, "too_long", f"the recording is over {max_seconds:g} s")
            audio = sound.read(dtype="float32", always_2d=True)
            rate = sound.samplerate
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioInputError(400, "undecodable", f"not audio this server decodes: {exc}") from None
    if not audio.size:
        raise AudioInputError(400, "undecodable", "the recording has no samples")
    mono = audio.mean(axis=1)
    if rate != BUS_SAMPLE_RATE:
        mono = soxr.resample(mono, rate, BUS_SAMPLE_RATE, quality="HQ")
    return (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16)
