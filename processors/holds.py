"""The input records a stage still keeps state from, per session: its commit floor.

A stage that builds state across records (the vad stage's open utterance) loses that state
with its process.  Its runner tracks every record it handled here, in order per session,
and releases a session's oldest ones as soon as the stage no longer needs them; the lowest
offset still held on a partition is the most its consumer may commit
(:func:`streams.transport.hold_commits`), so whoever reads the partition next reads those
records again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from faust.types import TP

from schemas import Record


class InputHolds:
    """Held input records (partition, offset, record) by session key, each session's in offset order."""

    def __init__(self) -> None:
        self.held: dict[str, deque[tuple[TP, int, Record]]] = {}

    def track(self, key: str, tp: TP, offset: int, record: Record) -> None:
        """Hold ``record``, read at ``offset`` of ``tp``, for session ``key``."""
        self.held.setdefault(key, deque()).append((tp, offset, record))

    def release(self, needs: Callable[[Record], bool]) -> None:
        """Drop each session's oldest records up to the first one ``needs`` still wants.

        ``needs`` must hold for every later record of a session once it holds for one (a stage
        keeps a session's state from some record on), so only the oldest are asked.
        """
        for key in list(self.held):
            queue = self.held[key]
            while queue and not needs(queue[0][2]):
                queue.popleft()
            if not queue:
                del self.held[key]

    def drop(self, tps: Iterable[TP]) -> None:
        """Forget the records of partitions no longer assigned (revoked at a rebalance)."""
        gone = set(tps)
        for key in list(self.held):
            kept = deque(entry for entry in self.held[key] if entry[0] not in gone)
            if kept:
                self.held[key] = kept
            else:
                del self.held[key]

    def floor(self, tp: TP) -> int | None:
        """The lowest offset of ``tp`` still held, or None: the most its consumer may commit."""
        return min((queue[0][1] for queue in self.held.values() if queue[0][0] == tp), default=None)
