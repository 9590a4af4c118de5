"""The archive on the real embedded Apache Kafka: written, committed after the write, read back after the
broker lost everything; ``record: false`` keeps a session's audio out; retention by age and size."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from processors.archive.layout import hour_dir, write_file
from processors.archive.reader import read_archive
from processors.archive.retention import prune
from processors.archive.writer import GROUP, ArchiveWriter
from schemas import AudioChunk, ReplyText, SessionControl, SynthAudio, Transcript, Utterance, encode
from streams import kafka_server
from streams.admin import ensure_topics
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings
from streams.topics import AUDIO, EGRESS, REPLIES, TRANSCRIPTS, UTTERANCES
from tests.streams.test_broker import bootstrap  # noqa: F401  (a free broker address, as a fixture)

needs_kafka = pytest.mark.skipif(kafka_server.java_major() is None or kafka_server.java_major() < 17,
                                 reason="no Java 17+: Apache Kafka cannot run here")

PCM = bytes(range(256)) * 8  # 1024 samples of PCM16 that are not silence


def call_records(session: str, record: bool | None) -> list[tuple[str, object]]:
    """A short call: start, three chunks, an utterance, a transcript, a reply and its audio."""
    now, epoch = time.time(), int(time.time() * 1000)
    config = {"speak": True} if record is None else {"speak": True, "record": record}
    return [
        (AUDIO.name, SessionControl(session_id=session, epoch=epoch, action="start", config=config, ts=now)),
        *[(AUDIO.name, AudioChunk(session_id=session, epoch=epoch, seq=seq, start_sample=seq * 1024, pcm=PCM,
                                  recv_ts=now + seq * 0.064)) for seq in range(3)],
        (UTTERANCES.name, Utterance(session_id=session, turn_id="a0", start_sample=0, end_sample=3072,
                                    pcm=PCM * 3, speech_end_ts=now + 0.2)),
        (TRANSCRIPTS.name, Transcript(session_id=session, turn_id="a0", text="where is my order")),
        (REPLIES.name, ReplyText(session_id=session, turn_id="a0", index=0, text="It ships today.",
                                 final=True)),
        (EGRESS.name, SynthAudio(session_id=session, turn_id="a0", index=0, seq=0, sample_rate=22050, pcm=PCM,
                                 final=True)),
    ]


async def produce(settings: Settings, records: list[tuple[str, object]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for topic, record in records:
            await producer.send_and_wait(topic, encode(record), key=record.session_id.encode(),
                                         partition=0 if topic == EGRESS.name else None)
        await producer.send_and_wait(TRANSCRIPTS.name, b"\xc1 not msgpack", key=b"poison")
    finally:
        await producer.stop()


async def archive_until(writer: ArchiveWriter, rows: int, timeout_s: float = 60.0,
                        hold_s: float = 0.0) -> None:
    """Run ``writer`` until the archive holds ``rows`` messages and it has had its partitions for ``hold_s``,
    then stop it (it flushes and commits)."""
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    deadline = time.monotonic() + timeout_s
    assigned = None
    while len(list(read_archive(writer.root, writer.topics, audio=False))) < rows or assigned is None \
            or time.monotonic() - assigned < hold_s:
        if assigned is None and writer.consumer is not None and writer.consumer.assignment():
            assigned = time.monotonic()
        assert not task.done(), task.exception()
        assert time.monotonic() < deadline, "the archive did not get every record"
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 30)


async def committed(settings: Settings) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(GROUP)
    finally:
        await admin.close()
    totals: dict[str, int] = {}
    for tp, meta in offsets.items():
        totals[tp.topic] = totals.get(tp.topic, 0) + max(meta.offset, 0)
    return totals


@needs_kafka
def test_archive_outlives_a_broker_that_lost_everything(bootstrap, tmp_path):  # noqa: F811
    settings = Settings(broker="kafka", embedded_listen=bootstrap, archive_dir=tmp_path / "archive",
                        archive_flush_s=0.5, data_dir=tmp_path / "data")
    broker_dir = tmp_path / "kafka"
    topics = [AUDIO.name, UTTERANCES.name, TRANSCRIPTS.name, REPLIES.name, EGRESS.name]
    kept, private = "s-kept", "s-private"
    records = call_records(kept, None) + call_records(private, False)
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka", data_dir=broker_dir,
                                 settings=settings)
    try:
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, records))
        writer = ArchiveWriter(settings, topics=topics)
        # every record but the private session's three chunks, plus the poison record
        asyncio.run(archive_until(writer, len(records) - 3 + 1))
        # offsets are committed after the files: everything produced is behind the group's offsets
        assert asyncio.run(committed(settings)) == {AUDIO.name: 8, UTTERANCES.name: 2, TRANSCRIPTS.name: 3,
                                                    REPLIES.name: 2, EGRESS.name: 2}
    finally:
        stop_process(proc)
    shutil.rmtree(broker_dir)  # as Tansu does on every restart: no topic, record or offset survives
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka", data_dir=broker_dir,
                                 settings=settings)
    try:
        reads = list(read_archive(settings.archive_dir, topics))
        by_session: dict[str, list] = {}
        for read in reads:
            if read.record is not None:
                by_session.setdefault(read.record.session_id, []).append(read.record)
        # the kept session comes back whole, PCM included, equal to what was produced
        assert len(by_session[kept]) == len(call_records(kept, None))
        chunks = [r for r in by_session[kept] if isinstance(r, AudioChunk)]
        assert [(c.seq, c.pcm) for c in chunks] == [(0, PCM), (1, PCM), (2, PCM)]
        assert [r.pcm for r in by_session[kept] if isinstance(r, Utterance | SynthAudio)] == [PCM * 3, PCM]
        assert any(isinstance(r, Transcript) and r.text == "where is my order" for r in by_session[kept])
        # record: false: its text stays, its audio does not
        private_types = sorted(type(r).__name__ for r in by_session[private])
        assert private_types == ["ReplyText", "SessionControl", "SynthAudio", "Transcript", "Utterance"]
        assert all(getattr(r, "pcm", b"") == b"" for r in by_session[private])
        # the poison record is kept as it came, with why it does not decode
        [poison] = [read for read in reads if read.record is None]
        assert poison.message.value == b"\xc1 not msgpack" and "not msgpack" in poison.error
        # filters: one session, one type, a time range
        only = list(read_archive(settings.archive_dir, ["transcripts"], sessions=[kept]))
        assert [read.record.text for read in only] == ["where is my order"]
        assert not list(read_archive(settings.archive_dir, topics, end=time.time() - 3600))
        assert len(list(read_archive(settings.archive_dir, topics, types=["audio_chunk"]))) == 3
    finally:
        stop_process(proc)


@needs_kafka
def test_a_restarted_writer_adds_nothing_and_repeats_are_read_once(bootstrap, tmp_path):  # noqa: F811
    settings = Settings(broker="kafka", embedded_listen=bootstrap, archive_dir=tmp_path / "archive",
                        archive_flush_s=0.5, data_dir=tmp_path / "data")
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                 data_dir=tmp_path / "kafka", settings=settings)
    try:
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce(settings, call_records("s-1", None)))
        asyncio.run(archive_until(ArchiveWriter(settings, topics=[TRANSCRIPTS.name]), 2))
        files = sorted(settings.archive_dir.rglob("*.parquet"))
        # a second run resumes at the committed offsets: it writes nothing again
        asyncio.run(archive_until(ArchiveWriter(settings, topics=[TRANSCRIPTS.name]), 2, hold_s=3))
        assert sorted(settings.archive_dir.rglob("*.parquet")) == files
    finally:
        stop_process(proc)
    # a crash between the write and the commit writes the same messages twice: read once
    for path in files:
        shutil.copy(path, path.with_name("part-9" + path.name[len("part-"):]))
    assert len(list(read_archive(settings.archive_dir, [TRANSCRIPTS.name]))) == 2


def test_retention_by_age_audio_apart_and_by_size(tmp_path: Path):
    settings = Settings(archive_retention_hours=48, archive_audio_retention_hours=2, archive_max_bytes=2**40)
    now = time.time()
    row = {name: None for name in ("topic", "partition", "offset", "kafka_ts_ms", "value")}

    def put(topic: str, hours_ago: float) -> Path:
        ts_ms = int((now - hours_ago * 3600) * 1000)
        return write_file(hour_dir(tmp_path, topic, ts_ms), [{**row, "topic": topic, "kafka_ts_ms": ts_ms,
                                                              "partition": 0, "offset": 0, "value": b"x"}])

    old_audio, new_audio = put(AUDIO.name, 5), put(AUDIO.name, 0)
    old_text, kept_text, fresh_text = (put(TRANSCRIPTS.name, hours) for hours in (72, 5, 0))
    pruned = prune(tmp_path, settings, now=now)
    assert pruned.files == 2
    assert not old_audio.exists() and not old_text.exists() and not old_audio.parent.exists()
    assert new_audio.exists() and kept_text.exists() and fresh_text.exists()
    # over the size limit: the oldest files go first, until it fits
    size = sum(p.stat().st_size for p in (new_audio, kept_text, fresh_text))
    pruned = prune(tmp_path, settings.model_copy(update={"archive_max_bytes": size - 1}), now=now)
    assert pruned.files == 1 and not kept_text.exists() and new_audio.exists() and fresh_text.exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no scratch file is left"
    assert os.listdir(tmp_path)


@needs_kafka
def test_audio_read_ahead_of_its_sessions_start_waits_for_it(bootstrap, tmp_path):  # noqa: F811
    """A writer catching up reads the small topics first: the utterance and reply of a ``record: false``
    session come before its start record, behind ~25 MB of other audio; they are archived without PCM."""
    settings = Settings(broker="kafka", embedded_listen=bootstrap, archive_dir=tmp_path / "archive",
                        archive_flush_s=0.5, archive_flush_bytes=2**20, data_dir=tmp_path / "data")
    topics = [AUDIO.name, UTTERANCES.name, EGRESS.name]
    backlog = [(AUDIO.name, AudioChunk(session_id="s-busy", epoch=1, seq=seq, start_sample=seq * 1024,
                                       pcm=PCM, recv_ts=time.time())) for seq in range(12_000)]
    private = [(topic, record) for topic, record in call_records("s-private", False)
               if topic in (AUDIO.name, UTTERANCES.name, EGRESS.name)]

    async def produce_in_order() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            for topic, record in [*backlog, *private]:  # all of voxbus.audio on partition 0, in this order
                await producer.send(topic, encode(record), key=record.session_id.encode(), partition=0)
            await producer.flush()
        finally:
            await producer.stop()

    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                 data_dir=tmp_path / "kafka", settings=settings)
    try:
        asyncio.run(ensure_topics(settings))
        asyncio.run(produce_in_order())
        writer = ArchiveWriter(settings, topics=topics)
        asyncio.run(archive_until(writer, len(backlog) + len(private) - 3, timeout_s=120))
        assert asyncio.run(committed(settings)) == {AUDIO.name: len(backlog) + 4, UTTERANCES.name: 1,
                                                    EGRESS.name: 1}
    finally:
        stop_process(proc)
    records = [read.record for read in read_archive(settings.archive_dir, topics, sessions=["s-private"])]
    assert sorted(type(r).__name__ for r in records) == ["SessionControl", "SynthAudio", "Utterance"]
    assert all(getattr(r, "pcm", b"") == b"" for r in records)
