"""``GET /v1/agent/sessions/{id}/recording``: a session's stereo recording for the agent console.

The WAV is the one ``voxbus recording SESSION --out`` writes (:mod:`processors.archive.recording`:
the caller on the left channel, the assistant and the agent on the right, 16-bit PCM at
16 kHz), made from the session's records in the archive and on the topics.  Reading them and
placing the audio blocks (Parquet, a consumer of its own), so it runs in a worker thread with its
own event loop, at most :data:`MAX_BUILDS` at a time per ingress.

Roles are those of :mod:`ingress.agents.routes` (no credential 401, a caller's 403).  Errors are
JSON ``{"error"}``: 400 for a malformed session id, 404 when the session has no audio (never
archived nor on the topics any more, or started with ``record: false``), 503 when the archive
cannot be read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from aiohttp import web

from ingress.agents.routes import agent_of
from processors.archive.recording import NoAudio, RecordingRefused, build, session_reads
from schemas.base import SESSION_ID_PATTERN
from streams.settings import Settings

log = logging.getLogger(__name__)

MAX_BUILDS = 2
"""Recordings one ingress builds at once (each reads the session's topics and holds its audio in memory);
further requests wait their turn."""
REFUSED = "no recording: the session was started with record: false"
NO_AUDIO = ("no recording: no audio of this session in the archive or on the topics (not archived yet, "
            "or past its retention)")


def wav_of(settings: Settings, session_id: str) -> bytes:
    """The stereo WAV of ``session_id`` (blocking: call it from a worker thread, it runs its own loop).

    Raises:
        RecordingRefused: the session was started with ``record: false``.
        NoAudio: no audio of the session in the archive nor on the topics.
        OSError: an archive file cannot be read.
    """
    return build(asyncio.run(session_reads(settings, session_id)), session_id).wav()


def failure(status: type[web.HTTPError], message: str) -> web.HTTPError:
    """An HTTP error whose body is ``{"error": message}``."""
    return status(text=web.json_response({"error": message}).text, content_type="application/json")


def add_routes(app: web.Application, gateway: Any) -> None:
    """Add the recording endpoint to the ingress ``app``.

    Args:
        app: the ingress application (not started yet).
        gateway: the ingress's Kafka side (``settings``: the broker and the archive directory).
    """
    builds = asyncio.Semaphore(MAX_BUILDS)

    async def recording(request: web.Request) -> web.Response:
        """``GET /v1/agent/sessions/{session_id}/recording``: ``audio/wav``, 2 channels (caller, voxbus)."""
        agent_of(request)
        session_id = request.match_info["session_id"]
        if not re.fullmatch(SESSION_ID_PATTERN, session_id):
            raise failure(web.HTTPBadRequest, "not a session id (1-64 characters of A-Z a-z 0-9 _ . : -)")
        async with builds:
            try:
                wav = await asyncio.to_thread(wav_of, gateway.settings, session_id)
            except RecordingRefused:
                raise failure(web.HTTPNotFound, REFUSED) from None
            except NoAudio:
                raise failure(web.HTTPNotFound, NO_AUDIO) from None
            except OSError as exc:
                log.warning("recording of %s not read: %s: %s", session_id, type(exc).__name__, exc)
                unreadable = f"the archive cannot be read: {type(exc).__name__}"
                raise failure(web.HTTPServiceUnavailable, unreadable) from None
        return web.Response(body=wav, content_type="audio/wav", headers={
            "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{session_id}.wav"'})

    app.router.add_get("/v1/agent/sessions/{session_id}/recording", recording)
