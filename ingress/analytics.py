"""The analytics page: ``GET /analytics`` (charts) and ``GET /v1/analytics`` (their JSON).

The ingress follows the analytics topics (``voxbus.analytics.*``, written by the
analytics processor: :mod:`processors.analytics`) with one consumer of its own, no
consumer group, started on the first request.  It keeps the last record per key (the
topics are upsert streams) for the last ``VOXBUS_ANALYTICS_VIEW_MINUTES`` and answers
from memory, so a page refresh costs no broker read.

Wiring (in :func:`ingress.server.make_app`)::

    from ingress.analytics import add_routes as add_analytics_routes
    add_analytics_routes(app, app[GATEWAY], app[GUARD])

The endpoints serve aggregates only (no transcript, no audio); the escalation series
lists session ids, so with authentication on ``/v1/analytics`` needs the ``supervisor``
role (a caller's or an agent's credential gets 403, see :mod:`ingress.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from ingress.auth import SUPERVISOR
from ingress.edge import EdgeGuard
from ingress.follow import CATCH_UP_WAIT_S, TopicFollower, started, stop_on_cleanup
from ingress.turns import STAGE_SPANS
from processors.analytics.windows import WINDOW_S
from schemas import (
    AgentWindow,
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SchemaError,
    SentimentCount,
    TurnsPerMinute,
    WindowedRecord,
    decode,
)
from streams.settings import Settings
from streams.topics import ANALYTICS_TOPICS

log = logging.getLogger(__name__)

PAGE = Path(__file__).parent / "static" / "analytics.html"
SENTIMENTS = ("negative", "neutral", "positive")
QUANTITIES = ("p50", "p95", "p99", "count")
"""The per-minute series of a latency span."""
TEAM_SERIES = ("calls_taken", "calls_handled", "handle_s_mean", "wait_p50_s", "wait_p95_s", "sla_breaches",
               "abandoned")
"""The per-minute series of the team (:class:`schemas.AgentWindow` fields)."""
TEAM_SECONDS = frozenset({"handle_s_mean", "wait_p50_s", "wait_p95_s"})
"""The team series in seconds (None in a minute without a call); the others count (0)."""
TEAM_COUNTS = ("calls_taken", "calls_handled", "sla_breaches", "abandoned")
"""The team series summed into the period's totals."""


class AnalyticsView(TopicFollower):
    """The last record per key of every analytics topic, for the last ``horizon_minutes``."""

    topics = ANALYTICS_TOPICS

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.horizon_s = settings.analytics_view_minutes * 60
        self.latest: dict[tuple[str, str], WindowedRecord] = {}
        self.pruned = time.monotonic()

    def since(self) -> float:
        """The horizon's start (a window's records are produced after the window starts)."""
        return time.time() - self.horizon_s - WINDOW_S

    def tick(self) -> None:
        """Prune old windows once per window length."""
        if time.monotonic() - self.pruned > WINDOW_S:
            self.prune(time.time())
            self.pruned = time.monotonic()

    def absorb(self, messages: Iterable[Any]) -> None:
        """Keep each message's record if it is the newest of its key (offset order) and recent."""
        oldest = time.time() - self.horizon_s - WINDOW_S
        for message in messages:
            try:
                record = decode(message.value)
            except SchemaError as exc:
                log.warning("undecodable analytics record %s[%d]@%d: %s", message.topic, message.partition,
                            message.offset, exc)
                continue
            if isinstance(record, WindowedRecord) and record.window_start >= oldest:
                self.latest[(record.type, record.key)] = record

    def prune(self, now: float) -> None:
        """Forget windows older than the horizon."""
        oldest = now - self.horizon_s - WINDOW_S
        for key in [k for k, r in self.latest.items() if r.window_start < oldest]:
            del self.latest[key]



