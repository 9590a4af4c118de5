"""``make bench``: voice-to-voice latency of voxbus vs Pipecat on identical models.

N simulated callers (default: runs with 1, 2, 4 and 8 at once) replay the recordings of
``tests/data`` in real time against each system in turn (see
:mod:`benchmarks.caller` for what is measured), and the results go to
``benchmarks/results/latency.json``, ``latency.png`` and a printed table.

1. voxbus: ``voxbus.supervisor.Supervisor`` starts the embedded broker, the llama.cpp
   server, the six stages and the ingress on private ports, exactly as ``voxbus up``.
2. Pipecat: the broker and the stages are stopped (the llama.cpp server stays), and
   ``benchmarks/pipecat_bot.py`` runs in ``benchmarks/.venv-pipecat`` against the same
   LLM server, with the same models and settings, read from voxbus's ``Settings``.

CPU seconds per turn: utime + stime of every process of the system under test over a
run (voxbus: the stage and ingress processes, the broker and the LLM server; Pipecat:
the bot process and the same LLM server), divided by the turns answered.

Usage: ``python -m benchmarks.latency [--callers 1,2,4,6,8] [--turns 3] [--systems voxbus,pipecat]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.caller import TurnResult, run_caller
from benchmarks.cpu import CpuMeter
from benchmarks.ports import free_port, free_port_range
from benchmarks.utterances import EXCLUDED, Utterance, load_utterances

ROOT = Path(__file__).resolve().parent.parent
PIPECAT_PYTHON = ROOT / "benchmarks" / ".venv-pipecat" / "bin" / "python"
SILERO_WINDOW_MS = 32
"""One Silero decision window at 16 kHz (512 samples)."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_http(url: str, timeout_s: float) -> bool:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def vad_stop_secs(min_silence_ms: int) -> float:
    """Pipecat ``stop_secs`` that waits as many Silero windows as voxbus's endpointer.

    voxbus ends an utterance once ``min_silence_ms`` of 32 ms windows are below the
    threshold, i.e. after ceil(min_silence_ms / 32) windows (400 ms -> 13 windows = 416 ms);
    Pipecat waits round(stop_secs / 0.032) windows (0.4 -> 12 = 384 ms), so pass 0.416.
    """
    return math.ceil(min_silence_ms / SILERO_WINDOW_MS) * SILERO_WINDOW_MS / 1000


def caller_plans(utterances: list[Utterance], callers: int, turns: int) -> list[list[Utterance]]:
    """Which utterances each caller speaks: caller k starts 3k utterances into the list."""
    n = len(utterances)
    return [[utterances[(3 * k + i) % n] for i in range(turns)] for k in range(callers)]


async def run_phase(system: str, url: str, callers: int, turns: int, utterances: list[Utterance],
                    timeout_s: float, stagger_s: float, pipecat_rate: int) -> tuple[list[TurnResult], float]:
    """``callers`` concurrent callers, ``turns`` turns each; return the turns and the wall time (s)."""
    plans = caller_plans(utterances, callers, turns)
    started = time.monotonic()
    unmatched: list[dict[str, Any]] = []
    sessions = await asyncio.gather(*[
        run_caller(system, url, callers, k, plan, k * stagger_s, timeout_s, pipecat_rate,
                   tail_s=0.5 if system == "voxbus" else 0.0, unmatched=unmatched)
        for k, plan in enumerate(plans)
    ], return_exceptions=True)
    wall = time.monotonic() - started
    if unmatched:
        log(f"{system}: {len(unmatched)} turn_end events matched no turn: "
            + "; ".join(f"caller {e['caller']} {e['turn_id']} {e.get('transcript', '')!r} "
                        f"v2v {e.get('voice_to_voice_ms')}" for e in unmatched))
    results: list[TurnResult] = []
    for k, session in enumerate(sessions):
        if isinstance(session, BaseException):
            log(f"{system}: caller {k} failed: {type(session).__name__}: {session}")
            results.extend(TurnResult(system, callers, k, i, u.name, 0.0, timed_out=True)
                           for i, u in enumerate(plans[k]))
        else:
            results.extend(session)
    return results, wall


