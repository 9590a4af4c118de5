"""``make soak``: N simulated callers for M minutes on real recordings; is any turn lost or answered twice?

voxbus is started on private ports (as ``benchmarks/latency.py`` does).  Each caller
(:class:`benchmarks.caller.SimulatedCaller`) holds one ``/v1/stream`` session for the
whole soak and speaks the utterances of ``tests/data`` (:mod:`benchmarks.utterances`)
in real time, one after the other, each once its reply has played out or
``--turn-timeout`` passed without one.  Every ``--sample-s`` seconds the resident set
size of every voxbus process (and its children) is read from ``/proc``.

Each utterance sent ends up as exactly one of (:func:`classify`):

* ``answered``: reply audio within ``--turn-timeout`` of the end of speech;
* ``late``: its ``turn_end`` came with a reply, but after the timeout;
* ``error``: an explicit ``error`` event for it (or for the session, e.g.
  ``overloaded``) while it was in flight;
* ``interrupted``: the caller spoke again (its next utterance, after ``--turn-timeout``)
  before the answer came, and barge-in cancelled the turn, as designed;
* ``no_reply``: the system ended the turn without an answer (a ``turn_end`` with no
  reply: the VAD or the recognizer heard no speech, or the session was handed off);
* ``lost``: none of these: the utterance vanished.

Duplicates (:func:`duplicates`): a second ``turn_end`` for a turn id, or a reply
sentence (turn id, index) received twice.  Results: ``benchmarks/results/soak.json``
and ``soak.png`` (RSS per process over time; p95 voice-to-voice and turn outcomes per
minute).

The recordings are audiobook sentences, not questions: the generation stage would hand
every session to a person after ``VOXBUS_HANDOFF_AFTER_MISSES`` (2) unanswered turns and
then stay silent, so the soak raises it (``--handoff-after-misses``, 1000) to keep the
bot answering for the whole run.

Usage: ``python -m benchmarks.soak [--callers 10] [--minutes 10] [--warmup-s 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.caller import LEAD_IN_S, SimulatedCaller, TurnResult
from benchmarks.cpu import children_map
from benchmarks.report import percentiles
from benchmarks.utterances import SAMPLE_RATE, Utterance, load_utterances

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUTCOMES = ("answered", "late", "error", "interrupted", "no_reply", "lost")
MATCH_SLACK_SAMPLES = SAMPLE_RATE // 2
"""A turn id's start sample may precede the utterance's first speech sample by this much (padding)."""
DRAIN_S = 65.0
"""After the soak, how long a caller stays on the line for its turns still in flight (s): past the
ingress's ``VOXBUS_TURN_TIMEOUT_S`` (60 s), after which every turn has a reply or an error."""
INGRESS_COUNTERS = ("voxbus_ingress_shed_bytes_total", "voxbus_ingress_duplicate_events_total",
                    "voxbus_ingress_rejections_total", "voxbus_ingress_produce_failures_total")


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class SoakTurn:
    """One utterance a caller spoke, and what came of it.

    Attributes:
        result: the caller's measurement (speech end, first reply audio, timeout).
        span: the utterance's speech as samples of the caller's connection ``[start, end)``.
        started_at / ended_at: monotonic time the utterance began / the turn was left.
        outcome: one of :data:`OUTCOMES` (set by :func:`classify`).
    """

    result: TurnResult
    span: tuple[int, int]
    started_at: float
    ended_at: float = 0.0
    outcome: str = ""


@dataclass
class CallerLog:
    """Everything one caller saw: its turns and every event, with monotonic arrival times."""

    index: int
    session_id: str = ""
    turns: list[SoakTurn] = field(default_factory=list)
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    failure: str = ""


class SoakCaller(SimulatedCaller):
    """A :class:`SimulatedCaller` that also keeps every JSON event with its arrival time."""

    def __init__(self, url: str, log_: CallerLog) -> None:
        super().__init__("voxbus", url)
        self.log = log_

    def _on_event(self, event: dict[str, Any]) -> None:
        self.log.events.append((time.monotonic(), event))
        super()._on_event(event)


def open_turns(events: list[tuple[float, dict[str, Any]]]) -> set[str]:
    """Turn ids whose speech started but whose ``turn_end`` has not arrived."""
    started = {e["turn_id"] for _, e in events if e.get("type") == "speech_started"}
    return started - {e["turn_id"] for _, e in events if e.get("type") == "turn_end"}


def turn_start_sample(turn_id: str) -> int | None:
    """The first speech sample named by a voice turn id ``a<sample>-<epoch>`` (None for others)."""
    if not turn_id.startswith("a"):
        return None
    try:
        return int(turn_id[1:].split("-")[0])
    except ValueError:
        return None


