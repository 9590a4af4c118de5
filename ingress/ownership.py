"""Session ownership on the bus: who each session id belongs to, on every replica, after restarts.

When the ingress admits a session it writes a :class:`~schemas.sessions.SessionOwner`
to ``voxbus.sessions`` (keyed by session id) and waits for the broker's
acknowledgement before the session's first record is produced.  Every replica follows
that topic with a consumer of its own (every partition, no consumer group), reading
back :attr:`SessionLedger.horizon_s` at startup, so a restarted ingress, or another
replica, knows the owner of every session id still bound.

Folding is first-owner-wins: while a binding has not expired, a record naming another
principal does not change it.  The first claim of an id nobody holds yet (a caller that
chooses its own session ids) waits until the ledger has read its own record back, so two
replicas admitting the same new id at once agree: the principal whose record is first
on the partition owns it, the other is refused.  Until the ledger has read the topic up
to where it ended at startup (:attr:`SessionLedger.ready`), a ``start`` that names a
session id is refused with 1013 (try again later): ownership is never guessed.

The claims also order the connections of a session: every claim is read back, and the
connection's epoch is the one folded at its record (:mod:`ingress.epochs`), not a clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ingress.epochs import EpochClock
from ingress.follow import TopicFollower
from schemas import Record, SchemaError, decode
from schemas.sessions import SessionOwner
from streams.settings import Settings
from streams.topics import SESSIONS, TopicSpec

log = logging.getLogger(__name__)

Produce = Callable[[TopicSpec, Record], Awaitable[Any]]
"""The gateway's ``produce``: returns the record's metadata (``partition``, ``offset``)."""
CONFIRM_TIMEOUT_S = 5.0
"""Longest a first claim waits to read its own record back (s)."""


class ClaimLost(Exception):
    """Another principal's claim of the same session id is earlier on the topic."""


@dataclass
class Owner:
    """The principal a session id is bound to, until ``expires`` (epoch s)."""

    principal: str
    expires: float


class SessionLedger(TopicFollower):
    """The session id -> principal bindings of every replica, folded from ``voxbus.sessions``.

    Args:
        settings: ``max_session_s`` and ``session_binding_ttl_s`` (how long a binding lasts
            after an admission: the longest session, then the binding's time to live).
        produce: how records reach the bus (the gateway's ``produce``).
    """

    topics = (SESSIONS,)

    def __init__(self, settings: Settings, produce: Produce) -> None:
        super().__init__(settings)
        self.produce = produce
        self.owners: dict[str, Owner] = {}
        self.horizon_s = settings.max_session_s + settings.session_binding_ttl_s
        self.pruned = time.monotonic()
        self.read: dict[int, int] = {}
        """Partition -> the next offset to read (what the ledger has folded)."""
        self.advanced = asyncio.Event()
        self.epochs = EpochClock()

    @property
    def ready(self) -> bool:
        """True once every binding that existed at startup has been read."""
        return self.caught_up.is_set()

    def since(self) -> float:
        """The oldest admission whose binding may still hold."""
        return time.time() - self.horizon_s

    def absorb(self, messages: Iterable[Any]) -> None:
        """Fold consumed records (undecodable ones are logged and skipped)."""
        for message in messages:
            self.read[message.partition] = message.offset + 1
            try:
                record = decode(message.value, SessionOwner)
            except SchemaError as exc:
                log.warning("undecodable session binding at %s[%d]@%d: %s", message.topic, message.partition,
                            message.offset, exc)
                continue
            self.apply(record)
            self.epochs.fold(record.session_id, record.epoch, (message.partition, message.offset))
        self.advanced.set()

    def apply(self, record: SessionOwner) -> None:
        """Fold one binding: a live binding of another principal is kept (first owner wins)."""
        current = self.owners.get(record.session_id)
        if current is not None and current.expires > record.ts and current.principal != record.principal:
            log.warning("session %s: binding to another principal ignored (already bound)", record.session_id)
            return
        if current is not None and current.principal == record.principal:
            current.expires = max(current.expires, record.expires)
            return
        self.owners[record.session_id] = Owner(record.principal, record.expires)

    def owner(self, session_id: str, now: float | None = None) -> Owner | None:
        """The binding of ``session_id`` if it has not expired."""
        found = self.owners.get(session_id)
        if found is None or found.expires <= (time.time() if now is None else now):
            return None
        return found

    async def claim(self, session_id: str, principal: str, egress_partition: int,
                    first: bool = False) -> int:
        """Bind ``session_id`` to ``principal`` on the bus and read the claim back: the connection's epoch.

        Args:
            session_id: the session.
            principal: its owner.
            egress_partition: where the session is held (for the record).
            first: nobody held the id: check that no other principal's claim came first.

        Returns:
            The connection's epoch, folded at the claim's record (:mod:`ingress.epochs`):
            greater than the epoch of every earlier connection of the session, on any replica.

        Raises:
            ClaimLost: (``first``) another principal's claim is earlier on the topic.
            TimeoutError: the record was not read back within :data:`CONFIRM_TIMEOUT_S`.
            aiokafka.errors.KafkaError: the broker did not take the record.
        """
        now = time.time()
        proposed = self.epochs.propose(session_id, now)
        record = SessionOwner(session_id=session_id, egress_partition=egress_partition, principal=principal,
                              expires=now + self.horizon_s, ts=now, epoch=proposed)
        written = await self.produce(SESSIONS, record)
        async with asyncio.timeout(CONFIRM_TIMEOUT_S):
            while self.read.get(written.partition, 0) <= written.offset:
                self.advanced.clear()
                await self.advanced.wait()
        found = self.owner(session_id)
        if first and (found is None or found.principal != principal):
            raise ClaimLost(session_id)
        epoch = self.epochs.at((written.partition, written.offset))
        if epoch is None:
            raise TimeoutError(f"the claim of session {session_id} was read back too late to know its epoch")
        return epoch

    def tick(self) -> None:
        """Forget expired bindings about once a minute."""
        if time.monotonic() - self.pruned > 60.0:
            now = time.time()
            for session_id in [s for s, o in self.owners.items() if o.expires <= now]:
                del self.owners[session_id]
                self.epochs.forget(session_id)
            self.pruned = time.monotonic()