def warm_up(system: str, url: str, args: argparse.Namespace, utterances: list[Utterance],
            pipecat_rate: int) -> None:
    """One turn, not measured: first inferences are slow."""
    warm, _ = asyncio.run(run_phase(system, url, 1, 1, utterances[:1], args.turn_timeout, 0.0, pipecat_rate))
    log(f"{system}: warm-up turn, voice-to-voice {warm[0].voice_to_voice_ms} ms")


def measure_idle(system: str, roots: dict[str, int], seconds: float, after_s: float) -> dict[str, Any]:
    """CPU used with no caller connected, over ``seconds``, ``after_s`` after the warm-up turn ended.

    The wait lets the warm-up turn's own tail (its last commits, the LLM server's prompt cache)
    pass, so the figure is the steady idle state a stack spends between calls.
    """
    time.sleep(after_s)
    meter = CpuMeter(roots)
    meter.start()
    time.sleep(seconds)
    idle = meter.stop()
    out = {"seconds": seconds, "after_warm_up_s": after_s, "cpu_s": round(sum(idle.values()), 2),
           "cpu_by_process": idle, "cores": round(sum(idle.values()) / seconds, 3)}
    log(f"{system}: idle, no caller: {out['cores']} cores busy ({idle})")
    return out


def wait_for_quiet(roots: dict[str, int], max_wait_s: float, threshold_cores: float = 0.25) -> float:
    """Wait until processes other than ``roots`` use under ``threshold_cores``; return the wait (s).

    This machine may be shared: a run measured while another job loads the cores says
    little.  Gives up (with a warning) after ``max_wait_s``.
    """
    started = time.monotonic()
    while True:
        meter = CpuMeter(roots)
        meter.start()
        time.sleep(3.0)
        ours = sum(meter.stop().values())
        other = max(0.0, meter.machine - ours) / 3.0
        waited = time.monotonic() - started
        if other < threshold_cores:
            return waited
        if waited > max_wait_s:
            log(f"warning: other processes still use {other:.2f} cores after {waited:.0f} s; running anyway")
            return waited
        if waited < 4:
            log(f"other processes use {other:.2f} cores; waiting for a quiet machine "
                f"(up to {max_wait_s:.0f} s)")


def run_level(system: str, url: str, roots: dict[str, int], callers: int, args: argparse.Namespace,
              utterances: list[Utterance], pipecat_rate: int) -> tuple[list[TurnResult], dict[str, Any]]:
    """One run with ``callers`` concurrent callers, CPU metered; return its turns and (wall, cpu)."""
    turns = max(args.turns, math.ceil(args.min_turns / callers))
    if args.quiet_wait > 0:
        waited = wait_for_quiet(roots, args.quiet_wait)
        if waited > 4:
            log(f"waited {waited:.0f} s for a quiet machine")
    meter = CpuMeter(roots)
    meter.start()
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    results, wall = asyncio.run(run_phase(system, url, callers, turns, utterances, args.turn_timeout,
                                          args.stagger, pipecat_rate))
    by_process = meter.stop()
    client_after = resource.getrusage(resource.RUSAGE_SELF)
    client = (client_after.ru_utime + client_after.ru_stime
              - client_before.ru_utime - client_before.ru_stime)
    cpu = sum(by_process.values())
    # what else kept the machine busy meanwhile (other users' jobs), in cores
    other = round(max(0.0, meter.machine - cpu - client) / wall, 2)
    v2v = sorted(r.voice_to_voice_ms for r in results
                 if r.voice_to_voice_ms is not None and not r.timed_out)
    log(f"{system}: {callers} callers x {turns} turns in {wall:.0f} s, cpu {cpu:.0f} s {by_process}, "
        f"client {client:.0f} s, other load {other} cores, "
        f"v2v ms {v2v}, timeouts {sum(r.timed_out for r in results)}")
    if other > 0.25:
        log(f"warning: other processes kept {other} cores busy during this run; its numbers are not clean")
    return results, {"wall_s": wall, "cpu_s": cpu, "cpu_by_process": by_process,
                     "client_cpu_s": round(client, 2), "other_load_cores": other}


