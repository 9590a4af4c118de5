"""Admission by capacity: new sessions are refused while turn latency or consumer lag is over budget."""

import asyncio
import json
import time
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from ingress.admission import MIN_TURNS, RECOVER_AT, WINDOW_S, AdmissionControl
from ingress.edge import Rejection
from ingress.metrics import ADMISSION_REFUSED
from schemas import Transcript
from streams.settings import Settings


def control(p95_ms: float = 3000.0, max_lag: int = 0) -> AdmissionControl:
    return AdmissionControl(Settings(admission_p95_ms=p95_ms, admission_max_lag=max_lag), ["vad", "asr"])


def test_a_light_load_is_never_refused_however_slow():
    admission = control()
    for _ in range(MIN_TURNS - 1):
        admission.observe(10_000.0, now=100.0)
    assert admission.p95_ms(now=100.0) is None
    assert admission.admit(now=100.0) == (True, "")


def test_latency_over_budget_refuses_until_back_under_the_recovery_mark():
    admission = control(p95_ms=3000.0)

    def minute(t: float, ms: float) -> tuple[bool, str]:
        for _ in range(MIN_TURNS):
            admission.observe(ms, now=t)
        return admission.admit(now=t)

    assert minute(0.0, 2900.0) == (True, "")
    assert minute(1.0, 3500.0) == (False, "latency")
    assert admission.p95_ms(now=1.0) == 3500.0
    assert minute(WINDOW_S + 1.0, 2900.0) == (False, "latency"), "hysteresis: no flapping at the threshold"
    assert admission.p95_ms(now=WINDOW_S + 1.0) == 2900.0  # under the threshold, over the recovery mark
    assert minute(2 * WINDOW_S + 2.0, 3000.0 * RECOVER_AT) == (True, "")
    assert minute(2 * WINDOW_S + 3.0, 3000.0) == (True, ""), "admitting again: the threshold applies"


def test_slow_turns_age_out_of_the_window():
    admission = control()
    for _ in range(MIN_TURNS):
        admission.observe(9000.0, now=0.0)
    assert admission.admit(now=WINDOW_S - 1) == (False, "latency")
    assert admission.admit(now=WINDOW_S) == (True, ""), "nobody is slowed down once the slow turns are old"
    assert not admission.latencies


def test_lag_over_the_limit_of_any_group_refuses_with_hysteresis():
    admission = control(max_lag=100)
    admission.update_lags({"voxbus-vad": 10, "voxbus-asr": 100})
    assert admission.admit() == (True, "")
    admission.update_lags({"voxbus-vad": 10, "voxbus-asr": 101})
    assert admission.admit() == (False, "lag")
    admission.update_lags({"voxbus-vad": 10, "voxbus-asr": 90})
    assert admission.admit() == (False, "lag")
    admission.update_lags({"voxbus-vad": 10, "voxbus-asr": 80})
    assert admission.admit() == (True, "")
    admission.update_lags({"voxbus-asr": 500})
    admission.update_lags({})  # the reading failed: lag unknown, not a reason to refuse
    assert admission.admit() == (True, "")


def test_zero_thresholds_turn_each_signal_off():
    admission = control(p95_ms=0.0, max_lag=0)
    for _ in range(MIN_TURNS):
        admission.observe(60_000.0, now=0.0)
    admission.update_lags({"voxbus-vad": 10**9})
    assert admission.admit(now=0.0) == (True, "")


def test_latency_is_reported_before_lag_and_a_refusal_is_counted_per_reason():
    admission = control(max_lag=10)
    for _ in range(MIN_TURNS):
        admission.observe(5000.0)
    admission.update_lags({"voxbus-vad": 11})
    before = ADMISSION_REFUSED.labels("latency")._value.get()
    with pytest.raises(Rejection) as refused:
        admission.check()
    assert (refused.value.code, refused.value.reason) == (1013, "overloaded")
    assert ADMISSION_REFUSED.labels("latency")._value.get() == before + 1


async def test_lag_is_end_offsets_minus_committed_offsets_per_group():
    admission = control(max_lag=10)
    audio0, audio1, control0 = (TopicPartition("voxbus.audio", 0), TopicPartition("voxbus.audio", 1),
                                TopicPartition("voxbus.control", 0))
    committed = {"voxbus-vad": {audio0: SimpleNamespace(offset=40), audio1: SimpleNamespace(offset=-1),
                                control0: SimpleNamespace(offset=7)},
                 "voxbus-asr": {}}
    ends = {audio0: 100, audio1: 5, control0: 5}  # control: committed past a truncated end counts 0

    async def list_consumer_group_offsets(group):
        return committed[group]

    async def end_offsets(partitions):
        assert sorted(partitions) == sorted(ends)
        return ends

    admission.admin = SimpleNamespace(list_consumer_group_offsets=list_consumer_group_offsets)
    admission.consumer = SimpleNamespace(end_offsets=end_offsets)
    assert await admission.read_lags() == {"voxbus-vad": 60, "voxbus-asr": 0}


async def test_no_lag_is_read_when_the_lag_signal_is_off():
    admission = control(max_lag=0)
    await admission.start()
    assert admission.task is None
    await admission.stop()


# -- in process ------------------------------------------------------------------------------
async def start(client, **fields) -> dict:
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, **fields}))
    event = await ws.receive_json(timeout=5)
    return {"ws": ws, **event}


def slow_turns(admission: AdmissionControl, age_s: float = 0.0) -> None:
    """A minute of turns over the budget, observed ``age_s`` ago."""
    for _ in range(MIN_TURNS):
        admission.observe(2 * admission.p95_limit_ms, now=time.monotonic() - age_s)


async def test_a_start_is_refused_while_over_budget_and_admitted_after_recovery(serve):
    client, gateway = await serve()
    slow_turns(gateway.admission, age_s=WINDOW_S - 0.3)  # over budget, for 0.3 s more
    refused = await start(client)
    assert (refused["type"], refused["code"], refused["close_code"]) == ("error", "overloaded", 1013)
    assert (await refused["ws"].receive()).data == 1013
    assert not gateway.sessions
    await asyncio.sleep(0.4)  # the slow turns leave the window
    admitted = await start(client)
    assert admitted["type"] == "ready"
    await admitted["ws"].close()


async def test_a_live_session_and_its_reconnection_are_never_cut(serve):
    client, gateway = await serve()
    first = await start(client, session_id="call-1")
    assert first["type"] == "ready"
    slow_turns(gateway.admission)
    assert (await start(client, session_id="call-2"))["code"] == "overloaded", "a new id is refused"
    await first["ws"].send_str(json.dumps({"type": "text", "text": "still there?"}))
    await asyncio.sleep(0.05)
    assert [t.text for t in gateway.records(Transcript, "call-1")] == ["still there?"], "the call goes on"
    resumed = await start(client, session_id="call-1")
    assert resumed["type"] == "ready", "a reconnection resumes the call"
    await resumed["ws"].close()
