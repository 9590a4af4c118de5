"""``make chaos``: real-time callers on real recordings, a random voxbus process SIGKILLed each minute.

voxbus is started on private ports (as ``benchmarks/soak.py`` does) and its supervisor
restarts whatever dies (``voxbus up``'s watch loop).  ``--callers`` callers
(:class:`ChaosCaller`) each hold one ``/v1/stream`` session for ``--minutes`` and speak
the utterances of ``tests/data`` in real time, as in the soak; a caller whose socket
drops (the ingress was killed) reopens its session with the same ``session_id``
(:func:`voxbus.client.connect`, exponential backoff) and goes on.  Every ``--every-s``
seconds one process chosen at random among :data:`TARGETS` (each stage, the ingress,
the LLM server; a shuffled round, so ten kills hit each of the nine at least once) is
sent SIGKILL.  With ``--standby`` (the default) every stage has a warm standby
(``VOXBUS_STAGE_STANDBY``, :class:`voxbus.supervisor.Supervisor`): a killed stage's
replacement is a process whose models are already loaded.

Per kill (:func:`next_answer`): the time from the kill to the next answered turn, i.e. the
first reply audio of a turn whose speech ended after the kill (so every stage, and the
ingress the caller reconnected to, handled that turn after the kill), excluding the
LLM-down apology; and when the supervisor had started the replacement.

Each utterance gets one outcome (:func:`outcome`): those of :func:`benchmarks.soak.classify`
(``answered``, ``late``, ``error`` = explicitly failed, ``interrupted``, ``no_reply``,
``lost``) plus ``disconnected``: not answered, and the caller's connection dropped
under it (the caller was told by the socket; its turn was on the killed ingress).
Duplicates (:func:`duplicate_counts`): a second ``turn_end`` for a turn, a reply
sentence (turn, index) or an audio frame (turn, ``offset``) received twice.  RSS per
process is sampled as in the soak.  Results: ``benchmarks/results/chaos.json``
(``summary``: :func:`summarize`) and ``chaos.png``.

Usage: ``python -m benchmarks.chaos [--callers 4] [--minutes 10] [--every-s 60] [--seed S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.caller import LEAD_IN_S, TurnResult
from benchmarks.report import percentiles
from benchmarks.soak import (
    DRAIN_S,
    OUTCOMES,
    CallerLog,
    RssSampler,
    SoakCaller,
    SoakTurn,
    add_run_arguments,
    classify,
    ingress_counters,
    open_turns,
    rss_growth,
    start_watched_stack,
    write_report,
)
from benchmarks.utterances import SAMPLE_RATE, Utterance

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ("vad", "asr", "intent", "retrieval", "generation", "tts", "workflow", "ingress", "llm")
"""What a kill may hit: every stage of :data:`processors.runtime.STAGES`, the ingress and the LLM server."""
STAGE_TARGETS = TARGETS[:7]
CHAOS_OUTCOMES = (*OUTCOMES, "disconnected")
TAIL_S = 30.0
"""No kill in the last this many seconds of the run: the last kill must have time to recover (s)."""
TURN_FIELDS = ("utterance", "turn_id", "timed_out", "voice_to_voice_ms", "reply_text")
"""What the report keeps of each turn's :class:`benchmarks.caller.TurnResult`."""
LOG_MARKS = {"loaded": "processors.runtime: stage ", "standby": "taking over from its standby",
             "ready": "[^Worker]: Ready"}
"""Lines of a stage worker's log: its models are loaded (:func:`processors.runtime.run_worker`; a standby's
were before, and it takes over: :func:`streams.standby.take_over`), and faust's worker has joined the
group and been assigned its partitions."""
LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})")
"""The local time stamp of a line of a voxbus or faust log."""
REDIAL_PAUSE_S = 1.0
"""Silence (s) a caller whose line dropped mid-sentence keeps once it is back, before saying the
sentence again (a person notices the line is back, then starts over; a modelling choice, not a
measurement)."""
RECOVERY_TARGET_S = 10.0
"""Issue 16's target: at most this long from a kill to the next answered turn (s)."""


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class ChaosTurn(SoakTurn):
    """A :class:`benchmarks.soak.SoakTurn` and the caller's connection (0, 1, ...) it was spoken on."""

    connection: int = 0
    disconnected: bool = False


