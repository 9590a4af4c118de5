"""The analytics fold on real turn records, without a broker: windows, percentiles, upserts, readers."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.analytics import io as analytics_io
from processors.analytics.stage import AnalyticsRunner, AnalyticsStage, window_key
from processors.analytics.windows import (
    ESCALATIONS,
    LATENCY,
    WINDOW_S,
    add_sample,
    dimensions,
    percentile,
    window_start,
)
from schemas import (
    DeadLetter,
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SentimentCount,
    TurnRecord,
    TurnsPerMinute,
    WindowedRecord,
    decode,
    encode,
)
from streams.settings import Settings
from streams.topics import (
    ALL_TOPICS,
    ANALYTICS_ESCALATIONS,
    ANALYTICS_INTENTS,
    ANALYTICS_LATENCY,
    ANALYTICS_SENTIMENT,
    ANALYTICS_TOPICS,
    ANALYTICS_TURNS,
    ANALYTICS_WINDOWS,
    DEAD_LETTER,
    EGRESS,
    HEARTBEATS,
)

T0 = 1_700_000_040.0  # a window start (a multiple of 60)
NOW = T0 + 120.0


def turn(session: str = "s1", turn_id: str = "a1", *, ts: float = T0 + 5, intent: str = "billing",
         score: float = 0.0, source: str = "voice", latency: dict[str, float] | None = None,
         v2v: float | None = None, interrupted: bool = False, confidence: float = 0.9) -> TurnRecord:
    label = "negative" if score <= -0.05 else "positive" if score >= 0.05 else "neutral"
    if v2v is None:
        v2v = (latency or {"voice_to_voice": 1000.0}).get("voice_to_voice")
    return TurnRecord(
        session_id=session, turn_id=turn_id, source=source, transcript="when is my bill due",
        intent=intent, confidence=confidence, sentiment=label, sentiment_score=score,
        reply_text="On the 5th.", marks={"vad.speech_end": ts - 1, "ingress.first_audio": ts},
        latency_ms=latency if latency is not None else {"asr": 200.0, "voice_to_voice": 1000.0},
        voice_to_voice_ms=v2v, interrupted=interrupted, ts=ts,
    )


@pytest.fixture
def stage(tmp_path) -> AnalyticsStage:
    stage = AnalyticsStage(Settings(data_dir=tmp_path))
    stage.clock = lambda: NOW
    return stage


async def fold_all(stage: AnalyticsStage, turns: list[TurnRecord]) -> list[WindowedRecord]:
    out = []
    for record in turns:
        async for emit in stage.aggregate(record):
            assert emit.topic.name == {
                "analytics_turns": ANALYTICS_TURNS, "analytics_intent": ANALYTICS_INTENTS,
                "analytics_sentiment": ANALYTICS_SENTIMENT, "analytics_escalations": ANALYTICS_ESCALATIONS,
                "analytics_latency": ANALYTICS_LATENCY,
            }[emit.record.type].name
            out.append(emit.record)
    return out


def last_per_key(records: list[WindowedRecord]) -> dict[tuple[str, str], WindowedRecord]:
    """What a consumer of the upsert topics keeps."""
    latest: dict[tuple[str, str], WindowedRecord] = {}
    for record in records:
        latest[(record.type, record.key)] = record
    return latest


# -- windows -------------------------------------------------------------------------------------


def test_tumbling_windows_are_aligned_minutes():
    assert window_start(T0) == T0
    assert window_start(T0 + 59.999) == T0
    assert window_start(T0 + 60) == T0 + 60
    assert window_start(T0 - 0.001) == T0 - 60
    assert window_key(turn(ts=T0 + 30)) == str(int(T0)).encode()


def test_a_turn_updates_its_window_dimensions():
    dims = [(m.name, d) for m, d in dimensions(turn(intent="human_agent", score=-0.7))]
    assert dims == [("turns", "all"), ("intents", "human_agent"), ("sentiment", "negative"),
                    ("escalations", "all"), ("latency", "asr"), ("latency", "voice_to_voice")]
    assert ("escalations", "all") not in [(m.name, d) for m, d in dimensions(turn(score=-0.49))]
    assert (ESCALATIONS, "all") in list(dimensions(turn(score=-0.5)))  # "<= -0.5" is strongly negative
    assert (LATENCY, "voice_to_voice") in list(dimensions(turn(latency={"asr": 1.0}, v2v=900.0)))


# -- percentiles ---------------------------------------------------------------------------------


def nearest_rank(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def histogram(samples: list[float]) -> dict:
    state: dict = {}
    for sample in samples:
        state = add_sample(state, sample)
    return state


def test_percentiles_of_few_samples_are_exact_where_they_can_be():
    assert [percentile(histogram([812.0]), q) for q in (0.5, 0.95, 0.99)] == [812.0, 812.0, 812.0]
    state = histogram([100.0, 200.0, 300.0, 400.0])
    assert percentile(state, 0.5) == pytest.approx(200.0, rel=0.01)
    assert percentile(state, 0.95) == percentile(state, 0.99) == 400.0  # the max, exactly
    assert percentile(state, 0.01) == 100.0  # the min, exactly
    state = histogram([900.0, 901.0, 902.0, 903.0, 904.0, 905.0])  # all in one bucket
    assert percentile(state, 0.5) == pytest.approx(902.0, abs=1.0)
    assert percentile(state, 0.95) == 905.0


def test_percentiles_stay_within_one_percent_on_a_long_tail():
    rng = random.Random(11)
    samples = [rng.lognormvariate(6.5, 0.8) for _ in range(5000)]
    state = histogram(samples)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert percentile(state, q) == pytest.approx(nearest_rank(samples, q), rel=0.01), q
    assert len(state["h"]) < 800  # a few hundred buckets, not 5000 samples
    assert state["n"] == 5000 and state["sum"] == pytest.approx(sum(samples))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 120_000.0, allow_nan=False), min_size=1, max_size=60),
       st.sampled_from([0.5, 0.95, 0.99]))
def test_percentile_is_within_one_percent_of_nearest_rank(samples, q):
    value = percentile(histogram(samples), q)
    assert value == pytest.approx(nearest_rank(samples, q), rel=0.0101)
    assert min(samples) <= value <= max(samples)


def test_non_positive_latencies_count_as_zero():
    state = histogram([-3.0, 0.0, 50.0])
    assert percentile(state, 0.5) == 0.0
    assert percentile(state, 0.99) == 50.0
    with pytest.raises(ValueError):
        percentile({}, 0.5)


# -- the fold -----------------------------------------------------------------------------------


async def test_windows_count_turns_sessions_and_channels(stage):
    turns = [
        turn("s1", "a1", ts=T0 + 1), turn("s1", "a2", ts=T0 + 20, source="text", interrupted=True),
        turn("s2", "a1", ts=T0 + 59.9), turn("s1", "a3", ts=T0 + 61),  # next window
    ]
    latest = last_per_key(await fold_all(stage, turns))
    first = latest[("analytics_turns", f"{int(T0)}/all")]
    assert isinstance(first, TurnsPerMinute)
    assert (first.turns, first.sessions, first.voice, first.text, first.interrupted) == (3, 2, 2, 1, 1)
    assert (first.window_start, first.window_end, first.ts) == (T0, T0 + WINDOW_S, NOW)
    second = latest[("analytics_turns", f"{int(T0) + 60}/all")]
    assert (second.turns, second.sessions) == (1, 1)  # s1 again, but new to this window


async def test_every_update_is_published_and_the_last_one_per_key_wins(stage):
    records = await fold_all(stage, [turn("s1", f"a{i}", ts=T0 + i) for i in range(5)])
    counts = [r.turns for r in records if isinstance(r, TurnsPerMinute)]
    assert counts == [1, 2, 3, 4, 5]  # live values: one upsert per turn
    assert len({r.key for r in records if isinstance(r, TurnsPerMinute)}) == 1


async def test_intents_and_sentiment(stage):
    turns = [turn("s1", "a1", intent="billing", score=0.6, confidence=0.8),
             turn("s1", "a2", intent="billing", score=0.2, confidence=0.6),
             turn("s2", "a1", intent="refund", score=-0.3),
             turn("s3", "a1", intent="", score=0.0)]
    latest = last_per_key(await fold_all(stage, turns))
    billing = latest[("analytics_intent", f"{int(T0)}/billing")]
    assert isinstance(billing, IntentCount)
    assert (billing.turns, billing.confidence_mean) == (2, pytest.approx(0.7))
    assert latest[("analytics_intent", f"{int(T0)}/refund")].turns == 1
    assert latest[("analytics_intent", f"{int(T0)}/unknown")].turns == 1  # no intent: still counted
    positive = latest[("analytics_sentiment", f"{int(T0)}/positive")]
    assert isinstance(positive, SentimentCount)
    assert (positive.turns, positive.score_mean) == (2, pytest.approx(0.4))
    assert latest[("analytics_sentiment", f"{int(T0)}/negative")].score_mean == pytest.approx(-0.3)
    assert latest[("analytics_sentiment", f"{int(T0)}/neutral")].turns == 1


async def test_escalations_are_human_agent_or_strongly_negative(stage):
    turns = [turn("s1", "a1", intent="human_agent"),
             turn("s2", "a1", score=-0.8),
             turn("s3", "a1", intent="human_agent", score=-0.9),
             turn("s3", "a2", score=-0.5),
             turn("s4", "a1", score=-0.49),  # negative, but not strongly: no escalation
             turn("s5", "a1", intent="billing")]
    records = await fold_all(stage, turns)
    escalations = [r for r in records if isinstance(r, EscalationCount)]
    assert [r.turns for r in escalations] == [1, 2, 3, 4]  # published only when one happens
    last = escalations[-1]
    assert (last.human_agent, last.negative) == (2, 3)
    assert last.session_ids == ["s1", "s2", "s3"]
    assert last.key == f"{int(T0)}/all"


async def test_latency_percentiles_per_span_and_window(stage):
    rng = random.Random(5)
    asr = [rng.uniform(150, 400) for _ in range(40)]
    v2v = [rng.lognormvariate(7, 0.3) for _ in range(40)]
    turns = [turn("s1", f"a{i}", ts=T0 + i, latency={"asr": a, "voice_to_voice": v}, v2v=v)
             for i, (a, v) in enumerate(zip(asr, v2v, strict=True))]
    turns.append(turn("t1", "x1", ts=T0 + 45, source="text", latency={"text_to_first_sentence": 700.0},
                      v2v=None))
    latest = last_per_key(await fold_all(stage, turns))
    for span, samples in (("asr", asr), ("voice_to_voice", v2v)):
        record = latest[("analytics_latency", f"{int(T0)}/{span}")]
        assert isinstance(record, LatencyPercentiles)
        assert record.turns == 40
        assert record.min_ms == round(min(samples), 1) and record.max_ms == round(max(samples), 1)
        assert record.mean_ms == pytest.approx(sum(samples) / 40, abs=0.05)
        for q, value in ((0.5, record.p50_ms), (0.95, record.p95_ms), (0.99, record.p99_ms)):
            assert value == pytest.approx(nearest_rank(samples, q), rel=0.0101), (span, q)
    text = latest[("analytics_latency", f"{int(T0)}/text_to_first_sentence")]
    assert text.turns == 1 and text.p50_ms == text.p99_ms == 700.0


async def test_redelivered_turn_is_not_counted_twice(stage):
    records = await fold_all(stage, [turn("s1", "a1"), turn("s1", "a1"), turn("s1", "a2")])
    assert [r.turns for r in records if isinstance(r, TurnsPerMinute)] == [1, 2]


async def test_turn_past_the_window_expiry_is_not_counted(stage):
    stage.clock = lambda: T0 + stage.settings.analytics_expires_s + 10
    assert await fold_all(stage, [turn(ts=T0 + 5)]) == []
    stage.clock = lambda: T0 + 600
    assert await fold_all(stage, [turn(ts=T0 + 5)])  # ten minutes late is fine


async def test_folding_with_faust_windowed_tables(tmp_path):
    """The same fold on real faust tumbling tables (faust's test context: no broker)."""
    import faust

    stage = AnalyticsStage(Settings(data_dir=tmp_path))
    stage.clock = lambda: NOW
    app = faust.App("test-analytics", broker="kafka://127.0.0.1:1", store="memory://",
                    key_serializer="raw", value_serializer="raw")
    stage.bind(app)
    out: list[WindowedRecord] = []

    @app.agent(app.topic("test-windows", value_serializer="raw"))
    async def fold_agent(stream):
        async for event in stream.events():
            async for emit in stage.aggregate(decode(event.message.value, TurnRecord)):
                out.append(emit.record)
            yield None

    app.finalize()
    app.flow_control.resume()
    turns = [turn("s1", "a1", ts=T0 + 1, latency={"asr": 100.0}),
             turn("s2", "a1", ts=T0 + 2, latency={"asr": 300.0}),
             turn("s1", "a1", ts=T0 + 1), turn("s1", "a2", ts=T0 + 70, latency={"asr": 50.0})]
    async with fold_agent.test_context() as agent:
        for record in turns:
            await agent.put(encode(record))
    latest = last_per_key(out)
    assert latest[("analytics_turns", f"{int(T0)}/all")].turns == 2  # the redelivery was recognised
    assert latest[("analytics_turns", f"{int(T0)}/all")].sessions == 2
    assert latest[("analytics_turns", f"{int(T0) + 60}/all")].turns == 1
    asr = latest[("analytics_latency", f"{int(T0)}/asr")]
    assert (asr.turns, asr.min_ms, asr.max_ms, asr.p99_ms) == (2, 100.0, 300.0, 300.0)
    assert stage.windows["turns"].table.table.window.expires == stage.settings.analytics_expires_s


# -- the runtime: routing, keys, dead letters ------------------------------------------------------


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_and_wait(self, topic, key=None, value=None, partition=None, timestamp=None, headers=None):
        self.sent.append({"topic": topic, "key": key, "value": value, "partition": partition})


def message(value: bytes, topic: str = "voxbus.turns", key: bytes = b"s1") -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=3, offset=42, key=key, value=value, timestamp=None)


