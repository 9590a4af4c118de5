"""Smoke tests of the latency benchmark's parts; no voxbus stack and no Pipecat (see ``make bench``)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from aiohttp import WSMsgType, web

from benchmarks import report
from benchmarks.caller import QUIET_S, run_caller
from benchmarks.cpu import CpuMeter
from benchmarks.latency import caller_plans, vad_stop_secs
from benchmarks.ports import free_port, free_port_range, listen_port_floor
from benchmarks.utterances import SAMPLE_RATE, Utterance, load_utterances
from tests.conftest import DATA


def test_pipecat_waits_as_many_vad_windows_as_voxbus():
    # voxbus: ceil(400 / 32) = 13 windows of 32 ms; Pipecat: round(stop_secs / 0.032) windows
    assert vad_stop_secs(400) == pytest.approx(0.416)
    assert round(vad_stop_secs(400) / 0.032) == 13
    assert round(vad_stop_secs(300) / 0.032) == 10


def test_the_stacks_listening_ports_are_under_the_ephemeral_range():
    # an outgoing connection of the stack itself could take a port of the ephemeral range
    # between the pick and the worker's bind
    floor = listen_port_floor()
    base = free_port_range(9)
    assert base + 9 <= floor
    for port in [*range(base, base + 9), free_port()]:
        assert port < floor
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_utterances_are_cut_at_silero_speech_boundaries():
    utterances = load_utterances(DATA)
    names = [u.name for u in utterances]
    assert "cards_five_five#0" not in names  # a backchannel stand-in, not a question
    assert [n for n in names if n.startswith("jfk#")] == ["jfk#0", "jfk#1", "jfk#2", "jfk#3"]
    for u in utterances:
        assert 0 <= u.speech_start < u.speech_end <= u.pcm.size
        assert u.pcm.dtype == np.int16
        assert u.speech_end - u.speech_start >= 0.8 * SAMPLE_RATE


def test_caller_plans_rotate_through_the_utterances():
    utterances = [Utterance(str(i), np.zeros(10, np.int16), 0, 5) for i in range(10)]
    plans = caller_plans(utterances, callers=4, turns=3)
    assert [[u.name for u in plan] for plan in plans] == [
        ["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"], ["9", "0", "1"]]


def test_cpu_meter_counts_a_busy_child():
    busy = "import time\nt = time.time()\nwhile time.time() - t < 2.0: pass"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        time.sleep(0.3)
        meter = CpuMeter({"busy": child.pid})
        meter.start()
        time.sleep(1.0)
        used = meter.stop()
    finally:
        child.kill()
        child.wait()
    # counted, and never more than the 1 s wall time allows (no lower bound: other jobs share the cores)
    assert 0 < used["busy"] <= 1.2
    assert set(used) == {"busy"}


def _turn(v2v: float | None, timed_out: bool = False, **extra) -> dict:
    return {"voice_to_voice_ms": v2v, "timed_out": timed_out, "reply_audio_s": 1.0, **extra}


def test_phase_stats_percentiles_budget_and_ratios():
    hops = {"vad>asr": 5.0, "retrieval>generation": 6.0, "tts>ingress": 7.0}
    vox = [_turn(float(v), latency_ms={"asr": 100.0}, bus_hops=hops) for v in range(1000, 4000, 100)]
    pc = [_turn(float(v)) for v in range(500, 2000, 50)] + [_turn(None, timed_out=True)]
    results = {"voxbus": {"1": report.phase_stats(vox, wall_s=60.0, cpu_s=30.0, budget_ms=3000)},
               "pipecat": {"1": report.phase_stats(pc, wall_s=60.0, cpu_s=15.0, budget_ms=3000)}}
    v = results["voxbus"]["1"]
    assert v["answered"] == 30 and v["timeouts"] == 0
    assert v["voice_to_voice_ms"]["p50"] == pytest.approx(2450.0)
    assert v["within_budget"] is False  # p95 is 3755 ms
    assert v["cpu_s_per_turn"] == 1.0 and v["turns_per_min"] == 30.0
    assert v["stages_ms"]["asr"]["p50"] == 100.0
    assert v["bus_ms"]["observed"]["p50"] == 18.0 and v["bus_ms"]["estimated_all_hops"]["p50"] == 36.0
    p = results["pipecat"]["1"]
    assert p["timeouts"] == 1 and p["within_budget"] is False  # a timeout fails the budget
    summary = report.summarize(results, 3000)
    assert summary["ratios_voxbus_over_pipecat"]["1"]["cpu_s_per_turn"] == 2.0
    table = report.markdown_table(results, summary)
    assert "| 1 | voxbus | 30/30 |" in table and "voxbus/pipecat" in table
    assert "| asr | 100 |" in report.stage_table(results)


def test_callers_at_budget_is_the_largest_count_within_it():
    fast, slow = [_turn(1000.0)] * 6, [_turn(5000.0)] * 6
    results = {"voxbus": {"1": report.phase_stats(fast, wall_s=30.0, cpu_s=6.0, budget_ms=3000),
                          "2": report.phase_stats(fast, wall_s=60.0, cpu_s=6.0, budget_ms=3000),
                          "4": report.phase_stats(slow, wall_s=30.0, cpu_s=6.0, budget_ms=3000)}}
    held = report.summarize(results, 3000)["systems"]["voxbus"]
    assert held["callers_at_budget"] == 2  # 4 callers missed the budget
    # the 1-caller run spoke its turns in half the time: the best rate within budget is there
    assert held["turns_per_min_at_budget"] == 12.0 and held["turns_per_min_at_budget_callers"] == 1


def test_plot_writes_a_png(tmp_path):
    rows = [_turn(1000.0 + i) for i in range(5)]
    results = {s: {str(n): report.phase_stats(rows, 60.0, 10.0, 3000) for n in (1, 4)}
               for s in ("voxbus", "pipecat")}
    report.plot(results, report.summarize(results, 3000), tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


REPLY_DELAY_S = 0.3


async def _fake_server(protocol: str) -> tuple[web.AppRunner, str]:
    """Answers each utterance REPLY_DELAY_S after its last non-silent frame with 0.2 s of audio."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if protocol == "voxbus":
            await ws.receive_json()
            await ws.send_json({"type": "ready", "session_id": "s1", "sample_rate": 16000, "chunk_ms": 64})
        else:
            await ws.send_json({"type": "ready"})
        samples, speech_start, speaking = 0, None, False
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                continue
            loud = bool(np.frombuffer(msg.data, np.int16).any())
            if loud and not speaking:
                speaking, speech_start = True, samples
            samples += len(msg.data) // 2
            if speaking and not loud:
                speaking = False
                await _reply(ws, protocol, f"a{speech_start}")
        return ws

    async def _reply(ws: web.WebSocketResponse, protocol: str, turn_id: str) -> None:
        await asyncio.sleep(REPLY_DELAY_S)
        pcm = np.full(int(0.2 * 22050), 1000, np.int16).tobytes()
        if protocol == "voxbus":
            await ws.send_json({"type": "reply_audio", "turn_id": turn_id, "sample_rate": 22050,
                                "final": True, "bytes": len(pcm)})
        await ws.send_bytes(pcm)
        if protocol == "voxbus":
            await ws.send_str(json.dumps({"type": "turn_end", "turn_id": turn_id, "transcript": "hi",
                                          "intent": "other", "reply_text": "hello", "voice_to_voice_ms": 1.0,
                                          "latency_ms": {"asr": 12.0}}))

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"ws://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("protocol", ["voxbus", "pipecat"])
async def test_caller_measures_voice_to_voice_on_the_client(protocol):
    runner, url = await _fake_server(protocol)
    speech = np.full(int(0.3 * SAMPLE_RATE), 3000, np.int16)
    utterance = Utterance("tone", np.concatenate([speech, np.zeros(800, np.int16)]), 0, speech.size)
    try:
        started = time.monotonic()
        results = await run_caller(protocol, url, 1, 0, [utterance, utterance], 0.0, timeout_s=5.0,
                                   pipecat_rate=22050, tail_s=0.1)
    finally:
        await runner.cleanup()
    assert len(results) == 2
    for r in results:
        assert not r.timed_out
        # the fake answers REPLY_DELAY_S after the first silent frame, i.e. ~20 ms after speech end
        assert REPLY_DELAY_S * 1000 <= r.voice_to_voice_ms <= REPLY_DELAY_S * 1000 + 250
        assert r.reply_audio_s == pytest.approx(0.2, abs=0.01)
    if protocol == "voxbus":
        assert results[0].turn_id == "a8000" and results[1].latency_ms == {"asr": 12.0}
    # each turn waits for the reply to play out and QUIET_S more
    assert time.monotonic() - started >= 2 * (0.35 + REPLY_DELAY_S + 0.2 + QUIET_S)
