"""The greeting on pickup: what a caller hears and sees as soon as a new call connects.

A new session (not a reconnection of one) is told ``VOXBUS_CONSENT_NOTICE`` (unless it was
started with ``record: false``) and then ``VOXBUS_GREETING``, as the reply of a turn of its own
(``greeting-<ms>``), on the path of every reply: one :class:`schemas.ReplyText` per line to
``voxbus.replies`` (the tts stage speaks it) and to the caller's ``voxbus.egress`` partition (their
replica shows it and plays its audio, on the web page or the phone).

The turn has no caller words, so it is no turn in analytics (the ingress writes no
:class:`schemas.TurnRecord` for it), and the caller can barge in on it as on any reply
(:meth:`ingress.session.CallerSession.on_speech` pauses turns of source :data:`SOURCE`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ingress.turns import Turn
from schemas import DEFAULT_LANGUAGE, ReplyText
from streams.settings import Settings, localized
from streams.topics import EGRESS, REPLIES

if TYPE_CHECKING:
    from ingress.session import CallerSession

log = logging.getLogger(__name__)

PREFIX = "greeting"
"""Turn id prefix of a greeting (``greeting-<ms>``)."""
SOURCE = "greeting"
""":attr:`ingress.turns.Turn.source` of a greeting's turn (the caller may barge in on it)."""


def pickup_lines(settings: Settings, record: bool | None, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """What a new call is told: the consent notice (unless ``record`` is False), then the greeting.

    Args:
        settings: ``VOXBUS_CONSENT_NOTICE``, ``VOXBUS_GREETING``.
        record: the session's ``record`` wish (None: not stated, the call may be recorded).
        language: the session's language.

    Returns:
        The non-empty lines, in the order they are said (none: the call starts silent).
    """
    notice = "" if record is False else localized(settings.consent_notice, language)
    return [line for line in (notice, localized(settings.greeting, language)) if line]


async def greet(session: CallerSession) -> str | None:
    """Say and show the pickup lines to ``session`` (after its ``ready`` event).

    A broker that does not take it is logged: the call goes on without a greeting.

    Returns:
        The greeting's turn id; None when there is nothing to say (or it could not be sent).
    """
    language = session.language or DEFAULT_LANGUAGE
    lines = pickup_lines(session.gateway.settings, session.record, language)
    if not lines:
        return None
    now = time.time()
    turn_id = f"{PREFIX}-{int(now * 1000)}"
    session.turns[turn_id] = Turn(turn_id, source=SOURCE, speak=session.speak)
    try:
        for index, line in enumerate(lines):
            reply = ReplyText(session_id=session.session_id, egress_partition=session.partition,
                              turn_id=turn_id, index=index, text=line, final=index == len(lines) - 1,
                              speak=session.speak, language=language, marks={"ingress.greeting": now})
            for topic in (REPLIES, EGRESS):
                await session.gateway.produce(topic, reply)
    except Exception as exc:  # the broker is unreachable: no greeting, the caller can still speak
        log.warning("session %s: greeting not sent: %s: %s", session.session_id, type(exc).__name__, exc)
        session.turns.pop(turn_id, None)
        return None
    return turn_id
