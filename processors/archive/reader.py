"""Reading the archive back: by topic, time range, sessions and record types.

What replays and recordings read when a topic no longer holds the data (its retention passed,
or the broker lost it).  Messages come back as :class:`processors.analytics.io.Read` (the shape
:func:`processors.analytics.io.read_topic` yields), each topic's in log order per hour, with
the repeats of at-least-once writing dropped (:func:`processors.archive.layout.place`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from processors.analytics.io import Read, resolve_topic
from processors.archive.layout import SCHEMA, dir_hour, place, to_read
from streams.settings import Settings
from streams.topics import ALL_TOPICS

HOUR_S = 3600.0


def archive_root(settings: Settings) -> Path:
    """The archive's root directory: ``VOXBUS_ARCHIVE_DIR``, else ``<VOXBUS_DATA_DIR>/archive``."""
    return settings.archive_dir or settings.data_dir / "archive"


def topic_name(name: str) -> str:
    """The full name of a topic from a full or short name; a short name is a pipeline topic first.

    ``intents`` is ``voxbus.intents``, not the analytics topic of that name; other names as
    :func:`processors.analytics.io.resolve_topic`.
    """
    declared = {spec.name for spec in ALL_TOPICS}
    return f"voxbus.{name}" if f"voxbus.{name}" in declared else resolve_topic(name)


def archived_topics(settings: Settings) -> list[str]:
    """The full names of the topics ``VOXBUS_ARCHIVE_TOPICS`` lists, in its order, each once."""
    names = [topic_name(name.strip()) for name in settings.archive_topics.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def hour_dirs(root: Path, topic: str, start: float | None = None, end: float | None = None) -> list[Path]:
    """``topic``'s hour directories overlapping ``[start, end)`` (epoch s; None: unbounded), oldest first."""
    found = []
    for directory in (root / topic).glob("day=*/hour=*"):
        hour = dir_hour(directory)
        if hour is None:
            continue
        begins = hour.timestamp()
        if (end is None or begins < end) and (start is None or begins + HOUR_S > start):
            found.append((begins, directory))
    return [directory for _, directory in sorted(found)]


def _filter(start: float | None, end: float | None, sessions: Iterable[str] | None,
            types: Iterable[str] | None) -> pc.Expression | None:
    terms = []
    if start is not None:
        terms.append(pc.field("kafka_ts_ms") >= int(start * 1000))
    if end is not None:
        terms.append(pc.field("kafka_ts_ms") < int(end * 1000))
    if sessions is not None:
        terms.append(pc.field("session_id").isin(list(sessions)))
    if types is not None:
        terms.append(pc.field("type").isin(list(types)))
    if not terms:
        return None
    expression = terms[0]
    for term in terms[1:]:
        expression = expression & term
    return expression


def read_archive(root: Path, topics: Iterable[str], *, start: float | None = None, end: float | None = None,
                 sessions: Iterable[str] | None = None, types: Iterable[str] | None = None,
                 audio: bool = True) -> Iterator[Read]:
    """Yield the archived messages of ``topics`` (full or short names), topic after topic.

    Args:
        root: the archive root (:func:`archive_root`).
        topics: the topics to read.
        start: keep messages whose Kafka timestamp is at or after ``start`` (epoch s; None: unbounded).
        end: and before ``end`` (epoch s; None: unbounded).
        sessions: keep these session ids only (None: every session).
        types: keep these record types only (``"audio_chunk"``…; None: every type).
        audio: read the ``pcm`` column; False skips it (records then carry empty PCM), much less I/O.

    Yields:
        One :class:`processors.analytics.io.Read` per message, in (partition, offset) order within
        each hour, each place once.

    Raises:
        OSError: a file cannot be read (a damaged file is an error, not silently skipped).
    """
    wanted = _filter(start, end, sessions, types)
    columns = [name for name in SCHEMA.names if audio or name != "pcm"]
    seen: set[tuple[str, int, int, int]] = set()
    for topic in dict.fromkeys(topic_name(t) for t in topics):
        for directory in hour_dirs(root, topic, start, end):
            rows = []
            for path in sorted(directory.glob("part-*.parquet")):
                rows.extend(pq.read_table(path, columns=columns, filters=wanted, schema=SCHEMA).to_pylist())
            rows.sort(key=lambda row: (row["partition"], row["offset"], row["kafka_ts_ms"]))
            for row in rows:
                read = to_read(row)
                if place(read.message) not in seen:
                    seen.add(place(read.message))
                    yield read


def parse_time(text: str) -> float:
    """Epoch seconds of ``text``: ISO 8601 (``2026-12-01T12:00``, UTC unless it has an offset) or a number.

    Raises:
        ValueError: neither.
    """
    try:
        return float(text)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()