def belongs(turn_id: str, span: tuple[int, int]) -> bool:
    """Whether the turn ``turn_id`` was cut from speech in ``span`` (connection samples)."""
    sample = turn_start_sample(turn_id)
    return sample is not None and span[0] - MATCH_SLACK_SAMPLES <= sample < span[1]


def classify(turn: SoakTurn, events: list[tuple[float, dict[str, Any]]]) -> str:
    """The outcome of one utterance (see the module docstring), from the caller's events."""
    if turn.result.first_audio_at is not None and not turn.result.timed_out:
        return "answered"
    mine = [e for _, e in events if belongs(e.get("turn_id", ""), turn.span)]
    ends = [e for e in mine if e.get("type") == "turn_end"]
    if any(e.get("reply_text") for e in ends):
        return "late"
    if any(e.get("type") == "error" for e in mine) or any(
            e.get("type") == "error" and not e.get("turn_id") and turn.started_at <= t <= turn.ended_at
            for t, e in events):
        return "error"
    if any(e.get("interrupted") for e in ends):
        return "interrupted"
    if ends:
        return "no_reply"
    return "lost"


def turn_events(turn: SoakTurn, events: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The events of the turns cut from ``turn``'s speech (reply audio headers left out), for the report."""
    return [{"at_s": round(t - turn.started_at, 2), **{k: v for k, v in e.items() if k != "latency_ms"}}
            for t, e in events if belongs(e.get("turn_id", ""), turn.span) and e.get("type") != "reply_audio"]


def duplicates(events: list[tuple[float, dict[str, Any]]]) -> int:
    """Replies received more than once: extra ``turn_end`` s per turn id and sentences per (turn, index)."""
    ends = Counter(e["turn_id"] for _, e in events if e.get("type") == "turn_end")
    sentences = Counter((e["turn_id"], e.get("index")) for _, e in events if e.get("type") == "reply_text")
    return sum(n - 1 for n in ends.values()) + sum(n - 1 for n in sentences.values())


def rss_growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, dict[str, float | None]]:
    """Per process: RSS (MB) at the first sample after ``warmup_s`` and at the last, and the growth (%).

    ``samples``: ``{"t": seconds since the start, "rss_mb": {process: MB}}``, in time order.
    """
    after = [s for s in samples if s["t"] >= warmup_s] or samples[-1:]
    if not after:
        return {}
    first, last = after[0]["rss_mb"], after[-1]["rss_mb"]
    return {name: {"first_mb": first[name], "last_mb": last.get(name),
                   "growth_pct": round(100.0 * (last[name] - first[name]) / first[name], 1)
                   if name in last and first[name] else None}
            for name in first}


