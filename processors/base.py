"""The interface every stream processor implements.

A stage consumes one topic, decodes each record to one of the types it accepts and
yields :class:`Emit` outputs.  It knows its input and output record types and the
topics they go to, and nothing of the code of its neighbours.  The Kafka plumbing,
dead-lettering, metrics and liveness are the runtime's (:mod:`processors.runtime`).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from schemas import Record, TurnCancel
from streams.topics import TopicSpec

if TYPE_CHECKING:
    import faust

    from streams.settings import Settings


@dataclass(frozen=True)
class Emit:
    """One output record and the topic it goes to.

    Records for ``voxbus.egress`` go to the partition named by their
    ``egress_partition``; all others are keyed by ``session_id``.
    """

    topic: TopicSpec
    record: Record


class Stage(abc.ABC):
    """A stream processor: its input topic(s), one consumer group (``voxbus-<name>``)."""

    name: ClassVar[str]
    """Stage name; the consumer group is ``voxbus-<name>``."""
    input: ClassVar[TopicSpec]
    """The topic consumed."""
    accepts: ClassVar[tuple[type[Record], ...]]
    """Record types accepted from :attr:`input`; anything else is dead-lettered."""

    extra_inputs: ClassVar[tuple[TopicSpec, ...]] = ()
    """More topics whose records go to :meth:`handle` too (one consumer group for all inputs),
    e.g. the generation stage's tool results; their types must be in :attr:`accepts`."""
    control: ClassVar[bool] = False
    """True if the stage also consumes ``voxbus.control`` (turn cancellations)."""
    batch_setting: ClassVar[str] = ""
    """The :class:`Settings` field with the most records handed to :meth:`handle_batch`
    at once; empty: one record at a time."""
    concurrency_setting: ClassVar[str] = ""
    """The :class:`Settings` field with the most input records handled at once, each
    session's in order (:class:`processors.lanes.SessionLanes`); empty: one at a time."""
    holds_input: ClassVar[bool] = False
    """True if the stage keeps state built from input records that only reading them again could
    rebuild (the vad stage's open utterance): the runtime then holds the partition's committed
    offset at the first record :meth:`needs` still wants (:mod:`processors.holds`)."""
    caller_path: ClassVar[bool] = True
    """True if a caller waits on the stage's outputs: a record it fails on is then told to the
    caller (:class:`schemas.ErrorEvent` on ``voxbus.egress``). False for a worker no caller
    hears (agent assist): its failures are dead-lettered only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def load(self) -> None:  # noqa: B027 - optional hook
        """Load models (blocking). Called once before the worker joins its group."""

    def preload(self) -> None:
        """What a warm standby loads before it waits (:func:`streams.standby.take_over`): :meth:`load`.

        A stage that holds something one process at a time may hold (an embedded store) loads
        the rest here and opens that in :meth:`open_exclusive`, at the take-over.
        """
        self.load()

    def open_exclusive(self) -> None:  # noqa: B027 - optional hook
        """Open what :meth:`preload` left out; a warm standby's, when it takes over from a dead worker."""

    def bind(self, app: faust.App) -> None:  # noqa: B027 - optional hook
        """Declare faust tables or timers on ``app``. Called once, before start."""

    @abc.abstractmethod
    def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Process one input record, yielding outputs as soon as each is ready.

        Raises:
            Exception: any error; the runtime dead-letters the input, tells the
                caller with an :class:`schemas.ErrorEvent` (if :attr:`caller_path`), and
                carries on.
        """

    async def handle_batch(self, records: list[Record]) -> AsyncIterator[Emit]:
        """Process records that were already waiting together (stages with :attr:`batch_setting`).

        Raises:
            Exception: any error; the runtime then retries the records one by one.
        """
        for record in records:
            async for emit in self.handle(record):
                yield emit

    def needs(self, record: Record) -> bool:
        """True while the stage still keeps state from ``record`` (stages with :attr:`holds_input`).

        Asked after the outputs of every record handled so far are produced; once True for
        a record of a session, it must be True for that session's later records too.
        """
        return False

    def produced(self, emits: list[Emit]) -> None:  # noqa: B027 - optional hook
        """Called once ``emits``, the outputs of one record or batch, are all acknowledged by the broker."""

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Drop work for a cancelled turn; return outputs, if any (stages with :attr:`control`)."""
        return []
