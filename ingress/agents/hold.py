"""The caller's side of the queue: position, estimated wait, hold messages, and the bot's return.

Run by the replica that holds the caller's socket (the session is in ``gateway.sessions``),
once a second (:meth:`HoldLine.tick`):

* as soon as the session waits, the caller's page shows their place in the queue and the
  estimated wait (:mod:`ingress.agents.estimate`); the hand-off sentence is still playing,
  so this first notice is shown, not spoken;
* every ``VOXBUS_HOLD_MESSAGE_S`` after that, the place and the wait are said again;
* after ``VOXBUS_HANDOFF_SLA_S`` without an agent, the replica writes an ``expire`` event;
  if it counts (no claim came first in the log), the bot is back: the generation stage reads
  the event, answers the caller again and books a callback on request, and the caller hears
  :data:`BUSY_SAY`.

Notices are in the caller's session's language (:data:`NOTICES`, :data:`BUSY_SAYS`; else English).
"""

from __future__ import annotations

import logging
import time

from ingress.agents.desk import Desk
from ingress.agents.estimate import estimated_wait, spoken_wait
from ingress.agents.queue import BOT, TAKEN, DeskSession
from schemas import DEFAULT_LANGUAGE

log = logging.getLogger(__name__)

BUSY_SAY = "Everyone is busy right now; I can keep helping, or book a callback."
"""What the caller hears when the SLA passes without an agent (issue 15's wording)."""
BUSY_SAYS = {"en": BUSY_SAY,
             "es": "Ahora mismo están todos ocupados; puedo seguir ayudándole o reservarle una llamada."}
""":data:`BUSY_SAY` by language (issue 19)."""
NOTICES = {
    "en": ("You are next in the queue.", "You are number {} in the queue.", "The estimated wait is {}.",
           "If no one is free soon, I'll be back to help within {}."),
    "es": ("Es usted el siguiente en la cola.", "Es usted el número {} en la cola.",
           "La espera estimada es de {}.", "Si nadie queda libre pronto, volveré a ayudarle en {}."),
}
"""The hold notice's sentences by language: next, number n, the estimated wait, the promise."""


def notice(position: int, wait: float | None, sla_left: float, language: str = "en") -> str:
    """What a waiting caller is told: their place, and the estimated wait or the promise.

    In ``language``; one without its sentences (:data:`NOTICES`) gets English's.
    """
    first, numbered, estimate, promise = NOTICES.get(language, NOTICES["en"])
    place = first if position == 1 else numbered.format(position)
    if wait is not None:
        return f"{place} {estimate.format(spoken_wait(wait, language))}"
    return f"{place} {promise.format(spoken_wait(max(sla_left, 1.0), language))}"


class HoldLine:
    """Hold notices and the SLA for the waiting callers whose socket is on this replica.

    Args:
        desk: the shared queue and how to act on it.
    """

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.settings = desk.gateway.settings
        self.noticed: dict[tuple[str, str], float] = {}
        """(session id, hand-off round) -> when it was last told its place (epoch s)."""

    async def tick(self, now: float | None = None) -> None:
        """Tell, remind or give back every waiting session held here (errors are logged, not raised)."""
        now = time.time() if now is None else now
        queue = self.desk.queue
        waiting = queue.waiting()
        here = self.desk.gateway.sessions
        local = [(place, s) for place, s in enumerate(waiting, start=1) if s.session_id in here]
        for place, session in local:
            try:
                await self._serve(place, session, now)
            except Exception as exc:  # the broker is down: try again on the next tick
                log.warning("session %s: hold line failed: %s: %s", session.session_id, type(exc).__name__,
                            exc)
        live = {(s.session_id, s.round) for s in waiting}
        for key in [k for k in self.noticed if k not in live]:
            del self.noticed[key]

    async def _serve(self, place: int, session: DeskSession, now: float) -> None:
        s = self.settings
        caller = self.desk.gateway.sessions.get(session.session_id)
        language = getattr(caller, "language", "") or DEFAULT_LANGUAGE  # the caller's session's
        if now - session.since >= s.handoff_sla_s:
            busy = BUSY_SAYS.get(language, BUSY_SAY)
            outcome = await self.desk.act(session, "expire", note=busy)
            if outcome.status == BOT and outcome.returned == "expire":
                log.info("session %s: no agent within %g s; the bot is back", session.session_id,
                         s.handoff_sla_s)
                await self.desk.say(outcome, busy, "queue", language=language)
            return
        key = (session.session_id, session.round)
        last = self.noticed.get(key)
        if last is not None and now - last < s.hold_message_s:
            return
        holding = [x.agent for x in self.desk.queue.sessions.values() if x.agent and x.status == TAKEN]
        wait = estimated_wait(place, self.desk.queue.spans(), holding, now)
        text = notice(place, wait, s.handoff_sla_s - (now - session.since), language)
        await self.desk.say(session, text, "hold", speak=None if last is not None else False,
                            language=language)
        self.noticed[key] = now
