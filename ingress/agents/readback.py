"""A view of some topics that can wait until it has read back a record this replica wrote.

The agent desk's views (the queue, the tickets) answer a request only once the record the
request wrote is folded, so every replica's answer comes from the bus, not from what this
replica meant to write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

from ingress.follow import TopicFollower
from schemas import Record, SchemaError, decode
from streams.settings import Settings
from streams.topics import TopicSpec

log = logging.getLogger(__name__)

SETTLE_TIMEOUT_S = 5.0
"""Longest a replica waits to read its own record back (s)."""


class ReadBack(TopicFollower):
    """Fold the :attr:`records` read from :attr:`topics` (:meth:`apply`), and know how far it has read.

    Subclasses set :attr:`topics` and :attr:`records` and implement :meth:`since` and :meth:`apply`.

    Args:
        settings: the ingress settings (the consumer's broker).
    """

    records: ClassVar[tuple[type[Record], ...]]
    """The record types folded; others on the topics are undecodable here (logged, skipped)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.read: dict[tuple[str, int], int] = {}
        """(topic, partition) -> the next offset to fold."""
        self.advanced = asyncio.Event()

    def apply(self, record: Record) -> None:
        """Fold one decoded record."""
        raise NotImplementedError

    def absorb(self, messages: Iterable[Any]) -> None:
        """Fold consumed messages (undecodable ones are logged and skipped)."""
        for message in messages:
            self.read[(message.topic, message.partition)] = message.offset + 1
            try:
                self.apply(decode(message.value, *self.records))
            except SchemaError as exc:
                log.warning("undecodable record at %s[%d]@%d: %s", message.topic, message.partition,
                            message.offset, exc)
        self.advanced.set()

    async def settle(self, topic: TopicSpec, written: Any) -> None:
        """Wait until the record written at ``written`` (``partition``, ``offset``) of ``topic`` is folded.

        Raises:
            TimeoutError: not read back within :data:`SETTLE_TIMEOUT_S`.
        """
        key = (topic.name, written.partition)
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while self.read.get(key, 0) <= written.offset:
                self.advanced.clear()
                await self.advanced.wait()
