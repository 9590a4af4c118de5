"""The caller's keypad: DTMF keys (Twilio ``dtmf`` events, the web ``dtmf`` message) made into turns.

Keys are collected until ``#``, or until ``VOXBUS_DTMF_TIMEOUT_S`` pass without another key
(as Twilio's ``<Gather finishOnKey="#">`` does), and then entered as one caller turn through
the text channel (:meth:`ingress.session.CallerSession.on_text`), spoken back when the session
speaks.  What the keys mean is left to the stages, as for words:

* a lone ``0``: ``VOXBUS_DTMF_AGENT_TEXT`` ("I want to talk to a person"), which the intent stage
  reads as ``human_agent``, so the caller is handed to a person on the path of a spoken request;
* other digits: the digits as typed text (``12345678``), the answer to an open slot such as the
  order number the generation stage's slot filling is waiting for;
* ``*`` clears the keys collected; ``A``-``D`` and Twilio's ``w`` (a wait) are ignored.

The caller is shown the turn as a ``transcript`` event of ``source`` ``dtmf``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ingress.protocol import ProtocolError
from streams.settings import localized

if TYPE_CHECKING:
    from ingress.session import CallerSession

log = logging.getLogger(__name__)

AGENT_KEY = "0"
"""Keys that ask for a person (the operator key of telephone menus)."""
ENTER, CLEAR = "#", "*"
MAX_KEYS = 32
"""Most digits in one entry (an 8-digit order number, a 16-digit card number fit)."""


class Keypad:
    """The keys one caller session presses.

    Args:
        session: the caller's session (its turns, its ``speak``, its settings).
    """

    def __init__(self, session: CallerSession) -> None:
        self.session = session
        self.keys = ""
        self.timer: asyncio.TimerHandle | None = None
        self.entering: asyncio.Task[None] | None = None

    async def press(self, key: str) -> None:
        """One key: a digit is collected, ``#`` enters the keys, ``*`` clears them.

        Args:
            key: one of ``0-9 * # A-D w`` (validated by the protocol).

        Raises:
            ProtocolError: ``too_many_keys`` (over :data:`MAX_KEYS` digits: they are dropped), or a
                turn the session refuses (``rate_limited``, ``too_many_turns``).
        """
        if key == ENTER:
            await self.enter()
        elif key == CLEAR:
            self.keys = ""
            self._stop_timer()
        elif key.isdigit():
            if len(self.keys) >= MAX_KEYS:
                self.keys = ""
                self._stop_timer()
                raise ProtocolError("too_many_keys", f"at most {MAX_KEYS} keys before '#'")
            self.keys += key
            self._stop_timer()
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.session.gateway.settings.dtmf_timeout_s, self._expired)

    async def enter(self) -> None:
        """Enter the keys collected as one caller turn (nothing when none are).

        Raises:
            ProtocolError: the session refuses the turn (``rate_limited``, ``too_many_turns``).
        """
        keys, self.keys = self.keys, ""
        self._stop_timer()
        if not keys:
            return
        session = self.session
        agent_text = localized(session.gateway.settings.dtmf_agent_text, session.language)
        text = agent_text if keys == AGENT_KEY else keys
        turn_id = await session.on_text(text, speak=session.speak)
        if turn_id is not None:
            await session.send_json({"type": "transcript", "turn_id": turn_id, "text": text,
                                     "source": "dtmf"})

    def _expired(self) -> None:
        self.timer = None
        self.entering = asyncio.get_running_loop().create_task(self._enter_reporting())

    async def _enter_reporting(self) -> None:
        """:meth:`enter` at the timeout, with no caller frame to answer: errors go to the caller as events."""
        try:
            await self.enter()
        except ProtocolError as exc:
            await self.session.send_error(exc.code, str(exc))
        except Exception as exc:  # the broker is unreachable: the keys are lost, the call goes on
            log.warning("session %s: keys not entered: %s: %s", self.session.session_id, type(exc).__name__,
                        exc)

    def _stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def close(self) -> None:
        """Drop the keys not entered (the call ended)."""
        self.keys = ""
        self._stop_timer()
