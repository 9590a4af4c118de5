"""A replayed session's conversation: whole replies, and the history production's turns were answered in.

The generation stage answers a turn from the session's conversation so far (its history, a
faust table in production).  A replay runs it outside its worker, so the history is a
:class:`ProductionHistory`: the candidate's own entries (its dialogue state: open booking, misses,
hand-off), each assistant line replaced by what production said in that turn, as the caller
heard it (:func:`heard`).  Every turn is answered after the conversation the caller actually
had, so a difference in one reply is that reply's own and does not carry into the next turns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from processors.analytics.io import Read
from processors.archive.reader import archive_root, read_archive
from schemas import ReplyText, TurnRecord
from streams.settings import Settings
from streams.topics import REPLIES, TURNS

LATE_S = 300.0
"""Seconds after a replay's range in which production outputs of its inputs are still looked for."""

Turn = tuple[str, str]
"""``(session_id, turn_id)``."""


@dataclass
class Reply:
    """The whole reply of one turn: its sentences joined in index order, and the sources they cite."""

    text: str = ""
    sources: list[str] = field(default_factory=list)


def whole_replies(reads: Iterable[Read]) -> dict[Turn, Reply]:
    """Each turn's reply from its :class:`ReplyText` sentences (empty ones, the end marker, skipped)."""
    sentences: dict[Turn, dict[int, ReplyText]] = defaultdict(dict)
    for read in reads:
        if isinstance(read.record, ReplyText):
            sentences[read.record.session_id, read.record.turn_id][read.record.index] = read.record
    replies = {}
    for key, by_index in sentences.items():
        said = [by_index[i] for i in sorted(by_index)]
        replies[key] = Reply(" ".join(s.text for s in said if s.text),
                             list(dict.fromkeys(src for s in said for src in s.sources)))
    return replies


def heard(settings: Settings, start: float, end: float, sessions: list[str] | None) -> dict[Turn, str]:
    """What production said in each turn of ``[start, end + LATE_S)`` (epoch s), as the caller heard it.

    The archived replies joined (:func:`whole_replies`), and for a turn the caller barged in on,
    the heard part (``heard_text`` of its :class:`TurnRecord` on ``voxbus.turns``), as production's
    history keeps it.
    """
    root = archive_root(settings)
    until = end + LATE_S
    replies = read_archive(root, [REPLIES.name], start=start, end=until, sessions=sessions, audio=False)
    said = {key: reply.text for key, reply in whole_replies(replies).items()}
    for read in read_archive(root, [TURNS.name], start=start, end=until, sessions=sessions):
        if isinstance(read.record, TurnRecord) and read.record.interrupted:
            said[read.record.session_id, read.record.turn_id] = read.record.heard_text
    return said


class ProductionHistory(dict):
    """Session id -> history entries, read back with production's assistant lines (the module docstring).

    A mapping the generation stage uses in place of its faust table
    (``GenerationStage.use_history``): a new session reads as an empty history; an entry of a
    turn production answered reads with ``assistant`` set to what production said then.
    """

    def __init__(self, said: dict[Turn, str]) -> None:
        super().__init__()
        self.said = said

    def __missing__(self, session_id: str) -> list[dict[str, Any]]:
        return []

    def __getitem__(self, session_id: str) -> list[dict[str, Any]]:
        entries = [dict(entry) for entry in super().__getitem__(session_id)]
        for entry in entries:
            said = self.said.get((session_id, entry.get("turn_id", "")))
            if said is not None:
                entry["assistant"] = said
        return entries
