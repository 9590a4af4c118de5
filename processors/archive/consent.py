"""Which sessions may keep their audio: ``record: false`` in a session's start (or config) message.

A caller (or a Twilio parameter, through the ingress) can ask that a call not be recorded; the
ingress writes the wish into the ``config`` of the session's :class:`schemas.SessionControl` on
``voxbus.audio``.  The archive then keeps that session's text records but no audio (no
:class:`schemas.AudioChunk`, and no PCM in its utterances or synthesized replies), and
:mod:`processors.archive.recording` refuses to make a recording of it.
"""

from __future__ import annotations

from collections import OrderedDict

from schemas import Record, SessionControl

MAX_SESSIONS = 100_000
"""Sessions whose wish is remembered (the oldest are forgotten first): far more than run within
``VOXBUS_MAX_SESSION_S`` (1 h) on one deployment."""


def wants_recording(control: SessionControl) -> bool | None:
    """The ``record`` wish of ``control``: False, True, or None when it states none.

    False for ``record: false`` (the bool, or the text ``"false"``/``"0"``/``"no"``/``"off"`` a
    Twilio parameter gives), True for any other value.
    """
    value = control.config.get("record")
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no", "off")
    return bool(value)


class Consent:
    """The recording wishes seen so far, by session id (sessions never seen are recorded)."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self.refused: OrderedDict[str, None] = OrderedDict()
        self.seen: OrderedDict[str, None] = OrderedDict()
        """Sessions with a control record read (their start, where a wish is, came before it)."""

    def observe(self, record: Record | None) -> None:
        """Take note of ``record`` if it is a :class:`schemas.SessionControl` (and of the wish it states)."""
        if not isinstance(record, SessionControl):
            return
        _remember(self.seen, record.session_id, self.limit)
        wish = wants_recording(record)
        if wish is False:
            _remember(self.refused, record.session_id, self.limit)
        elif wish is True:
            self.refused.pop(record.session_id, None)

    def recorded(self, session_id: str | None) -> bool:
        """Whether ``session_id``'s audio may be kept."""
        return session_id not in self.refused

    def known(self, session_id: str | None) -> bool:
        """Whether a control record of ``session_id`` was read (so its wish, if any, is known)."""
        return session_id in self.seen


def _remember(sessions: OrderedDict[str, None], session_id: str, limit: int) -> None:
    """Put ``session_id`` last in ``sessions``, forgetting the oldest beyond ``limit``."""
    sessions[session_id] = None
    sessions.move_to_end(session_id)
    while len(sessions) > limit:
        sessions.popitem(last=False)
