"""The agent console: ``GET /agent`` (the page) and its API under ``/v1/agent/``.

Sessions handed to a person (:class:`schemas.Handoff` on ``voxbus.handoffs``, from the
workflow stage) are listed with their transcript, which grows live with the caller
turns the generation stage passes on (:class:`schemas.HandoffUpdate` ``caller``) and the
agents' replies.  The ingress follows ``voxbus.handoffs`` with one consumer of its own
(every partition, no consumer group), started on the first request and reading back
:data:`HORIZON_S`, so every replica shows every waiting session.

API (JSON; with authentication on, only for principals with the ``agent`` role (or
``supervisor``): a caller's credential gets 403, see :mod:`ingress.auth`):

* ``GET /v1/agent/sessions``: the handed-off sessions, waiting ones first;
* ``POST /v1/agent/sessions/{session_id}/take`` ``{"agent": name}``: take a session
  (with authentication on, the agent is the credential's principal);
* ``POST /v1/agent/sessions/{session_id}/reply`` ``{"text": ...}``: say something to the
  caller: a :class:`schemas.ReplyText` to ``voxbus.replies`` (the tts stage speaks it
  once the caller has spoken in the session) and to the caller's ``voxbus.egress``
  partition (the caller's page shows it), plus a ``HandoffUpdate`` ``agent`` for the
  other consoles.  409 until the session is taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ingress.auth import AGENT
from ingress.edge import EdgeGuard
from ingress.follow import TopicFollower, started, stop_on_cleanup
from schemas import Handoff, HandoffUpdate, Record, ReplyText, SchemaError, decode
from streams.settings import Settings
from streams.topics import EGRESS, HANDOFFS, REPLIES

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "agent.html"
HORIZON_S = 3600.0
"""How far back (s) the console reads ``voxbus.handoffs`` when it starts: a waiting caller
is not older than an hour (``VOXBUS_MAX_SESSION_S``)."""
MAX_REPLY_CHARS = 1000


@dataclass
class DeskSession:
    """One handed-off session as the console shows it."""

    session_id: str
    egress_partition: int
    reason: str
    summary: str
    intent: str
    sentiment_score: float
    since: float
    speak: bool
    agent: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)

    def add_line(self, role: str, text: str, turn_id: str, ts: float) -> None:
        """Append a transcript line once (records are read at least once)."""
        if text and not any(line["turn_id"] == turn_id and line["role"] == role for line in self.lines):
            self.lines.append({"role": role, "text": text, "turn_id": turn_id, "ts": ts})


class HandoffDesk(TopicFollower):
    """The handed-off sessions, folded from ``voxbus.handoffs``."""

    topics = (HANDOFFS,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sessions: dict[str, DeskSession] = {}

    def since(self) -> float:
        """:data:`HORIZON_S` ago."""
        return time.time() - HORIZON_S

    def absorb(self, messages: Iterable[Any]) -> None:
        """Fold consumed messages of ``voxbus.handoffs`` (undecodable ones are logged and skipped)."""
        for message in messages:
            try:
                self.apply(decode(message.value, Handoff, HandoffUpdate))
            except SchemaError as exc:
                log.warning("undecodable hand-off record at offset %d: %s", message.offset, exc)

    def apply(self, record: Record) -> None:
        """Fold one record of ``voxbus.handoffs`` (idempotent: redelivery changes nothing)."""
        if isinstance(record, Handoff):
            session = self.sessions.get(record.session_id)
            if session is None:
                session = self.sessions[record.session_id] = DeskSession(
                    session_id=record.session_id, egress_partition=record.egress_partition,
                    reason=record.reason, summary=record.summary, intent=record.intent,
                    sentiment_score=record.sentiment_score, since=record.ts, speak=record.speak,
                )
                for line in record.transcript:
                    session.add_line(line.role, line.text, line.turn_id, record.ts)
            return
        assert isinstance(record, HandoffUpdate)
        session = self.sessions.get(record.session_id)
        if session is None:
            return  # its hand-off is older than the horizon
        if record.kind == "taken":
            session.agent = record.agent
        elif record.kind == "caller":
            session.speak = session.speak or record.speak  # once the caller has spoken, agents are heard
            session.add_line("caller", record.text, record.turn_id, record.ts)
        else:
            session.add_line("agent", record.text, record.turn_id, record.ts)

    def listing(self) -> list[dict[str, Any]]:
        """The sessions as JSON-ready dicts, waiting ones first, oldest first."""
        ordered = sorted(self.sessions.values(), key=lambda s: (bool(s.agent), s.since))
        return [{**asdict(s), "waiting": not s.agent} for s in ordered]


DESK = web.AppKey("handoff_desk", HandoffDesk)
_LOCK = web.AppKey("handoff_desk_lock", asyncio.Lock)
_GATEWAY = web.AppKey("agent_gateway", object)
_GUARD = web.AppKey("agent_guard", EdgeGuard)


async def _desk(request: web.Request) -> HandoffDesk:
    """The app's desk, started on first use (restarted after a failure) and caught up."""
    return await started(request.app[DESK], request.app[_LOCK], catch_up=True)


