"""``voxbus replay``: one stage, with a candidate configuration, over archived inputs, into shadow topics.

The candidate is the stage's own class (:data:`processors.runtime.STAGES`) built with the
production settings plus the ``--set`` overrides (``VOXBUS_WHISPER_BEAM_SIZE=1``…) and loaded
in this process.  Its inputs are the stage's input records of ``[start, end)`` (and of the given
sessions) read back from the archive (:func:`processors.archive.reader.read_archive`): those of
its input topic and of its extra inputs (generation's tool results), in log order (by Kafka
timestamp across topics), with no consumer group; or, with ``live``, the input topic followed
from its end in the run's own consumer group ``voxbus-shadow-<run>`` (:func:`live_inputs`).
Either way production's groups and offsets are untouched.  Every output goes to
``voxbus.shadow.<run>.<topic>`` (egress records too): no ingress reads a shadow topic and no
stage consumes one, so no caller hears a replay.

Each input is handled alone (no batching) after every random generator a stage can sample from
is seeded afresh (:func:`seed_generators`: Python, NumPy, torch, CTranslate2), so Whisper's
temperature fallbacks sample the same tokens, and every LLM request carries the seed
(``VOXBUS_LLM_SEED``, unless ``--set`` gives one): replaying the same inputs twice gives the same
outputs.  The process CPU time of each input's handling is kept in the manifest.

A run leaves a manifest (:class:`Manifest`, JSON under ``<archive>/shadow/<run>.json``) that
``voxbus shadow report`` reads.  Generation keeps each session's conversation in a faust table;
here it answers from a :class:`processors.replay.conversation.ProductionHistory` instead (what
production said in the session's earlier turns, from the archive), so it replays archived
ranges only, not ``live``.  A stage with other faust state is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import TypeAdapter

from processors.archive.reader import archive_root, read_archive
from processors.base import Stage
from processors.replay.conversation import ProductionHistory, heard
from processors.runtime import STAGES, stage_class
from schemas import Record, SchemaError, SessionRecord, decode, encode
from streams.admin import create_topics
from streams.clients import consumer_kwargs, producer_kwargs
from streams.settings import Settings
from streams.topics import DAY_MS

SHADOW_PREFIX = "voxbus.shadow."
"""Prefix of every shadow topic."""

SHADOW_RETENTION_MS = 7 * DAY_MS
"""Retention of shadow topics: a week to compare and report."""

RUN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A run name: letters, digits, ``_`` and ``-`` (it becomes part of topic names)."""

SEED = 0
"""The seed every random generator gets before each input (:func:`seed_generators`)."""


def shadow_group(run: str) -> str:
    """The consumer group of a ``--live`` run: ``voxbus-shadow-<run>`` (no stage's group is named so)."""
    return f"voxbus-shadow-{run}"


def shadow_topic(run: str, topic: str) -> str:
    """The shadow topic of ``topic`` (full name) in ``run``: ``voxbus.shadow.<run>.transcripts`` for one."""
    return f"{SHADOW_PREFIX}{run}.{topic.removeprefix('voxbus.')}"


def overrides(assignments: list[str]) -> dict[str, Any]:
    """Settings fields from ``VOXBUS_NAME=value`` assignments, each value validated as its field's type.

    Raises:
        ValueError: not ``NAME=value``, not a voxbus setting, or a value the setting refuses.
    """
    out: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        key = name.strip().upper().removeprefix("VOXBUS_").lower()
        if not sep or key not in Settings.model_fields:
            raise ValueError(f"{assignment!r} is not VOXBUS_<SETTING>=value for a voxbus setting")
        out[key] = TypeAdapter(Settings.model_fields[key].annotation).validate_python(value)
    return out


