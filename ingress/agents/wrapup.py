"""Wrap-up, tickets and caller history: the agent API's endpoints after a call.

* ``POST /v1/agent/sessions/{id}/end`` ``{"disposition", "note"?}``: the agent holding the
  session ends the call: an ``end`` :class:`schemas.QueueEvent` (the bot has the session
  again), then its :class:`schemas.Ticket` on ``voxbus.tickets``, ``open`` or, for a
  disposition in :data:`schemas.desk.SETTLED`, ``resolved``.  A retry after a failure (the end
  stored, the ticket not) writes the ticket only;
* ``GET /v1/agent/tickets?session_id=&caller_id=&status=``: the tickets matching every filter
  given, most recently updated first (at most :data:`MAX_LISTED`);
* ``POST /v1/agent/tickets/{id}/resolve`` ``{"note"?}``: mark an open ticket resolved;
* ``GET /v1/agent/callers/{caller_id}/sessions``: that caller's sessions, newest first: those
  started within the queue's horizon (a day) with this caller id, with their hand-off and its
  transcript when they were handed off, and every session of a ticket with this caller id
  (tickets are kept for ever), each with its tickets.

Roles, the acting agent and the error statuses are those of :mod:`ingress.agents.routes`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from aiohttp import web

from ingress.agents.desk import Desk
from ingress.agents.queue import ENDED, DeskSession
from ingress.agents.routes import (
    MAX_NOTE_CHARS,
    acted,
    agent_of,
    held_by,
    json_body,
    ready_desk,
    session_of,
    text_field,
)
from ingress.agents.tickets import TicketDesk, ticket_id
from schemas import Ticket
from schemas.desk import CALLER_ID_PATTERN, DISPOSITIONS, SETTLED

log = logging.getLogger(__name__)

TICKETS = web.AppKey("agent_tickets", TicketDesk)
MAX_LISTED = 500
"""Most tickets (or sessions) one listing returns."""
STATUSES = ("open", "resolved")
NO_STORE = {"Cache-Control": "no-store"}


async def ready_tickets(request: web.Request) -> TicketDesk:
    """The app's ticket desk with its book read up to date.

    Raises:
        web.HTTPServiceUnavailable: ``voxbus.tickets`` cannot be read.
    """
    tickets = request.app[TICKETS]
    try:
        await tickets.ready()
    except Exception as exc:
        log.warning("tickets unavailable: %s: %s", type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text=f"the tickets are unavailable: {type(exc).__name__}") from None
    return tickets


async def stored(tickets: TicketDesk, ticket: Ticket) -> Ticket:
    """:meth:`TicketDesk.write`, with a broker failure as 503."""
    try:
        return await tickets.write(ticket)
    except Exception as exc:
        log.warning("ticket %s not stored: %s: %s", ticket.id, type(exc).__name__, exc)
        raise web.HTTPServiceUnavailable(text="the ticket could not be stored: try again") from None


def caller_of(desk: Desk, session_id: str) -> str:
    """The caller id ``session_id`` started with, or empty."""
    link = desk.queue.callers.get(session_id)
    return link.caller_id if link is not None else ""


async def end(request: web.Request) -> web.Response:
    """``POST /v1/agent/sessions/{session_id}/end`` ``{"disposition", "note"?}``: wrap up, write the ticket.

    Returns ``{...the session's view, "ticket": {...}}``.  400 for a disposition not in
    :data:`schemas.desk.DISPOSITIONS`; 409 when the agent does not hold the session.
    """
    body = await json_body(request)
    agent = agent_of(request, body)
    disposition = body.get("disposition")
    if disposition not in DISPOSITIONS:
        raise web.HTTPBadRequest(text=f"disposition must be one of {', '.join(DISPOSITIONS)}")
    note = text_field(body, "note", MAX_NOTE_CHARS)
    desk, session = await session_of(request)
    tickets = await ready_tickets(request)
    tid = ticket_id(session.session_id, session.round)
    if not (session.status == ENDED and session.agent == agent and tid not in tickets.book.tickets):
        held_by(session, agent)  # else: the end is stored, its ticket is not (a retry)
        session = await acted(desk, session, "end", agent, note=note)
        if session.status != ENDED or session.agent != agent:
            holder = session.agent or "nobody"
            raise web.HTTPConflict(text=f"the session is {session.status}, held by {holder}")
    now = time.time()
    ticket = Ticket(id=tid, session_id=session.session_id, handoff_turn=session.round, agent=agent,
                    intent=session.intent, disposition=disposition, note=note,
                    status="resolved" if disposition in SETTLED else "open",
                    caller_id=caller_of(desk, session.session_id), created=now, updated=now)
    written = await stored(tickets, ticket)
    return web.json_response({**session.view(), "ticket": written.model_dump(mode="json")}, headers=NO_STORE)


async def list_tickets(request: web.Request) -> web.Response:
    """``GET /v1/agent/tickets?session_id=&caller_id=&status=``: ``{"tickets": [...]}``, newest first.

    400 for a ``status`` other than ``open`` or ``resolved``.
    """
    agent_of(request)
    status = request.query.get("status", "")
    if status and status not in STATUSES:
        raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}")
    tickets = await ready_tickets(request)
    found = tickets.book.find(request.query.get("session_id", ""), request.query.get("caller_id", ""), status)
    return web.json_response({"tickets": [t.model_dump(mode="json") for t in found[:MAX_LISTED]],
                              "total": len(found)}, headers=NO_STORE)


async def resolve(request: web.Request) -> web.Response:
    """``POST /v1/agent/tickets/{ticket_id}/resolve`` ``{"note"?}``: the ticket, resolved.

    404 for an unknown ticket; 409 when it is resolved already.
    """
    body = await json_body(request)
    agent = agent_of(request, body)
    note = text_field(body, "note", MAX_NOTE_CHARS)
    tickets = await ready_tickets(request)
    ticket = tickets.book.tickets.get(request.match_info["ticket_id"])
    if ticket is None:
        raise web.HTTPNotFound(text="no ticket with this id")
    if ticket.status == "resolved":
        raise web.HTTPConflict(text=f"the ticket is resolved already ({ticket.resolved_by or ticket.agent})")
    written = await stored(tickets, ticket.model_copy(update={
        "status": "resolved", "resolved_by": agent, "resolution": note, "updated": time.time()}))
    return web.json_response(written.model_dump(mode="json"), headers=NO_STORE)


def history_entry(session_id: str, started: float, session: DeskSession | None,
                  tickets: list[Ticket]) -> dict[str, Any]:
    """One session of a caller's history: when it started, its hand-off (or None), its tickets."""
    return {"session_id": session_id, "started": started,
            "handoff": session.view() if session is not None else None,
            "tickets": [t.model_dump(mode="json") for t in tickets]}


async def caller_sessions(request: web.Request) -> web.Response:
    """``GET /v1/agent/callers/{caller_id}/sessions``: ``{"caller_id", "sessions": [...]}``, newest first.

    400 for a caller id that is not a :data:`schemas.desk.CallerId`.
    """
    agent_of(request)
    caller_id = request.match_info["caller_id"]
    if not re.fullmatch(CALLER_ID_PATTERN, caller_id):
        raise web.HTTPBadRequest(text="not a caller id (1-64 characters of A-Z a-z 0-9 + _ . : @ -)")
    desk = await ready_desk(request)
    tickets = await ready_tickets(request)
    by_session: dict[str, list[Ticket]] = {}
    for ticket in tickets.book.find(caller_id=caller_id):
        by_session.setdefault(ticket.session_id, []).append(ticket)
    started = {sid: link.ts for sid, link in desk.queue.callers.items() if link.caller_id == caller_id}
    for sid, found in by_session.items():
        started.setdefault(sid, min(t.created for t in found))
    ordered = sorted(started.items(), key=lambda item: (-item[1], item[0]))[:MAX_LISTED]
    sessions = [history_entry(sid, ts, desk.queue.sessions.get(sid), by_session.get(sid, []))
                for sid, ts in ordered]
    return web.json_response({"caller_id": caller_id, "sessions": sessions}, headers=NO_STORE)
