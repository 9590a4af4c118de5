"""``voxbus archive``: the consumer group ``voxbus-archive`` writing the configured topics to Parquet.

Delivery is at least once, with nothing lost: the consumer commits nothing by itself; it
buffers messages, writes them (:func:`processors.archive.layout.write_file`: one file per topic
and hour, flushed to disk) every ``VOXBUS_ARCHIVE_FLUSH_S`` or ``VOXBUS_ARCHIVE_FLUSH_BYTES``,
and only then commits the offsets after them.  A crash between the write and the commit
re-reads and re-writes those messages; every row keeps its place in the log, so readers drop
the repeats.  Before its partitions move to another member (a rebalance) and before it stops,
the writer flushes and commits what it holds.

Sessions started with ``record: false`` (:mod:`processors.archive.consent`) keep their text
and lose their audio at the flush: their audio chunks are not written, their utterances'
and synthesized replies' PCM is dropped.  The wish is read from the session's start record
on ``voxbus.audio`` (archived too), so after a restart the writer first reads the wishes of the
last ``VOXBUS_MAX_SESSION_S`` back from the archive.  That record comes before any audio the
session's utterances and replies carry, but a writer catching up may read those topics ahead of
``voxbus.audio``: an utterance or reply with PCM of a session whose start it has not read, newer
than what it has read of ``voxbus.audio`` (:meth:`ArchiveWriter.horizon`), is held back (not
written, its offset not committed, its partition paused) until ``voxbus.audio`` has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata
from prometheus_client import Counter, Gauge, start_http_server

from processors.archive.consent import Consent
from processors.archive.layout import hour_dir, to_row, write_file
from processors.archive.reader import archive_root, archived_topics, read_archive
from processors.archive.retention import prune
from schemas import SchemaError, decode
from streams.clients import consumer_kwargs
from streams.settings import Settings, get_settings
from streams.topics import AUDIO

log = logging.getLogger(__name__)

GROUP = "voxbus-archive"
"""The archive's consumer group."""

PRUNE_EVERY_S = 60.0
"""Seconds between two retention passes (:func:`processors.archive.retention.prune`)."""

FETCH_BYTES = 8 * 2**20
"""Most bytes fetched per partition at once: several seconds of every session's audio."""

ROWS = Counter("voxbus_archive_rows_total", "Messages written to the archive, by topic.", ["topic"])
FILES = Counter("voxbus_archive_files_total", "Parquet files written to the archive.")
DROPPED_AUDIO = Counter("voxbus_archive_audio_dropped_total",
                        "Audio records of sessions started with record: false, written without audio.")
LAST_COMMIT = Gauge("voxbus_archive_last_commit_timestamp_seconds", "When offsets were last committed.")


