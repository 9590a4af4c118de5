"""Continuations: a caller who resumes before hearing the reply is still on the same turn.

Callers hesitate: "I want to change... [0.8 s] ...my plan to the family one".  Once a
pause has ended a turn, speech that resumes within ``window`` samples of the end of that
turn's speech continues it, unless the caller had time to hear the reply and answer it:
speech starting more than ``reaction`` samples after the reply began to reach the caller
(the ingress's ``SessionControl(action="replied")``, ordered with the caller's audio)
answers the reply.  Speech starting sooner was planned before the reply was heard: a
spoken response takes at least about 600 ms to plan (Levinson & Torreira 2015, "Timing in
turn-taking and its implications for processing models of language", Front. Psychol. 6:731),
and the caller hears the reply a network round trip after the ingress reports it.  The
vad stage then cuts one utterance from the first piece's start to the end of the new
one, under the new piece's turn id, and cancels the first turn on the bus (its reply,
if it had begun, is stopped by the ingress).  The recognizer decodes the thought in one
piece and one answer is given.

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
        reaction: samples after the reply began to reach the caller within which speech
            starting still continues the turn (0: none, the reply ends the window).
    """

    window: int
    max_samples: int
    reaction: int = 0
    closed: ClosedTurn | None = None
    """The last turn ended, while it may still be continued."""
    continuing: ClosedTurn | None = None
    """The closed turn the speech in progress continues, once it started within the window."""
    replied_at: int | None = None
    """Session sample at which the closed turn's reply began to reach the caller (None: not yet)."""

    def close(self, turn: ClosedTurn | None) -> None:
        """A turn ended (its utterance was sent): speech may continue it from now on.

        Args:
            turn: the ended turn, or None for one that may not be continued (forced).
        """
        self.closed = turn if self.window else None
        self.continuing = None
        self.replied_at = None

    def replied(self, turn_id: str, sample: int) -> None:
        """The reply to ``turn_id`` began to reach the caller when the caller's audio was at ``sample``.

        Speech starting more than :attr:`reaction` samples later answers the reply.
        """
        if self.closed is not None and self.closed.turn_id == turn_id and self.continuing is None:
            if self.replied_at is None:
                self.replied_at = sample
            if not self.reaction:
                self.closed = None

    def open_at(self, sample: int) -> bool:
        """Whether speech starting at ``sample`` would continue the closed turn."""
        if self.closed is None or sample - self.closed.end > self.window:
            return False
        return self.replied_at is None or sample - self.replied_at <= self.reaction

    def speech_start(self, sample: int) -> None:
        """Speech started at ``sample``: it continues the closed turn if the turn is still open then."""
        if self.open_at(sample):
            self.continuing = self.closed
        else:
            self.closed = None

    def blip(self) -> None:
        """The speech in progress was too short to be a turn: the closed turn stays as it was."""
        self.continuing = None

    def expire(self, sample: int) -> None:
        """Nobody speaks at ``sample``: forget a closed turn that speech could no longer continue."""
        if self.continuing is None and not self.open_at(sample):
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
        self.replied_at = None
