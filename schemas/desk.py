"""The agent desk on the bus: the shared queue's events (``voxbus.agent-queue``).

A session handed to a person (:class:`schemas.tools.Handoff` on ``voxbus.handoffs``) waits
in the queue until an agent claims it or the hand-off's service level expires.  What
happens to it then is a :class:`QueueEvent`, keyed by session id, so all the events of a
session are on one partition, in one order that every ingress replica reads alike (the
rules of that order: :mod:`ingress.agents.queue`).  The generation stage reads the same
topic to know when the bot has the session again (``release``, ``expire``, ``end``).

Ending a call (``end``) comes with a wrap-up, a :class:`Ticket` on ``voxbus.tickets``
(compacted by ticket id: the last version of a ticket is the ticket).  A caller id (a phone
number, a customer id) given at the session's start is announced on ``voxbus.handoffs`` as a
:class:`SessionCaller`, so tickets and a caller's past sessions can be found by it.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import StringConstraints, model_validator

from schemas.base import EpochSeconds, Name, Record, SessionId, SessionRecord, Text, TurnRef

QueueKind = Literal["claim", "release", "transfer", "expire", "end", "abandon"]
"""``claim``: an agent takes a waiting session; ``release``: the holding agent gives it back
to the bot (with a note); ``transfer``: the holding agent passes it to ``to_agent``;
``expire``: nobody claimed it within ``VOXBUS_HANDOFF_SLA_S``, the bot is back and offers a
callback; ``end``: the holding agent ended the call (wrap-up, then a :class:`Ticket`);
``abandon``: the caller hung up while waiting (written by the replica that held their socket;
version 2 of :class:`QueueEvent`)."""

ABANDON_VERSION = 2
"""The :class:`QueueEvent` version that added ``abandon``: only an ``abandon`` is written with it, so
a consumer one release behind (version 1 only) still reads every other kind and dead-letters only
the kind it does not know (:mod:`schemas.base`'s compatibility rule)."""

AgentId = Annotated[str, StringConstraints(max_length=300)]
"""An agent: the principal id with authentication on (``key:NAME``, ``jwt:SUB``), else a name."""

CALLER_ID_PATTERN = r"^[A-Za-z0-9+_.:@-]{1,64}$"
CallerId = Annotated[str, StringConstraints(pattern=CALLER_ID_PATTERN)]
"""Who the caller is, as the start message (or the Twilio call's parameters) says: a phone number
(E.164, ``+15551234567``) or a customer id; 1-64 characters from ``[A-Za-z0-9+_.:@-]``.  Not verified."""

Disposition = Literal["resolved", "follow_up", "escalated", "no_action"]
"""How an agent call ended: ``resolved`` (the caller's problem is solved), ``follow_up`` (someone
has to get back to the caller), ``escalated`` (passed to another team), ``no_action`` (nothing to
do: a wrong number, a caller who hung up)."""

DISPOSITIONS: tuple[str, ...] = Disposition.__args__  # type: ignore[attr-defined]
"""The dispositions, in the order the console offers them."""

SETTLED: frozenset[str] = frozenset({"resolved", "no_action"})
"""Dispositions whose ticket is ``resolved`` when written; the others' is ``open``."""

TicketStatus = Literal["open", "resolved"]
"""``open``: something is still to do; ``resolved``: nothing is (marked so by an agent)."""

class QueueEvent(SessionRecord):
    """Something that happened to a waiting or held session (``voxbus.agent-queue``).

    Version 2 added the kind ``abandon``; an ``abandon`` is version 2 (set when built), every other
    kind is still written as version 1 (:data:`ABANDON_VERSION`).

    Attributes:
        kind: one of :data:`QueueKind`.
        handoff_turn: the ``turn_id`` of the :class:`~schemas.tools.Handoff` this event is
            about: a session handed off again later is a new round, and events of an
            earlier round no longer change it.
        agent: who acts (the claimant, or the agent holding the session); empty for ``expire`` and
            ``abandon``.
        to_agent: for ``transfer``, the agent who gets the session.
        note: the agent's note (``release``, ``transfer``, ``end``), or for ``expire`` what the
            caller was told.
        ts: when (epoch s).
    """

    type: Literal["queue_event"] = "queue_event"
    VERSIONS: ClassVar[frozenset[int]] = frozenset({1, ABANDON_VERSION})
    kind: QueueKind
    handoff_turn: TurnRef
    agent: AgentId = ""
    to_agent: AgentId = ""
    note: Text = ""
    ts: EpochSeconds

    @model_validator(mode="before")
    @classmethod
    def _abandon_version(cls, data: object) -> object:
        """Build an ``abandon`` as version 2 unless a version is given (a decoded record has its own)."""
        if isinstance(data, dict) and data.get("kind") == "abandon" and "v" not in data:
            return {**data, "v": ABANDON_VERSION}
        return data

    @model_validator(mode="after")
    def _kind_in_version(self) -> QueueEvent:
        if self.kind == "abandon" and self.v < ABANDON_VERSION:
            raise ValueError(f"kind 'abandon' needs version {ABANDON_VERSION} (got {self.v})")
        return self


class Ticket(Record):
    """The wrap-up of an agent call, and what is still to do about it (``voxbus.tickets``, key ``id``).

    A ticket is written again, whole, when it changes (resolved): the topic is compacted by
    ticket id, and the last version read is the ticket.

    Attributes:
        id: the ticket id (32 hex digits, one per session and hand-off round).
        session_id: the session the call was.
        handoff_turn: the hand-off round (the :class:`~schemas.tools.Handoff`'s ``turn_id``).
        agent: the agent who ended the call.
        intent: the intent that led to the hand-off (empty when unknown).
        disposition: one of :data:`Disposition`.
        note: the agent's wrap-up note.
        status: one of :data:`TicketStatus`.
        caller_id: the session's :data:`CallerId`, empty when the caller gave none.
        resolved_by: the agent who marked it resolved (empty while open, or resolved at wrap-up).
        resolution: that agent's note.
        created: when the call ended (epoch s).
        updated: when this version was written (epoch s).
    """

    type: Literal["ticket"] = "ticket"
    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
    session_id: SessionId
    handoff_turn: TurnRef = ""
    agent: AgentId
    intent: Name = ""
    disposition: Disposition
    note: Text = ""
    status: TicketStatus
    caller_id: CallerId | Literal[""] = ""
    resolved_by: AgentId = ""
    resolution: Text = ""
    created: EpochSeconds
    updated: EpochSeconds

    def message_key(self) -> str:
        """The ticket id: the topic is compacted by it."""
        return self.id


class SessionCaller(SessionRecord):
    """Who the caller of a session is (``voxbus.handoffs``), from its start, when the caller said.

    Attributes:
        caller_id: a :data:`CallerId`.
        ts: when the session started (epoch s).
    """

    type: Literal["session_caller"] = "session_caller"
    caller_id: CallerId
    ts: EpochSeconds
