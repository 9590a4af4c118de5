"""Run a :class:`processors.base.Stage` as a faust worker: its own consumer group.

For each input record the runtime decodes and validates it, hands it to the stage,
produces every output *before* moving on (faust commits the input offset only after
that, so delivery is at-least-once), and never lets one bad record stop the worker:

* undecodable or invalid records, and records over :data:`schemas.base.MAX_RECORD_BYTES`,
  go to ``voxbus.dead-letter`` with the reason (and at most
  :data:`schemas.events.DEAD_LETTER_PAYLOAD_BYTES` of the record, so the dead letter itself
  can always be produced);
* a stage exception, or an output the producer refuses (one over the record bound or the
  broker's ``MessageSizeTooLargeError``), dead-letters the input and sends the caller an
  ``ErrorEvent``; the other records of its batch are still processed.

A stage that keeps state across records (:attr:`processors.base.Stage.holds_input`: the vad
stage's open utterance) has its commits held back (:mod:`processors.holds`): a partition's
committed offset never passes the first record the stage still needs, so the worker that
reads the partition next (restarted, or after a rebalance) reads those records again.

Each worker also publishes a :class:`schemas.StageHeartbeat` every
:data:`HEARTBEAT_INTERVAL_S` (the ingress's ``/healthz`` reads them) and serves
Prometheus metrics on its faust web port at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import socket
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP
from prometheus_client import REGISTRY

from processors import metrics, priority
from processors.base import Emit, Stage
from processors.holds import InputHolds
from processors.lanes import SessionLanes
from schemas import (
    DEAD_LETTER_PAYLOAD_BYTES,
    MAX_TEXT_CHARS,
    DeadLetter,
    ErrorEvent,
    Record,
    SchemaError,
    SessionRecord,
    StageHeartbeat,
    TurnCancel,
    decode,
    encode,
)
from streams.admin import ensure_internal_topics
from streams.app import make_app
from streams.settings import Settings, get_settings
from streams.standby import take_over
from streams.topics import CONTROL, DEAD_LETTER, EGRESS, HEARTBEATS, TopicSpec
from streams.transport import hold_commits

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
"""Seconds between two heartbeats of a worker."""
FAUST_METRICS_PREFIX = "faust"
"""Prefix of faust's sensor metrics (``faust_messages_received`` …), as deploy/grafana expects."""

STAGES: dict[str, str] = {
    "vad": "processors.vad.stage:VadStage",
    "asr": "processors.asr.stage:AsrStage",
    "intent": "processors.intent.stage:IntentStage",
    "retrieval": "processors.retrieval.stage:RetrievalStage",
    "generation": "processors.generation.stage:GenerationStage",
    "tts": "processors.tts.stage:TtsStage",
    "workflow": "processors.workflow.stage:WorkflowStage",
}
"""Stage name -> ``module:class``: the pipeline in order, then the tool executor (metrics ports follow
this order: ``VOXBUS_METRICS_BASE_PORT`` + index)."""


def stage_class(name: str) -> type[Stage]:
    """Import and return the stage class called ``name``.

    Raises:
        KeyError: no such stage.
    """
    module, _, attr = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