def run_voxbus(args: argparse.Namespace, utterances: list[Utterance], extra_env: dict[str, str]
               ) -> tuple[dict[str, list[TurnResult]], dict[str, Any], Any]:
    """One fresh voxbus stack per number of callers (a backlog left by a run cannot leak into the next).

    Returns:
        (turns per number of callers, metadata, the voxbus settings of the last stack)
    """
    turns_by: dict[str, list[TurnResult]] = {}
    meta: dict[str, Any] = {}
    settings = None
    for index, callers in enumerate(args.callers):
        supervisor, settings = start_voxbus(prepare_data_dir(args.work_dir, f"voxbus-{callers}"),
                                            extra_env=extra_env)
        try:
            url = f"ws://{settings.host}:{settings.port}/v1/stream"
            roots = voxbus_roots(supervisor)
            warm_up("voxbus", url, args, utterances, 22050)
            if index == 0 and args.idle > 0:
                meta["idle"] = measure_idle("voxbus", roots, args.idle, args.idle_after)
            results, meta[str(callers)] = run_level("voxbus", url, roots, callers, args, utterances, 22050)
            marks = asyncio.run(read_turn_marks(settings))
            for r in results:
                r.marks = marks.get((r.session_id or "", r.turn_id or ""), {})
            log(f"voxbus: stage marks of {sum(bool(r.marks) for r in results)} turns from voxbus.turns")
            turns_by[str(callers)] = results
        finally:
            supervisor.stop()
    return turns_by, meta, settings


def run_pipecat(args: argparse.Namespace, utterances: list[Utterance], extra_env: dict[str, str]
                ) -> tuple[dict[str, list[TurnResult]], dict[str, Any], list[str], Any]:
    """voxbus's LLM server, and one fresh Pipecat bot per number of callers.

    Returns:
        (turns per number of callers, metadata, the bot's command line, the voxbus settings)
    """
    data_dir = prepare_data_dir(args.work_dir, "pipecat")
    llm, settings = start_voxbus(data_dir, llm_only=True, extra_env=extra_env)
    turns_by: dict[str, list[TurnResult]] = {}
    meta: dict[str, Any] = {}
    command: list[str] = []
    understanding, understanding_port = start_understanding(data_dir / "logs" / "understanding.log")
    try:
        for index, callers in enumerate(args.callers):
            bot, port, command = start_pipecat(settings, data_dir / "logs" / f"pipecat-{callers}.log",
                                               understanding_port)
            try:
                url = f"ws://127.0.0.1:{port}/ws"
                roots = {"bot": bot.pid, "llm": llm.llm.pid, "understanding": understanding.pid}
                warm_up("pipecat", url, args, utterances, 22050)
                if index == 0 and args.idle > 0:
                    meta["idle"] = measure_idle("pipecat", roots, args.idle, args.idle_after)
                turns_by[str(callers)], meta[str(callers)] = run_level("pipecat", url, roots, callers, args,
                                                                       utterances, 22050)
            finally:
                stop(bot)
            settle("pipecat", {"llm": llm.llm.pid}, 0.0, args.settle)
    finally:
        stop(understanding)
        llm.stop()
    return turns_by, meta, command, settings


