"""A generation replay over a recorded call, on the stack (real Apache Kafka, real stages, the embedded
llama.cpp server with SmolLM2-135M, the archive): a candidate that lets the LLM answer every question at
temperature 0, beside production; the report has every turn's reply, their difference and both
grounded-answer rates; nothing reaches a caller-facing topic; a second replay gives the same report."""

from __future__ import annotations

import asyncio
import time
import uuid

import numpy as np
import pytest
import soundfile
from aiokafka import AIOKafkaConsumer, TopicPartition
from typer.testing import CliRunner

from processors.archive.reader import archive_root, read_archive
from processors.replay.report import Report, build_report
from processors.replay.run import overrides, replay, shadow_topic
from schemas import ReplyText, RetrievalResult, ToolCall, ToolResult
from streams.admin import topic_partitions
from streams.clients import consumer_kwargs
from streams.topics import EGRESS, HANDOFFS, REPLIES, RETRIEVALS, TOOL_CALLS, TOOL_RESULTS
from tests.integration.caller import piper_speech
from tests.processors.test_replay import end_offsets
from voxbus.cli import app
from voxbus.client import call

pytestmark = pytest.mark.integration

QUESTIONS = ("Why is my bill higher this month?", "How do I cancel my contract?")
GAP_S = 12.0
"""Silence after each question: longer than its text reply takes to arrive (``speak`` False;
VOXBUS_LLM_MAX_TOKENS 64 tokens), so none barges in."""
CANDIDATE = ["VOXBUS_LLM_TEMPERATURE=0", "VOXBUS_GROUNDING_DIRECT_SCORE=1.0"]
"""The LLM answers every question (no article read out: a cosine never reaches 1.0), greedily."""
CALLER_FACING = (EGRESS, REPLIES, TOOL_CALLS, HANDOFFS)
"""What the generation stage writes in production: what callers (through tts and the ingress) get."""


def archived(stack, session_id: str) -> dict[type, list]:
    """The session's archived retrieval results, tool calls, tool results and reply sentences, by type."""
    topics = [RETRIEVALS.name, TOOL_CALLS.name, TOOL_RESULTS.name, REPLIES.name]
    reads = list(read_archive(archive_root(stack), topics, sessions=[session_id], audio=False))
    return {kind: [r.record for r in reads if isinstance(r.record, kind)]
            for kind in (RetrievalResult, ToolCall, ToolResult, ReplyText)}


def outcome(report: Report) -> list[tuple]:
    """What must be the same in two replays of the same inputs (not the run name, latency or CPU)."""
    return [(p.turn_id, p.candidate, p.wer, p.candidate_grounded, p.candidate_k_precision,
             p.candidate_sources) for p in report.replies]


@pytest.fixture(scope="module")
def recorded_call(stack, url, tmp_path_factory):
    silence = np.zeros(int(GAP_S * 16000), np.int16)
    speech = [part for question in QUESTIONS for part in (piper_speech(stack, question), silence)]
    path = tmp_path_factory.mktemp("replay") / "two_questions.wav"
    soundfile.write(path, np.concatenate([np.zeros(8000, np.int16), *speech]), 16000, subtype="PCM_16")
    session_id = f"replay-{uuid.uuid4().hex[:8]}"
    started = time.time()
    turns = asyncio.run(call(url, path, session_id=session_id, timeout_s=240, speak=False))
    assert len(turns) == len(QUESTIONS), [t.transcript for t in turns]
    # complete, then settled: no new record for longer than VOXBUS_ARCHIVE_FLUSH_S (a sentence may be
    # flushed after its turn's final one, which is in another archive file), on a busy box
    deadline, settled_for = time.monotonic() + 150, stack.archive_flush_s + 4.0
    counts, since = None, time.monotonic()
    while time.monotonic() < deadline:
        records = archived(stack, session_id)
        now = {kind: len(found) for kind, found in records.items()}
        if now != counts:
            counts, since = now, time.monotonic()
        elif (len(records[RetrievalResult]) == len(turns)
              and len(records[ToolResult]) == len(records[ToolCall])
              and sum(r.final for r in records[ReplyText]) == len(turns)
              and time.monotonic() - since >= settled_for):
            break
        time.sleep(2)
    assert len(records[RetrievalResult]) == len(turns), "the archive did not get the retrieval results"
    return session_id, started, time.time(), records


