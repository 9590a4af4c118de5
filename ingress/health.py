"""Health as seen from the ingress: its broker connection (a real request), and the stages' heartbeats.

Two different questions, answered separately (``/readyz`` and ``/healthz`` in
:mod:`ingress.server`):

* is this ingress able to take callers?  Its broker answers a request
  (:class:`BrokerProbe`) and the session bindings are loaded.  A stage being down does
  not make the ingress unready: callers are still taken, and told what works;
* is the pipeline whole?  Every stage has a live worker (:class:`StageMonitor`).  What a
  missing stage takes away from callers is :func:`capabilities` (hearing, answering,
  speaking), reported to them as a ``degraded`` event (:mod:`ingress.session`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaClient, AIOKafkaConsumer

from schemas import Record, SchemaError, StageHeartbeat, decode
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs, profile, security_kwargs, stop_consumer
from streams.settings import Settings
from streams.topics import HEARTBEATS

log = logging.getLogger(__name__)

STALE_AFTER_S = 6.0
"""A stage with no heartbeat for this long (3 heartbeat intervals) is down."""
HEARTBEAT_BACKLOG = 500
"""Heartbeats read back at startup (one partition, a few a second): the stages' state is known at once."""
PROBE_TIMEOUT_S = 2.0
"""Longest a broker probe (a Metadata request) may take before the broker counts as unreachable (s)."""
PROBE_TTL_S = 2.0
"""A probe's answer is reused this long (s), so frequent health checks cost one request."""
CAPABILITIES: dict[str, tuple[str, ...]] = {
    "hearing": ("vad", "asr"),
    "answering": ("intent", "retrieval", "generation"),
    "speaking": ("tts",),
}
"""What callers get -> the stages it needs (a stage with no live worker takes it away)."""


def capabilities(status: dict[str, int]) -> dict[str, bool]:
    """What the pipeline can do for callers now, from :meth:`StageMonitor.status`.

    Args:
        status: live workers per stage (a stage not listed counts as live: not watched).

    Returns:
        ``{"hearing": bool, "answering": bool, "speaking": bool}`` (:data:`CAPABILITIES`).
    """
    return {name: all(status.get(stage, 1) > 0 for stage in stages) for name, stages in CAPABILITIES.items()}


LOST = {
    "hearing": "I can't hear you right now, please type",
    "answering": "I can't answer right now: please hold on or try again in a moment",
    "speaking": "I can't speak right now: my replies are text only",
}
"""Capability -> what the caller is told while it is missing."""


def degraded_event(capable: dict[str, bool]) -> dict[str, object]:
    """The caller-protocol ``degraded`` event for what the pipeline can do now.

    Args:
        capable: :func:`capabilities`.

    Returns:
        ``{"type": "degraded", "hearing": bool, "answering": bool, "speaking": bool,
        "message": str}``; the message says what is missing ("" once everything is back).
    """
    message = "; ".join(LOST[name] for name, up in capable.items() if not up)
    return {"type": "degraded", **capable, "message": message}


class BrokerProbe:
    """Whether the broker answers a request: a Metadata request on a connection of its own.

    Reading a consumer's progress proves nothing (aiokafka's ``getmany`` returns ``{}``
    when the broker is gone), so the probe asks the broker and waits at most
    :data:`PROBE_TIMEOUT_S`; the answer is cached :data:`PROBE_TTL_S`.

    Args:
        settings: the broker's address and security settings.
    """

    def __init__(self, settings: Settings) -> None:
        self.client = AIOKafkaClient(bootstrap_servers=settings.bootstrap, **security_kwargs(settings))
        self.checked = -PROBE_TTL_S
        self.answer = False
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        """Connect to the bootstrap servers.

        Raises:
            aiokafka.errors.KafkaError: no bootstrap server answers.
        """
        await self.client.bootstrap()

    async def up(self) -> bool:
        """True if the broker answered a Metadata request within :data:`PROBE_TIMEOUT_S` (cached briefly)."""
        async with self.lock:  # concurrent checks share one request
            if time.monotonic() - self.checked >= PROBE_TTL_S:
                try:
                    await asyncio.wait_for(self.client.fetch_all_metadata(), PROBE_TIMEOUT_S)
                    self.answer = True
                except Exception as exc:  # unreachable, refused, timed out: all mean down
                    if self.answer:
                        log.warning("broker unreachable: %s: %s", type(exc).__name__, exc)
                    self.answer = False
                self.checked = time.monotonic()
            return self.answer

    async def stop(self) -> None:
        """Close the probe's connections."""
        await self.client.close()


class StageMonitor:
    """Track the last heartbeat of every stage instance (no consumer group: every ingress reads all).

    It is the replica's one reader of ``voxbus.heartbeats``: the topic's other records (the
    replicas' :class:`~schemas.LiveTurns`) go to ``on_record``.
    """

    def __init__(self, settings: Settings, stages: list[str],
                 on_record: Callable[[Record], None] | None = None) -> None:
        self.settings = settings
        self.stages = stages
        self.on_record = on_record
        self.last: dict[str, dict[str, float]] = {stage: {} for stage in stages}
        wait = max(profile(settings).fetch_max_wait_ms, 100)
        self.consumer = AIOKafkaConsumer(**consumer_kwargs(settings, enable_auto_commit=False,
                                                           fetch_max_wait_ms=wait))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and follow the heartbeat topic from its last :data:`HEARTBEAT_BACKLOG` records."""
        await self.consumer.start()
        partitions = await topic_partitions(self.settings, HEARTBEATS.name)
        self.consumer.assign(partitions)
        first = await self.consumer.beginning_offsets(partitions)
        end = await self.consumer.end_offsets(partitions)
        for tp in partitions:
            self.consumer.seek(tp, max(first[tp], end[tp] - HEARTBEAT_BACKLOG))
        self.task = asyncio.create_task(self._run(), name="stage-monitor")

    async def _run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    with contextlib.suppress(SchemaError):
                        record = decode(message.value)
                        if isinstance(record, StageHeartbeat):
                            if record.stage in self.last and record.ready:
                                self.last[record.stage][record.instance] = record.ts
                        elif self.on_record is not None:
                            self.on_record(record)

    def status(self) -> dict[str, int]:
        """Live instances per stage."""
        now = time.time()
        return {stage: sum(now - ts < STALE_AFTER_S for ts in seen.values())
                for stage, seen in self.last.items()}

    async def stop(self) -> None:
        """Stop following and close the consumer."""
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await stop_consumer(self.consumer)
