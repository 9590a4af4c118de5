"""The analytics processor: turn records in, windowed analytics upserts out.

It runs as its own faust App and consumer group (``voxbus-analytics``), beside the
pipeline stages rather than among them (it is not on a caller's path; ``/healthz`` does
not wait for it).  Two agents for the turns, both through the stage runtime (:class:`StageRunner`:
dead-lettering, metrics, heartbeats come from there):

1. ``route`` reads ``voxbus.turns`` (keyed by session) and re-produces each turn record to
   ``voxbus.analytics.turn-windows`` keyed by the start of its one-minute window, so every
   turn of a window lands in one partition, owned by one worker.
2. ``fold`` reads that topic and folds each turn into faust windowed tables (tumbling
   60 s windows, expiring after ``VOXBUS_ANALYTICS_EXPIRES_S``, changelog-backed), then
   publishes the new value of every window dimension it touched to the analytics topics
   (upserts keyed ``"<window_start>/<dimension>"``: :mod:`schemas.analytics`).

Windows follow the turn's own time (``TurnRecord.ts``), not the time it is processed, so
a replay gives the same windows.  A redelivered turn is recognised (a windowed "seen"
table keyed by session and turn) and not counted twice.

A third agent, ``desk``, reads the agent desk's topics (``voxbus.handoffs``,
and ``voxbus.agent-queue``, whose ``abandon`` is a caller who hung up while waiting), keyed by session:
:func:`processors.analytics.desk.track` follows each session's hand-off round in a table
(``desk_sessions``), and each outcome (:class:`schemas.DeskFact`) goes to the windows topic
like a turn, where ``fold`` counts it per agent and for the team (``voxbus.analytics.agents``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import faust
from prometheus_client import Counter

from processors import metrics
from processors.analytics.desk import DESK, fact_dimensions, fold_fact, to_agent_window, track
from processors.analytics.windows import (
    METRICS,
    WINDOW_S,
    MemoryWindows,
    State,
    dimensions,
    fold,
    to_record,
    window_start,
)
from processors.base import Emit, Stage
from processors.runtime import STAGES, StageRunner, serve_liveness
from schemas import (
    DeskFact,
    Handoff,
    HandoffUpdate,
    QueueEvent,
    Record,
    SessionCaller,
    TurnRecord,
    WindowedRecord,
    encode,
)
from streams.admin import ensure_internal_topics, ensure_topics
from streams.app import make_app
from streams.clients import profile
from streams.settings import Settings, get_settings
from streams.topics import AGENT_QUEUE, ANALYTICS_WINDOWS, EGRESS, HANDOFFS, TURNS, TopicSpec

log = logging.getLogger(__name__)

NAME = "analytics"
"""Stage name: consumer group ``voxbus-analytics``, heartbeats as ``analytics``."""
SEEN = "seen"
"""Name of the table of turns (and sessions) already counted, per window."""
TABLES = (*[metric.name for metric in METRICS], DESK.name, SEEN)
"""Every windowed table of the processor."""
SESSIONS_TABLE = "desk_sessions"
"""Name of the table of the hand-off round each session is in (keyed by session id, not windowed)."""
DESK_RECORDS = (Handoff, HandoffUpdate, SessionCaller, QueueEvent)
"""What the ``desk`` agent accepts from its topics (only hand-offs and queue events count)."""

SKIPPED = Counter(
    "voxbus_analytics_skipped_turns_total",
    "Turns the analytics processor did not count: 'late' (window already expired), "
    "'duplicate' (redelivered).",
    ["reason"],
)


class Windows(Protocol):
    """Windowed state of one table: the value of a key in the tumbling window holding a time."""

    def get(self, key: str, ts: float) -> State: ...  # noqa: D102

    def set(self, key: str, ts: float, value: State) -> None: ...  # noqa: D102


class FaustWindows:
    """A faust windowed table (tumbling :data:`WINDOW_S`) behind the :class:`Windows` interface.

    Its time is the event time passed to :meth:`get`/:meth:`set` (``relative_to`` a
    callable), not the Kafka timestamp.  Must be used inside the agent's stream (faust
    writes the changelog to the partition of the record being processed).
    """

    def __init__(self, app: faust.App, name: str, settings: Settings) -> None:
        self._ts = 0.0
        table = app.Table(
            name, default=dict, partitions=settings.partitions,
            schema=faust.Schema(key_serializer="json", value_serializer="json"),
            help=f"analytics: {name} per {WINDOW_S} s window",
        )
        windowed = table.tumbling(WINDOW_S, expires=settings.analytics_expires_s)
        self.table = windowed.relative_to(self._event_time)

    def _event_time(self, event: Any = None) -> float:
        return self._ts

    def get(self, key: str, ts: float) -> State:
        """The state of ``key`` in the window holding ``ts`` (empty when new)."""
        self._ts = ts
        return dict(self.table[key].value())

    def set(self, key: str, ts: float, value: State) -> None:
        """Store the state of ``key`` in the window holding ``ts`` (and its changelog)."""
        self._ts = ts
        self.table[key] = value


class AnalyticsStage(Stage):
    """Fold turn records into one-minute windows; publish each window update.

    Consumes ``voxbus.turns`` (:meth:`handle` routes it to the windows topic) and
    ``voxbus.analytics.turn-windows`` (:meth:`aggregate` folds it).  Without :meth:`bind`
    the tables are in memory (:class:`MemoryWindows`): what the unit tests use.
    """

    name = NAME
    input = TURNS
    accepts = (TurnRecord,)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.windows: dict[str, Windows] = {name: MemoryWindows() for name in TABLES}
        self.sessions: Any = {}
        """Session id -> its desk state (:func:`processors.analytics.desk.track`); a Table once bound."""
        self.clock = time.time

    def bind(self, app: faust.App) -> None:
        """Declare the tables (changelogs ``voxbus-analytics-<table>-changelog``)."""
        self.windows = {name: FaustWindows(app, name, self.settings) for name in TABLES}
        self.sessions = app.Table(
            SESSIONS_TABLE, default=None, partitions=self.settings.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
            help="analytics: the hand-off round of each session",
        )

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Route a turn to the windows topic (keyed by its window: :class:`AnalyticsRunner`)."""
        assert isinstance(record, TurnRecord)
        yield Emit(ANALYTICS_WINDOWS, record)

    def late(self, ts: float, now: float) -> bool:
        """True when the window of ``ts`` (a turn's or a desk outcome's time) has expired (or is about to).

        faust drops a window ``expires`` seconds after its end, checked every
        ``table_cleanup_interval`` (60 s); a turn for a dropped window would restart its
        counts from zero and publish a wrong upsert, so it is not counted at all.
        """
        margin = 2 * WINDOW_S
        return window_start(ts) + WINDOW_S + self.settings.analytics_expires_s - margin < now

    async def track(self, record: Record) -> AsyncIterator[Emit]:
        """Fold one desk record into its session's round; route each outcome to the windows topic."""
        state, facts = track(self.sessions.get(record.session_id), record)
        for fact in facts:
            yield Emit(ANALYTICS_WINDOWS, fact)
        # stored last: a crash before this point refolds the record (its outcomes are deduplicated)
        if state is None:
            self.sessions.pop(record.session_id, None)
        elif state != self.sessions.get(record.session_id):
            self.sessions[record.session_id] = state

    async def aggregate(self, record: Record) -> AsyncIterator[Emit]:
        """Fold one turn (or desk outcome) into its window; yield the new record of each dimension updated."""
        if isinstance(record, DeskFact):
            async for emit in self.aggregate_fact(record):
                yield emit
            return
        assert isinstance(record, TurnRecord)
        now = self.clock()
        if self.late(record.ts, now):
            SKIPPED.labels("late").inc()
            log.warning("turn %s/%s of %.0f s ago is past the analytics window expiry; not counted",
                        record.session_id, record.turn_id, now - record.ts)
            return
        seen, ts = self.windows[SEEN], record.ts
        turn_key, session_key = f"turn:{record.session_id}/{record.turn_id}", f"session:{record.session_id}"
        if seen.get(turn_key, ts):
            SKIPPED.labels("duplicate").inc()
            log.info("turn %s/%s already counted; skipping redelivery", record.session_id, record.turn_id)
            return
        new_session = not seen.get(session_key, ts)
        start = window_start(ts)
        for metric, dimension in dimensions(record):
            table = self.windows[metric.name]
            state = fold(metric, dimension, table.get(dimension, ts), record, new_session=new_session)
            table.set(dimension, ts, state)
            yield Emit(metric.topic, to_record(metric, dimension, start, state, now))
        # marked last: a crash before this point recounts the turn (at-least-once), never loses it
        if new_session:
            seen.set(session_key, ts, {"n": 1})
        seen.set(turn_key, ts, {"n": 1})


    async def aggregate_fact(self, fact: DeskFact) -> AsyncIterator[Emit]:
        """Fold one desk outcome into its window, per agent and for the team (once per round and kind)."""
        now = self.clock()
        if self.late(fact.ts, now):
            SKIPPED.labels("late").inc()
            log.warning("desk outcome %s of %s of %.0f s ago is past the window expiry; not counted",
                        fact.kind, fact.session_id, now - fact.ts)
            return
        seen, ts, key = self.windows[SEEN], fact.ts, f"desk:{fact.session_id}/{fact.handoff_turn}/{fact.kind}"
        if seen.get(key, ts):
            SKIPPED.labels("duplicate").inc()
            return
        table, start = self.windows[DESK.name], window_start(ts)
        for dimension in fact_dimensions(fact):
            state = fold_fact(table.get(dimension, ts), fact)
            table.set(dimension, ts, state)
            yield Emit(DESK.topic, to_agent_window(dimension, start, state, now))
        seen.set(key, ts, {"n": 1})


