"""faust transport ``voxbus://``: faust's aiokafka driver with a configurable fetch wait.

faust-streaming's aiokafka driver builds its worker consumer with a hard-coded
``fetch_max_wait_ms=1500`` and aiokafka's ``consumer_timeout_ms`` of 200 ms.  Apache Kafka
answers a fetch as soon as data arrives, but Tansu answers an empty fetch by sleeping
``fetch_max_wait / 2``, so there every hop of the pipeline cost ~400 ms.  This driver is
faust's own, with the consumer's fetch wait from the broker's profile
(:func:`streams.clients.profile`: 2000 ms on Kafka, 40 ms on Tansu), the fetcher's re-check
interval raised to that wait (:attr:`streams.clients.BrokerProfile.fetcher_poll_ms`: aiokafka's fetcher
task walks every assigned partition each ``consumer_timeout_ms`` even when nothing happened),
and producers that are idempotent with ``acks=all`` where the broker supports
it (faust enables that only inside transactions).  A worker may also hold its
commits back (:func:`hold_commits`): the offset committed for a partition never passes
the first input record the worker still keeps state from.

It is registered under the ``faust.transports`` entry-point group (see
``pyproject.toml``), faust's documented way to add a transport: apps use the broker
URL ``voxbus://host:port``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from weakref import WeakKeyDictionary

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.clients import profile
from streams.settings import get_settings

CommitFloor = Callable[[TP], "int | None"]
"""A partition -> the highest offset its consumer may commit (the first record still needed), or None."""

_FLOORS: WeakKeyDictionary[Any, CommitFloor] = WeakKeyDictionary()


def hold_commits(app: Any, floor: CommitFloor) -> None:
    """Cap every offset ``app``'s consumer commits for a partition at ``floor(partition)``.

    faust commits a partition up to its lowest unacked record; with a floor it commits
    ``min(that, floor)``, so a record acked but still needed (say, the audio of an
    utterance still open) is read again by whoever consumes the partition next: a
    restarted worker, or another one after a rebalance (faust commits when the partition
    is revoked).  faust's own bookkeeping keeps the uncapped offset, so the broker's catches
    up at the next commit after the floor rises.

    Args:
        app: the faust App.
        floor: called at each commit, on the event loop.
    """
    _FLOORS[app] = floor


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, creating its worker consumer with our fetch wait and fetcher re-check."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # AIOKafkaConsumer keeps the constructor argument here until start() hands it
        # to its Fetcher; fail loudly if a future aiokafka renames it.
        for name in ("_fetch_max_wait_ms", "_consumer_timeout"):
            if not hasattr(consumer, name):
                raise RuntimeError(f"aiokafka.AIOKafkaConsumer no longer has {name}")
        broker = profile(get_settings())
        consumer._fetch_max_wait_ms = broker.fetch_max_wait_ms
        consumer._consumer_timeout = broker.fetcher_poll_ms / 1000.0
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer using :class:`ConsumerThread`, its commits capped by :func:`hold_commits`."""

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        floor = _FLOORS.get(self.app)
        if floor is not None:
            offsets = {tp: offset if (held := floor(tp)) is None else min(offset, held)
                       for tp, offset in offsets.items()}
        return await super()._commit(offsets)


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