def test_generation_replay_reports_reply_differences_and_grounding_and_reaches_no_caller(stack,
                                                                                          recorded_call):
    session_id, start, end, records = recorded_call
    retrievals, results, replies = records[RetrievalResult], records[ToolResult], records[ReplyText]
    before = asyncio.run(end_offsets(stack))
    manifests = [asyncio.run(replay(stack, "generation", run, start, end, [session_id], overrides(CANDIDATE)))
                 for run in ("llm-all", "llm-all-again")]
    after = asyncio.run(end_offsets(stack))
    reports = [asyncio.run(build_report(stack, m.run)) for m in manifests]
    report = reports[0]
    for manifest in manifests:
        assert manifest.inputs == len(retrievals) + len(results), "each archived retrieval and tool result"
        assert manifest.outputs[REPLIES.name] == manifest.outputs[EGRESS.name] >= len(retrievals)
        assert manifest.overrides == {"llm_temperature": 0.0, "grounding_direct_score": 1.0}
    # no record of the replays on what callers get: the caller-facing topics did not move
    moved = {tp: (before.get(tp), n) for tp, n in after.items()
             if tp.topic in {spec.name for spec in CALLER_FACING} and n != before.get(tp)}
    assert not moved, moved
    assert asyncio.run(end_offsets_of(stack, shadow_topic("llm-all", REPLIES.name))) == \
        manifests[0].outputs[REPLIES.name]
    # the expected counts: every production sentence and every candidate one, both sides per turn
    assert report.counts[REPLIES.name]["production"] == len(replies)
    assert report.counts[REPLIES.name]["candidate"] == manifests[0].outputs[REPLIES.name]
    assert [p.turn_id for p in report.replies] == sorted(r.turn_id for r in retrievals)
    assert all(p.production and p.candidate for p in report.replies), report.replies
    assert report.reply_difference["turns"] == len(retrievals)
    for side in ("production", "candidate"):
        assert report.grounded[side]["turns"] == len(retrievals)
        assert 0.0 <= report.grounded[side]["rate"] <= 1.0
    assert "K-Precision" in report.grounded["rule"]
    # the same inputs, the same candidate: the same report
    assert outcome(reports[1]) == outcome(report)
    assert reports[1].reply_difference == report.reply_difference and reports[1].grounded == report.grounded
    assert reports[1].counts == report.counts
    # the command prints the replies per turn and the rates
    printed = CliRunner().invoke(app, ["shadow", "report", "llm-all"], terminal_width=200)
    assert printed.exit_code == 0, printed.output
    words = " ".join(printed.output.split())
    assert "replies per turn" in words and "grounded answers" in words and "reply difference" in words
    for p in report.replies:
        print(f"\n{p.turn_id}: production {p.production!r} (grounded {p.production_grounded}, "
              f"K-P {p.production_k_precision}, {p.production_sources})\n     candidate {p.candidate!r} "
              f"(grounded {p.candidate_grounded}, K-P {p.candidate_k_precision}, {p.candidate_sources}); "
              f"WER {p.wer}")
    print(f"production's tool calls {[(c.turn_id, c.tool, c.arguments) for c in records[ToolCall]]}, "
          f"results {[(r.turn_id, r.status, r.say) for r in results]}; candidate's outputs "
          f"{manifests[0].outputs}")
    print(f"counts {report.counts}\nreply difference {report.reply_difference}\ngrounded {report.grounded}\n"
          f"latency ms {report.latency_ms}; CPU ms per input {report.cpu_ms}; "
          f"replay seconds {[m.seconds for m in manifests]}")


async def end_offsets_of(stack, topic: str) -> int:
    """Records on ``topic`` (the sum of its partitions' end offsets)."""
    consumer = AIOKafkaConsumer(**consumer_kwargs(stack))
    await consumer.start()
    try:
        partitions: list[TopicPartition] = await topic_partitions(stack, topic)
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()
