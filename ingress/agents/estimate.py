"""The wait a queued caller is promised: their place in line, the agents on duty, recent handle times.

Estimator: with ``n`` agents answering calls that take ``H`` seconds on average, a call
ends somewhere every ``H / n`` seconds, so the caller in place ``p`` waits about
``p * H / n``.  ``H`` is the mean handle time (claim to release or end) of the last
:data:`RECENT_CALLS` agent calls; ``n`` is the number of distinct agents who held a call
in the last :data:`ON_DUTY_S` (at least 1).  Without a finished call there is no
estimate: the caller is told the service level instead (``VOXBUS_HANDOFF_SLA_S``: by
then the bot is back).  Every replica folds the same calls, so every replica promises
the same wait.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from ingress.agents.queue import Span

RECENT_CALLS = 20
"""Agent calls the mean handle time is taken over (about the last hour of a small team)."""
ON_DUTY_S = 3600.0
"""An agent who held a call within this long (s) counts as answering calls."""


def estimated_wait(position: int, spans: Sequence[Span], holding: Sequence[str], now: float) -> float | None:
    """Seconds the caller at ``position`` may wait, or None without a finished call to learn from.

    Args:
        position: 1-based place in the queue.
        spans: finished agent calls, oldest end first (:meth:`AgentQueue.spans`).
        holding: the agents holding a call now.
        now: epoch s.

    Returns:
        ``position * mean handle time / agents on duty`` (s), or None.
    """
    recent = list(spans[-RECENT_CALLS:])
    if not recent or position < 1:
        return None
    handle = statistics.fmean(max(0.0, s.end - s.start) for s in recent)
    on_duty = {s.agent for s in spans if s.end >= now - ON_DUTY_S} | set(holding)
    return position * handle / max(1, len(on_duty))


WAIT_WORDS = {
    "en": ("less than a minute", "about a minute", "about {} minutes"),
    "es": ("menos de un minuto", "alrededor de un minuto", "unos {} minutos"),
}
"""A wait in words, by language: under a minute, one minute, n minutes."""


def spoken_wait(seconds: float, language: str = "en") -> str:
    """``about 3 minutes`` / ``less than a minute``: a wait as the caller hears it (rounded up).

    In ``language``; one without its words (:data:`WAIT_WORDS`) gets English's.
    """
    under, one, many = WAIT_WORDS.get(language, WAIT_WORDS["en"])
    minutes = math.ceil(seconds / 60.0)
    if minutes <= 1:
        return under if seconds < 60 else one
    return many.format(minutes)
