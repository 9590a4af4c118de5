"""Replay of an archived session through asr with beam 1 beside production's beam 5, on the real embedded
Apache Kafka and the real Whisper: shadow records, a report (with references, as a plot), the same
transcripts from a second replay, nothing on any caller-facing topic; a live run that follows the
utterances topic from its end in its own consumer group."""

from __future__ import annotations

import asyncio
import json
import time

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from typer.testing import CliRunner

from processors.analytics.io import read_topic
from processors.archive.writer import ArchiveWriter
from processors.asr.stage import AsrStage
from processors.replay.plot import plot_report
from processors.replay.report import Pair, Report, build_report, load_references, score_references
from processors.replay.run import Manifest, overrides, replay, shadow_group, shadow_topic
from schemas import Utterance, encode
from streams.admin import ensure_topics, topic_partitions
from streams.app import group_id
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings, get_settings
from streams.topics import ALL_TOPICS, EGRESS, TRANSCRIPTS, UTTERANCES
from tests.conftest import load_clip
from tests.processors.test_archive import archive_until, needs_kafka
from tests.streams.test_broker import bootstrap  # noqa: F401  (a free broker address, as a fixture)
from voxbus.cli import app

CLIPS = ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0920")
SESSION = "s-replayed"


def utterances(session: str = SESSION) -> list[Utterance]:
    out, start = [], 0
    for clip in CLIPS:
        audio, _ = load_clip(clip)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
        out.append(Utterance(session_id=session, turn_id=f"a{start}", start_sample=start,
                             end_sample=start + audio.size, pcm=pcm, speech_end_ts=time.time()))
        start += audio.size + 16000
    return out


def references() -> dict[str, dict[str, str]]:
    """The clips' LibriVox texts as a references manifest ({session_id: {turn_id: text}})."""
    return {SESSION: {u.turn_id: load_clip(clip)[1] for u, clip in zip(utterances(), CLIPS, strict=True)}}


def candidate_texts(report: Report) -> list[tuple[str, str | None]]:
    return [(p.turn_id, p.candidate) for p in report.pairs if p.topic == TRANSCRIPTS.name]


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
        assert [row[:2] for row in manifest.cpu_ms] == [[SESSION, u.turn_id] for u in utterances()]
        assert all(row[2] > 0 for row in manifest.cpu_ms)
        # the same inputs again: the same transcripts (seeded generators, one input at a time)
        again = asyncio.run(replay(settings, "asr", "beam1-again", started, time.time(), [SESSION],
                                   overrides(["VOXBUS_WHISPER_BEAM_SIZE=1"])))
        assert again.outputs == manifest.outputs
        # nothing on any declared topic: no caller, no stage sees a replay
        assert asyncio.run(end_offsets(settings)) == before
        shadow = asyncio.run(topic_partitions(settings, shadow_topic("beam1", TRANSCRIPTS.name)))
        assert shadow
        refs = tmp_path / "refs.json"
        refs.write_text(json.dumps(references()))
        report = asyncio.run(build_report(settings, "beam1", load_references(refs)))
        repeated = asyncio.run(build_report(settings, "beam1-again"))
        # the command prints the same comparison as a table
        for name, value in (("EMBEDDED_LISTEN", bootstrap), ("BROKER", "kafka"),
                            ("ARCHIVE_DIR", str(settings.archive_dir))):
            monkeypatch.setenv(f"VOXBUS_{name}", value)  # undone after the test, as the cached settings
        monkeypatch.setenv("COLUMNS", "220")  # rich's width: the table unwrapped
        try:
            printed = CliRunner().invoke(app, ["shadow", "report", "beam1", "--refs", str(refs),
                                               "--plot", str(tmp_path / "beam1.png")], terminal_width=200)
        finally:
            get_settings.cache_clear()
        assert printed.exit_code == 0, printed.output
        words = " ".join(printed.output.split())
        assert "matched': 2" in words and "WER against references" in words
        print(f"\n$ voxbus shadow report beam1 --refs refs.json --plot beam1.png\n{printed.output}")
    finally:
        stop_process(proc)
    assert report.counts[TRANSCRIPTS.name] == {"production": 2, "candidate": 2, "matched": 2}
    pairs = [p for p in report.pairs if p.topic == TRANSCRIPTS.name]
    assert [p.turn_id for p in pairs] == sorted(u.turn_id for u in utterances())
    assert all(p.production and p.candidate and p.wer is not None for p in pairs)
    assert report.wer is not None and 0.0 <= report.wer <= 0.5, pairs  # the same model, another beam
    assert report.latency_ms["production"] and report.latency_ms["candidate"]
    assert report.as_json()["stage"] == "asr"
    assert candidate_texts(repeated) == candidate_texts(report)
    assert report.reference_wer["turns"] == 2
    assert all(0.0 <= report.reference_wer[side] <= 0.5 for side in ("production", "candidate"))
    assert [p.reference for p in pairs] == [references()[SESSION][p.turn_id] for p in pairs]
    assert report.cpu_ms["candidate"] > 0 and all(p.candidate_cpu_ms for p in pairs)
    assert (tmp_path / "beam1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nbeam 1 vs beam 5: WER {report.wer}, against references {report.reference_wer}, "
          f"latency ms {report.latency_ms}, CPU ms {report.cpu_ms}, "
          f"texts {[(p.production, p.candidate) for p in pairs]}")


def test_overrides_are_validated_settings():
    assert overrides(["VOXBUS_WHISPER_BEAM_SIZE=1", "voxbus_llm_temperature=0"]) == {
        "whisper_beam_size": 1, "llm_temperature": 0.0}
    for bad in ("VOXBUS_NO_SUCH_SETTING=1", "VOXBUS_WHISPER_BEAM_SIZE", "VOXBUS_WHISPER_BEAM_SIZE=wide"):
        with pytest.raises(ValueError):
            overrides([bad])


