"""Liveness of the pipeline as seen from the ingress: stage heartbeats on the bus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer

from schemas import SchemaError, StageHeartbeat, decode
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs, profile
from streams.settings import Settings
from streams.topics import HEARTBEATS

log = logging.getLogger(__name__)

STALE_AFTER_S = 6.0
"""A stage with no heartbeat for this long (3 heartbeat intervals) is down."""


class StageMonitor:
    """Track the last heartbeat of every stage instance (no consumer group: every ingress reads all)."""

    def __init__(self, settings: Settings, stages: list[str]) -> None:
        self.settings = settings
        self.stages = stages
        self.last: dict[str, dict[str, float]] = {stage: {} for stage in stages}
        wait = max(profile(settings).fetch_max_wait_ms, 100)
        self.consumer = AIOKafkaConsumer(**consumer_kwargs(settings, enable_auto_commit=False,
                                                           fetch_max_wait_ms=wait))
        self.task: asyncio.Task[None] | None = None
        self.broker_seen = 0.0

    async def start(self) -> None:
        """Connect and follow the heartbeat topic from its end."""
        await self.consumer.start()
        partitions = await topic_partitions(self.settings, HEARTBEATS.name)
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        self.task = asyncio.create_task(self._run(), name="stage-monitor")

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            self.broker_seen = time.time()
            for messages in batches.values():
                for message in messages:
                    with contextlib.suppress(SchemaError):
                        beat = decode(message.value, StageHeartbeat)
                        if beat.stage in self.last and beat.ready:
                            self.last[beat.stage][beat.instance] = beat.ts

    def status(self) -> dict[str, int]:
        """Live instances per stage."""
        now = time.time()
        return {stage: sum(now - ts < STALE_AFTER_S for ts in seen.values())
                for stage, seen in self.last.items()}

    def broker_up(self) -> bool:
        """True if the last fetch round-trip finished within :data:`STALE_AFTER_S`."""
        return time.time() - self.broker_seen < STALE_AFTER_S

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.consumer.stop()
