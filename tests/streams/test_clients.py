"""Client options per broker kind and the TLS/SASL settings."""

from __future__ import annotations

import pytest

from streams import clients
from streams.broker import resolve_kind
from streams.settings import Settings


@pytest.fixture(autouse=True)
def _fresh():
    resolve_kind.cache_clear()
    yield
    resolve_kind.cache_clear()


def test_tansu_polls_short_and_produces_without_idempotence():
    settings = Settings(broker="tansu")
    assert clients.profile(settings) == clients.BrokerProfile("tansu", 40, idempotent=False,
                                                              static_membership=False)
    assert clients.producer_kwargs(settings)["acks"] == 1
    assert "enable_idempotence" not in clients.producer_kwargs(settings)


def test_kafka_long_polls_and_produces_idempotently():
    settings = Settings(broker="kafka")
    assert clients.profile(settings).fetch_max_wait_ms == 2000
    kwargs = clients.producer_kwargs(settings, max_request_size=1)
    assert kwargs["acks"] == "all" and kwargs["enable_idempotence"] is True
    assert kwargs["max_request_size"] == 1
    assert clients.consumer_kwargs(settings)["fetch_max_wait_ms"] == 2000


def test_an_external_broker_is_kafka_with_kafka_legal_group_timeouts():
    settings = Settings(kafka_bootstrap="kafka:9092")
    assert clients.profile(settings).kind == "external"
    assert settings.broker_session_timeout >= 6


def test_an_explicit_fetch_wait_wins():
    assert clients.profile(Settings(broker="kafka", fetch_max_wait_ms=25)).fetch_max_wait_ms == 25


def test_sasl_ssl_needs_a_user_and_keeps_the_password_secret():
    with pytest.raises(ValueError, match="VOXBUS_KAFKA_SASL_USERNAME"):
        clients.security_kwargs(Settings(kafka_security_protocol="SASL_SSL"))
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="voxbus-asr",
                        kafka_sasl_password="s3cret")
    assert "s3cret" not in repr(settings)
    kwargs = clients.security_kwargs(settings)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512" and kwargs["sasl_plain_password"] == "s3cret"
    assert kwargs["ssl_context"] is not None
    credentials = clients.faust_credentials(settings)
    assert credentials.username == "voxbus-asr" and credentials.mechanism.value == "SCRAM-SHA-512"


def test_plaintext_has_no_faust_credentials():
    assert clients.faust_credentials(Settings()) is None


async def test_a_cancellation_escaping_a_consumer_stop_is_not_the_callers():
    """aiokafka's fetcher can let its own fetch's CancelledError out of stop(); only a real cancel
    propagates."""
    import asyncio

    class Consumer:
        async def stop(self):
            raise asyncio.CancelledError  # what Fetcher.close lets out when the broker is gone

    await clients.stop_consumer(Consumer())  # swallowed: nobody cancelled us

    class Slow:
        async def stop(self):
            await asyncio.sleep(10)

    task = asyncio.create_task(clients.stop_consumer(Slow()))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_shutdown_step_ends_in_time_whatever_a_client_does(caplog):
    """A stop that hangs (or ignores its cancel) is abandoned after the budget; one that fails is logged."""
    import asyncio
    import time

    ended = []

    async def quick():
        ended.append("quick")

    async def hangs():
        await asyncio.sleep(3600)

    async def deaf():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(1.5)  # a client that swallows its cancel (for longer than the grace)

    async def fails():
        raise ConnectionError("broker gone")

    started = time.monotonic()
    stuck = await clients.stop_within({"quick": quick(), "hangs": hangs(), "deaf": deaf(), "fails": fails()},
                                      timeout_s=0.2)
    assert time.monotonic() - started < 1.4
    assert stuck == ["deaf", "hangs"] and ended == ["quick"]
    assert "deaf, hangs did not end within 0.2 s" in caplog.text and "broker gone" in caplog.text
    assert await clients.stop_within({}, 0.1) == []
