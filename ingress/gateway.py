"""The ingress's Kafka side: one producer, this replica's egress reader, the stage monitor and admission."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from ingress.admission import AdmissionControl
from ingress.backpressure import AudioBudget
from ingress.egress import EgressReader
from ingress.follow import STOP_TIMEOUT_S, TopicFollower, started
from ingress.health import CAPABILITIES, BrokerProbe, StageMonitor, capabilities
from ingress.live_turns import LiveLoad
from ingress.mailbox import EgressRouter
from ingress.ownership import SessionLedger
from ingress.turns import FinishedTurns
from processors.runtime import STAGES
from schemas import Record, SessionRecord, encode
from streams.admin import ensure_topics
from streams.clients import producer_kwargs, stop_within
from streams.settings import Settings
from streams.topics import EGRESS, TopicSpec

log = logging.getLogger(__name__)

LEDGER_WAIT_S = 30.0
"""Longest the ingress start waits for the session bindings to be read back (s)."""
PIPELINE_POLL_S = 1.0
"""Interval between two looks at what the pipeline can do for callers (s)."""


class Gateway:
    """Produce caller records, route egress events to sessions, watch stage liveness.

    ``sessions`` maps session id -> an object with ``async deliver(record)`` and
    ``async too_slow()``; only the session's own events are delivered to it, in order,
    through a mailbox of its own (``router``, :mod:`ingress.mailbox`), so one slow caller
    delays no other.  ``audio_budget`` bounds the caller
    audio of all sessions waiting for the broker; ``admission`` refuses new sessions the
    stages cannot answer in budget; ``finished`` remembers ended turns; ``ledger`` knows
    who owns each session id, on every replica (``voxbus.sessions``).  ``pipeline`` is
    what the stages can do for callers now (:func:`ingress.health.capabilities`); each
    change is told to every session (its ``pipeline_changed``).  ``live`` knows the live
    turns in flight on every replica (:mod:`ingress.live_turns`), which recorded calls yield to.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: dict[str, object] = {}
        self.router = EgressRouter(self.sessions, settings.egress_queue_records)
        self.audio_budget = AudioBudget(settings.ingress_buffer_bytes)
        self.admission = AdmissionControl(settings, list(STAGES))
        self.finished = FinishedTurns()
        self.ledger = SessionLedger(settings, self.produce)
        self.live = LiveLoad(settings, self.sessions, self.produce)
        self.pipeline = dict.fromkeys(CAPABILITIES, True)
        self.notices: set[asyncio.Task[None]] = set()
        self.ended: list[Callable[[str], Awaitable[None]]] = []
        """Called with a session id when its session ended here (:func:`ingress.connections.detach`)."""
        self.watcher: asyncio.Task[None] | None = None
        self.started = False
        self.views: dict[str, TopicFollower] = {}
        """The views this replica keeps (:meth:`follow`), by class name: :meth:`ready` shows their state."""

    async def start(self) -> None:
        """Create missing topics, connect the producer, start reading egress, heartbeats, bindings and lag.

        The live turns in flight (:attr:`live`) are produced and read from then on too.

        The session bindings are read back for up to :data:`LEDGER_WAIT_S`; until they are,
        sessions that name their id are refused with 1013 (:mod:`ingress.ownership`).
        """
        settings = self.settings
        # idempotent with acks=all on Kafka; acks=1 on Tansu, which fails InitProducerId
        self.producer = AIOKafkaProducer(**producer_kwargs(settings, max_request_size=8 * 1024 * 1024))
        self.egress = EgressReader(settings, self.deliver)
        self.monitor = StageMonitor(settings, list(STAGES), on_record=self.live.absorb)
        self.probe = BrokerProbe(settings)
        await ensure_topics(settings)
        await self.producer.start()
        await self.probe.start()
        await self.egress.start()
        await self.monitor.start()
        await self.admission.start()
        await self.ledger.start()
        await self.live.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ledger.caught_up.wait(), LEDGER_WAIT_S)
        self.watcher = asyncio.create_task(self._watch_pipeline(), name="pipeline-watch")
        self.started = True

    async def follow(self, view: TopicFollower, lock: asyncio.Lock) -> None:
        """Start ``view``, a view of some topics every replica keeps from its start (the agent queue).

        The start is the one requests share (:func:`ingress.follow.started`, under the view's
        ``lock``); the app runs it in the background (:func:`ingress.follow.start_soon`).

        Raises:
            TimeoutError, LookupError, aiokafka.errors.KafkaError: as :func:`ingress.follow.started`.
        """
        self.views[type(view).__name__] = view
        await started(view, lock)

    async def stop(self) -> None:
        """Close every Kafka client."""
        self.started = False
        if self.watcher is not None:
            self.watcher.cancel()
            await asyncio.gather(self.watcher, return_exceptions=True)
        await stop_within({"egress reader": self.egress.stop(), "stage monitor": self.monitor.stop(),
                           "admission": self.admission.stop(), "session ledger": self.ledger.stop(),
                           "egress router": self.router.close(), "broker probe": self.probe.stop(),
                           "live turns": self.live.stop()}, STOP_TIMEOUT_S)
        await stop_within({"producer": self.producer.stop()}, STOP_TIMEOUT_S)  # last: the others produce

    async def produce(self, topic: TopicSpec, record: Record) -> RecordMetadata:
        """Produce ``record`` keyed by its session (:meth:`schemas.Record.message_key`), wait for the ack.

        A record for ``voxbus.egress`` goes to its session's ``egress_partition`` (the
        replica holding the caller), as the stages produce it.

        Returns:
            Where the record was written (``partition``, ``offset``).

        Raises:
            aiokafka.errors.KafkaError: the broker did not take the record.
        """
        key = record.message_key()
        partition = record.egress_partition if topic is EGRESS and isinstance(record, SessionRecord) else None
        return await self.producer.send_and_wait(topic.name, encode(record), key=key and key.encode(),
                                                 partition=partition)

    async def deliver(self, record: SessionRecord) -> None:
        """Queue an egress event for its session; it never waits for the caller (:mod:`ingress.mailbox`)."""
        self.router.route(record)

    async def ready(self) -> tuple[bool, dict[str, object]]:
        """(ready, details): this ingress can take callers: started, its broker answers, bindings loaded.

        The stages are not asked: a stage being down degrades what callers get (they are
        told, :attr:`pipeline`), it does not make the ingress refuse them.  Nor are the views
        (the agent queue, tickets, suggestions): callers are served while they read back;
        ``views`` says where each is (:attr:`ingress.follow.TopicFollower.state`).
        """
        broker = self.started and await self.probe.up()
        ownership = self.ledger.ready
        return broker and ownership, {"broker": broker, "ownership": ownership,
                                      "views": {name: view.state for name, view in self.views.items()}}

    async def health(self) -> tuple[bool, dict[str, object]]:
        """(healthy, details): the whole pipeline: the broker answers and every stage has a live worker."""
        stages = self.monitor.status()
        broker = self.started and await self.probe.up()
        return broker and all(stages.values()), {"broker": broker, "stages": stages,
                                                 "pipeline": capabilities(stages)}

    async def _watch_pipeline(self) -> None:
        """Follow :attr:`pipeline`; tell every session each change."""
        while True:
            now = capabilities(self.monitor.status())
            if now != self.pipeline:
                log.warning("pipeline: %s", ", ".join(f"{k} {'up' if v else 'DOWN'}" for k, v in now.items()))
                self.pipeline = now
                for session in list(self.sessions.values()):
                    changed = getattr(session, "pipeline_changed", None)
                    if changed is not None:  # each on its own: one caller's socket delays no other
                        task = asyncio.get_running_loop().create_task(changed(now))
                        self.notices.add(task)
                        task.add_done_callback(self.notices.discard)
            await asyncio.sleep(PIPELINE_POLL_S)
