"""``make bench-queue``: the shared agent queue under load: waits, the promised wait, SLA breaches, hang-ups.

voxbus is started on private ports (:func:`benchmarks.latency.start_voxbus`, as ``voxbus up``)
with ``VOXBUS_HANDOFF_SLA_S`` = ``--sla-s``.  ``--agents`` scripted agents (:func:`agent`) work
the queue through the real agent HTTP API: each polls ``GET /v1/agent/queue`` every ``--poll-s``,
takes the first waiting caller its claim wins (``POST .../take``; a 409 means another agent's
claim came first: it tries the next one), greets them (``.../reply``), holds the call a fixed
``--handle-s`` and wraps it up (``.../end``, disposition ``resolved``).

1. Warm-up: ``--warmup`` callers (default: one per agent) ask for a person and are handled, so
   the wait estimator (:mod:`ingress.agents.estimate`: place x mean handle time / agents on
   duty, learnt from finished calls) has a history, as a desk that has been open a while.
2. The wave: ``--callers`` callers connect ``--stagger`` s apart and each types
   :data:`ASK` (a typed turn: the real pipeline, intent to generation, hands the session off;
   cheaper than speech, and the queue does not care).  Caller ``--abandon N:S`` hangs up after
   ``S`` seconds in the queue.

Per caller of the wave (:class:`QueuedCall`): its place when the queue first lists it and the
wait estimated then (``estimated_wait_s`` of ``GET /v1/agent/queue``, read every ``--poll-s``
by an observer, :func:`observe`: the estimator the hold notice uses, at the same moment give
or take one poll), the notice it was shown, the actual
wait (hand-off to claim, both the queue's own times), the outcome (``taken``; ``expired``: no
agent within the SLA, the bot is back, an SLA breach; ``abandoned``: hung up while waiting).
Summary (:func:`summarize`): wait p50/p95 of the callers taken (linear interpolation,
:func:`benchmarks.report.percentiles`), the estimate's error, SLA breaches, abandonment; and
the team analytics the analytics worker folded from the same calls (``GET /v1/analytics``;
they include the warm-up's calls, and their per-minute percentiles are nearest-rank).
Results: ``benchmarks/results/queue.json`` and ``queue.png`` (:func:`plot`).

Usage: ``python -m benchmarks.agent_queue [--callers 8] [--agents 2] [--handle-s 20] [--sla-s 45]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.report import percentiles
from benchmarks.soak import CallerLog, SoakCaller

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ASK = "I want to talk to a person."
"""What every caller types (the integration tests' hand-off request)."""
OUTCOMES = ("taken", "expired", "abandoned", "lost")
"""A call's outcome: an agent claimed it; the SLA gave it back to the bot; the caller hung up
while waiting; none of these by the end of the run (a failure of the run, reported)."""
GIVE_UP_S = 60.0
"""How long past the SLA a caller of the wave waits for any outcome before the run gives it up (s)."""
ANALYTICS_WAIT_S = 120.0
"""How long the run waits for the team analytics to count every call it made (s)."""


def log(message: str) -> None:
    print(f"[queue {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class QueuedCall:
    """One caller who asked for a person, as the run saw it (times are epoch s).

    Attributes:
        index: 1-based, in the order the callers connected.
        phase: ``warmup`` or ``wave``.
        hang_up_after_s: seconds in the queue after which the caller hangs up (None: never).
        session_id: the session the ingress gave it.
        connected_at: when its socket was ready.
        since: the hand-off's time (the queue's ``since``).
        first_position / first_estimate_s / first_seen_at: its place and the estimated wait
            (None without a finished call) when the observer first saw it waiting.
        notice: the first hold notice it was shown (``hold-*`` reply text), and ``notice_at``.
        taken_at / agent / ended_at: the claim that counted (the queue's ``taken_at``), by whom,
            and when the agent ended the call.
        left_at: when the caller hung up or was told the bot is back.
        outcome: one of :data:`OUTCOMES`.
    """

    index: int
    phase: str
    hang_up_after_s: float | None = None
    session_id: str = ""
    connected_at: float = 0.0
    since: float | None = None
    first_position: int | None = None
    first_estimate_s: float | None = None
    first_seen_at: float | None = None
    notice: str = ""
    notice_at: float | None = None
    taken_at: float | None = None
    agent: str = ""
    ended_at: float | None = None
    left_at: float | None = None
    outcome: str = "lost"
    estimates: list[tuple[float, int, float | None]] = field(default_factory=list)
    """Every poll that listed it waiting: (epoch s, place, estimated wait s)."""

    @property
    def wait_s(self) -> float | None:
        """Hand-off to the claim (taken), or to leaving the queue (expired, abandoned), in s."""
        if self.since is None:
            return None
        end = self.taken_at if self.outcome == "taken" else self.left_at
        return None if end is None else round(end - self.since, 2)


def epoch_of(monotonic: float) -> float:
    """A :func:`time.monotonic` reading as epoch s (the callers' events carry monotonic times)."""
    return time.time() - (time.monotonic() - monotonic)


async def get_json(http: aiohttp.ClientSession, url: str, timeout_s: float = 120.0) -> Any:
    """``GET url`` as JSON; a 503 (the ingress's view of the queue still starting) is retried ``timeout_s``.

    Raises:
        aiohttp.ClientResponseError: the answer was not 200 (a 503 for ``timeout_s``).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(url) as response:
            if response.status != 503 or time.monotonic() > deadline:
                response.raise_for_status()
                return await response.json()
        await asyncio.sleep(1.0)


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, Any]:
    """``POST url`` with a JSON body: (status, JSON body or text)."""
    async with http.post(url, json=body) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


def note_queue(calls: dict[str, QueuedCall], entries: list[dict[str, Any]], now: float) -> None:
    """Record each listed call's place and estimated wait (``GET /v1/agent/queue`` entries)."""
    for entry in entries:
        call = calls.get(entry["session_id"])
        if call is None:
            continue
        call.estimates.append((round(now, 3), entry["position"], entry["estimated_wait_s"]))
        if call.first_seen_at is None:
            call.first_seen_at, call.first_position = now, entry["position"]
            call.first_estimate_s = entry["estimated_wait_s"]


async def observe(http: aiohttp.ClientSession, base: str, calls: dict[str, QueuedCall], poll_s: float,
                  stop: asyncio.Event) -> None:
    """Read the queue every ``poll_s`` until ``stop`` (a wallboard: places and estimates as callers come)."""
    while not stop.is_set():
        note_queue(calls, (await get_json(http, f"{base}/v1/agent/queue"))["queue"], time.time())
        await asyncio.sleep(poll_s)


async def agent(http: aiohttp.ClientSession, base: str, name: str, calls: dict[str, QueuedCall],
                handle_s: float, poll_s: float, stop: asyncio.Event) -> int:
    """One scripted agent working the queue until ``stop``; returns the calls it handled."""
    handled = 0
    while not stop.is_set():
        queue = await get_json(http, f"{base}/v1/agent/queue")
        mine = None
        for entry in queue["queue"]:
            if entry["session_id"] not in calls:
                continue
            status, body = await post(http, f"{base}/v1/agent/sessions/{entry['session_id']}/take",
                                      {"agent": name})
            if status == 200:
                mine = calls[entry["session_id"]]
                mine.taken_at, mine.agent = body["taken_at"], name
                break
            if status != 409:  # 409: another claim came first, or the caller has just left
                log(f"{name}: take of {entry['session_id']} answered {status}: {body}")
        if mine is None:
            await asyncio.sleep(poll_s)
            continue
        session = f"{base}/v1/agent/sessions/{mine.session_id}"
        greeting = f"Hello, this is {name}. How can I help?"
        await post(http, f"{session}/reply", {"agent": name, "text": greeting})
        await asyncio.sleep(handle_s)
        status, body = await post(http, f"{session}/end", {"agent": name, "disposition": "resolved"})
        if status != 200:
            log(f"{name}: end of {mine.session_id} answered {status}: {body}")
        mine.ended_at = time.time()
        handled += 1
    return handled


async def caller(url: str, call: QueuedCall, calls: dict[str, QueuedCall], delay_s: float,
                 busy_say: str, give_up_s: float) -> None:
    """A caller: connect after ``delay_s``, ask for a person; stay till the call ends, expires or is quit."""
    await asyncio.sleep(delay_s)
    log_ = CallerLog(call.index)
    async with SoakCaller(url, log_) as client:
        call.session_id, call.connected_at = client.session_id or "", time.time()
        calls[call.session_id] = call
        await client.ws.send_str(json.dumps({"type": "text", "text": ASK}))
        deadline = time.monotonic() + give_up_s
        seen = 0
        while time.monotonic() < deadline:
            for at, event in log_.events[seen:]:
                if event.get("type") != "reply_text":
                    continue
                if event.get("turn_id", "").startswith("hold-") and not call.notice:
                    call.notice, call.notice_at = event.get("text", ""), epoch_of(at)
                if event.get("text") == busy_say:
                    call.left_at = epoch_of(at)
                    return
            seen = len(log_.events)
            if call.ended_at is not None:
                return
            waited = None if call.first_seen_at is None else time.time() - call.first_seen_at
            if call.hang_up_after_s is not None and call.taken_at is None and waited is not None \
                    and waited >= call.hang_up_after_s:
                call.left_at = time.time()
                return  # the socket closes: the ingress writes the round's abandon
            await asyncio.sleep(0.1)
        log(f"caller {call.index} ({call.session_id}): no outcome in {give_up_s:g} s")


def settle(calls: list[QueuedCall], sessions: list[dict[str, Any]]) -> None:
    """Each call's hand-off time and outcome from the queue's own view (``GET /v1/agent/sessions``)."""
    by_id = {s["session_id"]: s for s in sessions}
    for call in calls:
        view = by_id.get(call.session_id)
        if view is None:
            continue
        call.since = view["since"]
        if view["taken_at"]:  # a claim counted (before a hang-up or the SLA, if any: the queue's rule)
            call.outcome, call.taken_at, call.agent = "taken", view["taken_at"], view["agent"]
        elif view["status"] == "abandoned":
            call.outcome = "abandoned"
        elif view["returned"] == "expire":
            call.outcome = "expired"


async def run_wave(url: str, base: str, http: aiohttp.ClientSession, wave: list[QueuedCall],
                   calls: dict[str, QueuedCall], stagger_s: float, give_up_s: float) -> None:
    """Start every caller of ``wave`` (``stagger_s`` apart) and wait for them all."""
    from ingress.agents.hold import BUSY_SAY

    await asyncio.gather(*(caller(url, call, calls, i * stagger_s, BUSY_SAY, give_up_s)
                           for i, call in enumerate(wave)))
    settle(wave, (await get_json(http, f"{base}/v1/agent/sessions"))["sessions"])


async def team_analytics(http: aiohttp.ClientSession, base: str, calls: list[QueuedCall],
                         timeout_s: float) -> dict[str, Any]:
    """The team figures of ``GET /v1/analytics`` once they count the run's calls (or after ``timeout_s``)."""
    want = {"calls_handled": sum(c.outcome == "taken" and c.ended_at is not None for c in calls),
            "sla_breaches": sum(c.outcome == "expired" for c in calls),
            "abandoned": sum(c.outcome == "abandoned" for c in calls)}
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(f"{base}/v1/analytics", params={"minutes": "60"}) as response:
            if response.status == 200:
                body = (await response.json())["team"]
                if all(body["totals"][k] >= v for k, v in want.items()):
                    break
        await asyncio.sleep(2.0)
    else:
        log(f"the team analytics missed calls after {timeout_s:g} s: {body.get('totals')}, want {want}")
    minutes = [{name: body["series"][name][i] for name in body["series"]}
               for i in range(len(body.get("series", {}).get("calls_taken", [])))]
    counts = ("calls_taken", "calls_handled", "sla_breaches", "abandoned")
    busy = [m for m in minutes if any(m[k] for k in counts)]
    return {"expected_at_least": want, "totals": body.get("totals"), "agents": body.get("agents"),
            "minutes_with_calls": busy}


async def run_queue(args: argparse.Namespace, host: str,
                    port: int) -> tuple[list[QueuedCall], dict[str, Any]]:
    """The warm-up, then the wave; returns every call and the team analytics."""
    url, base = f"ws://{host}:{port}/v1/stream", f"http://{host}:{port}"
    calls: dict[str, QueuedCall] = {}
    warmup = [QueuedCall(i + 1, "warmup") for i in range(args.warmup)]
    abandon_index, _, abandon_s = args.abandon.partition(":")
    wave = [QueuedCall(i + 1, "wave", float(abandon_s) if str(i + 1) == abandon_index else None)
            for i in range(args.callers)]
    stop = asyncio.Event()
    give_up_s = args.sla_s + GIVE_UP_S
    async with aiohttp.ClientSession() as http:
        await get_json(http, f"{base}/v1/agent/queue")  # the ingress follows the queue before any hand-off
        agents = [asyncio.create_task(agent(http, base, f"bench-agent-{i + 1}", calls, args.handle_s,
                                            args.poll_s, stop)) for i in range(args.agents)]
        agents.append(asyncio.create_task(observe(http, base, calls, args.poll_s, stop)))
        try:
            log(f"warm-up: {len(warmup)} callers")
            await run_wave(url, base, http, warmup, calls, args.stagger, give_up_s)
            log(f"wave: {len(wave)} callers, {args.agents} agents, handle {args.handle_s:g} s, "
                f"SLA {args.sla_s:g} s")
            await run_wave(url, base, http, wave, calls, args.stagger, give_up_s)
        finally:
            stop.set()
            handled = await asyncio.gather(*agents, return_exceptions=True)
        log(f"agents handled {handled[:-1]}; the observer: {handled[-1]}")
        analytics = await team_analytics(http, base, warmup + wave, ANALYTICS_WAIT_S)
    return warmup + wave, analytics


def summarize(calls: list[QueuedCall], sla_s: float) -> dict[str, Any]:
    """The wave's queue figures.

    Returns:
        ``callers``; ``outcomes`` (count per :data:`OUTCOMES`); ``wait_s`` (p50/p95/p99/mean/n
        of the hand-off to claim of the callers taken); ``time_in_queue_s`` (every caller's, to
        their claim, expiry or hang-up); ``answered_within_sla`` (fraction of the callers);
        ``sla_breaches`` and ``abandoned`` (counts and rates); ``estimate_error_s``
        (first estimate minus actual wait, callers taken with an estimate: > 0 is a promise
        kept early) and ``estimate_abs_error_s``; ``no_estimate`` (callers listed before the
        estimator had a finished call).
    """
    wave = [c for c in calls if c.phase == "wave"]
    taken = [c for c in wave if c.outcome == "taken" and c.wait_s is not None]
    counts = {outcome: sum(c.outcome == outcome for c in wave) for outcome in OUTCOMES}
    errors = [c.first_estimate_s - c.wait_s for c in taken if c.first_estimate_s is not None]
    n = max(1, len(wave))
    return {
        "callers": len(wave),
        "outcomes": counts,
        "wait_s": percentiles(c.wait_s for c in taken),
        "time_in_queue_s": percentiles(c.wait_s for c in wave if c.wait_s is not None),
        "answered_within_sla": round(sum(c.wait_s <= sla_s for c in taken) / n, 3),
        "sla_breaches": counts["expired"], "sla_breach_rate": round(counts["expired"] / n, 3),
        "abandoned": counts["abandoned"], "abandon_rate": round(counts["abandoned"] / n, 3),
        "estimate_error_s": percentiles(errors),
        "estimate_abs_error_s": percentiles(abs(e) for e in errors),
        "no_estimate": sum(c.first_seen_at is not None and c.first_estimate_s is None for c in wave),
    }


def plot(calls: list[QueuedCall], summary: dict[str, Any], sla_s: float, path: Path) -> None:
    """Per caller of the wave: estimated vs actual wait; and the queue's timeline (waiting, held)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wave = [c for c in calls if c.phase == "wave"]
    fig, (bars, line) = plt.subplots(2, 1, figsize=(10, 8))
    xs = list(range(len(wave)))
    bars.bar([x - 0.2 for x in xs], [c.first_estimate_s or 0 for c in wave], 0.4,
             label="estimated wait (first)", color="tab:blue")
    bars.bar([x + 0.2 for x in xs], [c.wait_s or 0 for c in wave], 0.4, label="actual wait",
             color="tab:orange")
    bars.axhline(sla_s, color="tab:red", linestyle="--", label=f"SLA {sla_s:g} s")
    bars.set_xticks(xs, [f"{c.index}\n{c.outcome}\n#{c.first_position or '-'}" for c in wave], fontsize=8)
    wait = summary["wait_s"]
    bars.set(ylabel="s", title=f"queue wait per caller (taken: p50 {wait['p50']} s, p95 {wait['p95']} s; "
             f"{summary['sla_breaches']} SLA breach, {summary['abandoned']} abandoned)")
    bars.legend(fontsize=8)
    t0 = min((c.since for c in wave if c.since is not None), default=0.0)
    colours = {"taken": "tab:green", "expired": "tab:red", "abandoned": "black", "lost": "tab:gray"}
    for y, c in enumerate(wave):
        if c.since is None:
            continue
        end = c.since + (c.wait_s or 0)
        line.barh(y, end - c.since, left=c.since - t0, color="lightgray")
        if c.outcome == "taken" and c.ended_at is not None:
            line.barh(y, c.ended_at - end, left=end - t0, color=colours["taken"], alpha=0.6)
            line.text(c.ended_at - t0, y, f" {c.agent}", va="center", fontsize=7)
        else:
            line.plot([end - t0], [y], "x", color=colours[c.outcome], markersize=9)
    line.set_yticks(range(len(wave)), [f"caller {c.index}" for c in wave], fontsize=8)
    line.invert_yaxis()
    line.set(xlabel="s since the first hand-off", title="waiting (grey), with an agent (green), "
             "expired (red x), hung up (black x)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--callers", type=int, default=8, help="callers of the wave")
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--handle-s", type=float, default=20.0, help="each agent call's handle time (s)")
    p.add_argument("--sla-s", type=float, default=45.0, help="VOXBUS_HANDOFF_SLA_S of the stack")
    p.add_argument("--warmup", type=int, default=None, help="callers handled first (default: --agents)")
    p.add_argument("--abandon", default="6:25", help="CALLER:SECONDS: that caller of the wave hangs up after "
                   "so long in the queue ('' for none)")
    p.add_argument("--stagger", type=float, default=1.0, help="between two callers' connections (s)")
    p.add_argument("--poll-s", type=float, default=0.5, help="how often an idle agent looks at the queue (s)")
    p.add_argument("--work", type=Path, default=ROOT / ".voxbus-bench")
    p.add_argument("--out", type=Path, default=RESULTS / "queue.json")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = args.agents
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.latency import git_state, prepare_data_dir, start_voxbus

    started = time.monotonic()
    supervisor, settings = start_voxbus(prepare_data_dir(args.work, "queue"),
                                        extra_env={"HANDOFF_SLA_S": str(args.sla_s), "ARCHIVE_TOPICS": ""})
    try:
        calls, analytics = asyncio.run(run_queue(args, settings.host, settings.port))
    finally:
        supervisor.stop()
    summary = summarize(calls, args.sla_s)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "git": git_state(),
        "machine": {"cpus": os.cpu_count()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summary,
        "team_analytics": analytics,
        "calls": [{**asdict(c), "wait_s": c.wait_s} for c in calls],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    plot(calls, summary, args.sla_s, args.out.with_suffix(".png"))
    log(f"results: {args.out}, {args.out.with_suffix('.png')}")
    print(json.dumps(summary, indent=1))
    print(json.dumps({"team_analytics": analytics["totals"]}, indent=1))
    for c in calls:
        if c.phase == "wave":
            print(f"caller {c.index}: place {c.first_position}, estimate {c.first_estimate_s} s, "
                  f"waited {c.wait_s} s, {c.outcome} {c.agent}; notice: {c.notice!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