@dataclass
class Manifest:
    """What a replay ran and produced (``<archive>/shadow/<run>.json``).

    Attributes:
        run: the run name.
        stage: the stage replayed.
        start / end: the time range of the inputs (epoch s).
        sessions: the sessions replayed (None: all).
        overrides: the candidate's settings that differ from production (field -> value).
        inputs: input records replayed.
        outputs: production topic -> records the candidate produced for it (on its shadow topic).
        seconds: wall-clock seconds of the replay (models loaded).
        live: the inputs were followed on the live topic (``start``/``end``: when it followed).
        cpu_ms: per input, ``[session_id, turn_id, ms]``: the process CPU time (all threads,
            ``time.process_time``) of the candidate handling it, in milliseconds.
    """

    run: str
    stage: str
    start: float
    end: float
    sessions: list[str] | None
    overrides: dict[str, Any]
    inputs: int = 0
    outputs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    live: bool = False
    cpu_ms: list[list[Any]] = field(default_factory=list)

    @staticmethod
    def path(settings: Settings, run: str) -> Path:
        """Where the manifest of ``run`` is kept."""
        return archive_root(settings) / "shadow" / f"{run}.json"

    def save(self, settings: Settings) -> Path:
        """Write the manifest; returns its path."""
        path = self.path(settings, self.run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, default=str))
        return path

    @classmethod
    def load(cls, settings: Settings, run: str) -> Manifest:
        """The manifest of ``run``.

        Raises:
            FileNotFoundError: no such run.
        """
        return cls(**json.loads(cls.path(settings, run).read_text()))


def candidate(stage: str, settings: Settings, changes: dict[str, Any]) -> Stage:
    """Stage ``stage`` built with ``settings`` plus ``changes``, models loaded.

    Every LLM request of the candidate carries :data:`SEED` unless ``changes`` set ``llm_seed``.

    Raises:
        KeyError: no such stage.
        ValueError: the stage keeps faust tables it cannot do without (it runs only as its worker).
    """
    cls = stage_class(stage)
    if not conversational(cls) and cls.bind is not Stage.bind:
        raise ValueError(f"the {stage} stage keeps its state in faust tables; it cannot be replayed")
    instance = cls(settings.model_copy(update={"llm_seed": SEED, **changes}))
    instance.load()
    return instance


def conversational(cls: type[Stage]) -> bool:
    """Whether the stage answers from a session's history a replay rebuilds (it has ``use_history``)."""
    return callable(getattr(cls, "use_history", None))


def seed_generators(seed: int = SEED) -> None:
    """Seed Python's, NumPy's, torch's and CTranslate2's random generators (those a stage may sample from)."""
    import ctranslate2
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    ctranslate2.set_random_seed(seed)


async def archived_inputs(settings: Settings, topics: list[str], start: float, end: float,
                          sessions: list[str] | None) -> AsyncIterator[Record]:
    """The archived records of ``topics`` in ``[start, end)`` (epoch s) of ``sessions`` (None: all).

    Yields:
        The decoded records (undecodable ones skipped), in log order: one topic's as read back,
        several topics' merged by Kafka timestamp (each topic's order kept among equal times).
    """
    reads = read_archive(archive_root(settings), topics, start=start, end=end, sessions=sessions)
    if len(topics) > 1:
        reads = iter(sorted(reads, key=lambda read: read.message.timestamp))
    for read in reads:
        if read.record is not None:
            yield read.record


async def live_inputs(settings: Settings, run: str, topic: str, seconds: float | None,
                      ready: asyncio.Event | None = None) -> AsyncIterator[Record]:
    """Follow ``topic`` from its end in the run's group (:func:`shadow_group`) for ``seconds``.

    The group is the run's own and commits only its own offsets; records that do not decode
    are skipped (the production stage dead-letters them).

    Args:
        settings: where the broker is.
        run: the run name.
        topic: the live input topic.
        seconds: how long to follow, in seconds (None: until the task is cancelled).
        ready: set once the partitions are assigned and positioned at their end.

    Yields:
        The decoded records produced after the partitions were positioned, in each partition's order.
    """
    kwargs = consumer_kwargs(settings, group_id=shadow_group(run), auto_offset_reset="latest",
                             enable_auto_commit=True)
    consumer = AIOKafkaConsumer(topic, **kwargs)
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        await consumer.seek_to_end(*consumer.assignment())
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the end now: records from here on are replayed
        if ready is not None:
            ready.set()
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                for message in messages:
                    try:
                        yield decode(message.value)
                    except SchemaError:
                        continue
    finally:
        await consumer.stop()


