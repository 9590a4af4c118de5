"""The queue of handed-off sessions, shared by every ingress replica: folded from the bus.

Every replica follows ``voxbus.handoffs`` (:class:`schemas.Handoff` puts a session in the
queue, :class:`schemas.HandoffUpdate` adds transcript lines, :class:`schemas.SessionCaller`
says who a session's caller is) and ``voxbus.agent-queue``
(:class:`schemas.QueueEvent`: claim, release, transfer, expire, end, abandon) with a consumer of
its own (every partition, no consumer group), reading back :data:`HORIZON_S`; so every
replica holds the same queue, and a restarted one rebuilds it.

The rule that decides "already taken" once across replicas: a session's events are keyed
by its id, so they are all on one partition of ``voxbus.agent-queue``, in one order every
replica reads alike.  A session's state is the fold of the events of its current round
(the hand-off they name, ``handoff_turn``) in that order:

* ``claim`` takes a *waiting* session; a later claim (another agent, another replica)
  finds it taken and changes nothing: the first claim in log order wins;
* ``expire`` (the SLA passed) gives a *waiting* session back to the bot; a claim before it
  in the log wins over it, and a claim after it finds the session no longer waiting;
* ``abandon`` (the caller's session ended on the replica holding their socket, :meth:`Desk.abandon
  <ingress.agents.desk.Desk.abandon>`) ends a *waiting* round: nobody can claim it any more; like
  ``expire``, a claim before it wins (the agent then holds a call whose caller left, and ends it);
* ``release``, ``transfer`` and ``end`` count only from the agent holding the session.

A replica that writes an event waits until it has read it back (:meth:`AgentQueue.settle`)
and then reads the outcome from the fold, so the agent who lost a race is told so.
Events of a round whose hand-off is not read yet (the two topics are read side by side)
are kept and folded when it arrives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ingress.agents.readback import ReadBack
from schemas import Handoff, HandoffUpdate, QueueEvent, Record, SessionCaller
from streams.settings import Settings
from streams.topics import AGENT_QUEUE, HANDOFFS

HORIZON_S = 24 * 3600.0
"""How far back (s) the queue reads its topics at startup: a day of hand-offs (handle times for
the wait estimate, recent history for the console); a waiting caller is not older than an hour
(``VOXBUS_MAX_SESSION_S``)."""
MAX_ORPHANS = 100
"""Most events kept for a session whose hand-off is not read yet."""

WAITING, TAKEN, BOT, ENDED, ABANDONED = "waiting", "taken", "bot", "ended", "abandoned"
"""A session's status: in the queue; held by an agent; back with the bot (released or expired);
the agent call ended (the ticket is written); the caller hung up while waiting (the round is over: a
caller who comes back is with the bot, and is queued again only by a new hand-off)."""


@dataclass
class Span:
    """An agent call: claimed at ``start``, released or ended at ``end`` (epoch s)."""

    agent: str
    start: float
    end: float


@dataclass
class DeskSession:
    """One handed-off session as every replica folds it."""

    session_id: str
    egress_partition: int
    reason: str
    summary: str
    intent: str
    sentiment_score: float
    since: float
    speak: bool
    round: str
    status: str = WAITING
    agent: str = ""
    taken_at: float = 0.0
    returned: str = ""
    """Why the bot has the session again: ``release``, ``expire`` or ``end``; ``abandon``: the caller left."""
    note: str = ""
    lines: list[dict[str, Any]] = field(default_factory=list)
    events: list[QueueEvent] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)

    def add_line(self, role: str, text: str, turn_id: str, ts: float) -> None:
        """Append a transcript line once (records are read at least once)."""
        if text and not any(line["turn_id"] == turn_id and line["role"] == role for line in self.lines):
            self.lines.append({"role": role, "text": text, "turn_id": turn_id, "ts": ts})

    def refold(self) -> None:
        """Recompute the status from the current round's events, in log order (module docstring)."""
        self.status, self.agent, self.taken_at, self.returned, self.note = WAITING, "", 0.0, "", ""
        self.spans = [s for s in self.spans if s.start < self.since]  # earlier rounds' calls stay
        start = 0.0
        for event in (e for e in self.events if e.handoff_turn == self.round):
            if event.kind == "claim" and self.status == WAITING:
                self.status, self.agent, self.taken_at = TAKEN, event.agent, event.ts
                start = event.ts
            elif event.kind == "expire" and self.status == WAITING:
                self.status, self.returned, self.note = BOT, "expire", event.note
            elif event.kind == "abandon" and self.status == WAITING:
                self.status, self.returned = ABANDONED, "abandon"
            elif self.status == TAKEN and event.agent == self.agent:
                if event.kind == "transfer" and event.to_agent:
                    self.agent, self.note = event.to_agent, event.note
                elif event.kind in ("release", "end"):
                    self.status = BOT if event.kind == "release" else ENDED
                    self.returned, self.note = event.kind, event.note
                    self.spans.append(Span(self.agent, start, event.ts))

    def view(self) -> dict[str, Any]:
        """JSON-ready form (the console's and the API's)."""
        return {
            "session_id": self.session_id, "egress_partition": self.egress_partition, "reason": self.reason,
            "summary": self.summary, "intent": self.intent, "sentiment_score": self.sentiment_score,
            "since": self.since, "speak": self.speak, "handoff_turn": self.round, "status": self.status,
            "waiting": self.status == WAITING, "agent": self.agent, "taken_at": self.taken_at,
            "returned": self.returned, "note": self.note, "lines": self.lines,
        }