def settle(system: str, roots: dict[str, int], idle_cores: float | None, limit_s: float) -> None:
    """Wait until the system's CPU use is back near idle (a backlog left by a run is drained)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        meter = CpuMeter(roots)
        meter.start()
        time.sleep(2.0)
        cores = sum(meter.stop().values()) / 2.0
        if cores <= (idle_cores or 0.0) * 1.3 + 0.15:
            break
    log(f"{system}: settled for {time.monotonic() - started:.0f} s")


async def read_turn_marks(settings: Any) -> dict[tuple[str, str], dict[str, float]]:
    """Stage marks of every turn on ``voxbus.turns``, keyed by (session id, turn id)."""
    from aiokafka import AIOKafkaConsumer

    from schemas import TurnRecord, decode
    from streams.admin import topic_partitions
    from streams.topics import TURNS

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    marks: dict[tuple[str, str], dict[str, float]] = {}
    try:
        parts = await topic_partitions(settings, TURNS.name)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pending = [tp for tp in parts if await consumer.position(tp) < end[tp]]
            if not pending:
                break
            for messages in (await consumer.getmany(*pending, timeout_ms=500)).values():
                for message in messages:
                    record = decode(message.value, TurnRecord)
                    marks[(record.session_id, record.turn_id)] = dict(record.marks)
    finally:
        await consumer.stop()
    return marks


def start_voxbus(data_dir: Path, llm_only: bool = False,
                 extra_env: dict[str, str] | None = None) -> tuple[Any, Any]:
    """Start voxbus on private ports (as tests/integration/conftest.py does); return (supervisor, settings).

    With ``llm_only``, start only its LLM server (for a Pipecat-only run).

    The LLM server is voxbus's embedded one for both systems: llama.cpp's llama-server
    with continuous batching (``make bench`` builds it).  Were it llama-cpp-python's, it
    gets ``INTERRUPT_REQUESTS=false`` from the environment: by default that server ends a
    streaming answer early as soon as another request waits, which cuts concurrent
    sessions' answers short ("You're" and nothing more); with it, requests queue.
    """
    os.environ["INTERRUPT_REQUESTS"] = "false"
    metrics_base = free_port_range(9)  # the stages, analytics and suggest
    os.environ.update({
        "VOXBUS_PORT": str(free_port()),
        "VOXBUS_LLM_PORT": str(free_port()),
        "VOXBUS_METRICS_BASE_PORT": str(metrics_base),
        "VOXBUS_EMBEDDED_LISTEN": f"127.0.0.1:{free_port_range(2)}",  # the broker, its controller port + 1
        "VOXBUS_DATA_DIR": str(data_dir),
        # the callers replay audiobook sentences, not customer-service questions: keep the bot
        # answering every turn (no automatic hand-off to a person), as the Pipecat bot does
        "VOXBUS_HANDOFF_AFTER_MISSES": "1000000",
        "VOXBUS_HANDOFF_SENTIMENT": "-1.0",
        # and answering them with the LLM, not the off-topic redirect: the Pipecat bot asks its LLM
        # on every turn, so both systems do identical work
        "VOXBUS_REDIRECT_OFF_TOPIC": "false",
        # greedy decoding, so the same prompt gets the same reply from both systems: at 0.2 the same
        # first turn was one sentence in one run and three in the next, and a long reply in a
        # session's history makes its later replies long too (at 7b5fb7f, 1 caller: 5.2 s of reply
        # audio per voxbus turn against 1.5 s per Pipecat turn, 3.5x the LLM's CPU)
        "VOXBUS_LLM_TEMPERATURE": "0",
        **{f"VOXBUS_{k.upper().removeprefix('VOXBUS_')}": v for k, v in (extra_env or {}).items()},
    })
    from streams.settings import get_settings
    from voxbus.supervisor import Supervisor

    get_settings.cache_clear()
    settings = get_settings()
    if llm_only:
        log(f"starting voxbus's LLM server only, on port {settings.llm_port}")
        return LlmOnly(settings), settings
    supervisor = Supervisor(settings)
    log(f"voxbus: starting on port {settings.port} (broker {settings.bootstrap}, LLM {settings.llm_port}); "
        f"logs in {settings.data_dir / 'logs'}")
    started = time.monotonic()
    try:
        supervisor.start()
    except BaseException:
        supervisor.stop()
        raise
    log(f"voxbus: healthy after {time.monotonic() - started:.0f} s")
    return supervisor, settings


class LlmOnly:
    """Just voxbus's LLM server (for a Pipecat-only run), shaped like a stopped :class:`Supervisor`."""

    def __init__(self, settings: Any) -> None:
        from processors.generation.llm_server import embedded_url, start_llm_server

        self.settings, self.children, self.broker = settings, [], None
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.llm = start_llm_server(settings, logs / "llm.log")
        if not wait_http(f"{embedded_url(settings)}/models", 120):
            self.stop()
            raise RuntimeError(f"the LLM server did not start; see {logs / 'llm.log'}")

    def stop(self) -> None:
        from streams.broker import stop_process

        if self.llm is not None:
            stop_process(self.llm)
            self.llm = None


