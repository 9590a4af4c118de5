"""Connection epochs ordered by the bus, not by clocks.

Each connection of a session is an epoch (``AudioChunk.epoch``, ``SessionControl.epoch``):
the vad stage resets a session on a newer epoch and drops records of an older one
(:mod:`processors.vad.stage`), and turn ids carry it.  A reconnection must therefore get
an epoch greater than every earlier connection of the session, on whichever replica it
lands, whatever that replica's clock says.

The epochs are a per-session Lamport clock kept on ``voxbus.sessions``: every admission
writes a :class:`~schemas.sessions.SessionOwner` claim, keyed by session id (so all claims
of a session are on one partition, in the order the broker took them), carrying a
*proposed* epoch.  Every replica folds the claims in partition order::

    epoch(claim) = max(claim.epoch, epoch(previous claim of the session) + 1)

and the replica that wrote a claim uses the epoch folded at its own record, once it has
read it back.  By then it has folded every earlier claim of the session, so the epoch is
strictly greater than theirs: the order is the log's, and two replicas admitting the same
session at once still get distinct epochs.  The proposal is ``max(wall-clock ms, the last
epoch folded + 1)``: the clock only sets a floor (epochs stay near wall-clock ms, as
version-2 records had them, and stay increasing if the topic is ever emptied); a replica
whose clock is behind still proposes past the last epoch it has read, and the fold
corrects any proposal that is not.  The epoch a caller got, not the clock, decides.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_RESOLVED = 4096
"""Most claim positions whose folded epoch is remembered (a claim is read back within seconds)."""

Position = tuple[int, int]
"""(partition, offset) of a claim on ``voxbus.sessions``."""


class EpochClock:
    """The per-session epochs folded from the claims on ``voxbus.sessions``."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        """Session id -> epoch of its latest claim folded."""
        self.resolved: OrderedDict[Position, int] = OrderedDict()
        """Claim position -> its folded epoch (the latest :data:`MAX_RESOLVED`)."""

    def propose(self, session_id: str, now: float) -> int:
        """The epoch to propose in a new claim of ``session_id``.

        Args:
            session_id: the session.
            now: this replica's wall clock (epoch s): a floor only.

        Returns:
            ``max(now in ms, last epoch folded + 1)``.
        """
        return max(int(now * 1000), self.last.get(session_id, 0) + 1)

    def fold(self, session_id: str, proposed: int, position: Position) -> int:
        """Fold the next claim of ``session_id`` (in partition order) and return its epoch.

        Args:
            session_id: the session claimed.
            proposed: the epoch the claim proposed (0 in claims written before epochs were).
            position: where the claim is on the topic.

        Returns:
            ``max(proposed, previous epoch + 1)``.
        """
        epoch = max(proposed, self.last.get(session_id, 0) + 1)
        self.last[session_id] = epoch
        self.resolved[position] = epoch
        while len(self.resolved) > MAX_RESOLVED:
            self.resolved.popitem(last=False)
        return epoch

    def at(self, position: Position) -> int | None:
        """The epoch folded at ``position``; None if not read yet (or long forgotten)."""
        return self.resolved.get(position)

    def forget(self, session_id: str) -> None:
        """Drop a session whose binding expired (its connections are long over)."""
        self.last.pop(session_id, None)