async def replay(settings: Settings, stage: str, run: str, start: float, end: float,
                 sessions: list[str] | None = None, changes: dict[str, Any] | None = None, *,
                 live: bool = False, seconds: float | None = None,
                 ready: asyncio.Event | None = None) -> Manifest:
    """Run ``stage`` with ``changes`` over its archived (or live) inputs into ``run``'s shadow topics.

    Args:
        settings: production settings (broker, archive).
        stage: a name of :data:`processors.runtime.STAGES`.
        run: the run name (:data:`RUN_PATTERN`).
        start: the inputs' first Kafka timestamp (epoch s); ignored with ``live``.
        end: the end of the inputs' time range (epoch s, excluded); ignored with ``live``.
        sessions: only these sessions (None: all).
        changes: settings fields of the candidate (:func:`overrides`).
        live: follow the live input topic from its end (:func:`live_inputs`) instead of the archive.
        seconds: with ``live``, how long to follow (s; None: until the task is cancelled, e.g. Ctrl-C).
        ready: with ``live``, set once the candidate is loaded and the topic positioned at its end.

    Returns:
        The run's manifest, saved (also when a live run is cancelled: it then ends normally).

    Raises:
        ValueError: a bad run name, a stage that cannot be replayed, or ``live`` for generation.
        KeyError: no such stage.
    """
    if not RUN_PATTERN.match(run):
        raise ValueError(f"run name {run!r} must match {RUN_PATTERN.pattern}")
    if stage not in STAGES:
        raise KeyError(stage)
    if live and conversational(stage_class(stage)):
        raise ValueError(f"the {stage} stage answers from each session's conversation, rebuilt from the "
                         "archive: replay an archived range (--from/--to), not --live")
    started = time.monotonic()
    manifest = Manifest(run, stage, time.time() if live else start, end, sessions, dict(changes or {}),
                        live=live)
    model = await asyncio.to_thread(candidate, stage, settings, manifest.overrides)
    if conversational(type(model)):
        said = await asyncio.to_thread(heard, settings, start, end, sessions)
        model.use_history(ProductionHistory(said))  # type: ignore[attr-defined]
    wanted = None if sessions is None else set(sessions)
    topics = [model.input.name, *(spec.name for spec in model.extra_inputs)]
    inputs = (live_inputs(settings, run, model.input.name, seconds, ready) if live
              else archived_inputs(settings, topics, start, end, sessions))
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        async with contextlib.aclosing(inputs):
            async for record in inputs:
                if not isinstance(record, model.accepts) or (
                        wanted is not None and getattr(record, "session_id", None) not in wanted):
                    continue
                await _whole(_handle(settings, model, record, manifest, producer))
    except asyncio.CancelledError:
        if not live:
            raise
        asyncio.current_task().uncancel()  # a live run ends by cancellation (Ctrl-C): it returns normally
    finally:
        await producer.stop()
        if live:
            manifest.end = time.time()
    manifest.seconds = round(time.monotonic() - started, 2)
    manifest.save(settings)
    return manifest


async def _whole(handling: Coroutine[Any, Any, None]) -> None:
    """Await one input's handling to its end even if the run is cancelled meanwhile, then stop.

    A live run ends by cancellation (Ctrl-C, ``--for``): the input in hand still gets all of its
    outputs produced and counted, so the manifest never counts half an input (a shadow topic
    created, its record not yet produced).

    Raises:
        asyncio.CancelledError: the run was cancelled (after the input was handled).
    """
    task = asyncio.ensure_future(handling)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _handle(settings: Settings, model: Stage, record: Record, manifest: Manifest,
                  producer: AIOKafkaProducer) -> None:
    """One input through the candidate, seeded; its outputs to shadow topics, its CPU time to ``manifest``."""
    manifest.inputs += 1
    seed_generators()
    cpu, emits = time.process_time(), []
    async for emit in model.handle(record):
        emits.append(emit)
    manifest.cpu_ms.append([getattr(record, "session_id", None), getattr(record, "turn_id", None),
                            round((time.process_time() - cpu) * 1000, 1)])
    for emit in emits:
        topic = shadow_topic(manifest.run, emit.topic.name)
        if emit.topic.name not in manifest.outputs:
            partitions = emit.topic.partitions(settings)
            await create_topics(settings, [topic], partitions, SHADOW_RETENTION_MS)
            manifest.outputs[emit.topic.name] = 0
        key = emit.record.session_id.encode() if isinstance(emit.record, SessionRecord) else None
        await producer.send_and_wait(topic, encode(emit.record), key=key)
        manifest.outputs[emit.topic.name] += 1