def voxbus_roots(supervisor: Any) -> dict[str, int]:
    """Name -> pid of every voxbus process: stages, ingress, broker, LLM server."""
    roots = {c.name: c.proc.pid for c in supervisor.children if c.proc is not None}
    for name, proc in (("broker", supervisor.broker), ("llm", supervisor.llm)):
        if proc is not None:
            roots[name] = proc.pid
    return roots


def pipecat_command(settings: Any, port: int, understanding_port: int) -> list[str]:
    """The Pipecat bot's command line: voxbus's models, settings, LLM server and per-turn prompts."""
    from processors.generation.llm_server import MODEL_ALIAS, embedded_url
    from processors.generation.prompt import SYSTEM_PROMPT
    from processors.models import piper_voice, whisper_model_dir

    return [
        str(PIPECAT_PYTHON), str(ROOT / "benchmarks" / "pipecat_bot.py"), "--port", str(port),
        "--whisper-model", settings.whisper_model or str(whisper_model_dir()),
        "--whisper-compute-type", settings.whisper_compute_type,
        "--whisper-threads", str(settings.whisper_threads),
        "--piper-voice", settings.piper_voice or str(piper_voice()),
        "--llm-url", settings.llm_url or embedded_url(settings),
        "--llm-model", settings.llm_model or MODEL_ALIAS,
        "--llm-max-tokens", str(settings.llm_max_tokens),
        "--llm-temperature", str(settings.llm_temperature),
        "--system-prompt", SYSTEM_PROMPT,
        "--understanding-url", f"http://127.0.0.1:{understanding_port}/prompt",
        "--vad-threshold", str(settings.vad_threshold),
        "--vad-start-secs", "0",
        "--vad-stop-secs", str(vad_stop_secs(settings.vad_min_silence_ms)),
        "--log-level", os.environ.get("BENCH_PIPECAT_LOG_LEVEL", "INFO"),
    ]


