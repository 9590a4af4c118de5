"""The agent desk: the console (``GET /agent``), its API under ``/v1/agent/``, the shared queue.

Sessions handed to a person (:class:`schemas.Handoff` on ``voxbus.handoffs``, from the
workflow stage) wait in one queue that every ingress replica folds from the bus
(:mod:`ingress.agents.queue`: the first claim in log order wins).  The replica holding a
waiting caller's socket tells them their place and estimated wait, repeats it every
``VOXBUS_HOLD_MESSAGE_S`` and gives the session back to the bot after
``VOXBUS_HANDOFF_SLA_S`` (:mod:`ingress.agents.hold`); when the caller hangs up while waiting, it
writes the round's ``abandon`` (:meth:`ingress.agents.desk.Desk.abandon`): nobody can take it.  The endpoints
(:mod:`ingress.agents.routes`) need the ``agent`` role with authentication on:

* ``GET /v1/agent/sessions``: every handed-off session, waiting ones first in queue order;
* ``GET /v1/agent/queue``: the waiting ones with their place and estimated wait;
* ``POST /v1/agent/sessions/{id}/take``: claim a waiting session (409 if another claim won, or the
  caller hung up while waiting);
* ``POST /v1/agent/sessions/{id}/reply`` ``{"text"}``: say something to the caller;
* ``POST /v1/agent/sessions/{id}/release`` ``{"note"?}``: back to the bot, the note in its history;
* ``POST /v1/agent/sessions/{id}/transfer`` ``{"to", "note"?}``: pass the session to another agent;
* ``POST /v1/agent/sessions/{id}/end`` ``{"disposition", "note"?}``: wrap up, and a ticket
  (:mod:`ingress.agents.wrapup`: tickets, their search and resolution, a caller's history);
* ``GET /v1/agent/sessions/{id}/suggestions``: agent assist, the passages and a suggested reply
  for each caller turn (:mod:`ingress.agents.assist`);
* ``GET /v1/agent/sessions/{id}/voice`` (WebSocket): the agent speaks to the caller and hears them
  live, through the bus (:mod:`ingress.agents.voice`);
* ``GET /v1/agent/sessions/{id}/recording``: the session's stereo WAV, the caller left, voxbus right
  (:mod:`ingress.agents.recordings`; 404 when it has no audio).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from ingress.agents import assist, recordings, routes, voice, wrapup
from ingress.agents.desk import Desk
from ingress.agents.hold import HoldLine
from ingress.agents.queue import AgentQueue
from ingress.agents.tickets import TicketBook, TicketDesk
from ingress.edge import EdgeGuard
from ingress.follow import start_soon

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent.parent / "static" / "agent.html"
TICK_S = 1.0
"""How often (s) the hold line runs, and a stopped queue is restarted."""

QUEUE = web.AppKey("agent_queue", AgentQueue)


async def page(request: web.Request) -> web.FileResponse:
    """``GET /agent``: the console (a self-contained page polling the API), for agents only.

    Raises:
        web.HTTPUnauthorized, web.HTTPForbidden: as :func:`ingress.agents.routes.agent_of`.
    """
    routes.agent_of(request)
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


async def keep(desk: Desk, hold: HoldLine) -> None:
    """Every :data:`TICK_S`: restart the queue if it stopped, then run the hold line (until cancelled)."""
    while True:
        await asyncio.sleep(TICK_S)
        try:
            await desk.ready()
        except Exception as exc:  # the broker is down: the next tick tries again
            log.warning("agent queue not running: %s: %s", type(exc).__name__, exc)
            continue
        await hold.tick()


def add_routes(app: web.Application, gateway: Any, guard: EdgeGuard) -> None:
    """Add the agent console, its API and the shared queue to the ingress ``app``.

    The queue and the tickets start following with the app, after the gateway, in the background
    (``gateway.follow``, :func:`ingress.follow.start_soon`: callers are served while they read
    back), so the hold line serves this replica's waiting callers even if no agent opens the
    console here.

    Args:
        app: the ingress application (not started yet; its gateway's cleanup context first).
        gateway: the ingress's :class:`ingress.gateway.Gateway` (``produce``, ``follow``, ``sessions``,
            ``settings``).
        guard: the ingress's edge guard (authentication and roles).
    """
    queue = app[QUEUE] = AgentQueue(gateway.settings)
    desk = app[routes.DESK] = Desk(queue, gateway)
    gateway.ended.append(desk.abandon)  # a caller who hangs up while waiting leaves the queue

    async def stopping(app: web.Application) -> None:  # callers cut by a shutdown reconnect elsewhere
        desk.stopping = True

    app.on_shutdown.append(stopping)
    book = TicketBook(gateway.settings)
    app[wrapup.TICKETS] = TicketDesk(book, gateway)
    app[routes.GUARD] = guard

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        # both read back in the background, the ingress serving callers meanwhile; the keeper
        # (and any request) waits for the same starts, and starts a failed one again
        starting = [start_soon(gateway.follow(queue, desk.lock), "agent queue"),
                    start_soon(gateway.follow(book, app[wrapup.TICKETS].lock), "tickets")]
        keeper = asyncio.create_task(keep(desk, HoldLine(desk)), name="agent-desk")
        yield
        for task in (keeper, *starting):
            task.cancel()
        await asyncio.gather(keeper, *starting, return_exceptions=True)
        await queue.stop()
        await book.stop()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/agent", page)
    app.router.add_get("/v1/agent/sessions", routes.list_sessions)
    app.router.add_get("/v1/agent/queue", routes.queue)
    for action in (routes.take, routes.reply, routes.release, routes.transfer, wrapup.end):
        app.router.add_post(f"/v1/agent/sessions/{{session_id}}/{action.__name__}", action)
    app.router.add_get("/v1/agent/tickets", wrapup.list_tickets)
    app.router.add_post("/v1/agent/tickets/{ticket_id}/resolve", wrapup.resolve)
    app.router.add_get("/v1/agent/callers/{caller_id}/sessions", wrapup.caller_sessions)
    assist.add_routes(app, gateway)
    app.router.add_get("/v1/agent/sessions/{session_id}/voice", voice.stream)
    recordings.add_routes(app, gateway)
