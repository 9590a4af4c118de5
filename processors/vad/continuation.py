"""Continuations: a caller who resumes before hearing the reply is still on the same turn.

Callers hesitate: "I want to change... [0.8 s] ...my plan to the family one".  Once a
pause has ended a turn, speech that resumes within ``window`` samples of the end of that
turn's speech, before any of its reply has reached the caller (the ingress's
``SessionControl(action="replied")``, ordered with the caller's audio), continues it:
the vad stage then cuts one utterance from the first piece's start to the end of the
new one, under the new piece's turn id, and cancels the first turn on the bus.  The
recognizer decodes the thought in one piece and one answer is given.

This module holds that decision for one session; it knows sample positions only (16 kHz
session samples, as the endpointer's events), not audio.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClosedTurn:
    """A turn that ended and may still be continued.

    Attributes:
        turn_id: the turn's id.
        start: first sample of its utterance (padding included).
        end: end of its speech (no padding).
    """

    turn_id: str
    start: int
    end: int


@dataclass
class Continuation:
    """Per-session continuation state.

    Args:
        window: samples of silence after a turn's speech within which resumed speech
            continues it (0: never).
        max_samples: longest utterance (samples, padding included) a continuation may
            make; a longer one is not merged.
    """

    window: int
    max_samples: int
    closed: ClosedTurn | None = None
    """The last turn ended, while it may still be continued."""
    continuing: ClosedTurn | None = None
    """The closed turn the speech in progress continues, once it started within the window."""

    def close(self, turn: ClosedTurn | None) -> None:
        """A turn ended (its utterance was sent): speech may continue it from now on.

        Args:
            turn: the ended turn, or None for one that may not be continued (forced).
        """
        self.closed = turn if self.window else None
        self.continuing = None

    def replied(self, turn_id: str) -> None:
        """The reply to ``turn_id`` began to reach the caller: that turn can no longer be continued."""
        if self.closed is not None and self.closed.turn_id == turn_id and self.continuing is None:
            self.closed = None

    def speech_start(self, sample: int) -> None:
        """Speech started at ``sample``: it continues the closed turn if within the window."""
        if self.closed is not None and sample - self.closed.end <= self.window:
            self.continuing = self.closed
        else:
            self.closed = None

    def blip(self) -> None:
        """The speech in progress was too short to be a turn: the closed turn stays as it was."""
        self.continuing = None

    def expire(self, sample: int) -> None:
        """Nobody speaks at ``sample``: forget a closed turn whose window has passed."""
        if self.closed is not None and self.continuing is None and sample - self.closed.end > self.window:
            self.closed = None

    def merged_start(self, stop: int) -> ClosedTurn | None:
        """The turn an utterance ending at ``stop`` continues (None: it stands alone).

        Args:
            stop: the utterance's last sample (exclusive, padding included).
        """
        turn = self.continuing
        if turn is None or stop - turn.start > self.max_samples:
            return None
        return turn

    def keep_from(self) -> int | None:
        """First sample of audio to keep for a possible continuation (None: none needed)."""
        return self.closed.start if self.closed is not None else None

    def reset(self) -> None:
        """Forget everything (a gap in the audio, a new connection)."""
        self.closed = self.continuing = None
