"""The ingress's Kafka side: one producer, this replica's egress reader, the stage monitor and admission."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from ingress.admission import AdmissionControl
from ingress.backpressure import AudioBudget
from ingress.egress import EgressReader
from ingress.follow import TopicFollower
from ingress.health import StageMonitor
from ingress.mailbox import EgressRouter
from ingress.ownership import SessionLedger
from ingress.turns import FinishedTurns
from processors.runtime import STAGES
from schemas import Record, SessionRecord, encode
from streams.admin import ensure_topics
from streams.clients import producer_kwargs
from streams.settings import Settings
from streams.topics import EGRESS, TopicSpec

log = logging.getLogger(__name__)

LEDGER_WAIT_S = 30.0
"""Longest the ingress start waits for the session bindings to be read back (s)."""


class Gateway:
    """Produce caller records, route egress events to sessions, watch stage liveness.

    ``sessions`` maps session id -> an object with ``async deliver(record)`` and
    ``async too_slow()``; only the session's own events are delivered to it, in order,
    through a mailbox of its own (``router``, :mod:`ingress.mailbox`), so one slow caller
    delays no other.  ``audio_budget`` bounds the caller
    audio of all sessions waiting for the broker; ``admission`` refuses new sessions the
    stages cannot answer in budget; ``finished`` remembers ended turns; ``ledger`` knows
    who owns each session id, on every replica (``voxbus.sessions``).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: dict[str, object] = {}
        self.router = EgressRouter(self.sessions, settings.egress_queue_records)
        self.audio_budget = AudioBudget(settings.ingress_buffer_bytes)
        self.admission = AdmissionControl(settings, list(STAGES))
        self.finished = FinishedTurns()
        self.ledger = SessionLedger(settings, self.produce)

    async def start(self) -> None:
        """Create missing topics, connect the producer, start reading egress, heartbeats, bindings and lag.

        The session bindings are read back for up to :data:`LEDGER_WAIT_S`; until they are,
        sessions that name their id are refused with 1013 (:mod:`ingress.ownership`).
        """
        settings = self.settings
        # idempotent with acks=all on Kafka; acks=1 on Tansu, which fails InitProducerId
        self.producer = AIOKafkaProducer(**producer_kwargs(settings, max_request_size=8 * 1024 * 1024))
        self.egress = EgressReader(settings, self.deliver)
        self.monitor = StageMonitor(settings, list(STAGES))
        await ensure_topics(settings)
        await self.producer.start()
        await self.egress.start()
        await self.monitor.start()
        await self.admission.start()
        await self.ledger.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ledger.caught_up.wait(), LEDGER_WAIT_S)

    async def follow(self, view: TopicFollower) -> None:
        """Start ``view``, a view of some topics every replica keeps from its start (the agent queue).

        Raises:
            LookupError, aiokafka.errors.KafkaError: as :meth:`ingress.follow.TopicFollower.start`.
        """
        if not view.running:
            await view.start()

    async def stop(self) -> None:
        """Close every Kafka client."""
        await asyncio.gather(self.egress.stop(), self.monitor.stop(), self.admission.stop(),
                             self.ledger.stop(), self.router.close(), return_exceptions=True)
        await self.producer.stop()

    async def produce(self, topic: TopicSpec, record: Record) -> RecordMetadata:
        """Produce ``record`` keyed by its session and wait for the broker's acknowledgement.

        A record for ``voxbus.egress`` goes to its session's ``egress_partition`` (the
        replica holding the caller), as the stages produce it.

        Returns:
            Where the record was written (``partition``, ``offset``).

        Raises:
            aiokafka.errors.KafkaError: the broker did not take the record.
        """
        key = record.session_id.encode() if isinstance(record, SessionRecord) else None
        partition = record.egress_partition if topic is EGRESS and isinstance(record, SessionRecord) else None
        return await self.producer.send_and_wait(topic.name, encode(record), key=key, partition=partition)

    async def deliver(self, record: SessionRecord) -> None:
        """Queue an egress event for its session; it never waits for the caller (:mod:`ingress.mailbox`)."""
        self.router.route(record)

    async def health(self) -> tuple[bool, dict[str, object]]:
        """(healthy, details): healthy when the broker answers and every stage has a live worker."""
        stages = self.monitor.status()
        broker = self.monitor.broker_up()
        return broker and all(stages.values()), {"broker": broker, "stages": stages}