class StageRunner:
    """Glue between a faust App and a :class:`Stage`.

    Args:
        stage: the stage, models not yet loaded.
        app: the faust App whose consumer group runs it.
    """

    def __init__(self, stage: Stage, app: faust.App) -> None:
        self.stage = stage
        self.app = app
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.holds = InputHolds() if stage.holds_input else None

    def settle(self, handled: list[tuple[Any, Record]], emits: list[Emit]) -> None:
        """After the outputs ``emits`` of the ``handled`` (message, record) pairs are all produced.

        Tells the stage (:meth:`Stage.produced`) and, if it holds its input, tracks the records
        and releases those it no longer needs: the holds then match what the broker has.
        """
        self.stage.produced(emits)
        if self.holds is None:
            return
        for message, record in handled:
            key = record.session_id if isinstance(record, SessionRecord) else ""
            self.holds.track(key, TP(message.topic, message.partition), message.offset, record)
        self.holds.release(self.stage.needs)

    async def produce(self, topic: TopicSpec, record: Record) -> None:
        """Produce ``record`` to ``topic`` and wait for the broker's acknowledgement."""
        key = record.session_id.encode() if isinstance(record, SessionRecord) else None
        partition = record.egress_partition if topic is EGRESS and isinstance(record, SessionRecord) else None
        await self.app.producer.send_and_wait(
            topic.name, key=key, value=encode(record), partition=partition, timestamp=None, headers=None
        )
        metrics.EMITTED.labels(self.stage.name, topic.name).inc()

    async def dead_letter(self, message: Any, reason: str, kind: str) -> None:
        """Send the raw input ``message`` to the dead-letter topic with ``reason``.

        The reason is cut to :data:`schemas.base.MAX_TEXT_CHARS` characters and the payload to
        its first :data:`schemas.events.DEAD_LETTER_PAYLOAD_BYTES`, so a dead letter always fits
        in a produce request, whatever the size of the record it carries.
        """
        key = message.key.decode(errors="replace") if isinstance(message.key, bytes) else ""
        log.warning("dead-letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, reason)
        value = bytes(message.value or b"")
        record = DeadLetter(
            stage=self.stage.name,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            reason=reason[:MAX_TEXT_CHARS],
            payload=value[:DEAD_LETTER_PAYLOAD_BYTES],
            payload_size=len(value),
            session_id=key[:64],
            ts=time.time(),
        )
        await self.produce(DEAD_LETTER, record)
        metrics.DEAD_LETTERS.labels(self.stage.name, kind).inc()
        metrics.RECORDS.labels(self.stage.name, kind).inc()

    async def on_message(self, message: Any) -> None:
        """Process one message of the stage's input topic end to end; never raises."""
        if message.timestamp:
            metrics.HOP.labels(self.stage.name).observe(max(0.0, time.time() - message.timestamp))
        done = await self._process(message, self.stage.accepts, self.stage.handle)
        if done is not None:
            self.settle([done[:2]], done[2])

    async def on_batch(self, messages: list[Any]) -> None:
        """Process messages that arrived together; never raises.

        Undecodable ones are dead-lettered; the rest go to the stage as one batch. If
        the batch fails, or producing one of its outputs does (an output too large for a
        produce request), each record is retried alone so one bad record is isolated: it is
        dead-lettered, and the records after it are processed (outputs produced before the
        failure may be produced again: at-least-once, absorbed downstream).
        """
        if len(messages) == 1:
            await self.on_message(messages[0])
            return
        good: list[tuple[Any, Record]] = []
        for message in messages:
            try:
                good.append((message, decode(message.value, *self.stage.accepts)))
            except SchemaError as exc:
                await self.dead_letter(message, f"schema: {exc}", "schema")
        started = time.perf_counter()
        try:
            emits = await self.produce_all(self.stage.handle_batch([record for _, record in good]))
        except Exception:
            log.exception("stage %s failed on a batch of %d; retrying one by one", self.stage.name, len(good))
            for message, _ in good:
                await self.on_message(message)
            return
        self.settle(good, emits)
        metrics.PROCESSING.labels(self.stage.name).observe(time.perf_counter() - started)
        metrics.BATCH_SIZE.labels(self.stage.name).observe(len(good))
        metrics.RECORDS.labels(self.stage.name, "ok").inc(len(good))

    async def on_control(self, message: Any) -> None:
        """Process one turn cancellation from ``voxbus.control``; never raises."""
        async def cancel(record: TurnCancel) -> AsyncIterator[Emit]:
            for emit in await self.stage.on_cancel(record):
                yield emit

        await self._process(message, (TurnCancel,), cancel)

    async def _process(self, message: Any, accepts: tuple[type[Record], ...],
                       handler: Any) -> tuple[Any, Record, list[Emit]] | None:
        """Decode, handle and produce one message; never raises.

        Returns:
            (the message, its record, the outputs produced), or None if it was dead-lettered.
        """
        try:
            record = decode(message.value, *accepts)
        except SchemaError as exc:
            await self.dead_letter(message, f"schema: {exc}", "schema")
            return None
        started = time.perf_counter()
        try:
            emits = await self.produce_all(handler(record))
        except Exception as exc:  # a stage bug or a model failure must not stop the worker
            log.exception("stage %s failed on %s", self.stage.name, type(record).__name__)
            await self.dead_letter(message, f"processing: {type(exc).__name__}: {exc}", "processing")
            if self.stage.caller_path and isinstance(record, SessionRecord):
                await self.produce(EGRESS, ErrorEvent(
                    session_id=record.session_id,
                    egress_partition=record.egress_partition,
                    turn_id=getattr(record, "turn_id", ""),
                    stage=self.stage.name,
                    code="stage_error",
                    message=f"the {self.stage.name} stage failed on this turn",
                ))
            return None
        metrics.PROCESSING.labels(self.stage.name).observe(time.perf_counter() - started)
        metrics.RECORDS.labels(self.stage.name, "ok").inc()
        return message, record, emits

    async def produce_all(self, outputs: AsyncGenerator[Emit, None]) -> list[Emit]:
        """Produce each of a handler's outputs as soon as it is yielded; return them all.

        One session's output waits on no other's in the same batch.  ``outputs`` is closed here,
        not when it is collected, so a handler's cleanup (a ``finally``) runs before the next record.

        Raises:
            Exception: what the handler or a produce raised.
        """
        emits: list[Emit] = []
        async with contextlib.aclosing(outputs) as items:
            async for emit in items:
                await self.emit(emit)
                emits.append(emit)
        return emits

    async def emit(self, emit: Emit) -> None:
        """Produce one stage output."""
        await self.produce(emit.topic, emit.record)

    async def heartbeat(self) -> None:
        """Publish this worker's liveness."""
        ready = bool(self.app.consumer.assignment())  # consuming, not just started
        await self.produce(HEARTBEATS, StageHeartbeat(stage=self.stage.name, instance=self.instance,
                                                      ts=time.time(), ready=ready))


def serve_liveness(app: faust.App, runner: StageRunner) -> None:
    """Add a worker's liveness to ``app``: heartbeats and Prometheus metrics.

    The runner's heartbeat goes to ``voxbus.heartbeats`` every :data:`HEARTBEAT_INTERVAL_S`.
    ``/metrics`` on the app's web port is faust's Prometheus sensor
    (``faust.sensors.prometheus``: consumer, producer, commit and rebalance metrics named
    ``faust_*``), served from the default registry, which holds voxbus's stage metrics
    (:mod:`processors.metrics`) too.
    """

    @app.timer(HEARTBEAT_INTERVAL_S)
    async def heartbeat() -> None:
        await runner.heartbeat()

    setup_prometheus_sensors(app, pattern="/metrics", registry=REGISTRY, name_prefix=FAUST_METRICS_PREFIX)


async def run_in_lanes(stream: faust.Stream, runner: StageRunner, limit: int) -> None:
    """Handle ``stream``'s records up to ``limit`` at once, each session's in order.

    Acks are manual: a record is acked when its handling (and every produce) is done,
    and faust commits a partition's offset only up to its lowest unacked record, so a
    crash redelivers every record not finished yet (at-least-once, as sequentially).
    The table writes of a record's task go to its own partition's changelog: the task
    is created while faust's current event is that record.
    """
    lanes = SessionLanes(limit)
    manual = stream.noack()
    async for event in manual.events():
        async def work(event: Any = event) -> None:
            await runner.on_message(event.message)
            await manual.ack(event)

        key = event.message.key.decode(errors="replace") if isinstance(event.message.key, bytes) else ""
        await lanes.submit(key, work)


async def run_in_batches(stream: faust.Stream, runner: StageRunner, limit: int) -> None:
    """Handle ``stream``'s records in batches of what is already delivered, up to ``limit``.

    A batch is the record that woke the agent plus every record queued behind it (one
    fetch from the broker usually arrives at once), so nothing waits for a batch to fill
    and an idle stage never wakes: faust's ``take_events(within=...)`` polls a timer
    every ``within`` seconds even with nothing to read (0.03 cores per idle worker at
    5 ms).  Acks are manual and follow the batch's handling, so a crash redelivers the
    whole unfinished batch (at-least-once).
    """
    manual = stream.noack()
    queue = stream.channel.queue
    batch: list[Any] = []
    async for event in manual.events():
        batch.append(event)
        if len(batch) < limit and not queue.empty():
            continue
        await runner.on_batch([e.message for e in batch])
        for done in batch:
            await manual.ack(done)
        batch = []


def build(name: str, settings: Settings | None = None) -> tuple[faust.App, StageRunner]:
    """Build the faust App of stage ``name`` with its agent, heartbeat and /metrics.

    Models are not loaded here; :func:`run_worker` loads them before starting.
    """
    settings = settings or get_settings()
    index = list(STAGES).index(name)
    return build_stage(stage_class(name)(settings), settings.metrics_base_port + index)


def build_stage(stage: Stage, web_port: int) -> tuple[faust.App, StageRunner]:
    """Build the faust App of ``stage`` (consumer group ``voxbus-<stage.name>``), /metrics on ``web_port``.

    What :func:`build` does for the pipeline's stages, for a worker outside :data:`STAGES` too
    (agent assist, :mod:`processors.generation.suggest`).
    """
    name, settings = stage.name, stage.settings
    app = make_app(name, settings, web_port=web_port)
    runner = StageRunner(stage, app)
    stage.bind(app)
    source = app.topic(stage.input.name, value_serializer="raw", key_serializer="raw")

    batch_size = int(getattr(settings, stage.batch_setting)) if stage.batch_setting else 1
    concurrency = int(getattr(settings, stage.concurrency_setting)) if stage.concurrency_setting else 1

    @app.agent(source, name=f"voxbus-{name}.process")
    async def process(stream: faust.Stream) -> None:
        if concurrency > 1:
            await run_in_lanes(stream, runner, concurrency)
            return
        if batch_size <= 1:
            async for event in stream.events():
                await runner.on_message(event.message)
            return
        await run_in_batches(stream, runner, batch_size)

    for extra in stage.extra_inputs:
        topic = app.topic(extra.name, value_serializer="raw", key_serializer="raw")

        @app.agent(topic, name=f"voxbus-{name}.{extra.name}")
        async def process_extra(stream: faust.Stream) -> None:
            async for event in stream.events():
                await runner.on_message(event.message)

    if stage.control:
        control = app.topic(CONTROL.name, value_serializer="raw", key_serializer="raw")

        @app.agent(control, name=f"voxbus-{name}.control")
        async def cancellations(stream: faust.Stream) -> None:
            async for event in stream.events():
                await runner.on_control(event.message)

    if runner.holds is not None:
        holds = runner.holds
        hold_commits(app, holds.floor)

        @app.on_partitions_revoked.connect
        async def revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
            holds.drop(revoked)  # the next owner reads them again; stale holds here would pull commits back

    serve_liveness(app, runner)
    return app, runner


def run_worker(name: str, standby: bool = False, nice: priority.Priority | None = None) -> None:
    """Load stage ``name``'s models, then run its faust worker until SIGINT/SIGTERM.

    Args:
        name: the stage.
        standby: a warm standby (:func:`streams.standby.take_over`): wait, models loaded, until
            told to run.
        nice: the priority a standby loading at a lower one goes back to when it takes over
            (:func:`processors.priority.lower`); None: unchanged.

    Raises:
        KeyError: no such stage.
    """
    app, runner = build(name, get_settings())
    run_stage(app, runner, standby, nice)


def run_stage(app: faust.App, runner: StageRunner, standby: bool = False,
              nice: priority.Priority | None = None) -> None:
    """Create the App's internal topics, load the stage's models, then run the worker until SIGINT/SIGTERM.

    A ``standby`` runs the worker only once told to (:func:`streams.standby.take_over`), back at
    priority ``nice`` (:func:`processors.priority.restore`; None: as it is).
    """
    name, settings = runner.stage.name, runner.stage.settings
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ensure_internal_topics(app, settings))
    finally:
        loop.close()
    if not standby:
        started = time.perf_counter()
        runner.stage.load()
        log.info("stage %s loaded in %.1f s", name, time.perf_counter() - started)
    else:
        runner.stage.preload()
        if not take_over(f"stage {name}"):
            return
        priority.restore(nice)
        runner.stage.open_exclusive()
    metrics.READY.labels(name).set(1)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
