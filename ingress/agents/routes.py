"""The agent console's HTTP API: the shared queue, take, reply, release, transfer.

Every endpoint needs the ``agent`` role (or ``supervisor``) when authentication is on
(:meth:`ingress.edge.EdgeGuard.authorize`): no credential is 401, a caller's is 403.
With authentication on, the acting agent is the credential's principal; off (the local
run), it is the ``agent`` named in the body.  JSON in and out; a session unknown to the
queue is 404, an action the session's state does not allow is 409, a queue that cannot be
read or written is 503.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from ingress.agents.desk import Desk
from ingress.agents.estimate import estimated_wait
from ingress.agents.queue import ABANDONED, TAKEN, WAITING, DeskSession
from ingress.auth import AGENT
from ingress.edge import EdgeGuard
from schemas import HandoffUpdate
from streams.topics import HANDOFFS

log = logging.getLogger(__name__)

MAX_REPLY_CHARS = 1000
MAX_NOTE_CHARS = 2000
MAX_AGENT_CHARS = 128

DESK = web.AppKey("agent_desk", Desk)
GUARD = web.AppKey("agent_guard", EdgeGuard)


def agent_of(request: web.Request, body: dict[str, Any] | None = None) -> str:
    """The acting agent: the principal with authentication on, else the body's ``agent`` (or ``agent``).

    Raises:
        web.HTTPUnauthorized: authentication is on and the credentials are missing or refused.
        web.HTTPForbidden: the principal has no ``agent`` role.
    """
    principal = request.app[GUARD].authorize(request, AGENT)
    if principal.kind != "anonymous":
        return principal.id
    return str((body or {}).get("agent") or "agent").strip()[:MAX_AGENT_CHARS] or "agent"


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object.

    Raises:
        web.HTTPBadRequest: the body is not a JSON object.
    """
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, limit: int, required: bool = False) -> str:
    """``body[name]`` as stripped text of at most ``limit`` characters.

    Raises:
        web.HTTPBadRequest: not a string, too long, or missing while ``required``.
    """
    value = body.get(name, "")
    if not isinstance(value, str) or len(value.strip()) > limit or (required and not value.strip()):
        need = "1 to" if required else "at most"
        raise web.HTTPBadRequest(text=f"{name} must be a string of {need} {limit} characters")
    return value.strip()


async def ready_desk(request: web.Request) -> Desk:
    """The app's desk with its queue read up to date.

    Raises:
        web.HTTPServiceUnavailable: the queue's topics cannot be read.
    """
    desk = request.app[DESK]
    try:
        await desk.ready()
    except Exception as exc:
        log.warning("agent queue unavailable: %s: %s", type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text=f"the agent queue is unavailable: {type(exc).__name__}") \
            from None
    return desk


async def session_of(request: web.Request) -> tuple[Desk, DeskSession]:
    """The desk and the handed-off session named in the path.

    Raises:
        web.HTTPNotFound: no handed-off session with this id.
        web.HTTPServiceUnavailable: the queue cannot be read.
    """
    desk = await ready_desk(request)
    session = desk.queue.sessions.get(request.match_info["session_id"])
    if session is None:
        raise web.HTTPNotFound(text="no handed-off session with this id")
    return desk, session


def held_by(session: DeskSession, agent: str) -> None:
    """Check that ``agent`` holds ``session``.

    Raises:
        web.HTTPConflict: nobody holds it (take it first), or another agent does.
    """
    if session.status != TAKEN:
        raise web.HTTPConflict(text=f"the session is {session.status}: take it first")
    if session.agent != agent:
        raise web.HTTPConflict(text=f"the session is held by {session.agent}")


async def acted(desk: Desk, session: DeskSession, kind: str, agent: str, **fields: str) -> DeskSession:
    """:meth:`Desk.act`, with a broker failure as 503."""
    try:
        return await desk.act(session, kind, agent, **fields)
    except Exception as exc:
        log.warning("session %s: %s not stored: %s: %s", session.session_id, kind, type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text=f"the {kind} could not be stored: try again") from None


