"""Sentence aggregation of a token stream, so each sentence can be spoken while the next is generated."""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")
MIN_SENTENCE_CHARS = 12
"""Shorter candidate sentences ("Dr.", "No.") wait for the next boundary."""


def clean(text: str) -> str:
    """Strip list markers and Markdown a speech engine would read aloud."""
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", text)
    return re.sub(r"[*_`#]+", "", text).strip()


class SentenceAggregator:
    """Accumulate streamed text and release complete sentences.

    A sentence is complete when a terminator (``.!?``) is followed by whitespace and
    more text, i.e. at the start of the next sentence, as Pipecat's and LiveKit's
    sentence aggregators do.
    """

    def __init__(self) -> None:
        self.buffer = ""

    def push(self, delta: str) -> list[str]:
        """Add streamed text; return the sentences it completed (cleaned, non-empty)."""
        self.buffer += delta
        out: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self.buffer):
            candidate = self.buffer[start:match.start()].strip()
            if len(candidate) >= MIN_SENTENCE_CHARS:
                out.append(candidate)
                start = match.end()
        self.buffer = self.buffer[start:]
        return [s for s in map(clean, out) if s]

    def flush(self) -> str:
        """Return what is left at the end of the stream (cleaned, may be empty)."""
        rest, self.buffer = clean(self.buffer), ""
        return rest
