"""What the agent endpoints and the hold line do on the bus: queue events, and words to the caller.

Every change of a session's state is a :class:`schemas.QueueEvent` on ``voxbus.agent-queue``;
:meth:`Desk.act` waits until this replica has folded it (the first claim in log order
wins, :mod:`ingress.agents.queue`), so the outcome it returns is the one every replica sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ingress.agents.queue import WAITING, AgentQueue, DeskSession
from ingress.follow import started
from schemas import DEFAULT_LANGUAGE, QueueEvent, ReplyText
from streams.topics import AGENT_QUEUE, EGRESS, REPLIES

log = logging.getLogger(__name__)


class Desk:
    """The shared queue, and how this replica acts on it.

    Args:
        queue: the fold of the queue's topics.
        gateway: the ingress's Kafka side (``produce``, ``sessions``, ``settings``).
    """

    def __init__(self, queue: AgentQueue, gateway: Any) -> None:
        self.queue = queue
        self.gateway = gateway
        self.lock = asyncio.Lock()
        self.stopping = False
        """The ingress is shutting down: its callers' sockets close, but they reconnect elsewhere."""

    async def ready(self) -> AgentQueue:
        """The queue, started if it is not running (restarted after a failure) and caught up.

        Raises:
            TimeoutError, LookupError, aiokafka.errors.KafkaError: as :func:`ingress.follow.started`.
        """
        return await started(self.queue, self.lock, catch_up=True)

    async def act(self, session: DeskSession, kind: str, agent: str = "", to_agent: str = "",
                  note: str = "") -> DeskSession:
        """Write one event about ``session``'s current round and return the session once it is folded.

        Args:
            session: the session (its current round is the one acted on).
            kind: a :data:`schemas.desk.QueueKind`.
            agent: who acts.
            to_agent: for ``transfer``, who gets the session.
            note: the agent's note, or what the caller was told.

        Returns:
            The session with the event folded: compare its ``status`` and ``agent`` with what was
            asked to know whether the event counted (a claim may have lost to an earlier one).

        Raises:
            TimeoutError: the event was not read back in time (the outcome is unknown here).
            aiokafka.errors.KafkaError: the broker did not take the event.
        """
        event = QueueEvent(session_id=session.session_id, egress_partition=session.egress_partition,
                           kind=kind, handoff_turn=session.round, agent=agent,  # type: ignore[arg-type]
                           to_agent=to_agent, note=note, ts=time.time())
        written = await self.gateway.produce(AGENT_QUEUE, event)
        await self.queue.settle(AGENT_QUEUE, written)
        return self.queue.sessions[session.session_id]

    async def abandon(self, session_id: str) -> None:
        """The caller of ``session_id`` hung up: end its round with an ``abandon`` if it is waiting.

        Run by the replica that held the caller's socket once the session ended there
        (``gateway.ended``, :func:`ingress.connections.detach`); the fold decides (a claim earlier in
        the log wins: that agent then holds a call whose caller left).  Nothing is written for a
        session that is not waiting in this replica's fold, nor while the ingress shuts down (its
        callers reconnect to another replica and keep their place).  Errors are logged, not raised: the
        caller is gone either way, and the hold line's ``expire`` still ends the round after the SLA.

        Args:
            session_id: the session that ended.
        """
        session = self.queue.sessions.get(session_id)
        if self.stopping or session is None or session.status != WAITING:
            return
        try:
            await self.act(session, "abandon")
        except Exception as exc:  # the broker is down or slow: expire ends the round later
            log.warning("session %s: abandon not written: %s: %s", session_id, type(exc).__name__, exc)
            return
        log.info("session %s: the caller hung up while waiting (round %s)", session_id, session.round)

    async def say(self, session: DeskSession, text: str, prefix: str, speak: bool | None = None,
                  language: str = DEFAULT_LANGUAGE) -> str:
        """Say ``text`` to the caller: shown on their page, spoken if the session is spoken.

        A :class:`schemas.ReplyText` to ``voxbus.replies`` (the tts stage speaks it) and to the
        caller's ``voxbus.egress`` partition (their replica shows it).

        Args:
            session: the caller's session.
            text: the words.
            prefix: the turn id's prefix (``agent``, ``hold``, ``queue``).
            speak: override of the session's ``speak`` (False: shown only).
            language: the language of ``text`` (the tts stage's voice).

        Returns:
            The turn id of what was said.

        Raises:
            aiokafka.errors.KafkaError: the broker did not take it.
        """
        now = time.time()
        turn_id = f"{prefix}-{int(now * 1000)}"
        reply = ReplyText(session_id=session.session_id, egress_partition=session.egress_partition,
                          turn_id=turn_id, index=0, text=text, final=True,
                          speak=session.speak if speak is None else speak, language=language,
                          marks={f"{prefix}.reply": now})
        for topic in (REPLIES, EGRESS):
            await self.gateway.produce(topic, reply)
        return turn_id