@pytest.fixture
def runner(stage):
    app = SimpleNamespace(producer=FakeProducer(), consumer=SimpleNamespace(assignment=lambda: {1}))
    return AnalyticsRunner(stage, app)  # type: ignore[arg-type]


async def test_turns_are_routed_by_window_and_records_keyed_by_window_and_dimension(runner):
    record = turn("s1", "a1", ts=T0 + 30)
    await runner.on_message(message(encode(record)))
    [routed] = runner.app.producer.sent
    assert routed["topic"] == ANALYTICS_WINDOWS.name and routed["key"] == str(int(T0)).encode()
    assert decode(routed["value"]) == record
    await runner.on_window(message(routed["value"], topic=ANALYTICS_WINDOWS.name, key=routed["key"]))
    published = runner.app.producer.sent[1:]
    assert {p["topic"] for p in published} <= {t.name for t in ANALYTICS_TOPICS}
    for sent in published:
        assert sent["key"].decode() == decode(sent["value"]).key
    assert f"{int(T0)}/voice_to_voice".encode() in [p["key"] for p in published]


async def test_undecodable_turns_are_dead_lettered_and_callers_not_bothered(runner, stage):
    await runner.on_message(message(b"\xc1 not msgpack"))
    [letter] = runner.app.producer.sent
    assert letter["topic"] == DEAD_LETTER.name
    dead = decode(letter["value"], DeadLetter)
    assert dead.stage == "analytics" and dead.reason.startswith("schema: not msgpack")
    assert dead.payload == b"\xc1 not msgpack" and dead.session_id == "s1"

    async def broken(record):
        raise RuntimeError("boom")
        yield  # pragma: no cover

    stage.aggregate = broken  # type: ignore[method-assign]
    runner.app.producer.sent.clear()
    await runner.on_window(message(encode(turn()), topic=ANALYTICS_WINDOWS.name))
    topics = [s["topic"] for s in runner.app.producer.sent]
    assert topics == [DEAD_LETTER.name]  # and no ErrorEvent to voxbus.egress
    assert EGRESS.name not in topics
    await runner.heartbeat()
    assert runner.app.producer.sent[-1]["topic"] == HEARTBEATS.name


