"""Reading voxbus topics back: follow one (``voxbus analytics tail``), dump one to Parquet (``export``).

Readers here use a manual partition assignment and no consumer group: they commit
nothing and never disturb the stages' groups.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from schemas import Record, SchemaError, decode
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs, profile
from streams.settings import Settings
from streams.topics import ALL_TOPICS

"""Longest wait for a topic's partitions to appear in the broker's metadata."""
EXPORT_BATCH_ROWS = 20_000
"""Rows held in memory before a batch is written out (as its own row group)."""


def resolve_topic(name: str) -> str:
    """A topic name from a full name or a short one (``latency`` -> ``voxbus.analytics.latency``).

    Names that are not declared in :mod:`streams.topics` are returned as given (faust
    changelogs, for one).
    """
    declared = {spec.name for spec in ALL_TOPICS}
    for candidate in (name, f"voxbus.analytics.{name}", f"voxbus.{name}"):
        if candidate in declared:
            return candidate
    return name


@dataclass(frozen=True)
class Read:
    """One message of a topic, decoded: ``record`` or, when it does not decode, ``error``."""

    message: ConsumerRecord
    record: Record | None
    error: str = ""


def _decode(message: ConsumerRecord) -> Read:
    try:
        return Read(message, decode(message.value))
    except SchemaError as exc:
        return Read(message, None, str(exc))


def consumer_for(settings: Settings) -> AIOKafkaConsumer:
    """A consumer with no group (manual assignment, nothing committed)."""
    wait = max(profile(settings).fetch_max_wait_ms, 100)
    return AIOKafkaConsumer(**consumer_kwargs(settings, enable_auto_commit=False, group_id=None,
                                              fetch_max_wait_ms=wait,
                                              max_partition_fetch_bytes=8 * 1024 * 1024))


async def read_topic(settings: Settings, topic: str, *, from_beginning: bool = True,
                     follow: bool = False) -> AsyncIterator[Read]:
    """Yield the messages of ``topic``, decoded, partition by partition in offset order.

    Args:
        settings: where the broker is.
        topic: the full topic name.
        from_beginning: start at the oldest retained message; else at the current end.
        follow: keep waiting for new messages; else stop at the end the topic had when
            the read started.

    Raises:
        LookupError: no such topic.
    """
    consumer = consumer_for(settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(settings, topic)
        consumer.assign(partitions)
        if from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        end = {} if follow else await consumer.end_offsets(partitions)
        pending = set() if follow else {tp for tp in partitions if await consumer.position(tp) < end[tp]}
        while follow or pending:
            batches = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, messages in batches.items():
                for message in messages:
                    if follow or message.offset < end[tp]:
                        yield _decode(message)
            for tp in list(pending):
                if await consumer.position(tp) >= end[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()


# -- Parquet export -----------------------------------------------------------------------------


def to_row(read: Read) -> dict[str, Any]:
    """One Parquet row: where the message was, then the record's fields.

    ``latency_ms`` is flattened into one column per span (``latency_<span>_ms``); other
    mappings of numbers (``marks``) stay one map column; an undecodable message keeps
    its ``decode_error`` and raw ``value``.
    """
    message = read.message
    row: dict[str, Any] = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "kafka_timestamp_ms": message.timestamp,
        "key": message.key.decode(errors="replace") if isinstance(message.key, bytes) else None,
    }
    if read.record is None:
        row["decode_error"] = read.error
        row["value"] = bytes(message.value or b"")
        return row
    for name, value in read.record.model_dump(mode="python").items():
        if name == "latency_ms" and isinstance(value, dict):
            for span, ms in value.items():
                row[f"latency_{span}_ms"] = float(ms)
        else:
            row[name] = value
    return row


def _is_number_map(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(
        isinstance(v, dict)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v.values())
        for v in present
    )


def rows_to_table(rows: list[dict[str, Any]]) -> Any:
    """A pyarrow Table of ``rows`` (columns in first-seen order, missing values null).

    A column whose values pyarrow cannot type consistently is written as JSON text.
    """
    import pyarrow as pa

    if not rows:  # an empty topic: the columns every row has
        return pa.table({"topic": pa.array([], pa.string()), "partition": pa.array([], pa.int64()),
                         "offset": pa.array([], pa.int64()), "kafka_timestamp_ms": pa.array([], pa.int64()),
                         "key": pa.array([], pa.string())})
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        if _is_number_map(values):
            pairs = [None if v is None else [(k, float(x)) for k, x in v.items()] for v in values]
            columns[name] = pa.array(pairs, type=pa.map_(pa.string(), pa.float64()))
            continue
        if any(isinstance(v, dict) for v in values):
            values = [None if v is None else json.dumps(v, default=str) for v in values]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else json.dumps(v, default=str) for v in values])
    return pa.table(columns)


def _conform(table: Any, schema: Any) -> Any:
    import pyarrow as pa

    for field in schema:
        if field.name not in table.column_names:
            table = table.append_column(field, pa.nulls(len(table), field.type))
    return table.select(schema.names).cast(schema)


async def export_parquet(settings: Settings, topic: str, path: Path) -> int:
    """Write every record of ``topic``, from the beginning to its current end, to ``path``.

    One row per message (:func:`to_row`).  Rows are written in batches of
    :data:`EXPORT_BATCH_ROWS`, so a long topic does not have to fit in memory; the file
    appears (atomically) only when complete.

    Returns:
        The number of rows written.

    Raises:
        LookupError: no such topic.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with tempfile.TemporaryDirectory(prefix=".export-", dir=path.parent) as scratch:
        parts: list[Path] = []
        rows: list[dict[str, Any]] = []

        def flush() -> None:
            part = Path(scratch) / f"part-{len(parts):05d}.parquet"
            pq.write_table(rows_to_table(rows), part)
            parts.append(part)
            rows.clear()

        async for read in read_topic(settings, topic, from_beginning=True, follow=False):
            rows.append(to_row(read))
            count += 1
            if len(rows) >= EXPORT_BATCH_ROWS:
                flush()
        if rows or not parts:
            flush()
        schemas = [pq.read_schema(part) for part in parts]
        schema = pa.unify_schemas(schemas, promote_options="permissive")
        tmp = Path(scratch) / "out.parquet"
        with pq.ParquetWriter(tmp, schema) as writer:
            for part in parts:
                writer.write_table(_conform(pq.read_table(part), schema))
        os.replace(tmp, path)
    return count
