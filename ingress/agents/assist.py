"""Agent assist at the console: the suggest stage's suggestions, read by every replica.

The suggest stage (:mod:`processors.generation.suggest`) writes a :class:`schemas.Suggestion`
to ``voxbus.suggestions`` for each caller turn of a handed-off session: the passages retrieved
for it, their sources, and a suggested reply.  Every replica follows the topic (an agent's
console may be on any replica) and keeps the last :data:`MAX_PER_SESSION` per session for
:data:`HORIZON_S`.  The console shows them under the transcript; *Send* posts one as a typed
reply (shown to the caller), *Speak* as a spoken one (``/reply`` with ``"speak": true``).

* ``GET /v1/agent/sessions/{session_id}/suggestions``: ``{"session_id", "suggestions": [...]}``,
  oldest first, for a handed-off session (404 otherwise); the ``agent`` role, as every agent
  endpoint (:func:`ingress.agents.routes.agent_of`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ingress.agents import routes
from ingress.agents.readback import ReadBack
from ingress.follow import start_soon, started
from schemas import Record, Suggestion
from streams.topics import SUGGESTIONS

log = logging.getLogger(__name__)

HORIZON_S = 3600.0
"""How far back (s) suggestions are read and kept: a call is not longer (``VOXBUS_MAX_SESSION_S``)."""
MAX_PER_SESSION = 20
"""Most suggestions kept per session (the newest)."""


class SuggestionBook(ReadBack):
    """The recent suggestions of every session, folded from ``voxbus.suggestions``."""

    topics = (SUGGESTIONS,)
    records = (Suggestion,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: dict[str, list[Suggestion]] = {}
        self.pruned = time.time()

    def since(self) -> float:
        """:data:`HORIZON_S` ago."""
        return time.time() - HORIZON_S

    def apply(self, record: Record) -> None:
        """Keep ``record`` as its turn's suggestion (a redelivered one replaces the earlier)."""
        assert isinstance(record, Suggestion)
        kept = [s for s in self.sessions.get(record.session_id, []) if s.turn_id != record.turn_id]
        self.sessions[record.session_id] = [*kept, record][-MAX_PER_SESSION:]

    def of(self, session_id: str) -> list[dict[str, Any]]:
        """A session's suggestions, oldest first, JSON-ready."""
        shown = {"turn_id", "handoff_turn", "caller_text", "text", "passages", "sources", "error", "ts"}
        return [s.model_dump(mode="json", include=shown) for s in self.sessions.get(session_id, [])]

    def tick(self) -> None:
        """Forget sessions whose last suggestion is older than :data:`HORIZON_S`, about once a minute."""
        now = time.time()
        if now - self.pruned < 60.0:
            return
        self.pruned = now
        for session_id in [sid for sid, kept in self.sessions.items() if kept[-1].ts < now - HORIZON_S]:
            del self.sessions[session_id]


BOOK = web.AppKey("agent_suggestions", SuggestionBook)
_LOCK = web.AppKey("agent_suggestions_lock", asyncio.Lock)


async def suggestions(request: web.Request) -> web.Response:
    """``GET /v1/agent/sessions/{session_id}/suggestions``: the session's suggestions, oldest first.

    Raises:
        web.HTTPUnauthorized, web.HTTPForbidden: as :func:`ingress.agents.routes.agent_of`.
        web.HTTPNotFound: no handed-off session with this id.
        web.HTTPServiceUnavailable: the queue or the suggestions cannot be read.
    """
    routes.agent_of(request)
    _desk, session = await routes.session_of(request)
    try:  # started with the app; restarted here if the broker was down then
        book = await started(request.app[BOOK], request.app[_LOCK])
    except Exception as exc:
        log.warning("agent suggestions unavailable: %s: %s", type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text=f"agent assist is unavailable: {type(exc).__name__}") from None
    return web.json_response({"session_id": session.session_id, "suggestions": book.of(session.session_id)},
                             headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application, gateway: Any) -> None:
    """Follow ``voxbus.suggestions`` from the app's start (in the background); add the endpoint.

    Args:
        app: the ingress application (not started yet).
        gateway: the ingress's Kafka side (``follow``, ``settings``).
    """
    book = app[BOOK] = SuggestionBook(gateway.settings)
    app[_LOCK] = asyncio.Lock()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        starting = start_soon(gateway.follow(book, app[_LOCK]), "agent suggestions")  # serving meanwhile
        yield
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await book.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/agent/sessions/{session_id}/suggestions", suggestions)