# -- records and topics ------------------------------------------------------------------------


windows_ = st.integers(0, 60_000_000).map(lambda m: float(m * 60))
counts = st.integers(0, 10_000)
STRATEGIES = {
    TurnsPerMinute: st.builds(
        lambda s, n, k: TurnsPerMinute(window_start=s, window_end=s + 60, turns=n, ts=s + 1,
                                       sessions=k, voice=n, text=0, interrupted=k),
        windows_, counts, counts),
    IntentCount: st.builds(
        lambda s, n, i: IntentCount(window_start=s, window_end=s + 60, turns=n, ts=s,
                                    intent=i, confidence_mean=0.5),
        windows_, counts, st.sampled_from(["billing", "unknown"])),
    SentimentCount: st.builds(
        lambda s, n, m: SentimentCount(window_start=s, window_end=s + 60, turns=n, ts=s,
                                       sentiment="negative", score_mean=m),
        windows_, counts, st.floats(-1, 1)),
    EscalationCount: st.builds(
        lambda s, n, ids: EscalationCount(window_start=s, window_end=s + 60, turns=n, ts=s,
                                          human_agent=n, negative=0, session_ids=ids),
        windows_, counts, st.lists(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True), max_size=5)),
    LatencyPercentiles: st.builds(
        lambda s, p: LatencyPercentiles(window_start=s, window_end=s + 60, turns=3, ts=s, span="asr",
                                        mean_ms=p, min_ms=p, max_ms=p, p50_ms=p, p95_ms=p, p99_ms=p),
        windows_, st.floats(0, 1e6)),
}


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_analytics_records_roundtrip_through_the_codec(cls):
    @settings(max_examples=30, deadline=None)
    @given(STRATEGIES[cls])
    def check(record):
        assert decode(encode(record), cls) == record
        assert record.key.startswith(f"{int(record.window_start)}/")

    check()


