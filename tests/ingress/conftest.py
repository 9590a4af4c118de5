"""An ingress app in-process with a fake Kafka side: edge, protocol and Twilio tests without a broker.

Apps served with the same ``bus`` (a list of (topic, record)) share it as replicas or
successive runs of an ingress share Kafka: a new app's session ledger reads back the
bindings the others wrote (``voxbus.sessions``).
"""

from __future__ import annotations

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from ingress.backpressure import AudioBudget
from ingress.ownership import SessionLedger
from ingress.turns import FinishedTurns
from schemas import SessionRecord
from schemas.sessions import SessionOwner
from streams.settings import Settings
from streams.topics import SESSIONS


class FakeGateway:
    """Records what the ingress produces; ``deliver`` plays the egress side."""

    def __init__(self, settings: Settings, bus: list | None = None) -> None:
        self.settings = settings
        self.sessions: dict[str, object] = {}
        self.produced: list[tuple[str, object]] = []
        self.bus = [] if bus is None else bus
        self.audio_budget = AudioBudget(settings.ingress_buffer_bytes)
        self.finished = FinishedTurns()
        self.ledger = SessionLedger(settings, self.produce)

    async def start(self) -> None:
        for topic, record in list(self.bus):  # the ledger reads the bindings back
            if topic == SESSIONS.name and isinstance(record, SessionOwner):
                self.ledger.apply(record)
        self.ledger.caught_up.set()

    async def stop(self) -> None:
        pass

    async def produce(self, topic, record) -> None:
        self.produced.append((topic.name, record))
        self.bus.append((topic.name, record))

    async def deliver(self, record: SessionRecord) -> None:
        session = self.sessions.get(record.session_id)
        if session is not None:
            await session.deliver(record)

    async def health(self):
        return True, {"broker": True, "stages": {}}

    def records(self, kind: type, session_id: str | None = None) -> list:
        return [r for _, r in self.produced
                if isinstance(r, kind) and (session_id is None or r.session_id == session_id)]


@pytest_asyncio.fixture(loop_scope="function")
async def serve():
    """``await serve(bus=None, **settings)`` -> (aiohttp TestClient, FakeGateway) of a fresh ingress app."""
    from ingress.server import make_app, server_options

    clients: list[TestClient] = []

    async def _serve(bus=None, **overrides):
        settings = Settings(**overrides)
        gateway = FakeGateway(settings, bus)
        server = TestServer(make_app(settings, gateway))  # type: ignore[arg-type]
        await server.start_server(**server_options(settings))  # the production server's options
        client = TestClient(server)
        await client.start_server()
        clients.append(client)
        return client, gateway

    yield _serve
    for client in clients:
        await client.close()