def start_understanding(log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """voxbus's intent + retrieval + prompt service for the Pipecat bot (benchmarks/understanding.py)."""
    port = free_port()
    out = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.understanding", "--port", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    if not wait_http(f"http://127.0.0.1:{port}/healthz", 180):
        stop(proc)
        raise RuntimeError(f"the understanding service did not start; see {log_path}")
    return proc, port


def start_pipecat(settings: Any, log_path: Path, understanding_port: int
                  ) -> tuple[subprocess.Popen[bytes], int, list[str]]:
    if not PIPECAT_PYTHON.exists():
        raise SystemExit(f"{PIPECAT_PYTHON} is missing: `make bench` creates benchmarks/.venv-pipecat")
    port = free_port()
    command = pipecat_command(settings, port, understanding_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXBUS_") and k != "PYTHONPATH"}
    out = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                            start_new_session=True)
    started = time.monotonic()
    if not wait_http(f"http://127.0.0.1:{port}/healthz", 180):
        stop(proc)
        raise RuntimeError(f"the Pipecat bot did not start; see {log_path}")
    log(f"pipecat: ready on port {port} after {time.monotonic() - started:.0f} s; log {log_path}")
    return proc, port, command


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def git_state() -> dict[str, Any]:
    def git(*argv: str) -> str:
        try:
            done = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=True)
            return done.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def package_version(python: Path, package: str) -> str | None:
    try:
        code = f"import importlib.metadata as m; print(m.version('{package}'))"
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="voxbus vs Pipecat voice-to-voice latency benchmark")
    p.add_argument("--callers", default="1,2,4,6,8", help="comma-separated numbers of concurrent callers")
    p.add_argument("--turns", type=int, default=3, help="turns per caller")
    p.add_argument("--min-turns", type=int, default=6,
                   help="at least this many turns per run (a single caller then speaks more turns)")
    p.add_argument("--systems", default="voxbus,pipecat")
    p.add_argument("--budget-ms", type=float, default=3000.0, help="p95 voice-to-voice budget")
    p.add_argument("--turn-timeout", type=float, default=30.0,
                   help="longest wait for the first reply audio (s)")
    p.add_argument("--stagger", type=float, default=0.5, help="delay between callers' starts (s)")
    p.add_argument("--idle", type=float, default=30.0,
                   help="seconds of CPU metering with no caller, after the warm-up (0: skip)")
    p.add_argument("--idle-after", type=float, default=10.0,
                   help="seconds between the warm-up turn and the idle metering")
    p.add_argument("--quiet-wait", type=float, default=120.0,
                   help="before each run, wait up to this long while other processes load the machine (s)")
    p.add_argument("--settle", type=float, default=30.0,
                   help="longest wait between Pipecat runs for the LLM server to fall back to idle (s)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--data", type=Path, default=ROOT / "tests" / "data", help="recordings (*.wav, 16 kHz)")
    p.add_argument("--exclude", default=",".join(EXCLUDED),
                   help="recordings (file stems) not to use, comma-separated")
    p.add_argument("--voxbus-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra VOXBUS_* setting for the voxbus stack (repeatable), e.g. DENOISE=off")
    p.add_argument("--all-features", action="store_true",
                   help="keep voxbus's archive, analytics and agent-assist workers (by default they are off: "
                   "the Pipecat bot records nothing, computes no analytics and suggests nothing to agents, "
                   "so the comparison is on identical work); use with --tag")
    p.add_argument("--tag", default="", help="write latency-<tag>.json/.png instead of latency.json/.png")
    p.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / ".data",
                   help="data dirs and logs of the stacks (cleared each run, except converted models)")
    args = p.parse_args(argv)
    args.callers = [int(c) for c in args.callers.split(",") if c.strip()]
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - {"voxbus", "pipecat"}
    if unknown:
        p.error(f"unknown systems {sorted(unknown)}")
    return args


