"""The bus as a trust boundary (issue 13, finding 5): what a hostile producer injects is dead-lettered.

The stages run under the real runtime (:class:`processors.runtime.StageRunner`), with a
producer that refuses what faust's would: a record over its request limit raises, so a
record that could not be dead-lettered, or an output that cannot be produced, shows here as
it did on the broker.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError

from processors.base import Emit, Stage
from processors.runtime import StageRunner
from schemas import (
    DEAD_LETTER_PAYLOAD_BYTES,
    DeadLetter,
    ErrorEvent,
    Record,
    SynthAudio,
    Transcript,
    Utterance,
    decode,
    encode,
)
from streams.topics import AUDIO, DEAD_LETTER, EGRESS, REPLIES, TRANSCRIPTS, UTTERANCES
from tests.conftest import load_clip
from tests.processors.conftest import asr_stage, chunks
from tests.processors.test_analytics import FakeProducer

CLIP = "sense_and_sensibility_01_austen_64kb-0930"
RATE = 16000
FAUST_MAX_REQUEST_SIZE = 1_000_000
"""faust's ``producer_max_request_size`` default (bytes), which it hands to aiokafka."""


class LimitedProducer(FakeProducer):
    """A producer that refuses a record over faust's request limit, as faust's aiokafka driver does."""

    async def send_and_wait(self, topic, key=None, value=None, partition=None, timestamp=None, headers=None):
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers or [])
        if size > FAUST_MAX_REQUEST_SIZE:
            raise ProducerSendError(f"Error while sending: {MessageSizeTooLargeError(size)!r}")
        await super().send_and_wait(topic, key, value, partition, timestamp, headers)


def runner_for(stage: Stage) -> StageRunner:
    app = SimpleNamespace(producer=LimitedProducer(), consumer=SimpleNamespace(assignment=lambda: {1}))
    return StageRunner(stage, app)  # type: ignore[arg-type]


def message(value: bytes, topic: str, key: str, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key.encode(), value=value,
                           timestamp=None)


def sent(runner: StageRunner, topic: str) -> list[Record]:
    return [decode(s["value"]) for s in runner.app.producer.sent if s["topic"] == topic]


def utterance(session_id: str, audio: np.ndarray) -> Utterance:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    return Utterance(session_id=session_id, turn_id="a0-1", start_sample=0, end_sample=audio.size, pcm=pcm,
                     speech_end_ts=1.0, marks={"vad.emit": 1.0})


def forged(record: Record, **fields: object) -> bytes:
    """``record`` as a hostile producer would write it, with ``fields`` changed and no validation."""
    return msgpack.packb({**record.model_dump(mode="python"), **fields}, use_bin_type=True)


@pytest.fixture
def asr_runner(settings, recognizer) -> StageRunner:
    stage = asr_stage(settings, recognizer)
    return runner_for(stage)


def turns(runner: StageRunner) -> list[tuple[int, int]]:
    """The (start, end) samples of the confirmed utterances ``runner`` produced."""
    return [(r.start_sample, r.end_sample) for r in sent(runner, UTTERANCES.name)
            if isinstance(r, Utterance) and not r.speculative]


async def endpoint(runner: StageRunner, session_id: str, values: list[bytes]) -> None:
    """Feed encoded audio records to the vad stage in batches of 8, as its worker takes them."""
    for offset in range(0, len(values), 8):
        await runner.on_batch([message(v, AUDIO.name, session_id, offset + i)
                               for i, v in enumerate(values[offset:offset + 8])])


async def test_a_chunk_ten_minutes_ahead_is_dead_lettered_and_the_call_goes_on(vad_stage):
    audio, _ = load_clip(CLIP)
    audio = np.concatenate([audio, np.zeros(RATE, dtype=np.float32)])
    clean = runner_for(vad_stage)
    await endpoint(clean, "bounds-clean", [encode(r) for r in chunks("bounds-clean", audio)])
    runner = runner_for(vad_stage)
    records = list(chunks("bounds-ahead", audio))
    ahead = forged(records[10], start_sample=600 * RATE)  # chunk 10 again, claiming to start 10 min in
    started = time.perf_counter()
    await endpoint(runner, "bounds-ahead", [encode(r) for r in records[:10]] + [ahead]
                   + [encode(r) for r in records[10:]])
    assert time.perf_counter() - started < 5.0
    [letter] = sent(runner, DEAD_LETTER.name)
    assert letter.offset == 10 and "start_sample 9600000 runs ahead of chunk 10" in letter.reason
    assert turns(runner) == turns(clean) != [], "the call's turns keep their own timeline"
    assert vad_stage.sessions["bounds-ahead"].next_sample == audio.size


