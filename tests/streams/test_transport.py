"""The ``voxbus://`` transport's worker consumer: its fetch wait and fetcher re-check."""

from __future__ import annotations

import asyncio

import pytest

from streams import clients
from streams.app import make_app
from streams.broker import resolve_kind
from streams.settings import Settings, get_settings


@pytest.fixture
def kafka_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("VOXBUS_BROKER", "kafka")
    monkeypatch.setenv("VOXBUS_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    resolve_kind.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    resolve_kind.cache_clear()


def test_the_fetcher_rechecks_as_often_as_a_fetch_waits_and_never_under_aiokafkas_200_ms():
    assert clients.profile(Settings(broker="kafka")).fetcher_poll_ms == 2000
    assert clients.consumer_kwargs(Settings(broker="kafka"))["consumer_timeout_ms"] == 2000
    assert clients.profile(Settings(broker="tansu")).fetcher_poll_ms == 200  # its fetch wait is 40 ms


def test_a_workers_consumer_gets_the_brokers_fetch_wait_and_recheck(kafka_settings):
    async def worker_consumer() -> tuple[int, float]:
        app = make_app("transport-probe", kafka_settings)
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms, consumer._consumer_timeout
        finally:
            await consumer.stop()  # never started: closes its client

    assert asyncio.run(worker_consumer()) == (2000, 2.0)
