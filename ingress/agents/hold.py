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
"""

from __future__ import annotations

import logging
import time

from ingress.agents.desk import Desk
from ingress.agents.estimate import estimated_wait, spoken_wait
from ingress.agents.queue import BOT, TAKEN, DeskSession

log = logging.getLogger(__name__)

BUSY_SAY = "Everyone is busy right now; I can keep helping, or book a callback."
"""What the caller hears when the SLA passes without an agent (issue 15's wording)."""


def notice(position: int, wait: float | None, sla_left: float) -> str:
    """What a waiting caller is told: their place, and the estimated wait or the promise."""
    place = "You are next in the queue." if position == 1 else f"You are number {position} in the queue."
    if wait is not None:
        return f"{place} The estimated wait is {spoken_wait(wait)}."
    return f"{place} If no one is free soon, I'll be back to help within {spoken_wait(max(sla_left, 1.0))}."


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
        if now - session.since >= s.handoff_sla_s:
            outcome = await self.desk.act(session, "expire", note=BUSY_SAY)
            if outcome.status == BOT and outcome.returned == "expire":
                log.info("session %s: no agent within %g s; the bot is back", session.session_id,
                         s.handoff_sla_s)
                await self.desk.say(outcome, BUSY_SAY, "queue")
            return
        key = (session.session_id, session.round)
        last = self.noticed.get(key)
        if last is not None and now - last < s.hold_message_s:
            return
        holding = [x.agent for x in self.desk.queue.sessions.values() if x.agent and x.status == TAKEN]
        wait = estimated_wait(place, self.desk.queue.spans(), holding, now)
        text = notice(place, wait, s.handoff_sla_s - (now - session.since))
        await self.desk.say(session, text, "hold", speak=None if last is not None else False)
        self.noticed[key] = now
