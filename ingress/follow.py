"""Following topics at the ingress with a consumer of its own: every partition, no consumer group.

The analytics page (:mod:`ingress.analytics`) and the agent console
(:mod:`ingress.agents`) each keep an in-memory view of some topics.  A view reads back
from a point in time, tells when it has read what existed when it started
(:attr:`TopicFollower.caught_up`), and is started on the first request that needs it, or in
the background when the ingress starts (:func:`start_soon`): a restarted ingress serves callers
while its views read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar, TypeVar

from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from processors.analytics.io import consumer_for
from streams.admin import topic_partitions
from streams.clients import stop_consumer, stop_within
from streams.settings import Settings
from streams.topics import TopicSpec

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""Longest a request waits for a view to connect and find its topics."""
CATCH_UP_WAIT_S = 5.0
"""Longest a request waits for a view to read its topics up to where they end when it asks."""
SYNC_POLL_S = 0.02
"""How often a request waiting for a view to catch up looks at its positions (s)."""
STOP_TIMEOUT_S = 5.0
"""Longest one step of the ingress's shutdown may take (s): the gateway's readers, then its producer's
flush, then each view. The ingress pod's grace period (60 s, ``deploy/k8s/base/ingress.yaml``) holds the
preStop drain (45 s), aiohttp's handler shutdown (5 s) and the first two; a client still stopping
after that is abandoned with a warning (:func:`streams.clients.stop_within`)."""


class TopicFollower:
    """Read :attr:`topics` from :meth:`since` on and hand each batch of messages to :meth:`absorb`.

    Subclasses set :attr:`topics` and implement :meth:`since` and :meth:`absorb`;
    :meth:`tick` runs after every poll (about once a second when idle).
    """

    topics: ClassVar[tuple[TopicSpec, ...]]
    """The topics followed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.caught_up = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.lookup: AIOKafkaConsumer | None = None
        """An unassigned consumer for offset lookups, which the following one's fetch would hold up."""
        self.task: asyncio.Task[None] | None = None
        self.starting: asyncio.Task[None] | None = None
        """A start in progress (:func:`started`), kept running past one request's timeout."""
        self.end: dict[TopicPartition, int] = {}

    def since(self) -> float:
        """Epoch seconds to start reading from."""
        raise NotImplementedError

    def absorb(self, messages: Iterable[Any]) -> None:
        """Fold a batch of consumed messages into the view."""
        raise NotImplementedError

    def tick(self) -> None:  # noqa: B027 - optional hook
        """Called after every poll."""

    @property
    def running(self) -> bool:
        """True while the view follows the topics."""
        return self.task is not None and not self.task.done()

    @property
    def state(self) -> str:
        """``caught_up`` (read what existed at its start), ``catching_up``, ``starting`` or ``stopped``."""
        if self.running:
            return "caught_up" if self.caught_up.is_set() else "catching_up"
        return "starting" if self.starting is not None and not self.starting.done() else "stopped"

    async def start(self) -> None:
        """Connect, seek every partition to :meth:`since`, start following.

        Offsets are looked up on a second, unassigned consumer (:attr:`lookup`): the following
        one always has a fetch in flight, and a broker answers the requests of one connection
        in order, so a lookup behind that fetch waited out its long poll (2 s on Apache Kafka:
        every ingress start waited that long for its session bindings, every read barrier
        :meth:`synced` about 1.7 s).

        Raises:
            LookupError: a topic does not exist.
            aiokafka.errors.KafkaError: the broker cannot be reached.
        """
        consumer, lookup = consumer_for(self.settings), consumer_for(self.settings)
        try:
            await consumer.start()
            await lookup.start()
            partitions = [tp for spec in self.topics
                          for tp in await topic_partitions(self.settings, spec.name)]
            self.end = await lookup.end_offsets(partitions)
            first = await self._first_offsets(lookup, partitions, self.since())
            consumer.assign(partitions)
            if first is None:
                await consumer.seek_to_beginning(*partitions)
            for tp, offset in (first or {}).items():
                consumer.seek(tp, offset)
        except BaseException:
            for each in (consumer, lookup):
                await stop_consumer(each)
            raise
        self.consumer, self.lookup = consumer, lookup
        self.task = asyncio.create_task(self._run(), name=f"follow-{type(self).__name__}")

    async def _first_offsets(self, consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                             since: float) -> dict[TopicPartition, int] | None:
        """Per partition, the offset of the first record produced at or after ``since`` (epoch s).

        A partition with nothing produced since then is read from its end offset as looked up
        at the start (:attr:`end`): ``seek_to_end`` would resolve the end only at the first
        fetch, and a record produced in between would be skipped (a hand-off written right after
        a replica started never reached its queue).

        Returns:
            The offsets; None where the broker cannot look offsets up by time (an old or partial
            Kafka implementation): then the view reads from the beginning.
        """
        try:
            found = await consumer.offsets_for_times({tp: int(since * 1000) for tp in partitions})
        except Exception as exc:
            log.info("offsets by time unavailable (%s); reading from the beginning", exc)
            return None
        return {tp: self.end[tp] if found.get(tp) is None else found[tp].offset for tp in partitions}

    async def _run(self) -> None:
        assert self.consumer is not None
        while True:
            # before each fetch: a view that started at its end (or has just read up to it) is caught up
            # now, not when the next fetch comes back empty (up to 1 s later: every ingress start waited
            # that long for its session bindings)
            if not self.caught_up.is_set() and await self._at_start_end():
                self.caught_up.set()
            try:
                batches = await self.consumer.getmany(timeout_ms=1000, max_records=5000)
            except Exception:
                log.exception("reading %s failed; retrying", [t.name for t in self.topics])
                await asyncio.sleep(1.0)
                continue
            for messages in batches.values():
                self.absorb(messages)
            self.tick()

    async def _at_start_end(self) -> bool:
        """True once every partition is read up to where it ended when the view started."""
        assert self.consumer is not None
        for tp, offset in self.end.items():
            if await self.consumer.position(tp) < offset:
                return False
        return True

    async def synced(self) -> None:
        """Wait until the view has read every partition up to its end offset *as of now* (a read barrier).

        A request that must see what another replica has just written (the ticket its wrap-up
        filed, a claim) waits for this: the end offsets are looked up at the call, and the view's
        positions advance as :meth:`_run` absorbs what it fetched (positions move only when a
        batch is returned, and it is absorbed before the next await).
        """
        if self.consumer is None:  # a view fed otherwise (a scripted one in tests): its own start's end
            await self.caught_up.wait()
            return
        assert self.lookup is not None
        ends = await self.lookup.end_offsets(list(self.consumer.assignment()))
        for tp, offset in ends.items():
            while await self.consumer.position(tp) < offset:
                await asyncio.sleep(SYNC_POLL_S)

    async def stop(self) -> None:
        """Stop following (and any start in progress) and close the consumers."""
        if self.starting is not None and not self.starting.done():
            self.starting.cancel()
            await asyncio.gather(self.starting, return_exceptions=True)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        for consumer in (self.consumer, self.lookup):
            if consumer is not None:
                await stop_consumer(consumer)
        self.consumer = self.lookup = None


