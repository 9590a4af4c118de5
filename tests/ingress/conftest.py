"""An ingress app in-process with a fake Kafka side: edge, protocol and Twilio tests without a broker.

Apps served with the same ``bus`` (a list of (topic, record)) share it as replicas or
successive runs of an ingress share Kafka: an app's session ledger reads the bindings
(``voxbus.sessions``, one partition here) when it starts and after each of its own
writes, as its consumer would.
"""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from ingress.admission import AdmissionControl
from ingress.backpressure import AudioBudget
from ingress.health import CAPABILITIES
from ingress.live_turns import LiveLoad
from ingress.ownership import SessionLedger
from ingress.turns import FinishedTurns
from schemas import SessionRecord, encode
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
        self.admission = AdmissionControl(settings, ["vad", "asr"])  # no lag read: tests set it
        self.finished = FinishedTurns()
        self.ledger = SessionLedger(settings, self.produce)
        self.live = LiveLoad(settings, self.sessions, self.produce)  # not started: nothing is produced
        self.pipeline = dict.fromkeys(CAPABILITIES, True)  # what the stages can do: tests set it
        self.views: list = []
        self.ended: list = []  # the session-end hooks (ingress.connections.detach calls them)

    def read_bindings(self) -> None:
        """The ledger's consumer: fold the bindings on the bus it has not read yet."""
        bindings = [record for topic, record in self.bus if topic == SESSIONS.name]
        start = self.ledger.read.get(0, 0)
        self.ledger.absorb([SimpleNamespace(topic=SESSIONS.name, partition=0, offset=offset,
                                            value=encode(record))
                            for offset, record in enumerate(bindings) if offset >= start])

    async def start(self) -> None:
        self.read_bindings()
        self.ledger.caught_up.set()

    async def stop(self) -> None:
        pass

    async def follow(self, view, lock=None) -> None:
        """The view's consumer: it reads what is produced from now on (the bus's earlier records too)."""
        view.task = asyncio.create_task(asyncio.sleep(3600))  # as if following its topics
        view.caught_up.set()
        self.views.append(view)
        for offset, (topic, record) in enumerate(self.bus):
            self.show(view, topic, record, offset)

    @staticmethod
    def show(view, topic: str, record, offset: int) -> None:
        if topic in {spec.name for spec in view.topics}:
            view.absorb([SimpleNamespace(topic=topic, partition=0, offset=offset, value=encode(record))])

    async def produce(self, topic, record):
        self.produced.append((topic.name, record))
        self.bus.append((topic.name, record))
        for view in self.views:
            self.show(view, topic.name, record, len(self.bus) - 1)
        if topic.name != SESSIONS.name:
            return SimpleNamespace(partition=0, offset=len(self.bus) - 1)
        written = SimpleNamespace(partition=0, offset=sum(t == SESSIONS.name for t, _ in self.bus) - 1)
        self.read_bindings()
        return written

    async def deliver(self, record: SessionRecord) -> None:
        session = self.sessions.get(record.session_id)
        if session is not None:
            await session.deliver(record)

    async def health(self):
        return True, {"broker": True, "stages": {}}

    async def ready(self):
        return True, {"broker": True, "ownership": True}

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
    # collect the test's garbage now, not during pytest's imports at the end of the run: without
    # this, 2 of 3 runs of tests/ingress ended in CPython 3.11.7's "AST constructor recursion depth
    # mismatch" SystemError (an INTERNALERROR after every test had passed)
    gc.collect()
