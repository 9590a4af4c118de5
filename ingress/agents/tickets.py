"""Wrap-up tickets on the bus: every replica folds ``voxbus.tickets`` from its beginning.

The topic is compacted by ticket id, so it holds the last version of every ticket, and a
replica (re)started reads them all; between compactions it reads older versions first, and
the last one read wins (one ticket id is one key, on one partition, in order).  A replica
that writes a ticket waits until it has read it back (:meth:`ReadBack.settle`), so what the
endpoints answer is what every replica reads.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from ingress.agents.readback import ReadBack
from ingress.follow import started
from schemas import Record, Ticket
from streams.topics import TICKETS

TICKET_NAMESPACE = uuid.UUID("5f0c3b52-4d0e-4a43-9b7e-2d1f6c7a8e90")
"""The UUID namespace of ticket ids (a fixed random UUID): one id per session and hand-off round."""


def ticket_id(session_id: str, handoff_turn: str) -> str:
    """The id of the ticket of ``session_id``'s hand-off round ``handoff_turn``: 32 hex digits.

    Deterministic, so a retried wrap-up writes the same ticket again instead of a second one.
    """
    return uuid.uuid5(TICKET_NAMESPACE, f"{session_id}/{handoff_turn}").hex


class TicketBook(ReadBack):
    """Every ticket, by id, as the last version read from ``voxbus.tickets``."""

    topics = (TICKETS,)
    records = (Ticket,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tickets: dict[str, Ticket] = {}

    def since(self) -> float:
        """0: the whole topic (compacted: the last version of every ticket)."""
        return 0.0

    def apply(self, record: Record) -> None:
        """Keep ``record`` as its ticket's current version."""
        assert isinstance(record, Ticket)
        self.tickets[record.id] = record

    def find(self, session_id: str = "", caller_id: str = "", status: str = "") -> list[Ticket]:
        """The tickets matching every non-empty filter, most recently updated first."""
        wanted = {"session_id": session_id, "caller_id": caller_id, "status": status}
        found = [t for t in self.tickets.values()
                 if all(not value or getattr(t, name) == value for name, value in wanted.items())]
        return sorted(found, key=lambda t: (-t.updated, t.id))


class TicketDesk:
    """The ticket book, and how this replica writes tickets.

    Args:
        book: the fold of ``voxbus.tickets``.
        gateway: the ingress's Kafka side (``produce``).
    """

    def __init__(self, book: TicketBook, gateway: Any) -> None:
        self.book = book
        self.gateway = gateway
        self.lock = asyncio.Lock()

    async def ready(self) -> TicketBook:
        """The book, started if it is not running (restarted after a failure) and caught up.

        Raises:
            TimeoutError, LookupError, aiokafka.errors.KafkaError: as :func:`ingress.follow.started`.
        """
        return await started(self.book, self.lock, catch_up=True)

    async def write(self, ticket: Ticket) -> Ticket:
        """Write ``ticket`` (keyed by its id) and return it as read back.

        Raises:
            TimeoutError: not read back in time (it may still be stored).
            aiokafka.errors.KafkaError: the broker did not take it.
        """
        written = await self.gateway.produce(TICKETS, ticket)
        await self.book.settle(TICKETS, written)
        return self.book.tickets[ticket.id]
