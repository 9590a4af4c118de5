"""Reply routing: each ingress replica reads one partition of ``voxbus.egress``.

Replica ``k`` (``VOXBUS_INGRESS_SLOT=k``, e.g. a StatefulSet ordinal) is assigned
partition ``k`` of ``voxbus.egress`` without a consumer group, and stamps
``egress_partition=k`` on every record of the sessions it holds.  Every stage copies
that field forward and produces caller-facing events to that partition, so a reply
reaches the replica holding the caller's socket and no other replica reads it.
The number of ingress replicas is bounded by the partition count of
``voxbus.egress`` (``VOXBUS_EGRESS_PARTITIONS``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Record, SchemaError, SessionRecord, decode
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs, stop_consumer
from streams.settings import Settings
from streams.topics import EGRESS

log = logging.getLogger(__name__)

Deliver = Callable[[SessionRecord], Awaitable[None]]


class EgressReader:
    """Read this replica's egress partition and hand each event to ``deliver``.

    Args:
        settings: broker settings and ``ingress_slot``.
        deliver: coroutine called with each decoded event, in partition order; it must not
            wait for a caller (the gateway queues each session's events, :mod:`ingress.mailbox`),
            or one slow caller would stall every caller of the replica.
    """

    def __init__(self, settings: Settings, deliver: Deliver) -> None:
        self.settings = settings
        self.deliver = deliver
        self.partition = TopicPartition(EGRESS.name, settings.ingress_slot)
        self.consumer = AIOKafkaConsumer(
            **consumer_kwargs(settings, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, seek to the end of the partition and start reading.

        Raises:
            ValueError: ``ingress_slot`` is not a partition of ``voxbus.egress``.
        """
        await self.consumer.start()
        partitions = {tp.partition for tp in await topic_partitions(self.settings, EGRESS.name)}
        if self.partition.partition not in partitions:
            await self.consumer.stop()
            raise ValueError(f"ingress slot {self.partition.partition} is not a partition of {EGRESS.name} "
                             f"({sorted(partitions)}); raise VOXBUS_EGRESS_PARTITIONS")
        self.consumer.assign([self.partition])
        await self.consumer.seek_to_end(self.partition)
        self.task = asyncio.create_task(self._run(), name="egress-reader")

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    try:
                        record: Record = decode(message.value)
                    except SchemaError as exc:
                        log.warning("undecodable egress record at offset %d: %s", message.offset, exc)
                        continue
                    if isinstance(record, SessionRecord):
                        try:
                            await self.deliver(record)
                        except Exception:  # one caller's broken socket must not stop the others
                            log.exception("delivering %s to %s failed", record.type, record.session_id)

    async def stop(self) -> None:
        """Stop reading and close the consumer."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await stop_consumer(self.consumer)
