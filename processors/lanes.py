"""Concurrency across sessions, order within a session: one lane per session key.

A stage whose work is mostly waiting (the generation stage streams from an LLM server
for seconds per turn) would otherwise answer one turn at a time for every caller
behind it.  :class:`SessionLanes` runs the records of different sessions concurrently
while the records of one session still run one after another in arrival order, the
order the partition gave them.  At most ``limit`` records are in flight; a submit
beyond that waits, so the consumer stops fetching (backpressure) instead of queueing
without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class SessionLanes:
    """Run submitted work concurrently across keys and sequentially within a key.

    Args:
        limit: most records submitted and not yet finished, over all keys (>= 1).

    Raises:
        ValueError: ``limit`` < 1.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.slots = asyncio.Semaphore(limit)
        self.tails: dict[str, asyncio.Task[None]] = {}

    async def submit(self, key: str, work: Callable[[], Awaitable[None]]) -> None:
        """Start ``work()`` after the work already submitted for ``key``; wait only for a free slot.

        ``work`` must handle its own errors: one that raises ends its lane entry (and
        is logged by asyncio) without stopping later work of the same key.
        """
        await self.slots.acquire()
        previous = self.tails.get(key)
        self.tails[key] = asyncio.create_task(self._run(key, previous, work), name=f"lane-{key}")

    async def _run(self, key: str, previous: asyncio.Task[None] | None,
                   work: Callable[[], Awaitable[None]]) -> None:
        try:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await work()
        finally:
            self.slots.release()
            if self.tails.get(key) is asyncio.current_task():
                del self.tails[key]

    @property
    def in_flight(self) -> int:
        """Keys with submitted work not yet finished."""
        return len(self.tails)

    async def drain(self) -> None:
        """Wait until all submitted work has finished."""
        while self.tails:
            await asyncio.gather(*list(self.tails.values()), return_exceptions=True)
