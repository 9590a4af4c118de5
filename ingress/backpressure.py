"""Backpressure at the ingress: caller audio waits for the broker in a bounded buffer, or is shed.

The WebSocket handler never waits for Kafka: each session's records (its
``SessionControl`` start/end and its ``AudioChunk`` s) go into an :class:`Outbox`,
whose task produces them in order and waits for each acknowledgement.  When the
broker (or the network to it) falls behind, audio accumulates there, bounded twice:

* per session: ``VOXBUS_SESSION_BUFFER_S`` seconds of audio (default 5 s);
* per ingress process: ``VOXBUS_INGRESS_BUFFER_BYTES`` across all sessions (16 MiB),
  an :class:`AudioBudget`.

Audio beyond either bound is dropped (shed) and counted; the session tells its caller
with an ``overloaded`` error event (at most one per :data:`NOTICE_INTERVAL_S`).  The
vad stage fills the gap with silence (chunks keep their sample offsets).  While the
global buffer is more than :data:`ADMIT_BELOW` full, new sessions are refused with
close code 1013 (``overloaded``, "try again later").  Control records are never shed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ingress.edge import CLOSE_TRY_AGAIN, Rejection
from ingress.metrics import BUFFERED, LOST, SHED
from schemas import AudioChunk, Record

log = logging.getLogger(__name__)

NOTICE_INTERVAL_S = 1.0
"""Least time between two ``overloaded`` events to one caller (s)."""
ADMIT_BELOW = 0.5
"""New sessions are refused while the global audio buffer is fuller than this fraction."""
DRAIN_TIMEOUT_S = 10.0
"""Longest a closing session waits for its buffered records to reach the broker (s)."""



class AudioBudget:
    """The audio buffer shared by every session of one ingress process.

    Args:
        limit_bytes: most PCM bytes buffered at once (``VOXBUS_INGRESS_BUFFER_BYTES``).
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0

    def take(self, nbytes: int) -> bool:
        """Reserve ``nbytes``; False (nothing reserved) if that would exceed the limit."""
        if self.used + nbytes > self.limit:
            return False
        self.used += nbytes
        BUFFERED.set(self.used)
        return True

    def give(self, nbytes: int) -> None:
        """Release ``nbytes`` reserved by :meth:`take`."""
        self.used = max(0, self.used - nbytes)
        BUFFERED.set(self.used)

    @property
    def saturated(self) -> bool:
        """True while more than :data:`ADMIT_BELOW` of the budget is in use."""
        return self.used > ADMIT_BELOW * self.limit

    def admit(self) -> None:
        """Check that a new session may start.

        Raises:
            Rejection: 1013 ``overloaded`` while the buffer is :attr:`saturated`.
        """
        if self.saturated:
            raise Rejection(CLOSE_TRY_AGAIN, "overloaded",
                            f"{self.used} bytes of caller audio wait for the broker; try again later")


class Outbox:
    """One session's records on their way to the broker: in order, bounded, shedding audio when full.

    Args:
        produce: coroutine producing one record and waiting for its acknowledgement
            (raises on failure: the record is then logged, counted and dropped).
        budget: the process-wide :class:`AudioBudget`.
        max_bytes: most PCM bytes of this session buffered at once.
    """

    def __init__(self, produce: Callable[[Record], Awaitable[None]], budget: AudioBudget,
                 max_bytes: int) -> None:
        self.produce = produce
        self.budget = budget
        self.max_bytes = max_bytes
        self.queue: deque[tuple[Record, int]] = deque()
        self.bytes = 0
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def put(self, record: Record) -> bool:
        """Queue ``record``; an :class:`AudioChunk` over the session or global bound is shed (False)."""
        size = len(record.pcm) if isinstance(record, AudioChunk) else 0
        if size:
            bound = "session" if self.bytes + size > self.max_bytes else ""
            if not bound and not self.budget.take(size):
                bound = "global"
            if bound:
                SHED.labels(bound).inc(size)
                return False
            self.bytes += size
        self.queue.append((record, size))
        self.wake.set()
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="outbox")
        return True

    @property
    def buffered_s(self) -> float:
        """Seconds of bus audio (16 kHz PCM16) waiting for the broker."""
        return self.bytes / 32000

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            record, size = self.queue[0]
            try:
                await self.produce(record)
            except Exception as exc:  # the broker is gone: the record is lost, the session goes on
                LOST.labels(record.type).inc()  # type: ignore[attr-defined]
                log.warning("producing %s failed: %s: %s", record.type, type(exc).__name__, exc)  # type: ignore[attr-defined]
            self.queue.popleft()
            self.bytes -= size
            self.budget.give(size)

    async def close(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Wait (up to ``timeout_s``) until every queued record is produced, then stop."""
        deadline = time.monotonic() + timeout_s
        while self.queue and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if self.queue:
            log.warning("%d records not acknowledged in %.0f s; dropped", len(self.queue), timeout_s)
            for record, _ in self.queue:
                LOST.labels(record.type).inc()  # type: ignore[attr-defined]
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for _, size in self.queue:
            self.budget.give(size)
        self.queue.clear()
        self.bytes = 0