class ArchiveWriter:
    """Consume ``topics`` in group ``group`` and write them under ``root``.

    Args:
        settings: broker, flush and retention settings.
        root: the archive root; default :func:`processors.archive.reader.archive_root`.
        topics: full topic names; default :func:`processors.archive.reader.archived_topics`.
        group: the consumer group id.
    """

    def __init__(self, settings: Settings, root: Path | None = None, topics: list[str] | None = None,
                 group: str = GROUP) -> None:
        self.settings = settings
        self.root = root or archive_root(settings)
        self.topics = topics or archived_topics(settings)
        self.group = group
        self.consent = Consent()
        self.read_ms: dict[TopicPartition, int] = {}
        """Kafka timestamp (ms) of the last message read, by partition."""
        self.paused: set[TopicPartition] = set()
        self.buffer: list[ConsumerRecord] = []
        self.buffered_bytes = 0
        self.oldest = 0.0
        self.consumer: AIOKafkaConsumer | None = None

    def restore_consent(self) -> None:
        """Read the recording wishes of the sessions of the last ``VOXBUS_MAX_SESSION_S`` from the archive."""
        since = time.time() - self.settings.max_session_s - self.settings.archive_flush_s
        controls = read_archive(self.root, [AUDIO.name], start=since, types=["session_control"], audio=False)
        for read in controls:
            self.consent.observe(read.record)

    def add(self, message: ConsumerRecord) -> None:
        """Buffer one consumed message (and note a recording wish it states)."""
        if not self.buffer:
            self.oldest = time.monotonic()
        self.buffer.append(message)
        self.buffered_bytes += len(message.value or b"")
        self.read_ms[TopicPartition(message.topic, message.partition)] = message.timestamp
        if message.topic == AUDIO.name:
            with contextlib.suppress(SchemaError):  # it states no wish; archived with its decode error
                self.consent.observe(decode(message.value))

    def due(self) -> bool:
        """Whether the buffer must be written now (age or size)."""
        return bool(self.buffer) and (self.buffered_bytes >= self.settings.archive_flush_bytes
                                      or time.monotonic() - self.oldest >= self.settings.archive_flush_s)

    async def horizon(self) -> float:
        """Up to when (Kafka timestamp, ms) every start record on ``voxbus.audio`` has been read.

        The oldest of the last timestamps read on this member's ``voxbus.audio`` partitions, a
        partition read to its end not counting (``inf`` when all are, or it has none).
        """
        assert self.consumer is not None
        horizon = float("inf")
        for tp in self.consumer.assignment():
            if tp.topic != AUDIO.name:
                continue
            end = self.consumer.highwater(tp)
            if end is None or await self.consumer.position(tp) < end:
                horizon = min(horizon, self.read_ms.get(tp, -1))
        return horizon

    def _rows(self, horizon: float) -> tuple[dict[Path, list[dict[str, Any]]], list[ConsumerRecord]]:
        """The buffer as rows by destination directory (unrecorded sessions' audio removed), and what is held.

        Held back: messages with PCM, of a session whose start is not read, newer than ``horizon``.
        """
        groups: dict[Path, list[dict[str, Any]]] = defaultdict(list)
        held: list[ConsumerRecord] = []
        for message in self.buffer:
            row = to_row(message)
            if (row["pcm"] is not None and message.topic != AUDIO.name and message.timestamp > horizon
                    and not self.consent.known(row["session_id"])):
                held.append(message)
                continue
            if row["pcm"] is not None and not self.consent.recorded(row["session_id"]):
                DROPPED_AUDIO.inc()
                if row["type"] == "audio_chunk":
                    continue
                row["pcm"] = None
            groups[hour_dir(self.root, message.topic, message.timestamp)].append(row)
        return groups, held

    async def flush(self, final: bool = False) -> None:
        """Write the buffer (each file durable), then commit the offsets after its messages.

        Messages held back (:meth:`_rows`) stay in the buffer, their partitions paused, and the
        commit stops before the first of them; with ``final`` (a rebalance, the stop) they are
        dropped instead: whoever reads the partition next reads them again.

        Raises:
            OSError: a file could not be written; nothing is committed, the buffer is kept.
            aiokafka.errors.KafkaError: the commit failed for another reason than a rebalance
                (:class:`aiokafka.errors.CommitFailedError` is logged); the files stay and the
                messages will be written again: at least once.
        """
        if not self.buffer:
            return
        assert self.consumer is not None
        groups, held = self._rows(await self.horizon())
        for directory, rows in groups.items():
            await asyncio.to_thread(write_file, directory, rows)
            FILES.inc()
            ROWS.labels(rows[0]["topic"]).inc(len(rows))
        offsets: dict[TopicPartition, int] = {}
        for message in self.buffer:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        for message in held:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = min(offsets[tp], message.offset)
        self.hold([] if final else held)
        try:
            await self.consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
        except CommitFailedError as exc:  # the group moved on: the new owner writes them again
            log.warning("archive: offsets not committed (%s); those records will be archived again", exc)
            return
        LAST_COMMIT.set_to_current_time()

    def hold(self, held: list[ConsumerRecord]) -> None:
        """Keep ``held`` as the buffer; pause their partitions, resume the others paused."""
        assert self.consumer is not None
        self.buffer, self.buffered_bytes = held, sum(len(m.value or b"") for m in held)
        self.oldest = time.monotonic()
        assigned = self.consumer.assignment()
        holding = {TopicPartition(m.topic, m.partition) for m in held} & assigned
        if (self.paused - holding) & assigned:
            self.consumer.resume(*((self.paused - holding) & assigned))
        if holding:
            self.consumer.pause(*holding)
        self.paused = holding

    async def run(self, stop: asyncio.Event) -> None:
        """Archive until ``stop`` is set, then flush and leave the group."""
        self.restore_consent()
        writer = self

        class Flush(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await writer.flush(final=True)

            async def on_partitions_assigned(self, assigned: Any) -> None:
                pass

        self.consumer = AIOKafkaConsumer(**consumer_kwargs(
            self.settings, group_id=self.group, enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=FETCH_BYTES,
            session_timeout_ms=int(self.settings.broker_session_timeout * 1000),
            heartbeat_interval_ms=int(self.settings.broker_heartbeat_interval * 1000),
            metadata_max_age_ms=30_000))
        self.consumer.subscribe(self.topics, listener=Flush())
        await self.consumer.start()
        log.info("archive: %s -> %s (group %s)", ", ".join(self.topics), self.root, self.group)
        pruned = 0.0
        try:
            while not stop.is_set():
                batches = await self.consumer.getmany(timeout_ms=500, max_records=5000)
                for messages in batches.values():
                    for message in messages:
                        self.add(message)
                if self.due():
                    await self.flush()
                if time.monotonic() - pruned > PRUNE_EVERY_S:
                    await asyncio.to_thread(prune, self.root, self.settings)
                    pruned = time.monotonic()
            await self.flush(final=True)
        finally:
            await self.consumer.stop()


def run(settings: Settings | None = None) -> None:
    """Run ``voxbus archive`` until SIGINT/SIGTERM (with ``/metrics`` if ``VOXBUS_ARCHIVE_METRICS_PORT``)."""
    settings = settings or get_settings()
    if settings.archive_metrics_port:
        start_http_server(settings.archive_metrics_port, addr=settings.host)
        log.info("archive: metrics on :%d", settings.archive_metrics_port)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await ArchiveWriter(settings).run(stop)

    asyncio.run(main())
