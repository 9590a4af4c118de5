"""Does a recorded call (``POST /v1/calls``) slow a live caller?  With and without yielding (issue 18).

One voxbus stack (``voxbus up``'s processes, :func:`benchmarks.latency.start_voxbus`) and
two more ingress replicas on it, the recorded calls' own: ``batch-off``
(``VOXBUS_CALLS_YIELD=false``) and ``batch-on`` (``VOXBUS_CALLS_YIELD=true``).  One live
caller (:func:`benchmarks.caller.run_caller`, the recordings of ``tests/data`` in real
time) answers ``--turns`` turns on the stack's ingress, three times:

1. ``alone``: no recorded call;
2. ``yield_off``: a recorded call posted to ``batch-off`` as the caller connects;
3. ``yield_on``: the same call posted to ``batch-on``.

The recorded call is every recording of ``tests/data`` one after the other, ``--copies``
times, with ``--gap`` s of silence between them, fed at ``VOXBUS_CALLS_SPEED``.  Reported
per condition: the live turns' voice-to-voice p50/p95 (client clock, as
:mod:`benchmarks.latency`), all turns and those that ended while the recorded call was
running; the call's completion time (post to ``done``) and how long its feed waited
(``yielded_s``).  The yielding replica learns of the live turns from the bus
(:mod:`ingress.live_turns`): the live caller is on another replica.

Usage: ``python -m benchmarks.batch_vs_live [--turns 12] [--copies 4]`` (5 min on 2 cores); writes
``benchmarks/results/batch_vs_live.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile

from benchmarks import latency
from benchmarks.caller import TurnResult, run_caller
from benchmarks.ports import free_port
from benchmarks.report import percentiles
from benchmarks.utterances import SAMPLE_RATE, load_utterances

ROOT = Path(__file__).resolve().parent.parent
REPLICAS = {"yield_off": (1, "false"), "yield_on": (2, "true")}
"""Condition -> (ingress slot, VOXBUS_CALLS_YIELD) of the replica its recorded call is posted to."""
CALL_POLL_S = 0.5
"""Interval between two looks at the recorded call's status (s)."""