def prepare_data_dir(work: Path, name: str) -> Path:
    """An empty voxbus data dir ``work/name`` whose ``models/`` (the Q8_0 LLM conversion) is shared."""
    data = (work / name).resolve()
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(parents=True)
    (work / "models").mkdir(parents=True, exist_ok=True)
    (data / "models").symlink_to((work / "models").resolve(), target_is_directory=True)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a SIGTERM (e.g. `kill`, a CI timeout) unwinds like Ctrl-C, so the stacks are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench_started = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from streams.settings import Settings

    defaults = Settings()
    utterances = load_utterances(args.data, defaults.vad_threshold, defaults.vad_min_silence_ms,
                                 defaults.vad_speech_pad_ms,
                                 exclude=tuple(x for x in args.exclude.split(",") if x))
    log(f"{len(utterances)} utterances from {args.data}: " + ", ".join(u.name for u in utterances))

    turns: dict[str, dict[str, list[TurnResult]]] = {}
    meta: dict[str, dict[str, Any]] = {}
    setup: dict[str, Any] = {}
    extra_env = dict(item.split("=", 1) for item in args.voxbus_env)
    if not args.all_features:
        # identical work: the Pipecat bot keeps no recording, computes no analytics, assists no agent
        extra_env.setdefault("ARCHIVE_TOPICS", "")
        extra_env.setdefault("ANALYTICS_WORKER", "false")
        extra_env.setdefault("AGENT_ASSIST", "false")
    settings = None
    if "voxbus" in args.systems:
        turns["voxbus"], meta["voxbus"], settings = run_voxbus(args, utterances, extra_env)
    if "pipecat" in args.systems:
        turns["pipecat"], meta["pipecat"], command, settings = run_pipecat(args, utterances, extra_env)
        setup["pipecat_command"] = command[1:]

    results: dict[str, dict[str, dict[str, Any]]] = {}
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for system, by_callers in turns.items():
        results[system], raw[system] = {}, {}
        for callers, items in by_callers.items():
            phase_meta = meta[system][callers]
            rows = []
            for r in items:
                row = r.to_json()
                row.pop("speech_end_at"), row.pop("first_audio_at"), row.pop("reply_done_at")
                if r.marks:
                    row["bus_hops"] = report.bus_hops(r.marks)
                rows.append(row)
            raw[system][callers] = rows
            results[system][callers] = report.phase_stats(rows, phase_meta["wall_s"], phase_meta["cpu_s"],
                                                          args.budget_ms)
            results[system][callers]["cpu_s_by_process"] = phase_meta["cpu_by_process"]
            results[system][callers]["client_cpu_s"] = phase_meta["client_cpu_s"]
            results[system][callers]["other_load_cores"] = phase_meta["other_load_cores"]
    summary = report.summarize(results, args.budget_ms)
    table = report.markdown_table(results, summary)
    stages = report.stage_table(results)

    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - bench_started, 1),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "versions": {"pipecat-ai": package_version(PIPECAT_PYTHON, "pipecat-ai"),
                     "faster-whisper": package_version(Path(sys.executable), "faster-whisper"),
                     "piper-tts": package_version(Path(sys.executable), "piper-tts")},
        "method": {
            "callers": args.callers, "turns_per_caller": args.turns, "min_turns_per_run": args.min_turns,
            "budget_ms": args.budget_ms, "turn_timeout_s": args.turn_timeout, "stagger_s": args.stagger,
            "frame_ms": 20, "voice_to_voice": "client clock: first reply audio byte received minus the send "
            "time of the frame holding the utterance's last speech sample (silero-vad, computed offline)",
            "cpu": "utime+stime over each run of voxbus (stages, ingress, broker, LLM server) or "
            "Pipecat (bot process, voxbus's understanding service, the same LLM server), divided by "
            "answered turns",
            "identical_work": "Pipecat's system prompt per turn is voxbus's: intent, sentiment, retrieval "
            "(same embedder, same Qdrant collection), grounding filter and template, and so is its reply "
            "policy: voxbus's fixed replies without the LLM, its check of each streamed sentence and its "
            "fallback (benchmarks/understanding.py); voxbus runs without its archive, analytics and "
            "agent-assist workers unless --all-features (the Pipecat bot records nothing, computes no "
            "analytics, assists no agent)",
            "all_features": args.all_features,
            "vad_min_silence_ms": settings.vad_min_silence_ms,
            "pipecat_vad_stop_secs": vad_stop_secs(settings.vad_min_silence_ms),
            "vad_threshold": settings.vad_threshold,
            "llm_server_env": {"INTERRUPT_REQUESTS": "false"},
            "llm": {"model": settings.llm_model or "voxbus-llm (SmolLM2-135M-Instruct Q8_0, llama.cpp)",
                    "max_tokens": settings.llm_max_tokens, "temperature": settings.llm_temperature},
            "whisper": {"compute_type": settings.whisper_compute_type,
                        "beam_size": settings.whisper_beam_size, "threads": settings.whisper_threads},
        },
        "setup": {**setup, "voxbus_env": extra_env},
        "idle": {system: m.get("idle") for system, m in meta.items()},
        "utterances": [u.describe() for u in utterances],
        "results": results,
        "summary": summary,
        "turns": raw,
    }
    stem = f"latency-{args.tag}" if args.tag else "latency"
    (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    report.plot(results, summary, args.out / f"{stem}.png")
    print(table)
    if stages:
        print()
        print(stages)
    print(f"\nwrote {args.out / (stem + '.json')} and {args.out / (stem + '.png')} "
          f"in {time.monotonic() - bench_started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
