"""The analytics fold, without Kafka: tumbling windows, window state, percentiles, records.

A turn record updates a handful of *dimensions* of the one-minute window its ``ts`` falls
in (:func:`dimensions`).  Each dimension keeps a small JSON-able state (what the faust
tables store and write to their changelogs), folded by :func:`fold` and turned into the
published record by :func:`to_record`.  Everything here is a pure function of its inputs,
so the stage (:mod:`processors.analytics.stage`) and the tests share it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas import (
    EscalationCount,
    IntentCount,
    LatencyPercentiles,
    SentimentCount,
    TurnRecord,
    TurnsPerMinute,
    WindowedRecord,
)
from streams.topics import (
    ANALYTICS_ESCALATIONS,
    ANALYTICS_INTENTS,
    ANALYTICS_LATENCY,
    ANALYTICS_SENTIMENT,
    ANALYTICS_TURNS,
    TopicSpec,
)

WINDOW_S = 60
"""Size of a tumbling window (s)."""
ESCALATION_INTENT = "human_agent"
"""A turn with this intent asks for a person: an escalation request."""
ESCALATION_SENTIMENT = -0.5
"""A turn whose sentiment score is at most this is an escalation request too."""
MAX_ESCALATED_SESSIONS = 50
"""Most session ids an escalation record lists."""
UNKNOWN_INTENT = "unknown"
"""The intent dimension of a turn without an intent (its intent stage failed)."""

State = dict[str, Any]
"""The state of one dimension of one window: a JSON object (the faust table value)."""


def window_start(ts: float) -> float:
    """Start (epoch s) of the tumbling window holding ``ts``."""
    return float(math.floor(ts / WINDOW_S) * WINDOW_S)


def is_escalation(turn: TurnRecord) -> tuple[bool, bool]:
    """(asks for a person, strongly negative) for ``turn``; either makes it an escalation."""
    return turn.intent == ESCALATION_INTENT, turn.sentiment_score <= ESCALATION_SENTIMENT


def latencies(turn: TurnRecord) -> dict[str, float]:
    """The latency spans (ms) of ``turn``, with ``voice_to_voice`` from its own field if missing."""
    spans = {name: float(ms) for name, ms in turn.latency_ms.items() if math.isfinite(ms)}
    v2v = turn.voice_to_voice_ms
    if v2v is not None and "voice_to_voice" not in spans and math.isfinite(v2v):
        spans["voice_to_voice"] = float(v2v)
    return spans


@dataclass(frozen=True)
class Metric:
    """One windowed aggregate: its faust table and the topic its records go to."""

    name: str
    """Table name (changelog ``voxbus-analytics-<name>-changelog``)."""
    topic: TopicSpec


TURNS = Metric("turns", ANALYTICS_TURNS)
INTENTS = Metric("intents", ANALYTICS_INTENTS)
SENTIMENT = Metric("sentiment", ANALYTICS_SENTIMENT)
ESCALATIONS = Metric("escalations", ANALYTICS_ESCALATIONS)
LATENCY = Metric("latency", ANALYTICS_LATENCY)
METRICS: tuple[Metric, ...] = (TURNS, INTENTS, SENTIMENT, ESCALATIONS, LATENCY)


def dimensions(turn: TurnRecord) -> Iterator[tuple[Metric, str]]:
    """The (metric, dimension) pairs of its window that ``turn`` updates."""
    yield TURNS, "all"
    yield INTENTS, turn.intent or UNKNOWN_INTENT
    yield SENTIMENT, turn.sentiment
    if any(is_escalation(turn)):
        yield ESCALATIONS, "all"
    for span in sorted(latencies(turn)):
        yield LATENCY, span


# -- latency histogram -------------------------------------------------------------------------

GAMMA = 1.01
"""Ratio between consecutive histogram bucket bounds: a percentile is interpolated within
the bucket holding it, so it is within 1 % of the exact sample percentile."""
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(ms: float) -> int:
    """Histogram bucket ``b`` of a positive latency, covering ``[GAMMA**b, GAMMA**(b+1))``."""
    return math.floor(math.log(ms) / _LOG_GAMMA)


def add_sample(state: State, ms: float) -> State:
    """Fold one latency sample into a histogram state (returns a new state).

    State: ``n`` samples, ``sum``/``min``/``max`` (exact), ``zero`` samples <= 0 ms (clock
    skew between hosts), and ``h``, counts per bucket (JSON keys are strings).
    """
    n = int(state.get("n", 0))
    hist = dict(state.get("h", {}))
    zero = int(state.get("zero", 0))
    if ms <= 0:
        zero += 1
    else:
        key = str(bucket_of(ms))
        hist[key] = hist.get(key, 0) + 1
    return {
        "n": n + 1,
        "sum": float(state.get("sum", 0.0)) + ms,
        "min": ms if n == 0 else min(float(state["min"]), ms),
        "max": ms if n == 0 else max(float(state["max"]), ms),
        "zero": zero,
        "h": hist,
    }


def percentile(state: State, q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of a histogram state, by nearest rank.

    The rank is ``ceil(q * n)``.  The bucket holding that rank, clamped to the exact
    min and max, is interpolated linearly by the rank's place among the bucket's
    samples: the result is in the same bucket as the exact sample (within 1 %), and
    exact for a single sample, the min and the max.

    Raises:
        ValueError: the state holds no sample, or ``q`` is outside (0, 1].
    """
    n = int(state.get("n", 0))
    if n <= 0:
        raise ValueError("no samples")
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} outside (0, 1]")
    rank = max(1, math.ceil(q * n - 1e-9))
    lo, hi = float(state["min"]), float(state["max"])
    seen = int(state.get("zero", 0))
    if rank <= seen:  # a sample <= 0 ms (clock skew): reported as 0, within [min, max]
        return min(max(0.0, lo), hi)
    hist = state.get("h", {})
    for bucket in sorted(int(b) for b in hist):
        count = int(hist[str(bucket)])
        if seen + count >= rank:
            low, high = max(GAMMA**bucket, lo), min(GAMMA ** (bucket + 1), hi)
            high = max(high, low)
            k = rank - seen  # rank within the bucket, from 1
            if k == count and high == hi:  # the largest sample
                return hi
            if k == 1 and low == lo:  # the smallest sample
                return lo
            return low + (high - low) * (k - 0.5) / count
        seen += count
    return hi


