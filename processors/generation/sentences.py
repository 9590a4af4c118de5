"""Sentence aggregation of a token stream, so each sentence can be spoken while the next is generated."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
_CLAUSE = re.compile(r"(?<=[,;:])\s+(?=\S)")
MIN_SENTENCE_CHARS = 12
"""Shorter candidate sentences ("Dr.", "No.") wait for the next boundary."""
MIN_FIRST_CLAUSE_CHARS = 30
"""A reply's first clause (up to a comma, semicolon or colon) of at least this many characters
(about 1.5-2 s of speech) is released on its own, so synthesis of the reply starts on less
text: Piper takes ~0.1 s per second of speech here, and the caller hears nothing until the
first unit is synthesized.  Later units are whole sentences (better prosody), synthesized
while the first plays."""


def clean(text: str) -> str:
    """Strip list markers and Markdown a speech engine would read aloud."""
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", text)
    return re.sub(r"[*_`#]+", "", text).strip()


class SentenceAggregator:
    """Accumulate streamed text and release complete sentences.

    A sentence is complete when a terminator (``.!?``) is followed by whitespace and
    more text, i.e. at the start of the next sentence, as Pipecat's and LiveKit's
    sentence aggregators do.  Before anything has been released, a long enough first
    clause is released too (:data:`MIN_FIRST_CLAUSE_CHARS`), unless ``first_clause`` is False.
    """

    def __init__(self, first_clause: bool = True) -> None:
        self.buffer = ""
        self.first_clause = first_clause

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the sentences it completed (cleaned, non-empty)."""
        self.buffer += delta
        out: list[str] = []
        start = 0
        if self.first_clause:
            for match in _CLAUSE.finditer(self.buffer):
                candidate = self.buffer[:match.start()].strip()
                if len(candidate) >= MIN_FIRST_CLAUSE_CHARS and not _BOUNDARY.search(candidate):
                    out.append(candidate)
                    start = match.end()
                    break
        for match in _BOUNDARY.finditer(self.buffer, start):
            candidate = self.buffer[start:match.start()].strip()
            if len(candidate) >= MIN_SENTENCE_CHARS:
                out.append(candidate)
                start = match.end()
        self.buffer = self.buffer[start:]
        if out:
            self.first_clause = False
        return [s for s in map(clean, out) if s]

    def flush(self) -> str:
        """Return what is left at the end of the stream (cleaned, may be empty)."""
        rest, self.buffer = clean(self.buffer), ""
        return rest


def speech_units(text: str) -> list[str]:
    """Split a whole reply into the units :class:`SentenceAggregator` would release (non-empty)."""
    aggregator = SentenceAggregator()
    units = aggregator.push(text)
    rest = aggregator.flush()
    return [*units, rest] if rest else units
