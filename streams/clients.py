"""Kafka client options per broker: every aiokafka client and faust App of voxbus takes them from here.

What differs between brokers is measured (``benchmarks/hops.py``, README "The broker"):

* **Fetch wait.**  Apache Kafka long-polls: with ``fetch.min.bytes=1`` a fetch is
  answered as soon as a record arrives, so the wait only bounds how often an idle
  consumer asks: 500 ms gives hop p50 1.0 / p99 5 ms at 10 sessions, where 40 ms
  cost 0.11 cores per consumer.  The default is 2000 ms: the idle stack (ten
  processes, a dozen consumers) measured 0.16 cores at 500 ms and 0.11 at 2000 ms
  (the broker 0.086 -> 0.051 cores, its own idle floor 0.034), with the hops
  unchanged, as a fetch is answered when a record arrives, not when the wait ends.
  Tansu answers an empty fetch by sleeping half the wait, so there the wait *is*
  the hop latency: 40 ms (p50 12 / p99 25 ms).
* **Producer durability.**  On Kafka producers are idempotent with ``acks=all``
  (no duplicate or reordered record after a retry); Tansu fails ``InitProducerId``,
  so there they are ``acks=1`` without idempotence (at-least-once, with the
  idempotent consumers of the stages).
* **Static membership.**  On Kafka a worker with ``VOXBUS_GROUP_INSTANCE_ID`` keeps
  its partitions across a restart without a rebalance (KIP-345); Tansu ignores it.
* **Group timeouts.**  An external Kafka gets Kafka-legal timeouts (10 s session, 3 s
  heartbeat) unless configured; the embedded brokers accept the short ones (3 s /
  0.5 s: a dead member is noticed in seconds; the embedded Kafka lowers
  ``group.min.session.timeout.ms`` to 1 s for this).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from streams.settings import Settings

log = logging.getLogger(__name__)

FETCH_WAIT_MS = {"kafka": 2000, "external": 2000, "tansu": 40}
"""Default fetch wait (ms) per broker kind; see the module docstring for the measurements."""

FETCHER_POLL_MS = 200
"""aiokafka's ``consumer_timeout_ms`` default: how often its fetcher task re-checks every assigned
partition even when nothing happened (fetch answers, consumption, seeks, pauses and rebalances
wake it at once)."""


@dataclass(frozen=True)
class BrokerProfile:
    """The client options of one broker kind.

    Attributes:
        kind: ``"kafka"`` (embedded Apache Kafka), ``"tansu"`` or ``"external"``.
        fetch_max_wait_ms: longest a fetch waits on the broker for data (ms).
        idempotent: producers use ``enable_idempotence`` and ``acks=all``.
        static_membership: ``group.instance.id`` is honoured.
    """

    kind: str
    fetch_max_wait_ms: int
    idempotent: bool
    static_membership: bool

    @property
    def fetcher_poll_ms(self) -> int:
        """The re-check interval (ms) of aiokafka's fetcher on this broker: the fetch wait, at least 200 ms.

        Measured (2026-12-03, the whole stack idle, 3 x 20 s windows, the two settings alternating
        twice): 0.134 / 0.137 cores at aiokafka's 200 ms, 0.122 / 0.124 at the 2000 ms fetch wait
        (each stage worker 0.0072 -> 0.0063 cores, the ingress 0.015 -> 0.010).  The re-check finds
        nothing to do that an event would not have woken the fetcher for; at aiokafka's 200 ms every
        idle consumer walks its partitions 5 times a second.
        """
        return max(FETCHER_POLL_MS, self.fetch_max_wait_ms)


def profile(settings: Settings) -> BrokerProfile:
    """The :class:`BrokerProfile` of the broker ``settings`` point at.

    ``VOXBUS_FETCH_MAX_WAIT_MS``, when set, overrides the broker's fetch wait.
    """
    from streams.broker import broker_kind

    kind = broker_kind(settings)
    tansu = kind == "tansu"
    return BrokerProfile(kind=kind, fetch_max_wait_ms=settings.fetch_max_wait_ms or FETCH_WAIT_MS[kind],
                         idempotent=not tansu, static_membership=not tansu)


@functools.cache
def _ssl_context(cafile: str) -> ssl.SSLContext:
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(cafile=cafile or None)


def security_kwargs(settings: Settings) -> dict[str, Any]:
    """The aiokafka TLS and SASL arguments for ``VOXBUS_KAFKA_SECURITY_PROTOCOL`` and friends.

    Raises:
        ValueError: SASL is configured without a user name or password.
    """
    protocol = settings.kafka_security_protocol
    out: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        out["ssl_context"] = _ssl_context(settings.kafka_ssl_cafile)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password.get_secret_value()
        if not settings.kafka_sasl_username or not password:
            raise ValueError(f"{protocol} needs VOXBUS_KAFKA_SASL_USERNAME and VOXBUS_KAFKA_SASL_PASSWORD")
        out.update(sasl_mechanism=settings.kafka_sasl_mechanism,
                   sasl_plain_username=settings.kafka_sasl_username, sasl_plain_password=password)
    return out


def consumer_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Arguments of an ``AIOKafkaConsumer`` on this broker, then ``overrides``.

    The bootstrap servers, the broker's fetch wait, the fetcher's re-check interval
    (:attr:`BrokerProfile.fetcher_poll_ms`) and the security arguments (:func:`security_kwargs`).
    """
    broker = profile(settings)
    return {"bootstrap_servers": settings.bootstrap, "fetch_max_wait_ms": broker.fetch_max_wait_ms,
            "consumer_timeout_ms": broker.fetcher_poll_ms, **security_kwargs(settings), **overrides}


