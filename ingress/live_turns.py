"""Live callers' turns in flight, on this replica and on the others: what a yielding recorded call waits for.

A turn is *in flight* from the end of the caller's speech (the vad stage's ``speech_end``
of an utterance) until the first byte of its reply reaches the caller, the span
voice-to-voice measures.  A recorded call (:mod:`ingress.calls`) fed with
``VOXBUS_CALLS_YIELD`` on waits between two of its audio chunks while any live turn is in
flight on any replica, so the stages take no new batch audio while a live caller waits.

Where the signal comes from, and why:

* **this replica**: its own sessions' turn state (:class:`~ingress.session.CallerSession`
  turns, as the egress events built them): exact, and costs a look at a few dicts, taken when
  the session code says its sessions or their turns changed (:meth:`LiveLoad.changed`), so
  a replica with no caller does nothing;
* **the other replicas**: each ingress produces a :class:`~schemas.LiveTurns` record to
  ``voxbus.heartbeats`` when its count changes and every :data:`REFRESH_S` while it is
  above zero (a few small records per turn), and reads the others' from that one-partition
  topic, through the replica's one reader of it (:class:`ingress.health.StageMonitor` hands
  them to :meth:`LiveLoad.absorb`); a count not refreshed for :data:`STALE_S` is forgotten (a
  replica that died mid-turn).

The bus's other signals do not say it: the stages' consumer lag counts the recorded call's
own records (no record after ``voxbus.audio`` says it is batch work), so a call would wait
on itself; ``voxbus.turns`` is written when a turn is over, after its reply has played, not
when the caller starts waiting; ``voxbus.egress`` holds it, but in every replica's reply
audio, which each replica would then read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ingress.session import CallerSession
from ingress.turns import Turn
from schemas import LiveTurns, Record
from streams.settings import Settings
from streams.topics import HEARTBEATS, TopicSpec

log = logging.getLogger(__name__)

COALESCE_S = 0.05
"""Shortest interval between two counts of this replica's turns by the publisher or a waiting call (s):
the changes of a burst (a reply's audio chunks, many callers' events) are counted once, and a count
is at most this late."""
REFRESH_S = 1.0
"""A replica's non-zero count is produced again this often (s), so readers can tell it is current;
a count the broker did not take is tried again after this long (or at the next change)."""
STALE_S = 3.0
"""Another replica's count not read again for this long (s, 3 refreshes) is forgotten."""


def in_flight(turn: Turn) -> bool:
    """True from the end of the caller's speech (or a typed turn) until the first of its reply reached them.

    The reply's first audio byte for a spoken turn, its first sentence for a text-only one;
    a turn that failed, was dropped (a blip, a continued or backchannel turn) or is complete
    is not in flight.
    """
    if turn.failed or turn.dropped or turn.complete:
        return False
    if "vad.speech_end" not in turn.marks and turn.source != "text":
        return False
    return ("ingress.first_audio" if turn.speak else "ingress.first_reply_text") not in turn.marks


def local_in_flight(sessions: dict[str, object]) -> int:
    """Live turns in flight among ``sessions`` (session id -> session); recorded calls are not live."""
    return sum(in_flight(turn) for session in list(sessions.values()) if isinstance(session, CallerSession)
               for turn in list(session.turns.values()))