def window_key(record: TurnRecord | DeskFact) -> bytes:
    """Kafka key of a turn or desk outcome on ``voxbus.analytics.turn-windows``: its window start (s)."""
    return str(int(window_start(record.ts))).encode()


class AnalyticsRunner(StageRunner):
    """The stage runtime, keyed for analytics, and never talking to callers.

    Turns go to the windows topic keyed by window; analytics records are keyed by
    :attr:`schemas.WindowedRecord.key`.  A failure on a turn is dead-lettered as in every
    stage, but no ``ErrorEvent`` goes to the caller: the call is over, and analytics is
    not on its path.
    """

    async def produce(self, topic: TopicSpec, record: Record) -> None:
        """Produce ``record`` to ``topic`` and wait for the broker's acknowledgement."""
        if topic is EGRESS:
            return
        if topic is ANALYTICS_WINDOWS and isinstance(record, TurnRecord | DeskFact):
            key = window_key(record)
        elif isinstance(record, WindowedRecord):
            key = record.key.encode()
        else:  # dead letters and heartbeats
            await super().produce(topic, record)
            return
        await self.app.producer.send_and_wait(topic.name, key=key, value=encode(record), partition=None,
                                              timestamp=None, headers=None)
        metrics.EMITTED.labels(self.stage.name, topic.name).inc()

    async def on_window(self, message: Any) -> None:
        """Fold one message of the windows topic; never raises (bad records are dead-lettered)."""
        assert isinstance(self.stage, AnalyticsStage)
        await self._process(message, (TurnRecord, DeskFact), self.stage.aggregate)

    async def on_desk(self, message: Any) -> None:
        """Fold one message of the desk's topics; never raises (bad records are dead-lettered)."""
        assert isinstance(self.stage, AnalyticsStage)
        await self._process(message, DESK_RECORDS, self.stage.track)