def producer_kwargs(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Arguments of an ``AIOKafkaProducer`` on this broker, then ``overrides``.

    Idempotent with ``acks=all`` on Kafka, ``acks=1`` on Tansu; no linger; the security arguments.
    """
    durable = {"acks": "all", "enable_idempotence": True} if profile(settings).idempotent else {"acks": 1}
    return {"bootstrap_servers": settings.bootstrap, "linger_ms": 0, **durable, **security_kwargs(settings),
            **overrides}


def faust_credentials(settings: Settings) -> Any:
    """The faust ``broker_credentials`` for the same TLS/SASL settings as :func:`security_kwargs`.

    Returns:
        faust's SSL or SASL credentials; None for ``PLAINTEXT``.
    """
    import faust

    auth = security_kwargs(settings)
    protocol = auth["security_protocol"]
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(auth["ssl_context"])
    return faust.SASLCredentials(username=auth["sasl_plain_username"], password=auth["sasl_plain_password"],
                                 ssl_context=auth.get("ssl_context"), mechanism=auth["sasl_mechanism"])


async def stop_consumer(consumer: Any) -> None:
    """Stop an aiokafka consumer, even while its broker is unreachable.

    aiokafka's fetcher cancels its in-flight fetch on close and can let that
    ``CancelledError`` escape from ``stop()`` when the fetch was retrying a broker that
    is gone (aiokafka 0.14, ``Fetcher.close``).  That cancellation is the consumer's
    own, not the caller's: it is swallowed unless the calling task is itself being
    cancelled, in which case it is re-raised.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def stop_within(parts: dict[str, Awaitable[object]], timeout_s: float) -> list[str]:
    """Run the ``parts`` (name -> a client's ``stop()``) together and give them ``timeout_s`` (s) to end.

    A shutdown must end inside its pod's grace period whatever a broker connection does: a
    part still running after ``timeout_s`` is cancelled and logged, and left behind if it
    ignores the cancel for another second; a part that raised is logged. Nothing is raised.

    Returns:
        The names of the parts that did not end in time, sorted.
    """
    tasks = {asyncio.ensure_future(part): name for name, part in parts.items()}
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("stopping %s failed: %r", tasks[task], task.exception())
    stuck = sorted(tasks[task] for task in pending)
    if stuck:
        log.warning("stopping %s did not end within %.1f s; abandoned", ", ".join(stuck), timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    return stuck