@dataclass
class Kill:
    """One SIGKILL and what followed, on the benchmark's monotonic clock (s).

    Attributes:
        target: the process (one of :data:`TARGETS`).
        at: when it was killed; ``wall``: the same as an ISO time (to read the logs by).
        restarted_at: when the supervisor started its replacement (None: not seen).
        answered_at: first reply audio of the next turn answered after the kill (None: none).
        marks: where the time went, seconds after the kill: a stage's ``loaded`` (imports and
            models; a standby taking over loads nothing and has ``standby``, its take-over, instead)
            and ``ready`` (in its group, partitions assigned) from its log
            (:data:`LOG_MARKS`), the LLM server's ``ready`` (it serves ``/v1/models``), the
            first caller ``reconnected`` after an ingress kill; and of the answering turn (the
            recovery is their sum), ``speech_wait`` (until its caller finished speaking) and
            ``answer_v2v`` (its voice-to-voice).
    """

    target: str
    at: float
    wall: str
    pid: int
    restarted_at: float | None = None
    answered_at: float | None = None
    marks: dict[str, float] = field(default_factory=dict)
    wall_ts: float = field(default_factory=time.time)

    def report(self, t0: float) -> dict[str, Any]:
        """JSON-ready: times relative to the run's start, the restart delay and the recovery (s)."""
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.at, 2)

        return {"target": self.target, "at_s": round(self.at - t0, 1), "wall": self.wall, "pid": self.pid,
                "restart_s": rel(self.restarted_at), **{f"{k}_s": round(v, 2) for k, v in self.marks.items()},
                "recovery_s": rel(self.answered_at)}


class LineDropped(Exception):
    """The caller's line dropped mid-utterance and is back (:meth:`ChaosCaller.speak` starts it again)."""


class ChaosCaller(SoakCaller):
    """A soak caller whose dropped socket is reopened on the same session (a resumed connection).

    After a reconnect the ingress counts samples from 0 again, so :attr:`samples_sent`
    restarts and :attr:`connection` goes up; each event is tagged with the connection it
    arrived on (``"connection"``), and :func:`connection_epochs` maps connections to the
    epochs of their turn ids.
    """

    def __init__(self, url: str, log_: CallerLog) -> None:
        super().__init__(url, log_)
        self.connection = 0
        self.turn_connection = 0
        self.reconnects: list[tuple[float, float]] = []
        self.speaking = False
        """Whether an utterance is being streamed (not silence)."""

    async def turn(self, utterance: Utterance, result: TurnResult, timeout_s: float) -> TurnResult:
        """Speak ``utterance`` and wait for its reply, as a person does when the line drops.

        A line that drops while the caller speaks: once it is back the utterance is said again
        from its start (:meth:`speak`), not finished mid-sentence.  A line that drops while the
        caller waits for the reply: the caller stops waiting (:meth:`turn_abandoned`) and goes on
        to its next utterance.  :attr:`turn_connection` is the connection the utterance was last
        spoken on.
        """
        self.turn_connection = self.connection
        return await super().turn(utterance, result, timeout_s)

    async def speak(self, utterance: Utterance) -> float:
        """Stream ``utterance`` in real time; on a line dropped under it, start it again.

        The rest of the interrupted sentence is not sent on the reopened connection: the caller
        waits :data:`REDIAL_PAUSE_S` with silence, then says the utterance from its start.  (Sent
        straight on, the rest ran into the repeat without a pause, so the vad stage heard one
        utterance from sample 0 of the new connection, and its turn was counted lost at 42e9127.)
        """
        while True:
            self.turn_connection = self.connection
            self.speaking = True
            try:
                return await super().speak(utterance)
            except LineDropped:
                pass
            finally:
                self.speaking = False
            await self.silence_for(REDIAL_PAUSE_S)

    def turn_abandoned(self) -> bool:
        """Whether the line dropped since the utterance was spoken: its reply went down with the ingress.

        Waiting out the turn timeout for it would add that timeout to the recovery of every caller
        on the killed ingress (30 s at b8dd287, for three of four callers).
        """
        return self.connection != self.turn_connection

    def _on_event(self, event: dict[str, Any]) -> None:
        super()._on_event({**event, "connection": self.connection})

    async def _send(self, pcm: bytes) -> float:
        """Send one frame; reopen a dropped line first (then, mid-utterance, raise :class:`LineDropped`)."""
        if self.ws.closed:
            await self.redial()
        try:
            return await super()._send(pcm)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            await self.redial()
            return await super()._send(pcm)

    async def redial(self) -> None:
        """:meth:`reconnect`; then, if the line dropped mid-utterance, raise :class:`LineDropped`."""
        await self.reconnect()
        if self.speaking:
            raise LineDropped

    async def reconnect(self) -> None:
        """Reopen the session (same id) with :func:`voxbus.client.connect`'s backoff, as ``voxbus call`` does.

        Raises:
            voxbus.client.Refused | aiohttp.ClientError | OSError: not back within
                :data:`voxbus.client.RECONNECT_FOR_S`.
        """
        from voxbus.client import RECONNECT_FOR_S, connect

        dropped = time.monotonic()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        start = {"sample_rate": SAMPLE_RATE, "encoding": "pcm_s16le", "session_id": self.session_id}
        self.ws, _ready = await connect(self.http, self.url, start, retry_for_s=RECONNECT_FOR_S)
        self.connection += 1
        self.samples_sent, self._header = 0, None
        self.clock = time.monotonic()
        self.reader = asyncio.create_task(self._read())
        self.reconnects.append((dropped, self.clock))
        log(f"caller {self.log.index} reconnected after {self.clock - dropped:.1f} s")