def team(windows: list[tuple[int, AgentWindow]], minutes: int) -> dict[str, Any]:
    """The team analytics of the page: the team's series per minute, and each agent's period.

    Args:
        windows: ``(minute index, record)`` of every :class:`schemas.AgentWindow` in the period.
        minutes: how many minutes the period has.

    Returns:
        JSON-able: ``series`` (each of :data:`TEAM_SERIES`, one value per minute, None or 0 where
        a minute has no call), ``totals`` (calls taken and handled, SLA breaches, abandoned) and
        ``agents`` (per agent, most calls first: calls taken and handled, mean handle time (s),
        the worst per-minute queue-wait p95 (s), and the last minute they took a call).
    """
    series: dict[str, list[Any]] = {name: [None if name in TEAM_SECONDS else 0] * minutes
                                    for name in TEAM_SERIES}
    agents: dict[str, dict[str, Any]] = {}
    for i, record in windows:
        if not record.agent:
            for name in TEAM_SERIES:
                series[name][i] = getattr(record, name)
            continue
        row = agents.setdefault(record.agent, {"agent": record.agent, "calls_taken": 0, "calls_handled": 0,
                                               "handle_s": 0.0, "wait_p95_s": None, "last_taken": None})
        row["calls_taken"] += record.calls_taken
        row["calls_handled"] += record.calls_handled
        row["handle_s"] += (record.handle_s_mean or 0.0) * record.calls_handled
        if record.wait_p95_s is not None:
            row["wait_p95_s"] = max(row["wait_p95_s"] or 0.0, record.wait_p95_s)
            row["last_taken"] = max(row["last_taken"] or 0.0, record.window_start)
    rows = []
    for row in agents.values():
        handle = row.pop("handle_s")
        rows.append({**row, "handle_s_mean": round(handle / row["calls_handled"], 2) if row["calls_handled"]
                     else None})
    rows.sort(key=lambda r: (-r["calls_taken"], r["agent"]))
    totals = {name: sum(series[name]) for name in TEAM_COUNTS}
    return {"series": series, "totals": totals, "agents": rows}


def summarize(records: Iterable[WindowedRecord], now: float, minutes: int) -> dict[str, Any]:
    """The analytics page's data: one value per minute for the last ``minutes`` (current one last).

    Args:
        records: the last record per key (older versions must have been dropped).
        now: the current time (epoch s).
        minutes: how many one-minute windows, the current one included.

    Returns:
        JSON-able: ``windows`` (window starts), ``turns``, ``intents``, ``sentiment``,
        ``escalations``, ``latency`` and ``team`` (:func:`team`) series aligned with ``windows``
        (``None`` or 0 where a window has no data), and hour ``totals``.
    """
    current = math.floor(now / WINDOW_S) * WINDOW_S
    windows = [float(current - WINDOW_S * i) for i in range(minutes - 1, -1, -1)]
    index = {start: i for i, start in enumerate(windows)}
    turns: dict[str, list[Any]] = {name: [0] * minutes
                                   for name in ("turns", "sessions", "voice", "text", "interrupted")}
    intents: dict[str, list[int]] = {}
    sentiment: dict[str, list[int]] = {label: [0] * minutes for label in SENTIMENTS}
    score_sum, score_n = [0.0] * minutes, [0] * minutes
    escalations: dict[str, list[int]] = {name: [0] * minutes
                                         for name in ("escalations", "human_agent", "negative")}
    escalated: list[tuple[float, str]] = []
    latency: dict[str, dict[str, list[Any]]] = {}
    desk: list[tuple[int, AgentWindow]] = []
    for record in records:
        i = index.get(record.window_start)
        if i is None:
            continue
        if isinstance(record, TurnsPerMinute):
            for name in ("sessions", "voice", "text", "interrupted"):
                turns[name][i] = getattr(record, name)
            turns["turns"][i] = record.turns
        elif isinstance(record, IntentCount):
            intents.setdefault(record.intent, [0] * minutes)[i] = record.turns
        elif isinstance(record, SentimentCount):
            sentiment.setdefault(record.sentiment, [0] * minutes)[i] = record.turns
            score_sum[i] += record.score_mean * record.turns
            score_n[i] += record.turns
        elif isinstance(record, EscalationCount):
            escalations["escalations"][i] = record.turns
            escalations["human_agent"][i] = record.human_agent
            escalations["negative"][i] = record.negative
            escalated.extend((record.window_start, session) for session in record.session_ids)
        elif isinstance(record, LatencyPercentiles):
            span = latency.setdefault(record.span, {q: [None] * minutes for q in QUANTITIES})
            span["p50"][i], span["p95"][i], span["p99"][i] = record.p50_ms, record.p95_ms, record.p99_ms
            span["count"][i] = record.turns
        elif isinstance(record, AgentWindow):
            desk.append((i, record))
    order = ["voice_to_voice", *(s for s in STAGE_SPANS if s != "voice_to_voice")]
    spans = sorted(latency, key=lambda s: (order.index(s) if s in order else len(order), s))
    intent_totals = {name: sum(counts) for name, counts in intents.items()}
    sessions: list[str] = []
    for _start, session in sorted(escalated, reverse=True):
        if session not in sessions:
            sessions.append(session)
    return {
        "window_s": WINDOW_S,
        "generated_at": now,
        "windows": windows,
        "turns": turns,
        "intents": {
            "series": {name: intents[name] for name in sorted(intents, key=lambda n: -intent_totals[n])},
            "totals": dict(sorted(intent_totals.items(), key=lambda item: -item[1])),
        },
        "sentiment": {
            "series": sentiment,
            "score_mean": [round(s / n, 4) if n else None for s, n in zip(score_sum, score_n, strict=True)],
        },
        "escalations": {"series": escalations, "sessions": sessions[:20]},
        "latency": {span: latency[span] for span in spans},
        "team": team(desk, minutes),
        "totals": {
            "turns": sum(turns["turns"]),
            "escalations": sum(escalations["escalations"]),
            "interrupted": sum(turns["interrupted"]),
        },
    }