def respond(session: DeskSession, **extra: Any) -> web.Response:
    """The session's view as the response."""
    return web.json_response({**session.view(), **extra}, headers={"Cache-Control": "no-store"})


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /v1/agent/sessions``: ``{"sessions": [...]}``, waiting ones first in queue order."""
    agent_of(request)
    desk = await ready_desk(request)
    return web.json_response({"sessions": desk.queue.listing()}, headers={"Cache-Control": "no-store"})


async def queue(request: web.Request) -> web.Response:
    """``GET /v1/agent/queue``: the waiting sessions in order, each with its place and estimated wait.

    ``{"queue": [{"session_id", "position", "waited_s", "estimated_wait_s" (null without a
    finished call), "reason", "summary", "intent"}], "sla_s", "hold_message_s"}``.
    """
    agent_of(request)
    desk = await ready_desk(request)
    now = time.time()
    spans = desk.queue.spans()
    holding = [s.agent for s in desk.queue.sessions.values() if s.status == TAKEN]
    entries = [{"session_id": s.session_id, "position": place, "waited_s": round(now - s.since, 1),
                "estimated_wait_s": estimated_wait(place, spans, holding, now), "reason": s.reason,
                "summary": s.summary, "intent": s.intent}
               for place, s in enumerate(desk.queue.waiting(), start=1)]
    settings = desk.gateway.settings
    return web.json_response({"queue": entries, "sla_s": settings.handoff_sla_s,
                              "hold_message_s": settings.hold_message_s},
                             headers={"Cache-Control": "no-store"})


async def take(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/take``: claim a waiting session (409 if another claim won)."""
    body = await json_body(request)
    agent = agent_of(request, body)
    desk, session = await session_of(request)
    if session.status == TAKEN and session.agent == agent:
        return respond(session)
    if session.status != WAITING:
        raise unclaimable(session)
    outcome = await acted(desk, session, "claim", agent)
    if outcome.status != TAKEN or outcome.agent != agent:
        raise unclaimable(outcome)
    return respond(outcome)


def unclaimable(session: DeskSession) -> web.HTTPConflict:
    """The 409 of a take that did not count: who holds the session, or why its round is not waiting."""
    if session.agent:
        return web.HTTPConflict(text=f"already taken by {session.agent}")
    if session.status == ABANDONED:
        return web.HTTPConflict(text="the caller hung up while waiting: there is no call to take")
    return web.HTTPConflict(text=f"the session is {session.status}")


async def reply(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/reply`` ``{"text", "speak"?}``: say it to the caller.

    Spoken when the session is spoken, unless ``"speak": false`` (shown only); ``"speak": true``
    cannot make a typing caller's session spoken.  Also a :class:`schemas.HandoffUpdate`
    ``agent`` line for every console's transcript.
    """
    body = await json_body(request)
    agent = agent_of(request, body)
    text = text_field(body, "text", MAX_REPLY_CHARS, required=True)
    asked = body.get("speak", True)
    if not isinstance(asked, bool):
        raise web.HTTPBadRequest(text="speak must be true or false")
    desk, session = await session_of(request)
    held_by(session, agent)
    speak = session.speak and asked
    try:
        turn_id = await desk.say(session, text, "agent", speak=speak)
        update = HandoffUpdate(session_id=session.session_id, egress_partition=session.egress_partition,
                               kind="agent", turn_id=turn_id, text=text, agent=agent, ts=time.time())
        await desk.gateway.produce(HANDOFFS, update)
    except Exception as exc:
        log.warning("session %s: reply not sent: %s: %s", session.session_id, type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text="the reply could not be sent: try again") from None
    desk.queue.apply(update)
    return web.json_response({"session_id": session.session_id, "turn_id": turn_id, "speak": speak})


async def release(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/release`` ``{"note"?}``: back to the bot, with the note."""
    body = await json_body(request)
    agent = agent_of(request, body)
    note = text_field(body, "note", MAX_NOTE_CHARS)
    desk, session = await session_of(request)
    held_by(session, agent)
    return respond(await acted(desk, session, "release", agent, note=note))


async def transfer(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/transfer`` ``{"to", "note"?}``: pass it to agent ``to``."""
    body = await json_body(request)
    agent = agent_of(request, body)
    to = text_field(body, "to", MAX_AGENT_CHARS, required=True)
    note = text_field(body, "note", MAX_NOTE_CHARS)
    desk, session = await session_of(request)
    held_by(session, agent)
    if to == agent:
        raise web.HTTPBadRequest(text="the session is already yours")
    outcome = await acted(desk, session, "transfer", agent, to_agent=to, note=note)
    if outcome.agent != to:
        raise web.HTTPConflict(text=f"the session is {outcome.status}, held by {outcome.agent or 'nobody'}")
    return respond(outcome)