def _agent(request: web.Request) -> str | None:
    """The agent's principal id when authentication is on, None when it is off.

    Raises:
        web.HTTPUnauthorized: authentication is on and the credentials are missing or refused.
        web.HTTPForbidden: the principal has no ``agent`` role.
    """
    principal = request.app[_GUARD].authorize(request, AGENT)
    return None if principal.kind == "anonymous" else principal.id


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


async def _session(request: web.Request) -> tuple[HandoffDesk, DeskSession]:
    desk = await _desk(request)
    session = desk.sessions.get(request.match_info["session_id"])
    if session is None:
        raise web.HTTPNotFound(text="no handed-off session with this id")
    return desk, session


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/agent/sessions``: ``{"sessions": [...]}`` (503 when the topic cannot be read)."""
    _agent(request)
    try:
        desk = await _desk(request)
    except Exception as exc:
        log.warning("hand-off desk unavailable: %s: %s", type(exc).__name__, exc)
        return web.json_response({"error": f"hand-offs unavailable: {type(exc).__name__}: {exc}"}, status=503)
    return web.json_response({"sessions": desk.listing()}, headers={"Cache-Control": "no-store"})


async def take(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/take``: the agent takes the session."""
    principal = _agent(request)
    body = await _json(request)
    agent = principal or str(body.get("agent") or "agent")[:128]
    desk, session = await _session(request)
    if session.agent and session.agent != agent:
        raise web.HTTPConflict(text=f"already taken by {session.agent}")
    update = HandoffUpdate(session_id=session.session_id, egress_partition=session.egress_partition,
                           kind="taken", agent=agent, ts=time.time())
    await request.app[_GATEWAY].produce(HANDOFFS, update)  # type: ignore[attr-defined]
    desk.apply(update)
    return web.json_response({"session_id": session.session_id, "agent": agent})


async def reply(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/reply``: say ``text`` to the caller (and speak it if spoken)."""
    principal = _agent(request)
    body = await _json(request)
    text = str(body.get("text") or "").strip()
    if not text or len(text) > MAX_REPLY_CHARS:
        raise web.HTTPBadRequest(text=f"text must be 1 to {MAX_REPLY_CHARS} characters")
    desk, session = await _session(request)
    if not session.agent:
        raise web.HTTPConflict(text="take the session first")
    if principal is not None and principal != session.agent:
        raise web.HTTPForbidden(text=f"the session is taken by {session.agent}")
    now = time.time()
    turn_id = f"agent-{int(now * 1000)}"
    spoken = ReplyText(session_id=session.session_id, egress_partition=session.egress_partition,
                       turn_id=turn_id, index=0, text=text, final=True, speak=session.speak,
                       marks={"agent.reply": now})
    update = HandoffUpdate(session_id=session.session_id, egress_partition=session.egress_partition,
                           kind="agent", turn_id=turn_id, text=text, agent=session.agent, ts=now)
    gateway = request.app[_GATEWAY]
    for topic, record in ((REPLIES, spoken), (EGRESS, spoken), (HANDOFFS, update)):
        await gateway.produce(topic, record)  # type: ignore[attr-defined]
    desk.apply(update)
    return web.json_response({"session_id": session.session_id, "turn_id": turn_id, "speak": session.speak})


async def page(request: web.Request) -> web.FileResponse:
    """``GET /agent``: the console (a self-contained page polling ``/v1/agent/sessions``)."""
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, gateway: Any, guard: EdgeGuard) -> None:
    """Add the agent console and its API to the ingress ``app``.

    Args:
        app: the ingress application (not started yet).
        gateway: the ingress's :class:`ingress.gateway.Gateway` (``produce`` and ``settings``).
        guard: the ingress's edge guard (authentication).
    """
    app[DESK] = HandoffDesk(gateway.settings)
    app[_LOCK] = asyncio.Lock()
    app[_GATEWAY] = gateway
    app[_GUARD] = guard

    stop_on_cleanup(app, app[DESK])
    app.router.add_get("/agent", page)
    app.router.add_get("/v1/agent/sessions", list_sessions)
    app.router.add_post("/v1/agent/sessions/{session_id}/take", take)
    app.router.add_post("/v1/agent/sessions/{session_id}/reply", reply)