def turn_epoch(turn_id: str) -> int | None:
    """The connection epoch named by a voice turn id ``a<sample>-<epoch>`` (None for others)."""
    head, _, epoch = turn_id.partition("-")
    return int(epoch) if head.startswith("a") and epoch.isdigit() else None


def connection_epochs(events: list[tuple[float, dict[str, Any]]]) -> dict[int, int]:
    """Connection -> the epoch of its own turns: the highest in the ``speech_started`` events it received.

    A connection's turns have its epoch, and epochs grow with every connection of the
    session, so an earlier connection's late events (lower epochs) do not mislead it.
    """
    out: dict[int, int] = {}
    for _, event in events:
        epoch = turn_epoch(event.get("turn_id", "")) if event.get("type") == "speech_started" else None
        if epoch is not None:
            out[event["connection"]] = max(epoch, out.get(event["connection"], epoch))
    return out


Events = list[tuple[float, dict[str, Any]]]
"""A caller's events with their monotonic arrival times (s)."""


def events_of(events: Events, epoch: int | None) -> Events:
    """Session events (no turn id) and those of voice turns of ``epoch`` (text turns, if any, kept)."""
    return [(t, e) for t, e in events if turn_epoch(e.get("turn_id", "")) in (None, epoch)]


def outcome(turn: ChaosTurn, events: Events, epochs: dict[int, int]) -> str:
    """The outcome (:data:`CHAOS_OUTCOMES`): the soak's, from its connection's events, or ``disconnected``.

    Args:
        epochs: :func:`connection_epochs` of the caller's events.
    """
    if turn.result.first_audio_at is not None and not turn.result.timed_out:
        return "answered"
    epoch = epochs.get(turn.connection)
    got = classify(turn, events_of(events, epoch)) if epoch is not None else "lost"
    return "disconnected" if got == "lost" and turn.disconnected else got


def duplicate_counts(events: list[tuple[float, dict[str, Any]]]) -> dict[str, int]:
    """Deliveries received more than once: ``turn_end`` s per turn, sentences per (turn, index), audio frames
    per (turn, offset) (frames with bytes only)."""
    def extra(keys: list[Any]) -> int:
        return sum(n - 1 for n in Counter(keys).values())

    kinds = [e for _, e in events]
    return {
        "turn_end": extra([e["turn_id"] for e in kinds if e.get("type") == "turn_end"]),
        "sentence": extra([(e["turn_id"], e.get("index")) for e in kinds if e.get("type") == "reply_text"]),
        "audio": extra([(e["turn_id"], e["offset"]) for e in kinds
                        if e.get("type") == "reply_audio" and e.get("bytes") and "offset" in e]),
    }


