"""Callers on VOXBUS_PORT, agents on VOXBUS_AGENT_PORT: one app on two real sockets."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from benchmarks.ports import free_port
from ingress.ports import agent_sockets
from ingress.server import make_app, server_options
from streams.settings import Settings
from tests.ingress.conftest import FakeGateway

KEYS = "alice=key-alice-0123456789,agent:bob=key-bob-0123456789"


async def test_the_agent_api_is_on_its_own_port_and_callers_keep_theirs():
    settings = Settings(api_keys=KEYS, host="127.0.0.1", port=free_port(), agent_port=free_port())
    runner = web.AppRunner(make_app(settings, FakeGateway(settings)), **server_options(settings))  # type: ignore
    await runner.setup()
    [agent_socket] = agent_sockets(settings)
    for site in (web.TCPSite(runner, settings.host, settings.port), web.SockSite(runner, agent_socket)):
        await site.start()
    bob = {"Authorization": "Bearer key-bob-0123456789"}
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    callers, agents = f"http://127.0.0.1:{settings.port}", f"http://127.0.0.1:{settings.agent_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def status(url: str, headers: dict | None = None) -> int:
                async with http.get(url, headers=headers or {}) as response:
                    return response.status

            for path in ("/v1/agent/sessions", "/v1/agent/queue", "/agent", "/v1/analytics", "/analytics"):
                assert await status(callers + path, bob) == 404, path  # not even an agent, on the caller port
                if path != "/analytics":  # the page holds no data; its API needs the role
                    assert await status(agents + path, alice) == 403, path  # roles hold on the agent port
            assert await status(agents + "/v1/agent/sessions", bob) == 200
            assert await status(agents + "/v1/stream") == 404 and await status(agents + "/") == 404
            assert await status(callers + "/") == 200
            for path in ("/healthz", "/metrics", "/static/api.js"):
                assert await status(callers + path) == await status(agents + path) == 200, path
    finally:
        await runner.cleanup()


def test_no_agent_port_serves_everything_on_the_caller_port():
    assert agent_sockets(Settings(agent_port=0)) == [] == agent_sockets(Settings(port=8765, agent_port=8765))
