"""The agent desk on the bus: the shared queue's events (``voxbus.agent-queue``).

A session handed to a person (:class:`schemas.tools.Handoff` on ``voxbus.handoffs``) waits
in the queue until an agent claims it or the hand-off's service level expires.  What
happens to it then is a :class:`QueueEvent`, keyed by session id, so all the events of a
session are on one partition, in one order that every ingress replica reads alike (the
rules of that order: :mod:`ingress.agents.queue`).  The generation stage reads the same
topic to know when the bot has the session again (``release``, ``expire``, ``end``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from schemas.base import EpochSeconds, SessionRecord, Text, TurnRef

QueueKind = Literal["claim", "release", "transfer", "expire", "end"]
"""``claim``: an agent takes a waiting session; ``release``: the holding agent gives it back
to the bot (with a note); ``transfer``: the holding agent passes it to ``to_agent``;
``expire``: nobody claimed it within ``VOXBUS_HANDOFF_SLA_S``, the bot is back and offers a
callback; ``end``: the holding agent ended the call (wrap-up, then a :class:`Ticket`)."""

AgentId = Annotated[str, StringConstraints(max_length=300)]
"""An agent: the principal id with authentication on (``key:NAME``, ``jwt:SUB``), else a name."""

class QueueEvent(SessionRecord):
    """Something that happened to a waiting or held session (``voxbus.agent-queue``).

    Attributes:
        kind: one of :data:`QueueKind`.
        handoff_turn: the ``turn_id`` of the :class:`~schemas.tools.Handoff` this event is
            about: a session handed off again later is a new round, and events of an
            earlier round no longer change it.
        agent: who acts (the claimant, or the agent holding the session); empty for ``expire``.
        to_agent: for ``transfer``, the agent who gets the session.
        note: the agent's note (``release``, ``transfer``, ``end``), or for ``expire`` what the
            caller was told.
        ts: when (epoch s).
    """

    type: Literal["queue_event"] = "queue_event"
    kind: QueueKind
    handoff_turn: TurnRef
    agent: AgentId = ""
    to_agent: AgentId = ""
    note: Text = ""
    ts: EpochSeconds