def test_references_are_read_in_both_shapes_and_bad_ones_refused(tmp_path):
    path = tmp_path / "refs.json"
    path.write_text(json.dumps({"s-1": {"a0": "where is my order"}}))
    assert load_references(path) == {("s-1", "a0"): "where is my order"}
    path.write_text(json.dumps([{"session_id": "s-1", "turn_id": "a0", "text": "where is my order"}]))
    assert load_references(path) == {("s-1", "a0"): "where is my order"}
    for bad in ('"text"', '{"s-1": "a0"}', '[{"session_id": "s-1", "turn_id": 0, "text": "x"}]', "not json"):
        path.write_text(bad)
        with pytest.raises(ValueError):
            load_references(path)


def test_replay_needs_either_a_time_range_or_live():
    for args in (["--from", "0"], ["--live", "--from", "0", "--to", "1"], []):
        printed = CliRunner().invoke(app, ["replay", "--stage", "asr", "--run", "r", *args],
                                     terminal_width=200)
        assert printed.exit_code == 2 and "either --from and --to, or --live" in printed.output


async def committed(settings: Settings, group: str, topic: str) -> list[int | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return [await consumer.committed(tp) for tp in await topic_partitions(settings, topic)]
    finally:
        await consumer.stop()


async def live_run(settings: Settings) -> tuple[Manifest, list[str]]:
    """A live run started after one utterance, cancelled (as by Ctrl-C) once the next is replayed."""
    before, after = utterances("s-before")[0], utterances("s-live")[1]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(UTTERANCES.name, encode(before), key=before.session_id.encode())
        ready = asyncio.Event()
        task = asyncio.create_task(replay(settings, "asr", "live", 0.0, 0.0,
                                          changes=overrides(["VOXBUS_WHISPER_BEAM_SIZE=1"]), live=True,
                                          ready=ready))
        await asyncio.wait_for(ready.wait(), 120)
        await producer.send_and_wait(UTTERANCES.name, encode(after), key=after.session_id.encode())
    finally:
        await producer.stop()
    shadow, deadline = [], time.monotonic() + 120
    while not shadow and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        if task.done():
            break
        try:
            shadow = [read.record.session_id async for read in read_topic(settings, shadow_topic("live",
                                                                                                  TRANSCRIPTS.name))]
        except LookupError:  # the shadow topic is made with the first output
            continue
    task.cancel()
    return await task, shadow


@needs_kafka
def test_live_run_follows_the_topic_from_its_end_in_its_own_group(bootstrap, tmp_path):  # noqa: F811
    settings = Settings(broker="kafka", embedded_listen=bootstrap, archive_dir=tmp_path / "archive",
                        data_dir=tmp_path / "data")
    proc = start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                 data_dir=tmp_path / "kafka", settings=settings)
    try:
        asyncio.run(ensure_topics(settings))
        manifest, shadow = asyncio.run(live_run(settings))
        offsets = asyncio.run(end_offsets(settings))
        ours = asyncio.run(committed(settings, shadow_group("live"), UTTERANCES.name))
        production_group = asyncio.run(committed(settings, group_id("asr"), UTTERANCES.name))
        timed = asyncio.run(replay(settings, "asr", "live-for", 0.0, 0.0, live=True, seconds=1.0))
    finally:
        stop_process(proc)
    assert shadow == ["s-live"]  # the record produced after the start, not the one before
    # the input in hand when the run was cancelled is handled whole: its transcript and the
    # caller-facing copy asr puts on the egress (a shadow topic too)
    assert manifest.live and manifest.inputs == 1
    assert manifest.outputs == {TRANSCRIPTS.name: 1, EGRESS.name: 1}
    assert Manifest.load(settings, "live").inputs == 1 and manifest.end >= manifest.start
    # no declared topic but the two utterances produced here holds a record: no caller hears a shadow run
    assert sum(offsets.values()) == 2
    assert sum(n for tp, n in offsets.items() if tp.topic == UTTERANCES.name) == 2
    # the run committed in its own group only
    assert any(ours) and production_group == [None] * len(production_group)
    assert timed.inputs == 0 and timed.live  # --for: stops by itself


def synthetic_report() -> Report:
    """A report of two transcript pairs, as build_report makes them (no broker, no model)."""
    report = Report("r", "asr", {"whisper_beam_size": 1}, wer=0.25)
    report.pairs = [Pair(TRANSCRIPTS.name, "s-1", "a0", 0, "where is my order", "where is my order", 0.0,
                         production_ms=410.0, candidate_ms=300.0, candidate_cpu_ms=520.0),
                    Pair(TRANSCRIPTS.name, "s-1", "a9", 0, "cancel it please", "cancel it", 0.333,
                         production_ms=390.0, candidate_ms=280.0, candidate_cpu_ms=500.0)]
    return report


def test_references_score_both_sides_and_the_report_draws_as_a_png(tmp_path):
    report = synthetic_report()
    score_references(report, {("s-1", "a0"): "Where is my order?", ("s-1", "a9"): "cancel it please",
                              ("s-other", "a0"): "not in this report"})
    # one deletion in seven words
    assert report.reference_wer == {"turns": 2, "production": 0.0, "candidate": 0.143}
    assert [p.reference for p in report.pairs] == ["Where is my order?", "cancel it please"]
    score_references(report, {})
    assert report.reference_wer == {"turns": 0, "production": None, "candidate": None}
    path = plot_report(report, tmp_path / "report.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_report(Report("empty", "vad", {}), tmp_path / "empty.png").stat().st_size > 0