def is_apology(turn: SoakTurn, events: Events, apology: str) -> bool:
    """Whether the turn's reply was ``apology`` (the generation stage's while the LLM server is down)."""
    return any(e.get("type") == "reply_text" and e.get("turn_id") == turn.result.turn_id
               and e.get("text", "").strip() == apology.strip() for _, e in events)


def next_answer(at: float, answered: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(speech end, first reply audio) of the first turn spoken after ``at`` to be answered (None: none was).

    Args:
        at: the instant (monotonic s).
        answered: (speech end, first reply audio) of every answered turn (monotonic s).
    """
    after = [pair for pair in answered if pair[0] > at]
    return min(after, key=lambda pair: pair[1]) if after else None


def kill_excess(kills: list[dict[str, Any]], calm: list[tuple[float, float]]) -> dict[str, float | None]:
    """What the kills themselves cost: each kill's answering turn's voice-to-voice over the calm median.

    A recovery (kill to the first answer of a turn spoken after it) is the wait for a caller to
    finish speaking (``speech_wait_s``), which no process can shorten, plus that turn's
    voice-to-voice (``answer_v2v_s``). The calm turns (the ones answering the instants
    :func:`between_kills`) give the voice-to-voice the same load has without a kill; the excess
    over their median is the kill's own cost (negative: the answer came sooner than usual).

    Args:
        kills: :meth:`Kill.report` of each kill.
        calm: (speech end, first reply audio) of each calm answering turn (monotonic s).

    Returns:
        ``p50``/``p95``/``max`` (s, None without kills or calm turns), ``n`` and ``calm_v2v_p50``.
    """
    calm_v2v = percentiles([first - end for end, first in calm])["p50"]
    excess = [] if calm_v2v is None else [k["answer_v2v_s"] - calm_v2v for k in kills if "answer_v2v_s" in k]
    stats = percentiles(excess)
    return {"p50": stats["p50"], "p95": stats["p95"], "max": round(max(excess), 1) if excess else None,
            "n": len(excess), "calm_v2v_p50": calm_v2v}


def between_kills(kills: list[Kill], t0: float) -> list[float]:
    """The instants halfway between two kills (the first: halfway from the start to the first kill).

    From such an instant to the next answered turn spoken after it (:func:`next_answer`) is what a
    kill's recovery would be if nothing had been killed: the wait for the callers' next question
    to be spoken and answered, which bounds how short a recovery can be.
    """
    starts = [t0, *(kill.at for kill in kills)]
    return [(start + kill.at) / 2 for start, kill in zip(starts, kills, strict=False)]


def kill_plan(duration_s: float, every_s: float, targets: tuple[str, ...],
              rng: random.Random) -> list[tuple[float, str]]:
    """(seconds from the start, target) of each kill: every ``every_s`` up to :data:`TAIL_S` before the end.

    Targets are drawn in shuffled rounds of ``targets``, so every one is hit before any twice.
    """
    times = [every_s * k for k in range(1, int(duration_s // every_s) + 1)
             if every_s * k <= duration_s - TAIL_S]
    order: list[str] = []
    while len(order) < len(times):
        round_ = list(targets)
        rng.shuffle(round_)
        order += round_
    return list(zip(times, order, strict=False))


def life_growth(samples: list[dict[str, Any]], kills: list[dict[str, Any]],
                warmup_s: float) -> dict[str, dict[str, float | None]]:
    """RSS growth of each process over its own life (:func:`benchmarks.soak.rss_growth` per life).

    A killed target's replacement is another process (or its standby, loaded long before): its
    life starts at the kill, and its growth counts from ``warmup_s`` into that life, as the first
    process's from ``warmup_s`` into the run.  A life with fewer than two samples after its
    warm-up has no figure (None).

    Args:
        samples: the RSS samples (``t``: seconds since the run's start).
        kills: :meth:`Kill.report` of each kill (``target``, ``at_s``).
        warmup_s: the warm-up of every life (s).

    Returns:
        Name (``tts``, and ``tts after the kill at 540 s`` for its replacement) -> ``first_mb``,
        ``last_mb``, ``growth_pct``.
    """
    names = sorted({name for sample in samples for name in sample["rss_mb"]})
    out: dict[str, dict[str, float | None]] = {}
    for name in names:
        starts = [0.0, *sorted(k["at_s"] for k in kills if k["target"] == name)]
        for start, end in zip(starts, [*starts[1:], float("inf")], strict=True):
            label = name if not start else f"{name} after the kill at {start:.0f} s"
            life = [{"t": x["t"], "rss_mb": {name: x["rss_mb"][name]}} for x in samples
                    if start <= x["t"] < end and name in x["rss_mb"]]
            if len([x for x in life if x["t"] >= start + warmup_s]) < 2:
                out[label] = {"first_mb": None, "last_mb": None, "growth_pct": None}
                continue
            out[label] = rss_growth(life, start + warmup_s)[name]
    return out


def summarize(turns: list[ChaosTurn], dups: dict[str, int], kills: list[dict[str, Any]],
              growth: dict[str, dict[str, float | None]], failures: list[str]) -> dict[str, Any]:
    """The chaos figures: turn outcomes, duplicates, per-kill recovery percentiles and RSS growth.

    Args:
        turns: every utterance spoken, with its outcome set.
        dups: :func:`duplicate_counts` summed over the callers.
        kills: :meth:`Kill.report` of each kill (``recovery_s`` None when no turn was answered after it).
        growth: :func:`life_growth`.
        failures: callers that gave up (e.g. could not reconnect).

    Returns:
        ``turns`` (asked), one count per outcome (``answered``, ``late``, ``failed`` = error
        event, ``interrupted``, ``no_reply``, ``disconnected``, ``lost``), ``duplicated``
        and ``duplicates`` by kind, ``kills``, ``unrecovered``, ``recovery_s``
        (``p50``/``p95``/``max``/``n``, s), ``recovery_over_target`` (kills over
        :data:`RECOVERY_TARGET_S` or unrecovered), ``max_rss_growth_pct``, ``rss_growth``.
    """
    counts = Counter(t.outcome for t in turns)
    recovered = [k["recovery_s"] for k in kills if k["recovery_s"] is not None]
    stats = percentiles(recovered)
    return {
        "turns": len(turns),
        **{("failed" if name == "error" else name): counts.get(name, 0) for name in CHAOS_OUTCOMES},
        "duplicated": sum(dups.values()),
        "duplicates": dups,
        "kills": len(kills),
        "unrecovered": len(kills) - len(recovered),
        "recovery_s": {"p50": stats["p50"], "p95": stats["p95"], "max": max(recovered, default=None),
                       "n": len(recovered)},
        "recovery_over_target": sum(k["recovery_s"] is None or k["recovery_s"] > RECOVERY_TARGET_S
                                    for k in kills),
        "caller_failures": failures,
        "max_rss_growth_pct": max((g["growth_pct"] for g in growth.values() if g["growth_pct"] is not None),
                                  default=None),
        "rss_growth": growth,
    }


@dataclass
class CallerRun:
    """What one chaos caller brings back: its log, its turns (outcomes set), duplicates and reconnections."""

    record: CallerLog
    turns: list[ChaosTurn]
    duplicates: dict[str, int]
    reconnects: list[tuple[float, float]]


async def chaos_caller(url: str, index: int, utterances: list[Utterance], end_at: float, delay_s: float,
                       timeout_s: float) -> CallerRun:
    """One caller until ``end_at`` (monotonic)."""
    record = CallerLog(index)
    turns: list[ChaosTurn] = []
    await asyncio.sleep(delay_s)
    caller = ChaosCaller(url, record)
    try:
        async with caller:
            record.session_id = caller.session_id or ""
            await caller.silence_for(LEAD_IN_S)
            while time.monotonic() < end_at:
                utterance = utterances[(3 * index + len(turns)) % len(utterances)]
                result = TurnResult("voxbus", 0, index, len(turns), utterance.name, speech_end_at=0.0)
                turn = ChaosTurn(result, (0, 0), time.monotonic(), connection=caller.connection)
                turns.append(turn)
                await caller.turn(utterance, result, timeout_s)
                turn.span, turn.ended_at = caller.speech_span, time.monotonic()
                turn.connection = caller.turn_connection
                turn.disconnected = caller.connection != turn.connection
            drain_until = time.monotonic() + DRAIN_S
            while time.monotonic() < drain_until and open_turns(
                    events_of(record.events, connection_epochs(record.events).get(caller.connection))):
                await caller.silence_for(0.5)
            caller.attach_turn_ends([t.result for t in turns])
    except Exception as exc:  # noqa: BLE001 - a caller that fails is reported, the others go on
        record.failure = f"{type(exc).__name__}: {exc}"
        log(f"caller {index} failed: {record.failure}")
        if turns and not turns[-1].ended_at:  # its line dropped under this turn and did not come back
            turns[-1].disconnected = True
    epochs = connection_epochs(record.events)
    for turn in turns:
        turn.outcome = outcome(turn, record.events, epochs)
    return CallerRun(record, turns, duplicate_counts(record.events), caller.reconnects)


def log_marks(lines: list[str], since: float, marks: dict[str, str]) -> dict[str, float]:
    """Name -> the time (epoch s) of the first line at or after ``since`` holding each of ``marks``' texts.

    ``lines``: a log whose lines start with a local time stamp (:data:`LOG_TIME`); marks not
    found are left out.
    """
    out: dict[str, float] = {}
    for line in lines:
        stamp = LOG_TIME.search(line[:40])
        if stamp is None:
            continue
        at = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for name, text in marks.items():
            if name not in out and at >= since and text in line:
                out[name] = at
    return out


def process_of(supervisor: Any, target: str) -> Any:
    """The running process (``subprocess.Popen``) of ``target`` under ``supervisor``."""
    if target == "llm":
        return supervisor.llm
    return next(c.proc for c in supervisor.children if c.name == target)


def started_at(supervisor: Any, target: str) -> float:
    """When the supervisor last started ``target`` (monotonic s)."""
    if target == "llm":
        return supervisor.llm_started
    return next(c.started for c in supervisor.children if c.name == target)


async def killer(supervisor: Any, plan: list[tuple[float, str]], t0: float, kills: list[Kill]) -> None:
    """SIGKILL each planned target at its time; note when the supervisor started its replacement."""
    async def replaced(kill: Kill, proc: Any) -> None:
        deadline = kill.at + 120.0
        while process_of(supervisor, kill.target) is proc and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if process_of(supervisor, kill.target) is proc:
            return
        kill.restarted_at = started_at(supervisor, kill.target)
        if kill.target == "llm":
            from processors.generation.llm_server import embedded_url
            from voxbus.supervisor import wait_http

            if await asyncio.to_thread(wait_http, f"{embedded_url(supervisor.settings)}/models", 60):
                kill.marks["ready"] = time.monotonic() - kill.at

    watchers = []
    for offset, target in plan:
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))
        proc = process_of(supervisor, target)
        kill = Kill(target, time.monotonic(), datetime.now(UTC).isoformat(timespec="milliseconds"), proc.pid)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had died on its own: its restart is under way, nothing to kill
            log(f"{target} (pid {proc.pid}) was not running; no kill")
            continue
        kills.append(kill)
        log(f"killed {target} (pid {proc.pid})")
        watchers.append(asyncio.create_task(replaced(kill, proc)))
    await asyncio.gather(*watchers)


def mark_recovery(kill: Kill, logs: Path, answered: list[tuple[float, float]],
                  reconnects: list[tuple[float, float]]) -> None:
    """Fill in ``kill``'s answer (:func:`next_answer`), its stage's log marks, the next reconnection.

    Args:
        logs: the stack's log folder (``<stage>.log``; a missing log gives no marks).
        answered: (speech end, first reply audio) of every answered turn (monotonic s).
        reconnects: (dropped, reopened) of every caller reconnection (monotonic s).
    """
    answer = next_answer(kill.at, answered)
    if answer is not None:
        kill.answered_at = answer[1]
        kill.marks["speech_wait"] = answer[0] - kill.at
        kill.marks["answer_v2v"] = answer[1] - answer[0]
    if kill.target in STAGE_TARGETS and (logs / f"{kill.target}.log").exists():
        lines = (logs / f"{kill.target}.log").read_text(errors="replace").splitlines()
        kill.marks.update({k: v - kill.wall_ts for k, v in log_marks(lines, kill.wall_ts, LOG_MARKS).items()})
    back = [reopened for dropped, reopened in reconnects if dropped >= kill.at]
    if kill.target == "ingress" and back:
        kill.marks["reconnected"] = min(back) - kill.at


async def run_chaos(url: str, supervisor: Any, args: argparse.Namespace, utterances: list[Utterance],
                    plan: list[tuple[float, str]]) -> tuple[list[CallerRun], list[Kill], float]:
    """The callers (staggered by ``args.stagger``) and the killer; returns the callers' runs, the kills
    and the start (monotonic)."""
    t0 = time.monotonic()
    end_at = t0 + args.minutes * 60
    kills: list[Kill] = []
    callers = asyncio.gather(*[chaos_caller(url, k, utterances, end_at, k * args.stagger, args.turn_timeout)
                               for k in range(args.callers)])
    results, _ = await asyncio.gather(callers, killer(supervisor, plan, t0, kills))
    return list(results), kills, t0


Rows = list[dict[str, Any]]
"""JSON-ready rows of the report."""


def account(results: list[CallerRun], kills: list[Kill], t0: float, logs: Path, samples: Rows,
            warmup_s: float, apology: str) -> tuple[dict[str, Any], Rows, Rows]:
    """The run's figures from the callers' runs and the kills (each kill's recovery is filled in).

    Args:
        t0: the run's start (monotonic s).
        logs: the stack's log folder (:func:`mark_recovery`).
        samples: :class:`benchmarks.soak.RssSampler` samples; growth counted from ``warmup_s``.
        apology: the generation stage's reply while the LLM server is down (not an answer).

    Returns:
        (:func:`summarize` plus ``apologies``, ``reconnects`` and ``no_kill_s`` (``p50``/``p95``/``n``:
        the same measure as a recovery from the instants :func:`between_kills`, s), :meth:`Kill.report`
        of each kill, one row per turn)
    """
    turns = [(run.record, turn) for run in results for turn in run.turns]
    answered = [(t.result.speech_end_at, t.result.first_audio_at) for record, t in turns
                if t.outcome == "answered" and not is_apology(t, record.events, apology)]
    reconnects = [pair for run in results for pair in run.reconnects]
    for kill in kills:
        mark_recovery(kill, logs, answered, reconnects)
    kill_reports = [kill.report(t0) for kill in kills]
    dups = sum((Counter(run.duplicates) for run in results), Counter())
    summary = summarize([t for _, t in turns], {k: dups.get(k, 0) for k in ("turn_end", "sentence", "audio")},
                        kill_reports, life_growth(samples, kill_reports, warmup_s),
                        [run.record.failure for run in results if run.record.failure])
    calm = [(at, answer) for at in between_kills(kills, t0)
            if (answer := next_answer(at, answered)) is not None]
    calm_stats = percentiles([answer[1] - at for at, answer in calm])
    summary["no_kill_s"] = {"p50": calm_stats["p50"], "p95": calm_stats["p95"], "n": calm_stats["n"]}
    summary["kill_excess_s"] = kill_excess(kill_reports, [answer for _, answer in calm])
    summary["apologies"] = sum(is_apology(t, record.events, apology) for record, t in turns)
    summary["reconnects"] = len(reconnects)
    rows = [{"caller": record.index, "session_id": record.session_id, "connection": t.connection,
             "outcome": t.outcome,
             "speech_end_s": round(t.result.speech_end_at - t0, 2) if t.result.speech_end_at else None,
             **{k: v for k, v in t.result.to_json().items() if k in TURN_FIELDS}}
            for record, t in turns]
    return summary, kill_reports, rows


def plot(report: dict[str, Any], path: Path) -> None:
    """Voice-to-voice of every answered turn over the run with the kills marked; recovery per kill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (turn_ax, kill_ax) = plt.subplots(2, 1, figsize=(10, 8))
    answered = [t for t in report["turns"] if t["outcome"] == "answered"]
    turn_ax.scatter([t["speech_end_s"] / 60 for t in answered],
                    [t["voice_to_voice_ms"] / 1000 for t in answered], s=12, color="tab:blue",
                    label="answered turn")
    others = [t for t in report["turns"] if t["outcome"] != "answered" and t["speech_end_s"] is not None]
    turn_ax.scatter([t["speech_end_s"] / 60 for t in others], [0] * len(others), marker="x", color="tab:red",
                    s=16, label="not answered in time (any other outcome)")
    for kill in report["kills"]:
        turn_ax.axvline(kill["at_s"] / 60, color="tab:gray", linestyle=":")
        turn_ax.annotate(kill["target"], (kill["at_s"] / 60, turn_ax.get_ylim()[1] * 0.95), rotation=90,
                         fontsize=7, va="top")
    turn_ax.set(xlabel="minute (end of speech)", ylabel="voice-to-voice (s)",
                title="turns under chaos: one SIGKILL per dotted line")
    turn_ax.legend(fontsize=8, loc="upper right")
    labels = [f"{k['target']}\n{k['at_s'] / 60:.0f} min" for k in report["kills"]]
    values = [k["recovery_s"] if k["recovery_s"] is not None else 0.0 for k in report["kills"]]
    colours = ["tab:green" if value and value <= RECOVERY_TARGET_S else "tab:red" for value in values]
    kill_ax.bar(range(len(values)), values, color=colours)
    kill_ax.bar(range(len(values)), [k["restart_s"] or 0.0 for k in report["kills"]], color="tab:gray",
                alpha=0.6, label="until the supervisor restarted it")
    kill_ax.axhline(RECOVERY_TARGET_S, color="tab:red", linestyle="--",
                    label=f"target {RECOVERY_TARGET_S:g} s")
    kill_ax.set_xticks(range(len(values)), labels, fontsize=7)
    kill_ax.set(ylabel="kill -> next answered turn (s)", title="recovery per kill (red: over target or none)")
    kill_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_arguments(parser, callers=4, out=RESULTS / "chaos.json")
    parser.add_argument("--every-s", type=float, default=60.0, help="between two kills (s)")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated subset of the targets")
    parser.add_argument("--seed", type=int, default=None, help="of the kill order (default: drawn, reported)")
    parser.add_argument("--standby", action=argparse.BooleanOptionalAction, default=True,
                        help="a warm standby per stage (VOXBUS_STAGE_STANDBY)")
    args = parser.parse_args(argv)
    unknown = set(args.targets.split(",")) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["VOXBUS_STAGE_STANDBY"] = str(args.standby).lower()
    from processors.generation.stage import APOLOGY

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    plan = kill_plan(args.minutes * 60, args.every_s, tuple(args.targets.split(",")), random.Random(seed))
    utterances, supervisor, settings, stop = start_watched_stack(args, "chaos")
    try:
        log(f"{args.callers} callers for {args.minutes:g} min; kills (seed {seed}): "
            + ", ".join(f"{target}@{offset:.0f}s" for offset, target in plan))
        with RssSampler(supervisor, args.sample_s) as sampler:
            url = f"ws://{settings.host}:{settings.port}/v1/stream"
            results, kills, t0 = asyncio.run(run_chaos(url, supervisor, args, utterances, plan))
        counters = ingress_counters(f"http://{settings.host}:{settings.port}")
        restarts = {c.name: c.restarts for c in supervisor.children if c.restarts}
        restarts["llm"] = supervisor.llm_restarts
    finally:
        stop.set()
        supervisor.stop()
    summary, kill_reports, turn_rows = account(results, kills, t0, supervisor.logs, sampler.samples,
                                               args.warmup_s, APOLOGY)
    write_report(args, {"seed": seed, "summary": summary, "kills": kill_reports}, counters, restarts,
                 sampler.samples, turn_rows, plot)
    print(json.dumps({k: v for k, v in summary.items() if k != "rss_growth"}, indent=1))
    print(json.dumps(kill_reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
