"""An ingress app in-process with a fake Kafka side: edge, protocol and Twilio tests without a broker."""

from __future__ import annotations

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from ingress.backpressure import AudioBudget
from ingress.turns import FinishedTurns
from schemas import SessionRecord
from streams.settings import Settings


class FakeGateway:
    """Records what the ingress produces; ``deliver`` plays the egress side."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: dict[str, object] = {}
        self.produced: list[tuple[str, object]] = []
        self.audio_budget = AudioBudget(settings.ingress_buffer_bytes)
        self.finished = FinishedTurns()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def produce(self, topic, record) -> None:
        self.produced.append((topic.name, record))

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
    """``await serve(**settings)`` -> (aiohttp TestClient, FakeGateway) of a fresh ingress app."""
    from ingress.server import make_app

    clients: list[TestClient] = []

    async def _serve(**overrides):
        settings = Settings(**overrides)
        gateway = FakeGateway(settings)
        client = TestClient(TestServer(make_app(settings, gateway)))  # type: ignore[arg-type]
        await client.start_server()
        clients.append(client)
        return client, gateway

    yield _serve
    for client in clients:
        await client.close()