def test_analytics_topics_are_declared_and_resolvable():
    names = {t.name for t in ALL_TOPICS}
    assert {t.name for t in ANALYTICS_TOPICS} | {ANALYTICS_WINDOWS.name} <= names
    assert analytics_io.resolve_topic("latency") == "voxbus.analytics.latency"
    assert analytics_io.resolve_topic("turns") == "voxbus.turns"
    assert analytics_io.resolve_topic("turns-per-minute") == "voxbus.analytics.turns-per-minute"
    changelog = "voxbus-analytics-turns-changelog"
    assert analytics_io.resolve_topic(changelog) == changelog


# -- Parquet export (no broker: the topic reader is replaced) ---------------------------------------


def read_of(record, offset: int, topic: str = "voxbus.turns"):
    value = encode(record) if record is not None else b"\xc1junk"
    msg = SimpleNamespace(topic=topic, partition=0, offset=offset, timestamp=1_700_000_000_000 + offset,
                          key=b"s1", value=value)
    if record is None:
        return analytics_io.Read(msg, None, "not msgpack")
    return analytics_io.Read(msg, record)


async def test_export_writes_one_row_per_record_with_latency_columns(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    records = [turn("s1", "a1", latency={"asr": 210.0, "voice_to_voice": 990.0}),
               turn("s2", "a1", latency={"asr": 190.0, "llm_ttft": 400.0}, v2v=None, source="text"),
               None,
               turn("s3", "a1", latency={"asr": 180.0, "egress": 5.0})]

    async def fake_read(settings, topic, *, from_beginning=True, follow=False):
        assert (topic, from_beginning, follow) == ("voxbus.turns", True, False)
        for offset, record in enumerate(records):
            yield read_of(record, offset)

    monkeypatch.setattr(analytics_io, "read_topic", fake_read)
    monkeypatch.setattr(analytics_io, "EXPORT_BATCH_ROWS", 2)  # two batches with different columns
    out = tmp_path / "sub" / "turns.parquet"
    assert await analytics_io.export_parquet(Settings(data_dir=tmp_path), "voxbus.turns", out) == 4
    table = pq.read_table(out)
    assert table.num_rows == 4
    rows = table.to_pylist()
    assert [r["offset"] for r in rows] == [0, 1, 2, 3]
    assert [r["latency_asr_ms"] for r in rows] == [210.0, 190.0, None, 180.0]
    assert [r["latency_voice_to_voice_ms"] for r in rows] == [990.0, None, None, None]
    assert [r["latency_egress_ms"] for r in rows] == [None, None, None, 5.0]  # a column only batch 2 had
    assert rows[0]["voice_to_voice_ms"] == 990.0 and rows[1]["voice_to_voice_ms"] is None
    assert dict(rows[0]["marks"]) == {"vad.speech_end": T0 + 4, "ingress.first_audio": T0 + 5}
    assert rows[2]["decode_error"] == "not msgpack" and rows[2]["value"] == b"\xc1junk"
    assert rows[0]["session_id"] == "s1" and rows[1]["source"] == "text" and rows[0]["key"] == "s1"
    assert "latency_ms" not in table.column_names
    assert not list(out.parent.glob(".export-*")), "no scratch files left behind"


def test_rows_of_any_record_type_become_a_table():
    from schemas import SessionControl, StageHeartbeat

    heartbeat = StageHeartbeat(stage="vad", instance="h:1", ts=5.0)
    control = SessionControl(session_id="s1", action="start", ts=6.0,
                             config={"sample_rate": 16000, "speak": True})
    rows = [analytics_io.to_row(read_of(heartbeat, 0, "voxbus.heartbeats")),
            analytics_io.to_row(read_of(control, 1))]
    table = analytics_io.rows_to_table(rows)
    assert table.num_rows == 2
    assert json.loads(table.column("config").to_pylist()[1]) == {"sample_rate": 16000, "speak": True}


# -- the analytics page's view and JSON (ingress/analytics.py) ---------------------------------------


def test_summary_aligns_every_series_on_the_last_minutes():
    from ingress.analytics import summarize

    now = T0 + 60 * 9 + 30  # during the 10th minute
    records = [
        TurnsPerMinute(window_start=T0, window_end=T0 + 60, turns=4, ts=T0,
                       sessions=2, voice=3, text=1, interrupted=1),
        TurnsPerMinute(window_start=T0 + 540, window_end=T0 + 600, turns=1, ts=now,
                       sessions=1, voice=1, text=0, interrupted=0),
        TurnsPerMinute(window_start=T0 - 600, window_end=T0 - 540, turns=9, ts=T0,
                       sessions=9, voice=9, text=0, interrupted=0),  # outside the period
        IntentCount(window_start=T0, window_end=T0 + 60, turns=3, ts=T0,
                    intent="billing", confidence_mean=0.8),
        IntentCount(window_start=T0 + 540, window_end=T0 + 600, turns=1, ts=T0,
                    intent="refund", confidence_mean=0.8),
        IntentCount(window_start=T0, window_end=T0 + 60, turns=1, ts=T0,
                    intent="refund", confidence_mean=0.8),
        SentimentCount(window_start=T0, window_end=T0 + 60, turns=3, ts=T0,
                       sentiment="positive", score_mean=0.5),
        SentimentCount(window_start=T0, window_end=T0 + 60, turns=1, ts=T0,
                       sentiment="negative", score_mean=-0.7),
        EscalationCount(window_start=T0, window_end=T0 + 60, turns=1, ts=T0,
                        human_agent=0, negative=1, session_ids=["s9"]),
        LatencyPercentiles(window_start=T0 + 540, window_end=T0 + 600, turns=1, ts=now,
                           span="asr", mean_ms=200, min_ms=200, max_ms=200,
                           p50_ms=200, p95_ms=200, p99_ms=200),
        LatencyPercentiles(window_start=T0, window_end=T0 + 60, turns=2, ts=T0,
                           span="voice_to_voice", mean_ms=900, min_ms=800, max_ms=1000,
                           p50_ms=800, p95_ms=1000, p99_ms=1000),
    ]
    body = summarize(records, now, 10)
    json.dumps(body)  # JSON-able
    assert body["windows"] == [T0 + 60 * i for i in range(10)]
    assert body["turns"]["turns"] == [4, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert body["turns"]["voice"][0] == 3 and body["turns"]["sessions"][0] == 2
    assert body["intents"]["totals"] == {"billing": 3, "refund": 2}
    assert body["intents"]["series"]["refund"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert body["sentiment"]["series"]["positive"][0] == 3 and body["sentiment"]["series"]["neutral"][0] == 0
    assert body["sentiment"]["score_mean"][0] == pytest.approx((3 * 0.5 - 0.7) / 4)
    assert body["sentiment"]["score_mean"][1] is None
    assert body["escalations"]["series"]["escalations"][0] == 1 and body["escalations"]["sessions"] == ["s9"]
    assert list(body["latency"]) == ["voice_to_voice", "asr"]  # voice-to-voice first, then pipeline order
    assert body["latency"]["asr"]["p95"] == [None] * 9 + [200]
    assert body["totals"] == {"turns": 5, "escalations": 1, "interrupted": 1}


def analytics_message(record: WindowedRecord, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic="voxbus.analytics.x", partition=0, offset=offset, value=encode(record))


def test_the_view_keeps_the_last_record_per_key_of_the_recent_windows(tmp_path):
    import time

    from ingress.analytics import AnalyticsView

    view = AnalyticsView(Settings(data_dir=tmp_path, analytics_view_minutes=10))
    start = window_start(time.time())

    def tpm(ws, n):
        return TurnsPerMinute(window_start=ws, window_end=ws + 60, turns=n, ts=ws,
                              sessions=1, voice=n, text=0, interrupted=0)

    view.absorb([analytics_message(tpm(start, 1), 0), analytics_message(tpm(start, 2), 1),
                 analytics_message(tpm(start - 60, 7), 2), analytics_message(tpm(start - 3600, 5), 3),
                 SimpleNamespace(topic="t", partition=0, offset=4, value=b"\xc1")])
    assert {k: r.turns for k, r in view.latest.items()} == {
        ("analytics_turns", f"{int(start)}/all"): 2, ("analytics_turns", f"{int(start) - 60}/all"): 7,
    }
    view.prune(time.time() + 10 * 60)
    assert list(view.latest) == [("analytics_turns", f"{int(start)}/all")]


async def test_the_page_and_its_json_are_served(tmp_path):
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from ingress.analytics import VIEW, add_routes

    app = web.Application()
    add_routes(app, SimpleNamespace(settings=Settings(data_dir=tmp_path, analytics_view_minutes=30)))
    view = app[VIEW]
    view.task = asyncio.create_task(asyncio.sleep(3600))  # as if following the topics
    view.caught_up.set()
    escalation = EscalationCount(window_start=window_start(NOW), window_end=0, turns=1, ts=NOW,
                                 human_agent=1, negative=0, session_ids=["s1"])
    view.absorb([analytics_message(escalation, 0)])
    async with TestClient(TestServer(app)) as client:
        page = await client.get("/analytics")
        assert page.status == 200 and "<svg" not in (html := await page.text()) and "v1/analytics" in html
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained: no CDN
        response = await client.get("/v1/analytics?minutes=90")
        assert response.status == 200
        body = await response.json()
        assert len(body["windows"]) == 30 and body["complete"] is True  # capped at the view's horizon
        assert (await client.get("/v1/analytics?minutes=soon")).status == 400
    assert view.task is None  # stopped with the app