# -- fold and records -------------------------------------------------------------------------


def fold(metric: Metric, dimension: str, state: State, turn: TurnRecord, *, new_session: bool) -> State:
    """Fold ``turn`` into the ``dimension`` of ``metric`` (returns the new state).

    Args:
        metric: which aggregate.
        dimension: as yielded by :func:`dimensions`.
        state: the window's current state of that dimension (empty when new).
        turn: the turn.
        new_session: the turn's session has no earlier turn in this window.
    """
    n = int(state.get("n", 0))
    if metric is TURNS:
        return {
            "n": n + 1,
            "sessions": int(state.get("sessions", 0)) + int(new_session),
            "voice": int(state.get("voice", 0)) + int(turn.source == "voice"),
            "text": int(state.get("text", 0)) + int(turn.source == "text"),
            "interrupted": int(state.get("interrupted", 0)) + int(turn.interrupted),
        }
    if metric is INTENTS:
        return {"n": n + 1, "confidence_sum": float(state.get("confidence_sum", 0.0)) + turn.confidence}
    if metric is SENTIMENT:
        return {"n": n + 1, "score_sum": float(state.get("score_sum", 0.0)) + turn.sentiment_score}
    if metric is ESCALATIONS:
        human, negative = is_escalation(turn)
        sessions = list(state.get("sessions", []))
        if turn.session_id not in sessions and len(sessions) < MAX_ESCALATED_SESSIONS:
            sessions.append(turn.session_id)
        return {
            "n": n + 1,
            "human_agent": int(state.get("human_agent", 0)) + int(human),
            "negative": int(state.get("negative", 0)) + int(negative),
            "sessions": sessions,
        }
    if metric is LATENCY:
        return add_sample(state, latencies(turn)[dimension])
    raise ValueError(f"unknown metric {metric.name!r}")


def to_record(metric: Metric, dimension: str, start: float, state: State, now: float) -> WindowedRecord:
    """The record publishing ``state``, the ``dimension`` of ``metric`` in the window at ``start``."""
    n = int(state["n"])
    common = {"window_start": start, "window_end": start + WINDOW_S, "turns": n, "ts": now}
    if metric is TURNS:
        return TurnsPerMinute(**common, sessions=state["sessions"], voice=state["voice"], text=state["text"],
                              interrupted=state["interrupted"])
    if metric is INTENTS:
        return IntentCount(**common, intent=dimension, confidence_mean=round(state["confidence_sum"] / n, 4))
    if metric is SENTIMENT:
        mean = min(1.0, max(-1.0, state["score_sum"] / n))
        return SentimentCount(**common, sentiment=dimension, score_mean=round(mean, 4))
    if metric is ESCALATIONS:
        return EscalationCount(**common, human_agent=state["human_agent"], negative=state["negative"],
                               session_ids=state["sessions"])
    if metric is LATENCY:
        return LatencyPercentiles(
            **common, span=dimension, mean_ms=round(state["sum"] / n, 1), min_ms=round(state["min"], 1),
            max_ms=round(state["max"], 1), p50_ms=round(percentile(state, 0.50), 1),
            p95_ms=round(percentile(state, 0.95), 1), p99_ms=round(percentile(state, 0.99), 1),
        )
    raise ValueError(f"unknown metric {metric.name!r}")


class MemoryWindows:
    """Windowed state in a dict: what a faust windowed table holds, for tests and replays.

    ``get``/``set`` take the event time; the window is the tumbling window holding it.
    """

    def __init__(self) -> None:
        self.data: dict[tuple[str, float], State] = {}

    def get(self, key: str, ts: float) -> State:
        """The state of ``key`` in the window holding ``ts`` (empty when new)."""
        return dict(self.data.get((key, window_start(ts)), {}))

    def set(self, key: str, ts: float, value: State) -> None:
        """Store the state of ``key`` in the window holding ``ts``."""
        self.data[(key, window_start(ts))] = value
