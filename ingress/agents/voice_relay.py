"""The caller's voice for the agent: their chunks on ``voxbus.audio``, followed by the agent's replica.

The caller's replica already puts every chunk of the caller's audio on ``voxbus.audio``
(keyed by session id, so all on one partition).  The replica holding an agent's voice socket
(:mod:`ingress.agents.voice`) reads that one partition from its end, with a consumer of its
own (no consumer group), and hands the session's chunks to the agent as they come: caller and
agent may sit on different replicas.  Records of other sessions on the partition are skipped by
their key, without decoding.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from schemas import AudioChunk, SchemaError, decode
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs, stop_consumer
from streams.settings import Settings
from streams.topics import AUDIO

log = logging.getLogger(__name__)

Hear = Callable[[AudioChunk], Awaitable[None]]


class CallerAudio:
    """Follow one session's caller audio from now on and hand each chunk to ``hear``, in order.

    Args:
        settings: the ingress settings (the consumer's broker).
        session_id: the caller's session.
        hear: coroutine called with each :class:`schemas.AudioChunk` of the session (16 kHz PCM16LE).
    """

    def __init__(self, settings: Settings, session_id: str, hear: Hear) -> None:
        self.settings = settings
        self.session_id = session_id
        self.key = session_id.encode()
        self.hear = hear
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, find the session's partition (the producers' default partitioner), read from its end.

        Raises:
            LookupError: ``voxbus.audio`` does not exist.
            aiokafka.errors.KafkaError: the broker cannot be reached.
        """
        partitions = sorted(tp.partition for tp in await topic_partitions(self.settings, AUDIO.name))
        partition = TopicPartition(AUDIO.name, DefaultPartitioner()(self.key, partitions, partitions))
        consumer = AIOKafkaConsumer(**consumer_kwargs(self.settings, enable_auto_commit=False))
        try:
            await consumer.start()
            consumer.assign([partition])
            await consumer.seek_to_end(partition)
        except BaseException:
            await stop_consumer(consumer)
            raise
        self.task = asyncio.create_task(self._run(consumer), name=f"caller-audio-{self.session_id}")

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        """Read until cancelled (a failed fetch is retried after a second), then close the consumer."""
        try:
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=1000)
                except Exception:
                    log.exception("reading %s for session %s failed; retrying", AUDIO.name, self.session_id)
                    await asyncio.sleep(1.0)
                    continue
                for message in (m for messages in batches.values() for m in messages if m.key == self.key):
                    try:
                        record = decode(message.value)
                    except SchemaError as exc:  # the stages dead-letter it; the agent just misses it
                        log.warning("undecodable audio record at offset %d: %s", message.offset, exc)
                        continue
                    if isinstance(record, AudioChunk):
                        await self.hear(record)
        finally:
            await stop_consumer(consumer)

    async def stop(self) -> None:
        """Stop following (the consumer is closed)."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
