"""Cancelled turns, as learned from ``voxbus.control``: a bounded, per-worker memory."""

from __future__ import annotations

from collections import OrderedDict

MAX_REMEMBERED = 10_000
"""Cancellations kept per worker; old ones are forgotten first (their turns are long done)."""


class CancelledTurns:
    """A bounded set of ``(session_id, turn_id)`` pairs, oldest evicted first."""

    def __init__(self, capacity: int = MAX_REMEMBERED) -> None:
        self.capacity = capacity
        self._turns: OrderedDict[tuple[str, str], None] = OrderedDict()

    def add(self, session_id: str, turn_id: str) -> None:
        """Remember that the turn was cancelled."""
        self._turns[(session_id, turn_id)] = None
        self._turns.move_to_end((session_id, turn_id))
        while len(self._turns) > self.capacity:
            self._turns.popitem(last=False)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._turns
