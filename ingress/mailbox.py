"""Egress delivery without head-of-line blocking: one bounded queue and one sender task per session.

The egress reader (:mod:`ingress.egress`) reads every caller's events from one
partition.  It only puts each event in its session's :class:`Mailbox`, which never
waits; the mailbox's own task awaits the session's ``deliver`` (the caller's socket, and
the ``voxbus.control``/``voxbus.turns`` produces it makes), in order.  One caller whose
socket stops draining, or one slow broker acknowledgement, delays that caller only.

A caller whose mailbox holds ``VOXBUS_EGRESS_QUEUE_RECORDS`` undelivered events cannot
keep up: its events are dropped and the mailbox's ``overflow`` callback runs once (the
ingress closes the socket with 4420, :data:`ingress.edge.CLOSE_TOO_SLOW`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ingress import metrics
from schemas import SessionRecord

log = logging.getLogger(__name__)

Deliver = Callable[[SessionRecord], Awaitable[None]]
Overflow = Callable[[], Awaitable[None]]


class Mailbox:
    """The undelivered egress events of one session, delivered in order by a task of its own.

    The task runs while events are queued and ends when the queue is empty; :attr:`idle`
    tells the owner it may forget the mailbox.

    Args:
        deliver: the session's ``deliver`` coroutine, called with one event at a time.
        capacity: most undelivered events held (``VOXBUS_EGRESS_QUEUE_RECORDS``).
        overflow: awaited once when an event finds the queue full (the session is then dropped).
        name: for logs (the session id).
    """

    def __init__(self, deliver: Deliver, capacity: int, overflow: Overflow, name: str = "") -> None:
        self.deliver = deliver
        self.capacity = capacity
        self.overflow = overflow
        self.name = name
        self.queue: deque[SessionRecord] = deque()
        self.task: asyncio.Task[None] | None = None
        self.overflowed = False

    @property
    def idle(self) -> bool:
        """True when nothing is queued or being delivered."""
        return not self.queue and (self.task is None or self.task.done())

    def put(self, record: SessionRecord) -> bool:
        """Queue ``record`` for delivery (never waits).

        Returns:
            False if the record was dropped: the mailbox overflowed (now or before).
        """
        if self.overflowed:
            return False
        if len(self.queue) >= self.capacity:
            self.overflowed = True
            self.queue.clear()
            if self.task is not None:
                self.task.cancel()  # it is stuck on the caller's socket
            log.warning("session %s: %d egress events undelivered: the caller cannot keep up; dropping it",
                        self.name, self.capacity)
            self.task = asyncio.get_running_loop().create_task(self.overflow(), name=f"overflow-{self.name}")
            return False
        self.queue.append(record)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"mailbox-{self.name}")
        return True

    async def _run(self) -> None:
        while self.queue:
            record = self.queue.popleft()
            try:
                await self.deliver(record)
            except Exception:  # one event's failure must not stop the session's later events
                log.exception("delivering %s to %s failed", record.type, self.name)

    async def close(self) -> None:
        """Drop what is queued and stop the sender task."""
        self.queue.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class EgressRouter:
    """Route each egress event to its session's :class:`Mailbox` (the gateway's ``deliver``).

    Args:
        sessions: session id -> the connected session (an object with ``async deliver(record)``
            and ``async too_slow()``), as the gateway holds them.
        capacity: each session's :class:`Mailbox` capacity (``VOXBUS_EGRESS_QUEUE_RECORDS``).
    """

    def __init__(self, sessions: dict[str, Any], capacity: int) -> None:
        self.sessions = sessions
        self.capacity = capacity
        self.mailboxes: dict[str, tuple[Any, Mailbox]] = {}

    def route(self, record: SessionRecord) -> bool:
        """Queue ``record`` for its session (never waits).

        Returns:
            False if it was dropped: the session is not connected here (counted as unrouted),
            or its caller cannot keep up (counted as dropped; the caller is being closed).
        """
        session = self.sessions.get(record.session_id)
        if session is None:
            metrics.UNROUTED.inc()
            log.debug("egress %s for session %s, not connected here: dropped", record.type, record.session_id)
            return False
        held = self.mailboxes.get(record.session_id)
        if held is None or held[0] is not session:  # a new connection of the session: a new mailbox
            held = self.mailboxes[record.session_id] = (
                session, Mailbox(session.deliver, self.capacity, session.too_slow, record.session_id))
        if len(self.mailboxes) > 2 * len(self.sessions) + 16:
            self._forget_idle()
        if not held[1].put(record):
            metrics.EGRESS_DROPPED.inc()
            return False
        return True

    def _forget_idle(self) -> None:
        """Forget the mailboxes of sessions no longer connected, once they have nothing left to deliver."""
        for session_id, (session, mailbox) in list(self.mailboxes.items()):
            if mailbox.idle and self.sessions.get(session_id) is not session:
                del self.mailboxes[session_id]

    async def close(self) -> None:
        """Stop every mailbox."""
        await asyncio.gather(*(mailbox.close() for _, mailbox in self.mailboxes.values()))
        self.mailboxes.clear()
