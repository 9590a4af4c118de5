"""``voxbus replay``: one stage, with a candidate configuration, over archived inputs, into shadow topics.

The candidate is the stage's own class (:data:`processors.runtime.STAGES`) built with the
production settings plus the ``--set`` overrides (``VOXBUS_WHISPER_BEAM_SIZE=1``…) and loaded
in this process.  Its inputs are the stage's input records of ``[start, end)`` (and of the given
sessions) read back from the archive (:func:`processors.archive.reader.read_archive`), in log
order; nothing is read with a consumer group, so production's offsets are untouched.  Every
output goes to ``voxbus.shadow.<run>.<topic>`` (egress records too): no ingress reads a
shadow topic and no stage consumes one, so no caller hears a replay.

A run leaves a manifest (:class:`Manifest`, JSON under ``<archive>/shadow/<run>.json``) that
``voxbus shadow report`` reads.  Stages whose state lives in faust tables (generation's
history) cannot run outside their worker and are refused.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from pydantic import TypeAdapter

from processors.archive.reader import archive_root, read_archive
from processors.base import Stage
from processors.runtime import STAGES, stage_class
from schemas import SessionRecord, encode
from streams.admin import create_topics
from streams.clients import producer_kwargs
from streams.settings import Settings
from streams.topics import DAY_MS

SHADOW_PREFIX = "voxbus.shadow."
"""Prefix of every shadow topic."""

SHADOW_RETENTION_MS = 7 * DAY_MS
"""Retention of shadow topics: a week to compare and report."""

RUN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""A run name: letters, digits, ``_`` and ``-`` (it becomes part of topic names)."""


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

    Raises:
        KeyError: no such stage.
        ValueError: the stage keeps faust tables (it runs only as its worker).
    """
    cls = stage_class(stage)
    if cls.bind is not Stage.bind:
        raise ValueError(f"the {stage} stage keeps its state in faust tables; it cannot be replayed")
    instance = cls(settings.model_copy(update=changes))
    instance.load()
    return instance


async def replay(settings: Settings, stage: str, run: str, start: float, end: float,
                 sessions: list[str] | None = None, changes: dict[str, Any] | None = None) -> Manifest:
    """Run ``stage`` with ``changes`` over its archived inputs into ``run``'s shadow topics.

    Args:
        settings: production settings (broker, archive).
        stage: a name of :data:`processors.runtime.STAGES`.
        run: the run name (:data:`RUN_PATTERN`).
        start: the inputs' first Kafka timestamp (epoch s).
        end: the end of the inputs' time range (epoch s, excluded).
        sessions: only these sessions (None: all).
        changes: settings fields of the candidate (:func:`overrides`).

    Returns:
        The run's manifest, saved.

    Raises:
        ValueError: a bad run name, or a stage that cannot be replayed.
        KeyError: no such stage.
    """
    if not RUN_PATTERN.match(run):
        raise ValueError(f"run name {run!r} must match {RUN_PATTERN.pattern}")
    if stage not in STAGES:
        raise KeyError(stage)
    manifest = Manifest(run, stage, start, end, sessions, dict(changes or {}))
    started = time.monotonic()
    model = await asyncio.to_thread(candidate, stage, settings, manifest.overrides)
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for read in read_archive(archive_root(settings), [model.input.name], start=start, end=end,
                                 sessions=sessions):
            if not isinstance(read.record, model.accepts):
                continue
            manifest.inputs += 1
            async for emit in model.handle(read.record):
                topic = shadow_topic(run, emit.topic.name)
                if emit.topic.name not in manifest.outputs:
                    partitions = emit.topic.partitions(settings)
                    await create_topics(settings, [topic], partitions, SHADOW_RETENTION_MS)
                    manifest.outputs[emit.topic.name] = 0
                key = emit.record.session_id.encode() if isinstance(emit.record, SessionRecord) else None
                await producer.send_and_wait(topic, encode(emit.record), key=key)
                manifest.outputs[emit.topic.name] += 1
    finally:
        await producer.stop()
    manifest.seconds = round(time.monotonic() - started, 2)
    manifest.save(settings)
    return manifest