def per_minute(turns: list[SoakTurn], t0: float) -> list[dict[str, Any]]:
    """Turn outcomes and voice-to-voice p50/p95 (ms) per minute of the soak (by the end of speech)."""
    minutes: dict[int, list[SoakTurn]] = {}
    for turn in turns:
        minutes.setdefault(int((turn.result.speech_end_at - t0) // 60), []).append(turn)
    out = []
    for minute in sorted(minutes):
        group = minutes[minute]
        stats = percentiles(t.result.voice_to_voice_ms for t in group if t.outcome == "answered")
        out.append({"minute": minute, **{k: sum(t.outcome == k for t in group) for k in OUTCOMES},
                    "v2v_p50_ms": stats["p50"], "v2v_p95_ms": stats["p95"]})
    return out


def process_rss_mb(roots: dict[str, int]) -> dict[str, float]:
    """RSS (MB) of each named process plus its descendants, from ``/proc``."""
    kids = children_map()

    def rss(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/status") as status:
                line = next((x for x in status if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        except OSError:
            return 0.0
        return int(line.split()[1]) / 1024 + sum(rss(child) for child in kids.get(pid, []))

    return {name: round(rss(pid), 1) for name, pid in roots.items()}


def ingress_counters(base_url: str) -> dict[str, float]:
    """The ingress's own load-shedding and duplicate counters (summed over labels)."""
    try:
        body = urllib.request.urlopen(f"{base_url}/metrics", timeout=5).read().decode()
    except OSError as exc:
        log(f"ingress /metrics unreadable: {exc}")
        return {}
    out = dict.fromkeys(INGRESS_COUNTERS, 0.0)
    for line in body.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in out:
            out[name] += float(line.split()[-1])
    return out


async def soak_caller(url: str, index: int, utterances: list[Utterance], end_at: float, delay_s: float,
                      timeout_s: float) -> CallerLog:
    """One caller: after ``delay_s``, speak utterance after utterance until ``end_at`` (monotonic)."""
    record = CallerLog(index)
    await asyncio.sleep(delay_s)
    try:
        async with SoakCaller(url, record) as caller:
            record.session_id = caller.session_id or ""
            await caller.silence_for(LEAD_IN_S)
            number = 0
            while time.monotonic() < end_at:
                utterance = utterances[(3 * index + number) % len(utterances)]
                result = TurnResult("voxbus", 0, index, number, utterance.name, speech_end_at=0.0)
                turn = SoakTurn(result, (0, 0), time.monotonic())
                record.turns.append(turn)
                await caller.turn(utterance, result, timeout_s)
                turn.span, turn.ended_at = caller.speech_span, time.monotonic()
                number += 1
            drain_until = time.monotonic() + DRAIN_S
            while open_turns(record.events) and time.monotonic() < drain_until:
                await caller.silence_for(0.5)  # stay on the line until every started turn has ended
            caller.attach_turn_ends([t.result for t in record.turns])
    except Exception as exc:  # noqa: BLE001 - a caller that fails is reported, the others go on
        record.failure = f"{type(exc).__name__}: {exc}"
        log(f"caller {index} failed: {record.failure}")
    for turn in record.turns:
        turn.outcome = classify(turn, record.events)
    return record


class RssSampler:
    """Samples every voxbus process's RSS every ``period_s`` seconds in a thread."""

    def __init__(self, supervisor: Any, period_s: float) -> None:
        from benchmarks.latency import voxbus_roots

        self.roots = lambda: voxbus_roots(supervisor)
        self.period = period_s
        self.samples: list[dict[str, Any]] = []
        self.stop_event = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append({"t": round(time.monotonic() - self.t0, 1),
                                 "rss_mb": process_rss_mb(self.roots())})
            self.stop_event.wait(self.period)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


async def run_soak(url: str, args: argparse.Namespace,
                   utterances: list[Utterance]) -> tuple[list[CallerLog], float]:
    """All callers, staggered by ``args.stagger``; returns their logs and the start (monotonic)."""
    t0 = time.monotonic()
    end_at = t0 + args.minutes * 60
    logs = await asyncio.gather(*[
        soak_caller(url, k, utterances, end_at, k * args.stagger, args.turn_timeout)
        for k in range(args.callers)
    ])
    return list(logs), t0


def summarize(logs: list[CallerLog], t0: float, samples: list[dict[str, Any]],
              warmup_s: float) -> dict[str, Any]:
    """The soak's figures: outcomes, duplicates, RSS growth, latency per minute."""
    turns = [t for log_ in logs for t in log_.turns]
    answered = [t.result.voice_to_voice_ms for t in turns if t.outcome == "answered"]
    growth = rss_growth(samples, warmup_s)
    return {
        "utterances": len(turns),
        "outcomes": {k: sum(t.outcome == k for t in turns) for k in OUTCOMES},
        "duplicate_replies": sum(duplicates(log_.events) for log_ in logs),
        "errors": dict(Counter(e.get("code") for log_ in logs for _, e in log_.events
                               if e.get("type") == "error")),
        "caller_failures": [log_.failure for log_ in logs if log_.failure],
        "voice_to_voice_ms": percentiles(answered),
        "per_minute": per_minute(turns, t0),
        "rss_growth": growth,
        "max_rss_growth_pct": max((g["growth_pct"] for g in growth.values() if g["growth_pct"] is not None),
                                  default=None),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """RSS per process over time; p95 voice-to-voice and turn outcomes per minute, from a soak report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, samples = report["summary"], report["rss_samples"]

    fig, (rss_ax, lat_ax) = plt.subplots(2, 1, figsize=(10, 8))
    for name in samples[0]["rss_mb"] if samples else []:
        rss_ax.plot([s["t"] / 60 for s in samples], [s["rss_mb"].get(name) for s in samples], label=name)
    rss_ax.set(xlabel="minute", ylabel="RSS (MB)", title="resident memory per voxbus process")
    rss_ax.legend(fontsize=7, ncol=3)
    minutes = summary["per_minute"]
    xs = [m["minute"] for m in minutes]
    bottom = [0] * len(xs)
    count_ax = lat_ax.twinx()
    for outcome, colour in zip(OUTCOMES, ("tab:green", "tab:olive", "tab:orange", "tab:purple", "tab:gray",
                                                "tab:red"),
                               strict=True):
        values = [m[outcome] for m in minutes]
        count_ax.bar(xs, values, bottom=bottom, color=colour, alpha=0.3, label=outcome)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    lat_ax.plot(xs, [m["v2v_p95_ms"] for m in minutes], "o-", color="tab:blue", label="p95 voice-to-voice")
    lat_ax.plot(xs, [m["v2v_p50_ms"] for m in minutes], "o--", color="tab:blue", label="p50")
    lat_ax.set(xlabel="minute", ylabel="voice-to-voice (ms)", title="latency and turn outcomes per minute")
    count_ax.set_ylabel("utterances")
    lat_ax.legend(loc="upper left", fontsize=8)
    count_ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_run_arguments(parser: argparse.ArgumentParser, callers: int, out: Path) -> None:
    """The options of a run of real-time callers (the soak's and ``benchmarks/chaos.py``'s)."""
    parser.add_argument("--callers", type=int, default=callers)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=60.0, help="RSS growth is measured from here on")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--turn-timeout", type=float, default=30.0, help="wait for the first reply audio (s)")
    parser.add_argument("--stagger", type=float, default=1.5, help="between two callers' starts (s)")
    parser.add_argument("--handoff-after-misses", type=int, default=1000,
                        help="VOXBUS_HANDOFF_AFTER_MISSES of the stack (the recordings are not questions)")
    parser.add_argument("--data", type=Path, default=ROOT / "tests" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / ".voxbus-bench")
    parser.add_argument("--out", type=Path, default=out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, callers=10, out=RESULTS / "soak.json")
    return parser.parse_args(argv)


def start_watched_stack(args: argparse.Namespace,
                        name: str) -> tuple[list[Utterance], Any, Any, threading.Event]:
    """The recordings of ``args.data`` and a stack in ``args.work/name``; ``args``: :func:`add_run_arguments`.

    Returns:
        (utterances, the stack's supervisor, its settings, an event that stops the thread
        restarting its dead processes, as ``voxbus up`` does)
    """
    from benchmarks.latency import prepare_data_dir, start_voxbus
    from streams.settings import Settings

    defaults = Settings()
    utterances = load_utterances(args.data, defaults.vad_threshold, defaults.vad_min_silence_ms,
                                 defaults.vad_speech_pad_ms)
    supervisor, settings = start_voxbus(prepare_data_dir(args.work, name),
                                        extra_env={"HANDOFF_AFTER_MISSES": str(args.handoff_after_misses)})
    stop = threading.Event()
    threading.Thread(target=supervisor.watch, args=(stop,), daemon=True).start()
    return utterances, supervisor, settings, stop


def write_report(args: argparse.Namespace, fields: dict[str, Any], counters: dict[str, float],
                 restarts: dict[str, int], samples: list[dict[str, Any]], turns: list[dict[str, Any]],
                 draw: Callable[[dict[str, Any], Path], None]) -> dict[str, Any]:
    """Write a run's report to ``args.out`` (JSON) and its plot beside it (``.png``); log both paths.

    The report of the soak's and ``benchmarks/chaos.py``'s runs: ``when`` (UTC, ISO 8601),
    ``machine``, ``args``, then ``fields``, ``ingress_counters``, ``restarts``, ``rss_samples`` and
    ``turns``, in that order.

    Args:
        args: the run's options (:func:`add_run_arguments` and the benchmark's own); paths written as strings.
        fields: what the benchmark reports of its own (``summary``, ...), in order.
        counters: the ingress's counters at the end of the run (:func:`ingress_counters`).
        restarts: process name -> times the supervisor restarted it during the run.
        samples: the RSS samples (:class:`RssSampler`).
        turns: one row per utterance.
        draw: draws the plot of the report to a path.

    Returns:
        The report as written.
    """
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **fields,
        "ingress_counters": counters,
        "restarts": restarts,
        "rss_samples": samples,
        "turns": turns,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    draw(report, args.out.with_suffix(".png"))
    log(f"results: {args.out}, {args.out.with_suffix('.png')}")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    utterances, supervisor, settings, stop = start_watched_stack(args, "soak")
    base = f"http://{settings.host}:{settings.port}"
    try:
        log(f"{args.callers} callers for {args.minutes:g} min, {len(utterances)} utterances")
        with RssSampler(supervisor, args.sample_s) as sampler:
            url = f"ws://{settings.host}:{settings.port}/v1/stream"
            logs, t0 = asyncio.run(run_soak(url, args, utterances))
        counters = ingress_counters(base)
        restarts = {c.name: c.restarts for c in supervisor.children if c.restarts}
    finally:
        stop.set()
        supervisor.stop()
    summary = summarize(logs, t0, sampler.samples, args.warmup_s)
    turns = [{"caller": log_.index, "session_id": log_.session_id, "outcome": t.outcome,
              "events": turn_events(t, log_.events), **t.result.to_json()}
             for log_ in logs for t in log_.turns]
    write_report(args, {"summary": summary}, counters, restarts, sampler.samples, turns, plot)
    print(json.dumps({k: summary[k] for k in ("utterances", "outcomes", "duplicate_replies", "errors",
                                              "voice_to_voice_ms", "max_rss_growth_pct")}, indent=1))
    print(json.dumps({"per_minute": summary["per_minute"], "ingress": counters}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
