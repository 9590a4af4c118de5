"""The archive on disk: one Parquet file per flush, topic and hour, one row per Kafka message.

Files live under ``<root>/<topic>/day=YYYY-MM-DD/hour=HH/part-<ms>-<id>.parquet``; the day and
hour are the UTC hour of the messages' Kafka timestamps (Hive-style directory names, so
``pyarrow.dataset`` or DuckDB read the tree as partitioned).  Every file has the schema
:data:`SCHEMA`.  A row keeps the message's place in the log (``topic``, ``partition``,
``offset``): the archive is written at least once, so a reader drops repeats of a place
(:func:`place`).  The record itself is ``value``, its msgpack bytes, with any PCM moved to
the ``pcm`` column (``value`` then holds an empty ``pcm``), so audio is stored once and an
analyst reads it without msgpack; :func:`to_read` puts it back.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pyarrow as pa
import pyarrow.parquet as pq
from aiokafka.structs import ConsumerRecord

from processors.analytics.io import Read
from schemas import SchemaError, decode

SCHEMA = pa.schema([
    ("topic", pa.string()),
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("kafka_ts_ms", pa.int64()),
    ("key", pa.string()),
    ("type", pa.string()),
    ("session_id", pa.string()),
    ("turn_id", pa.string()),
    ("epoch", pa.int64()),
    ("seq", pa.int64()),
    ("ts", pa.float64()),
    ("sample_rate", pa.int32()),
    ("text", pa.string()),
    ("pcm", pa.binary()),
    ("value", pa.binary()),
    ("decode_error", pa.string()),
])
"""Columns of every archive file.  ``ts`` is the record's own time (epoch s: ``recv_ts`` of an
audio chunk, ``ts`` or ``speech_end_ts`` where the record has one, else the Kafka timestamp);
``epoch``/``seq``/``turn_id``/``text``/``sample_rate`` are null when the record has no such field;
``pcm`` is PCM16LE mono at ``sample_rate``; ``decode_error`` is set (and ``value`` raw) for a
message that does not decode."""

COMPRESSION = "zstd"
"""Parquet codec: zstd (text columns shrink several times; PCM barely, whatever the codec)."""

_TIME_FIELDS = ("recv_ts", "ts", "speech_end_ts")


def hour_dir(root: Path, topic: str, kafka_ts_ms: int) -> Path:
    """The directory of ``topic``'s files for the UTC hour holding ``kafka_ts_ms`` (ms since the epoch)."""
    when = dt.datetime.fromtimestamp(kafka_ts_ms / 1000, dt.UTC)
    return root / topic / f"day={when:%Y-%m-%d}" / f"hour={when:%H}"


def dir_hour(path: Path) -> dt.datetime | None:
    """The UTC start of the hour a ``…/day=…/hour=…`` directory holds; None for another path."""
    day, hour = path.parent.name, path.name
    if not (day.startswith("day=") and hour.startswith("hour=")):
        return None
    try:
        return dt.datetime.strptime(f"{day[4:]} {hour[5:]}", "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def to_row(message: ConsumerRecord) -> dict[str, Any]:
    """One archive row (:data:`SCHEMA`) of a consumed Kafka ``message``; never raises."""
    value = bytes(message.value or b"")
    row: dict[str, Any] = dict.fromkeys(SCHEMA.names)
    row.update(topic=message.topic, partition=message.partition, offset=message.offset,
               kafka_ts_ms=message.timestamp, ts=message.timestamp / 1000, value=value,
               key=message.key.decode(errors="replace") if isinstance(message.key, bytes) else None)
    try:
        record = decode(value)
    except SchemaError as exc:
        row["decode_error"] = str(exc)
        return row
    fields = msgpack.unpackb(value, raw=False)  # decodes: decode() just read it
    row.update(type=record.type, session_id=getattr(record, "session_id", None))  # type: ignore[attr-defined]
    for name in ("turn_id", "epoch", "seq", "sample_rate", "text"):
        row[name] = getattr(record, name, None)
    row["ts"] = next((float(getattr(record, f)) for f in _TIME_FIELDS if hasattr(record, f)), row["ts"])
    if isinstance(fields.get("pcm"), bytes):
        row["pcm"] = fields["pcm"]
        fields["pcm"] = b""
        row["value"] = msgpack.packb(fields, use_bin_type=True)
    return row


def to_read(row: dict[str, Any]) -> Read:
    """The archived message of ``row`` as a :class:`processors.analytics.io.Read`.

    The record is decoded with its PCM put back: the same shape as a message read from the topic.
    """
    value = row["value"]
    if row.get("pcm") is not None and row.get("decode_error") is None:
        fields = msgpack.unpackb(value, raw=False)
        fields["pcm"] = row["pcm"]
        value = msgpack.packb(fields, use_bin_type=True)
    key = row["key"].encode() if row.get("key") is not None else None
    message = ConsumerRecord(topic=row["topic"], partition=row["partition"], offset=row["offset"],
                             timestamp=row["kafka_ts_ms"], timestamp_type=0, key=key, value=value,
                             checksum=None, serialized_key_size=len(key or b""),
                             serialized_value_size=len(value), headers=())
    try:
        return Read(message, decode(value))
    except SchemaError as exc:
        return Read(message, None, row.get("decode_error") or str(exc))


def place(message: ConsumerRecord) -> tuple[str, int, int, int]:
    """What identifies a message across repeats: topic, partition, offset and Kafka timestamp (ms).

    The timestamp tells apart two records at one offset of a broker that was wiped and started
    over (Tansu keeps nothing; a new cluster starts at offset 0).
    """
    return message.topic, message.partition, message.offset, message.timestamp


def write_file(directory: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as a new Parquet file in ``directory`` and make it durable before returning.

    The file is written under a dot-name, flushed to disk (``fsync``), renamed into place and
    the directory entry flushed too, so once this returns a crash cannot lose it, and a reader
    never sees half a file.

    Returns:
        The file's path.

    Raises:
        OSError: the disk refused (full, read-only); no partial file is left under the final name.
    """
    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{int(dt.datetime.now(dt.UTC).timestamp() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
    final, scratch = directory / name, directory / f".{name}.tmp"
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), scratch, compression=COMPRESSION)
        with open(scratch, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(scratch, final)
    finally:
        scratch.unlink(missing_ok=True)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return final