async def test_a_125_second_utterance_is_dead_lettered_without_a_decode(asr_runner):
    audio, _ = load_clip(CLIP)
    long = forged(utterance("bounds-long", audio), pcm=b"\0\0" * (125 * RATE))
    asr_runner.stage.recognizers = None  # a decode would raise
    started = time.perf_counter()
    await asr_runner.on_message(message(long, UTTERANCES.name, "bounds-long", 7))
    assert time.perf_counter() - started < 1.0
    [letter] = sent(asr_runner, DEAD_LETTER.name)
    assert letter.reason.startswith("schema: record of 4000") and "bytes exceeds" in letter.reason
    assert letter.payload == long[:DEAD_LETTER_PAYLOAD_BYTES] and letter.payload_size == len(long)
    assert not sent(asr_runner, TRANSCRIPTS.name)


@pytest.mark.parametrize("poison", ["an utterance of 1.2 MB", "1.2 MB of garbage"])
async def test_a_record_over_a_megabyte_mid_batch_is_dead_lettered_the_rest_transcribed(asr_runner, poison):
    audio, _ = load_clip(CLIP)
    big = (forged(utterance("bounds-big", audio), pcm=b"\0\0" * 600_000) if poison.startswith("an utterance")
           else b"\xc1" * 1_200_000)
    batch = [message(encode(utterance("bounds-1", audio)), UTTERANCES.name, "bounds-1", 1),
             message(big, UTTERANCES.name, "bounds-big", 2),
             message(encode(utterance("bounds-3", audio)), UTTERANCES.name, "bounds-3", 3)]
    await asr_runner.on_batch(batch)
    [letter] = sent(asr_runner, DEAD_LETTER.name)
    assert letter.offset == 2 and letter.reason.startswith("schema: record of 1200")
    assert len(letter.payload) == DEAD_LETTER_PAYLOAD_BYTES and letter.payload_size == len(big)
    assert sorted(t.session_id for t in sent(asr_runner, TRANSCRIPTS.name)) == ["bounds-1", "bounds-3"]


class Synth(Stage):
    """A stage whose output for turn ``huge`` is over the producer's limit (a stage bug, a hostile text)."""

    name = "synth"
    input = REPLIES
    accepts = (Transcript,)
    batch_setting = "asr_batch_size"

    async def handle(self, record):
        async for emit in self.handle_batch([record]):
            yield emit

    async def handle_batch(self, records):
        for record in records:
            samples = 600_000 if record.turn_id == "huge" else 10
            yield Emit(EGRESS, SynthAudio(session_id=record.session_id, turn_id=record.turn_id, index=0,
                                          seq=0, sample_rate=22050, pcm=b"\0\0" * samples))


async def test_an_output_over_the_producer_limit_dead_letters_its_input_and_the_batch_goes_on(settings):
    runner = runner_for(Synth(settings))
    turns = ["a1", "huge", "a3"]
    await runner.on_batch([message(encode(Transcript(session_id="bounds-out", turn_id=t, text="hi")),
                                   REPLIES.name, "bounds-out", i) for i, t in enumerate(turns)])
    [letter] = sent(runner, DEAD_LETTER.name)
    assert isinstance(letter, DeadLetter) and letter.offset == 1
    assert "synth_audio record of 1200" in letter.reason
    egress = sent(runner, EGRESS.name)
    assert {r.turn_id for r in egress if isinstance(r, SynthAudio)} == {"a1", "a3"}
    assert [(r.turn_id, r.code) for r in egress if isinstance(r, ErrorEvent)] == [("huge", "stage_error")]