VIEW = web.AppKey("analytics_view", AnalyticsView)
_START_LOCK = web.AppKey("analytics_view_lock", asyncio.Lock)
_GUARD = web.AppKey("analytics_guard", EdgeGuard)


async def _view(app: web.Application) -> AnalyticsView:
    """The app's view, started on first use (and restarted after a failure)."""
    return await started(app[VIEW], app[_START_LOCK])


async def analytics_api(request: web.Request) -> web.Response:
    """``GET /v1/analytics?minutes=60``: the analytics series (:func:`summarize`) as JSON.

    401 without valid credentials and 403 without the ``supervisor`` role (authentication
    on); 503 when the analytics topics cannot be read (broker down, topics not created yet).
    """
    request.app[_GUARD].authorize(request, SUPERVISOR)
    view = request.app[VIEW]
    try:
        minutes = int(request.query.get("minutes", view.settings.analytics_view_minutes))
    except ValueError:
        raise web.HTTPBadRequest(text="minutes must be an integer") from None
    minutes = max(1, min(minutes, view.settings.analytics_view_minutes))
    try:
        view = await _view(request.app)
    except Exception as exc:
        log.warning("analytics view unavailable: %s: %s", type(exc).__name__, exc)
        return web.json_response({"error": f"analytics unavailable: {type(exc).__name__}: {exc}"}, status=503)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(view.caught_up.wait(), CATCH_UP_WAIT_S)
    body = summarize(list(view.latest.values()), time.time(), minutes)
    body["complete"] = view.caught_up.is_set()
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def analytics_page(request: web.Request) -> web.FileResponse:
    """``GET /analytics``: the charts (a self-contained page polling ``/v1/analytics``)."""
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application, gateway: Any, guard: EdgeGuard | None = None) -> None:
    """Add ``GET /analytics`` and ``GET /v1/analytics`` to the ingress ``app``.

    Args:
        app: the ingress application (not started yet).
        gateway: the ingress's :class:`ingress.gateway.Gateway` (only its ``settings``
            are used: the view has its own consumer).
        guard: the ingress's edge guard (authentication and roles); defaults to one on
            ``gateway.settings``.
    """
    app[VIEW] = AnalyticsView(gateway.settings)
    app[_START_LOCK] = asyncio.Lock()
    app[_GUARD] = guard or EdgeGuard(gateway.settings)

    stop_on_cleanup(app, app[VIEW])
    app.router.add_get("/analytics", analytics_page)
    app.router.add_get("/v1/analytics", analytics_api)
