"""Replay of an archived session through asr with beam 1 beside production's beam 5, on the real embedded
Apache Kafka and the real Whisper: shadow records, a report, nothing on any caller-facing topic."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner

from processors.archive.writer import ArchiveWriter
from processors.asr.stage import AsrStage
from processors.replay.report import build_report
from processors.replay.run import overrides, replay, shadow_topic
from schemas import Utterance, encode
from streams.admin import ensure_topics, topic_partitions
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings, get_settings
from streams.topics import ALL_TOPICS, TRANSCRIPTS, UTTERANCES
from tests.conftest import load_clip
from tests.processors.test_archive import archive_until, needs_kafka
from tests.streams.test_broker import bootstrap  # noqa: F401  (a free broker address, as a fixture)
from voxbus.cli import app

CLIPS = ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0920")
SESSION = "s-replayed"


def utterances() -> list[Utterance]:
    out, start = [], 0
    for clip in CLIPS:
        audio, _ = load_clip(clip)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        out.append(Utterance(session_id=SESSION, turn_id=f"a{start}", start_sample=start,
                             end_sample=start + audio.size, pcm=pcm, speech_end_ts=time.time()))
        start += audio.size + 16000
    return out


async def production(settings: Settings) -> None:
    """What the vad and asr workers do in production: utterances, then beam-5 transcripts."""
    stage = AsrStage(settings)
    await asyncio.to_thread(stage.load)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for utterance in utterances():
            await producer.send_and_wait(UTTERANCES.name, encode(utterance), key=SESSION.encode())
            async for emit in stage.handle(utterance):
                await producer.send_and_wait(emit.topic.name, encode(emit.record), key=SESSION.encode())
    finally:
        await producer.stop()


async def end_offsets(settings: Settings) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        partitions = [tp for spec in ALL_TOPICS for tp in await topic_partitions(settings, spec.name)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


@needs_kafka
def test_replay_through_beam_1_reports_beside_production_and_reaches_no_caller(bootstrap, tmp_path,  # noqa: F811
                                                                                monkeypatch):
    settings = Settings(broker="kafka", embedded_listen=bootstrap, archive_dir=tmp_path / "archive",
                        archive_flush_s=0.5, data_dir=tmp_path / "data", whisper_beam_size=5)
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                 data_dir=tmp_path / "kafka", settings=settings)
    try:
        started = time.time()
        asyncio.run(ensure_topics(settings))
        asyncio.run(production(settings))
        asyncio.run(archive_until(ArchiveWriter(settings, topics=[UTTERANCES.name, TRANSCRIPTS.name]), 4))
        before = asyncio.run(end_offsets(settings))
        manifest = asyncio.run(replay(settings, "asr", "beam1", started, time.time(), [SESSION],
                                      overrides(["VOXBUS_WHISPER_BEAM_SIZE=1"])))
        assert manifest.inputs == 2 and manifest.outputs[TRANSCRIPTS.name] == 2
        assert manifest.overrides == {"whisper_beam_size": 1}
        # nothing on any declared topic: no caller, no stage sees a replay
        assert asyncio.run(end_offsets(settings)) == before
        shadow = asyncio.run(topic_partitions(settings, shadow_topic("beam1", TRANSCRIPTS.name)))
        assert shadow
        report = asyncio.run(build_report(settings, "beam1"))
        # the command prints the same comparison as a table
        for name, value in (("EMBEDDED_LISTEN", bootstrap), ("BROKER", "kafka"),
                            ("ARCHIVE_DIR", str(settings.archive_dir))):
            monkeypatch.setenv(f"VOXBUS_{name}", value)  # undone after the test, as the cached settings
        try:
            printed = CliRunner().invoke(app, ["shadow", "report", "beam1"])
        finally:
            get_settings.cache_clear()
        assert printed.exit_code == 0, printed.output
        assert "matched': 2" in printed.output and "WER" in printed.output
    finally:
        stop_process(proc)
    assert report.counts[TRANSCRIPTS.name] == {"production": 2, "candidate": 2, "matched": 2}
    pairs = [p for p in report.pairs if p.topic == TRANSCRIPTS.name]
    assert [p.turn_id for p in pairs] == sorted(u.turn_id for u in utterances())
    assert all(p.production and p.candidate and p.wer is not None for p in pairs)
    assert report.wer is not None and 0.0 <= report.wer <= 0.5, pairs  # the same model, another beam
    assert report.latency_ms["production"] and report.latency_ms["candidate"]
    assert report.as_json()["stage"] == "asr"
    print(f"\nbeam 1 vs beam 5: WER {report.wer}, latency ms {report.latency_ms}, "
          f"texts {[(p.production, p.candidate) for p in pairs]}")


def test_overrides_are_validated_settings():
    assert overrides(["VOXBUS_WHISPER_BEAM_SIZE=1", "voxbus_llm_temperature=0"]) == {
        "whisper_beam_size": 1, "llm_temperature": 0.0}
    for bad in ("VOXBUS_NO_SUCH_SETTING=1", "VOXBUS_WHISPER_BEAM_SIZE", "VOXBUS_WHISPER_BEAM_SIZE=wide"):
        with pytest.raises(ValueError):
            overrides([bad])
