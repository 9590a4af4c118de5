"""faust transport ``voxbus://``: faust's aiokafka driver with a configurable fetch wait.

faust-streaming's aiokafka driver builds its worker consumer with a hard-coded
``fetch_max_wait_ms=1500``.  Apache Kafka answers a fetch as soon as data arrives, but
Tansu answers an empty fetch by sleeping ``fetch_max_wait / 2``, so there every hop of
the pipeline cost ~400 ms.  This driver is faust's own, with the consumer's fetch wait
from the broker's profile (:func:`streams.clients.profile`: 500 ms on Kafka, 40 ms on
Tansu), and producers that are idempotent with ``acks=all`` where the broker supports
it (faust enables that only inside transactions).

It is registered under the ``faust.transports`` entry-point group (see
``pyproject.toml``), faust's documented way to add a transport: apps use the broker
URL ``voxbus://host:port``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.clients import profile
from streams.settings import get_settings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, creating its worker consumer with our fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # AIOKafkaConsumer keeps the constructor argument here until start() hands it
        # to its Fetcher; fail loudly if a future aiokafka renames it.
        if not hasattr(consumer, "_fetch_max_wait_ms"):
            raise RuntimeError("aiokafka.AIOKafkaConsumer no longer has _fetch_max_wait_ms")
        consumer._fetch_max_wait_ms = profile(get_settings()).fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer using :class:`ConsumerThread`."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Producer(faust_aiokafka.Producer):
    """faust's aiokafka producer, idempotent with ``acks=all`` where the broker supports it."""

    def _settings_extra(self) -> Mapping[str, Any]:
        if profile(get_settings()).idempotent:
            return {"acks": "all", "enable_idempotence": True}
        return super()._settings_extra()


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport using :class:`Consumer` and :class:`Producer`."""

    Consumer = Consumer
    Producer = Producer