def call_recording(data_dir: Path, copies: int, gap_s: float) -> bytes:
    """A WAV (16 kHz PCM16 mono) of every ``*.wav`` of ``data_dir``, ``copies`` times, ``gap_s`` s apart.

    Raises:
        ValueError: a recording is not 16 kHz, or there is none.
    """
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.int16)
    parts: list[np.ndarray] = []
    for path in sorted(Path(data_dir).glob("*.wav")) * copies:
        audio, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
        if rate != SAMPLE_RATE:
            raise ValueError(f"{path} is {rate} Hz, not {SAMPLE_RATE}")
        parts += [audio.mean(axis=1).astype(np.int16), gap]
    if not parts:
        raise ValueError(f"no recording in {data_dir}")
    out = io.BytesIO()
    soundfile.write(out, np.concatenate(parts), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return out.getvalue()


def start_replica(supervisor: Any, name: str, slot: int, yielding: str) -> str:
    """One more ``voxbus ingress`` on the stack (egress partition ``slot``); return its base URL.

    Raises:
        RuntimeError: it did not become ready in 60 s.
    """
    from voxbus.supervisor import Child

    port = free_port()
    child = Child(name, [sys.executable, "-m", "voxbus", "ingress"], supervisor.logs / f"{name}.log",
                  env={"VOXBUS_PORT": str(port), "VOXBUS_INGRESS_SLOT": str(slot),
                       "VOXBUS_CALLS_YIELD": yielding})
    child.start(supervisor.env)
    supervisor.children.append(child)  # stopped with the stack
    base = f"http://{supervisor.settings.host}:{port}"
    if not latency.wait_http(f"{base}/readyz", 60):
        raise RuntimeError(f"ingress {name} not ready in 60 s; see {child.log_path}")
    return base


async def run_call(http: aiohttp.ClientSession, base: str, wav: bytes, timeout_s: float) -> dict[str, Any]:
    """Post ``wav`` to ``base``'s ``/v1/calls`` and follow it until it is not running (or ``timeout_s``)."""
    posted = time.monotonic()
    async with http.post(f"{base}/v1/calls", data=wav, headers={"Content-Type": "audio/wav"}) as r:
        body = await r.json()
        if r.status != 202:
            raise RuntimeError(f"POST /v1/calls: {r.status} {body}")
    while time.monotonic() - posted < timeout_s:
        await asyncio.sleep(CALL_POLL_S)
        async with http.get(f"{base}/v1/calls/{body['id']}") as r:
            body = await r.json()
        if body["status"] != "running":
            break
    return {"status": body["status"], "error": body.get("error", ""), "turns": len(body.get("turns", [])),
            "completion_s": round(time.monotonic() - posted, 1), "yielded_s": body.get("yielded_s"),
            "posted_at": posted, "ended_at": time.monotonic()}


async def condition(live_url: str, base: str | None, wav: bytes, plan: list[Any],
                    args: argparse.Namespace) -> tuple[list[TurnResult], dict[str, Any] | None]:
    """The live caller's turns, beside the recorded call posted to ``base`` at its start (None: alone)."""
    async with aiohttp.ClientSession() as http:
        call = asyncio.create_task(run_call(http, base, wav, args.call_timeout)) if base else None
        turns = await run_caller("voxbus", live_url, 1, 0, plan, 0.0, args.turn_timeout, tail_s=0.5)
        return turns, (await call if call else None)


def summary(turns: list[TurnResult], call: dict[str, Any] | None) -> dict[str, Any]:
    """Voice-to-voice of all turns, and of those that ended while the call ran; the call's figures."""
    def v2v(items: list[TurnResult]) -> dict[str, Any]:
        return percentiles(t.voice_to_voice_ms for t in items if not t.timed_out)

    rows = [{k: v for k, v in t.to_json().items() if not k.endswith("_at")} for t in turns]
    out: dict[str, Any] = {"voice_to_voice_ms": v2v(turns), "timed_out": sum(t.timed_out for t in turns),
                           "turns": rows}
    if call is not None:
        beside = [t for t in turns if t.speech_end_at < call["ended_at"]]
        out["beside_call_voice_to_voice_ms"] = v2v(beside)
        out["call"] = {k: v for k, v in call.items() if not k.endswith("_at")}
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="a live caller beside a recorded call, yielding or not")
    p.add_argument("--turns", type=int, default=12, help="live turns per condition")
    p.add_argument("--copies", type=int, default=4, help="times every recording is in the recorded call")
    p.add_argument("--gap", type=float, default=1.0, help="silence between recordings in the call (s)")
    p.add_argument("--turn-timeout", type=float, default=30.0, help="longest wait for a reply's audio (s)")
    p.add_argument("--call-timeout", type=float, default=240.0, help="longest wait for the recorded call (s)")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="before each condition, wait up to this long while other jobs load the machine (s)")
    p.add_argument("--data", type=Path, default=ROOT / "tests" / "data")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "batch_vs_live.json")
    p.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / ".data")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    from streams.settings import Settings

    defaults = Settings()
    utterances = load_utterances(args.data, defaults.vad_threshold, defaults.vad_min_silence_ms,
                                 defaults.vad_speech_pad_ms)
    plan = latency.caller_plans(utterances, 1, args.turns)[0]
    wav = call_recording(args.data, args.copies, args.gap)
    call_s = (len(wav) - 44) / 2 / SAMPLE_RATE
    latency.log(f"live plan: {[u.name for u in plan]}; recorded call: {call_s:.0f} s of audio")
    supervisor, settings = latency.start_voxbus(latency.prepare_data_dir(args.work_dir, "batch-vs-live"),
                                        extra_env={"ARCHIVE_TOPICS": ""})
    results: dict[str, Any] = {}
    try:
        bases = {name: start_replica(supervisor, f"ingress-{name}", slot, yielding)
                 for name, (slot, yielding) in REPLICAS.items()}
        live_url = f"ws://{settings.host}:{settings.port}/v1/stream"
        roots = latency.voxbus_roots(supervisor)
        warm, _ = asyncio.run(condition(live_url, None, wav, plan[:1], args))
        latency.log(f"warm-up turn: voice-to-voice {warm[0].voice_to_voice_ms} ms")
        for name in ("alone", *REPLICAS):
            latency.wait_for_quiet(roots, args.quiet_wait)  # nothing but the stack loads the machine
            turns, call = asyncio.run(condition(live_url, bases.get(name), wav, plan, args))
            results[name] = summary(turns, call)
            latency.log(f"{name}: v2v {results[name]['voice_to_voice_ms']}, call {results[name].get('call')}")
    finally:
        supervisor.stop()
    document = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1), "git": latency.git_state(),
        "machine": {"cpus": os.cpu_count()},
        "method": {"live_turns": args.turns, "live_plan": [u.name for u in plan],
                   "call_audio_s": round(call_s, 1), "call_copies": args.copies, "call_gap_s": args.gap,
                   "calls_speed": defaults.calls_speed, "calls_yield_max_s": defaults.calls_yield_max_s,
                   "replicas": "live caller on the stack's ingress (slot 0); each recorded call on a "
                               "replica of its own (slot 1: yield off, slot 2: yield on)",
                   "voice_to_voice": "client clock: first reply audio byte received minus the send time "
                                     "of the frame holding the utterance's last speech sample "
                                     "(benchmarks.caller)"},
        "conditions": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(table(results))
    latency.log(f"wrote {args.out}")
    return 0


def table(results: dict[str, Any]) -> str:
    """The README's table: live voice-to-voice p50/p95 (all turns, beside the call) and the call's figures."""
    rows = ["| condition | live v2v p50 / p95 (ms), all turns | beside the call | call done in (s) | "
            "call waited (s) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        v, b, c = r["voice_to_voice_ms"], r.get("beside_call_voice_to_voice_ms"), r.get("call")
        rows.append(f"| {name} | {v['p50']} / {v['p95']} (n={v['n']}) | "
                    + (f"{b['p50']} / {b['p95']} (n={b['n']})" if b else "-") + " | "
                    + (f"{c['completion_s']} ({c['status']}, {c['turns']} turns)" if c else "-") + " | "
                    + (f"{c['yielded_s']}" if c else "-") + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