class LiveLoad:
    """This replica's live turns in flight on the bus, and every replica's as read back.

    Args:
        settings: the broker, and ``ingress_slot`` (in this replica's instance name).
        sessions: the replica's sessions (:attr:`ingress.gateway.Gateway.sessions`), read live.
        produce: ``await produce(topic, record)``, the replica's producer (:meth:`Gateway.produce`).
    """

    def __init__(self, settings: Settings, sessions: dict[str, object],
                 produce: Callable[[TopicSpec, LiveTurns], Awaitable[Any]]) -> None:
        self.settings = settings
        self.sessions = sessions
        self.produce = produce
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{settings.ingress_slot}"
        self.remote: dict[str, tuple[int, float]] = {}
        """Other replica -> (its turns in flight, monotonic s when read)."""
        self.task: asyncio.Task[None] | None = None
        self.change = asyncio.Event()
        """Set at each :meth:`changed`, then replaced; what the publisher and the waiting calls await."""

    async def start(self) -> None:
        """Produce this replica's count as it changes (the others' arrive through :meth:`absorb`)."""
        self.task = asyncio.create_task(self._publish(), name="live-turns-out")

    def changed(self) -> None:
        """Wake the publisher and the waiting calls: a count may have moved.

        The session code calls it when this replica's sessions or their turns change (an egress
        event absorbed, a text turn started, a turn timed out, a session attached or detached);
        :meth:`absorb` when another replica's count is read.  Waking costs a count of a few dicts.
        """
        self.change.set()
        self.change = asyncio.Event()

    async def _until_changed(self, change: asyncio.Event, timeout_s: float) -> None:
        """Wait for ``change`` (taken before looking at what it signals), at most ``timeout_s`` (s)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(change.wait(), None if math.isinf(timeout_s) else max(0.0, timeout_s))

    async def stop(self) -> None:
        """Stop producing."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def absorb(self, record: Record) -> None:
        """Keep another replica's count from a record read on ``voxbus.heartbeats`` (others are skipped).

        A count produced more than :data:`STALE_S` ago by its replica's clock (the backlog the
        reader starts from) is not taken.
        """
        if (isinstance(record, LiveTurns) and record.instance != self.instance
                and time.time() - record.ts < STALE_S):
            self.remote[record.instance] = (record.in_flight, time.monotonic())
            self.changed()

    def local(self) -> int:
        """Live turns in flight on this replica now."""
        return local_in_flight(self.sessions)

    def others(self) -> int:
        """Live turns in flight on the other replicas as last read (a count older than :data:`STALE_S`: 0)."""
        now = time.monotonic()
        return sum(count for count, read in self.remote.values() if now - read < STALE_S)

    def busy(self) -> bool:
        """True while a live caller's turn is in flight on any replica."""
        return self.local() > 0 or self.others() > 0

    async def until_idle(self, max_s: float) -> float:
        """Wait while :meth:`busy`, at most ``max_s`` (s); return the seconds waited (about 0 if not busy).

        Looks again at a :meth:`changed` (at most every :data:`COALESCE_S`), and when another
        replica's count is due to go stale.
        """
        began = time.monotonic()
        while True:
            change, now = self.change, time.monotonic()
            if not self.busy() or now - began >= max_s:
                return now - began
            stale_at = min((read + STALE_S for count, read in self.remote.values()
                            if count and read + STALE_S > now), default=math.inf)
            await asyncio.sleep(COALESCE_S)
            await self._until_changed(change, min(began + max_s, stale_at) - time.monotonic())

    async def _publish(self) -> None:
        """Produce this replica's count when it changes, and every :data:`REFRESH_S` while above zero.

        A change is counted at most :data:`COALESCE_S` after the count before it.
        """
        sent, sent_at = 0, 0.0
        while True:
            change, count, now = self.change, self.local(), time.monotonic()
            if count != sent or (count and now - sent_at >= REFRESH_S):
                try:
                    await self.produce(HEARTBEATS, LiveTurns(instance=self.instance, in_flight=count,
                                                             ts=time.time()))
                    sent, sent_at = count, now
                except Exception as exc:  # the broker is away: tried again after REFRESH_S, or at a change
                    log.warning("live turns not produced: %s: %s", type(exc).__name__, exc)
            if count != sent:
                wait_s = REFRESH_S
            elif count:
                wait_s = sent_at + REFRESH_S - time.monotonic()
            else:
                wait_s = math.inf  # nothing in flight: nothing to produce until a change
            await asyncio.sleep(COALESCE_S)
            await self._until_changed(change, wait_s - COALESCE_S)