def metrics_port(settings: Settings) -> int:
    """Port of the analytics worker's ``/metrics``: the setting, or the one after the stages'."""
    return settings.analytics_metrics_port or settings.metrics_base_port + len(STAGES)


def build(settings: Settings | None = None) -> tuple[faust.App, AnalyticsRunner]:
    """Build the analytics faust App: its two agents, tables, heartbeat and ``/metrics``."""
    settings = settings or get_settings()
    stage = AnalyticsStage(settings)
    app = make_app(NAME, settings, web_port=metrics_port(settings))
    runner = AnalyticsRunner(stage, app)
    stage.bind(app)
    turns = app.topic(TURNS.name, value_serializer="raw", key_serializer="raw")
    windows = app.topic(ANALYTICS_WINDOWS.name, value_serializer="raw", key_serializer="raw")

    @app.agent(turns, name=f"voxbus-{NAME}.route")
    async def route(stream: faust.Stream) -> None:
        async for event in stream.events():
            await runner.on_message(event.message)

    desk = app.topic(HANDOFFS.name, AGENT_QUEUE.name, value_serializer="raw", key_serializer="raw")

    @app.agent(desk, name=f"voxbus-{NAME}.desk")
    async def follow_desk(stream: faust.Stream) -> None:
        async for event in stream.events():
            await runner.on_desk(event.message)

    @app.agent(windows, name=f"voxbus-{NAME}.fold")
    async def fold_windows(stream: faust.Stream) -> None:
        async for event in stream.events():
            await runner.on_window(event.message)

    serve_liveness(app, runner)
    return app, runner


def run_worker() -> None:
    """Run the analytics worker until SIGINT/SIGTERM (creating missing topics first).

    Its consumer waits at least ``VOXBUS_ANALYTICS_FETCH_MAX_WAIT_MS`` per fetch, not the
    pipeline's 40 ms on Tansu: a window update a fraction of a second later is fine, an
    idle worker polling 16 partitions every 40 ms is not.
    """
    # a longer fetch wait for this worker only (streams.transport reads it from the settings)
    settings = get_settings()
    wait = max(profile(settings).fetch_max_wait_ms, settings.analytics_fetch_max_wait_ms)
    os.environ["VOXBUS_FETCH_MAX_WAIT_MS"] = str(wait)
    get_settings.cache_clear()
    settings = get_settings()
    app, _runner = build(settings)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_topics(settings))
        loop.run_until_complete(ensure_internal_topics(app, settings))
    finally:
        loop.close()
    metrics.READY.labels(NAME).set(1)
    log.info("analytics worker: metrics on :%d", metrics_port(settings))
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