F = TypeVar("F", bound=TopicFollower)


async def started(follower: F, lock: asyncio.Lock, catch_up: bool = False) -> F:
    """``follower``, started if it is not running (restarted after a failure).

    Args:
        follower: the view.
        lock: serializes starts (one per view).
        catch_up: also wait (up to :data:`CATCH_UP_WAIT_S`) until it has read what the topics held
            when this request came (:meth:`TopicFollower.synced`): a view started in the
            background reads on its own, and a record written by another replica a moment ago
            must be in it (read your writes across replicas).

    A start that takes longer than :data:`START_TIMEOUT_S` fails the request that waited for
    it but goes on, and the next request waits for the same start: on a loaded machine a
    start that needs more than one request's patience still ends (a start cancelled at each
    timeout and begun again from nothing never would).

    Raises:
        TimeoutError: it did not connect within :data:`START_TIMEOUT_S`.
        LookupError, aiokafka.errors.KafkaError: as :meth:`TopicFollower.start`.
    """
    async with lock:
        if not follower.running:
            if follower.starting is None or follower.starting.done():
                await follower.stop()
                follower.caught_up.clear()
                follower.starting = asyncio.create_task(follower.start(),
                                                        name=f"start-{type(follower).__name__}")
            await asyncio.wait_for(asyncio.shield(follower.starting), START_TIMEOUT_S)
    if catch_up:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(follower.synced(), CATCH_UP_WAIT_S)
    return follower


def start_soon(start: Awaitable[Any], what: str) -> asyncio.Task[None]:
    """Run a view's start (``start``: :func:`started` or what wraps it) in the background, logging a failure.

    The ingress listens while its views connect and read back (the chaos soak saw a killed
    ingress still not serving 60 s later while it started its views one after another before
    listening).  A start slower than :data:`START_TIMEOUT_S` goes on (:func:`started`); a failed
    one is begun again by the next request that needs the view.

    Args:
        start: the start to run.
        what: the view's name, for the log.
    """
    async def run() -> None:
        try:
            await start
        except TimeoutError:
            log.info("%s still starting after %.0f s; serving meanwhile", what, START_TIMEOUT_S)
        except Exception as exc:  # the broker is down or slow: a request (or keeper) starts it again
            log.warning("%s not followed yet: %s: %s", what, type(exc).__name__, exc)

    return asyncio.create_task(run(), name=f"start-{what}")


def stop_on_cleanup(app: web.Application, follower: TopicFollower) -> None:
    """Stop ``follower`` when ``app`` shuts down, within :data:`STOP_TIMEOUT_S`."""
    async def stop(app: web.Application) -> None:
        await stop_within({type(follower).__name__: follower.stop()}, STOP_TIMEOUT_S)

    app.on_cleanup.append(stop)