class AgentQueue(ReadBack):
    """The handed-off sessions of every replica, folded from ``voxbus.handoffs`` and ``voxbus.agent-queue``.

    Args:
        settings: the ingress settings (the consumer's broker).
    """

    topics = (HANDOFFS, AGENT_QUEUE)
    records = (Handoff, HandoffUpdate, QueueEvent, SessionCaller)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.sessions: dict[str, DeskSession] = {}
        self.orphans: dict[str, list[QueueEvent]] = {}
        self.callers: dict[str, SessionCaller] = {}
        """Session id -> who its caller is (sessions started within :data:`HORIZON_S` with a caller id)."""
        self.pruned = time.time()

    def since(self) -> float:
        """:data:`HORIZON_S` ago."""
        return time.time() - HORIZON_S

    def apply(self, record: Record) -> None:
        """Fold one record (idempotent for hand-offs and transcript lines; events in log order)."""
        if isinstance(record, Handoff):
            self._handoff(record)
        elif isinstance(record, SessionCaller):
            self.callers[record.session_id] = record
        elif isinstance(record, QueueEvent):
            session = self.sessions.get(record.session_id)
            if session is None:  # its hand-off is not read yet
                orphans = self.orphans.setdefault(record.session_id, [])
                orphans.append(record)
                del orphans[:-MAX_ORPHANS]
            else:  # an event of another round is kept, and folds only in its round
                session.events.append(record)
                session.refold()
        elif isinstance(record, HandoffUpdate):
            session = self.sessions.get(record.session_id)
            if session is None:
                return  # its hand-off is older than the horizon
            if record.kind == "caller":
                session.speak = session.speak or record.speak  # once the caller has spoken, agents are heard
                session.add_line("caller", record.text, record.turn_id, record.ts)
            elif record.kind == "agent":
                session.add_line("agent", record.text, record.turn_id, record.ts)

    def _handoff(self, record: Handoff) -> None:
        session = self.sessions.get(record.session_id)
        if session is not None and (session.round == record.turn_id or record.ts <= session.since):
            return  # redelivered, or an older round
        if session is None:
            session = self.sessions[record.session_id] = DeskSession(
                session_id=record.session_id, egress_partition=record.egress_partition, reason=record.reason,
                summary=record.summary, intent=record.intent, sentiment_score=record.sentiment_score,
                since=record.ts, speak=record.speak, round=record.turn_id,
            )
        else:  # handed off again: a new round
            session.egress_partition, session.reason, session.summary = (
                record.egress_partition, record.reason, record.summary)
            session.intent, session.sentiment_score, session.since, session.speak, session.round = (
                record.intent, record.sentiment_score, record.ts, record.speak, record.turn_id)
        for line in record.transcript:
            session.add_line(line.role, line.text, line.turn_id, record.ts)
        waiting = self.orphans.pop(record.session_id, [])
        session.events.extend(e for e in waiting if e.handoff_turn == record.turn_id)
        session.refold()

    def waiting(self) -> list[DeskSession]:
        """The waiting sessions in queue order: by hand-off time, then session id (every replica agrees)."""
        return sorted((s for s in self.sessions.values() if s.status == WAITING),
                      key=lambda s: (s.since, s.session_id))

    def position(self, session_id: str) -> int:
        """1-based place of a waiting session in the queue; 0 when it is not waiting."""
        for place, session in enumerate(self.waiting(), start=1):
            if session.session_id == session_id:
                return place
        return 0

    def spans(self) -> list[Span]:
        """Every finished agent call folded, oldest end first."""
        return sorted((span for s in self.sessions.values() for span in s.spans), key=lambda span: span.end)

    def listing(self) -> list[dict[str, Any]]:
        """Every session as JSON-ready dicts: waiting ones first in queue order, then the others by time."""
        queue = self.waiting()
        others = sorted((s for s in self.sessions.values() if s.status != WAITING), key=lambda s: -s.since)
        views = []
        for place, session in enumerate(queue, start=1):
            views.append({**session.view(), "position": place})
        views.extend({**session.view(), "position": 0} for session in others)
        return views

    def tick(self) -> None:
        """Forget sessions and orphan events older than :data:`HORIZON_S`, about once a minute."""
        now = time.time()
        if now - self.pruned < 60.0:
            return
        self.pruned = now
        old = now - HORIZON_S
        for session_id in [sid for sid, s in self.sessions.items() if s.since < old and s.status != TAKEN]:
            del self.sessions[session_id]
        for session_id in [sid for sid, events in self.orphans.items() if events[-1].ts < old]:
            del self.orphans[session_id]
        for session_id in [sid for sid, link in self.callers.items() if link.ts < old]:
            del self.callers[session_id]
