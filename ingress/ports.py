"""Which port serves what: callers on ``VOXBUS_PORT``, agents and analysts on ``VOXBUS_AGENT_PORT``.

With ``VOXBUS_AGENT_PORT`` set (and not ``VOXBUS_PORT``), one app listens on both ports and
:func:`by_port` routes by the port a request came in on: the agent console, the agent API
and the analytics page (:data:`AGENT_PREFIXES`) only on the agent port, the caller
endpoints only on the caller port, the probes, ``/metrics`` and the static files on both.
A NetworkPolicy can then keep the agent port inside the cluster.  Both ports still check
roles (:mod:`ingress.auth`): a caller's credential is refused on the agent API on either.
With ``VOXBUS_AGENT_PORT=0`` (the local run) the caller port serves everything.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

from aiohttp import web

from streams.settings import Settings

AGENT_PREFIXES = ("/agent", "/v1/agent/", "/analytics", "/v1/analytics")
"""Paths of the agent console, its API and the analytics page (with their sub-paths)."""
SHARED_PREFIXES = ("/healthz", "/livez", "/readyz", "/metrics", "/static/")
"""Paths both ports serve: probes, metrics, and the pages' static files."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def by_port(settings: Settings) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """The middleware that answers 404 for a path the request's port does not serve (module docstring)."""
    split = bool(settings.agent_port) and settings.agent_port != settings.port

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if split and not _is(request.path, SHARED_PREFIXES):
            sockname = request.transport.get_extra_info("sockname") if request.transport else None
            port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
            internal = _is(request.path, AGENT_PREFIXES)
            if (port == settings.port and internal) or (port == settings.agent_port and not internal):
                raise web.HTTPNotFound(text="not served on this port")
        return await handler(request)

    return middleware


def agent_sockets(settings: Settings) -> list[socket.socket]:
    """The agent port's listening socket on ``settings.host`` (none when it is 0 or the caller port).

    Raises:
        OSError: the port is taken.
    """
    if not settings.agent_port or settings.agent_port == settings.port:
        return []
    return [socket.create_server((settings.host, settings.agent_port))]
