"""Windowed analytics records: what the analytics processor publishes on ``voxbus.analytics.*``.

The analytics processor (:mod:`processors.analytics`) folds the turn records of
``voxbus.turns`` into tumbling one-minute windows.  Each record below is the current
value of one *dimension* (an intent, a sentiment label, a latency span...) of one
window; it is published again every time a turn updates that window, so the topics
are **upsert streams**: a record supersedes every earlier record with the same Kafka
key, ``"<window_start>/<dimension>"`` (:attr:`WindowedRecord.key`).  Consumers keep the
last record per key (a compacted-topic reading); summing records would count the same
turns several times.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import EpochSeconds, Name, Record, SessionId, TurnRef
from schemas.desk import AgentId


class WindowedRecord(Record):
    """Base of the analytics records: one dimension of one tumbling window.

    Attributes:
        window_start: start of the window (epoch s, a multiple of the window size).
        window_end: end of the window (epoch s, exclusive).
        turns: turns counted in this dimension of the window so far.
        ts: wall-clock time (epoch s) this version of the record was made.
    """

    window_start: EpochSeconds
    window_end: EpochSeconds
    turns: int = Field(ge=0)
    ts: EpochSeconds

    @property
    def dimension(self) -> str:
        """What the record counts within its window (``all`` when the window has one value)."""
        return "all"

    @property
    def key(self) -> str:
        """Upsert key (also the Kafka key): ``"<window_start>/<dimension>"``."""
        return f"{int(self.window_start)}/{self.dimension}"


class TurnsPerMinute(WindowedRecord):
    """Turns and sessions of one window (topic ``voxbus.analytics.turns-per-minute``).

    Attributes:
        sessions: distinct sessions with a turn in the window.
        voice / text: turns by channel.
        interrupted: turns on which the caller barged in.
    """

    type: Literal["analytics_turns"] = "analytics_turns"
    sessions: int = Field(ge=0)
    voice: int = Field(ge=0)
    text: int = Field(ge=0)
    interrupted: int = Field(ge=0)


class IntentCount(WindowedRecord):
    """Turns of one intent in one window (topic ``voxbus.analytics.intents``).

    Attributes:
        intent: the intent (``unknown`` when the turn had none).
        confidence_mean: mean classifier confidence of those turns.
    """

    type: Literal["analytics_intent"] = "analytics_intent"
    intent: Name
    confidence_mean: float

    @property
    def dimension(self) -> str:
        """The intent."""
        return self.intent


class SentimentCount(WindowedRecord):
    """Turns of one sentiment label in one window (topic ``voxbus.analytics.sentiment``).

    Attributes:
        sentiment: ``negative``, ``neutral`` or ``positive``.
        score_mean: mean VADER compound score of those turns, in [-1, 1].
    """

    type: Literal["analytics_sentiment"] = "analytics_sentiment"
    sentiment: Name
    score_mean: float = Field(ge=-1.0, le=1.0)

    @property
    def dimension(self) -> str:
        """The sentiment label."""
        return self.sentiment


class EscalationCount(WindowedRecord):
    """Escalation requests in one window (topic ``voxbus.analytics.escalations``).

    A turn is an escalation request when its intent is ``human_agent`` or its sentiment
    score is at most -0.5 (strongly negative); ``turns`` counts such turns.  Windows
    without an escalation have no record.

    Attributes:
        human_agent: escalating turns that asked for a person.
        negative: escalating turns with a strongly negative sentiment (a turn can be both).
        session_ids: the sessions that escalated, first seen first (at most 50).
    """

    type: Literal["analytics_escalations"] = "analytics_escalations"
    human_agent: int = Field(ge=0)
    negative: int = Field(ge=0)
    session_ids: list[SessionId] = Field(default_factory=list, max_length=50)


class LatencyPercentiles(WindowedRecord):
    """Latency percentiles of one span in one window (topic ``voxbus.analytics.latency``).

    Percentiles use the nearest-rank method over a log-bucketed histogram: each is within
    1 % of the exact sample percentile (and exact for min, max and a single sample).

    Attributes:
        span: a latency name of :attr:`schemas.TurnRecord.latency_ms` (``asr``,
            ``llm_ttft``... and ``voice_to_voice``).
        turns: turns that measured the span (the sample count).
        mean_ms / min_ms / max_ms: exact.
        p50_ms / p95_ms / p99_ms: percentiles (ms).
    """

    type: Literal["analytics_latency"] = "analytics_latency"
    span: Name
    mean_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def dimension(self) -> str:
        """The latency span."""
        return self.span


DeskFactKind = Literal["taken", "handled", "sla_breach", "abandoned"]
"""What a hand-off round came to: ``taken`` (an agent's claim counted), ``handled`` (the agent
holding it released or ended the call), ``sla_breach`` (no agent within ``VOXBUS_HANDOFF_SLA_S``:
the ``expire`` counted), ``abandoned`` (the caller hung up while waiting in the queue)."""


class DeskFact(Record):
    """One outcome of a hand-off round, found by the analytics processor's desk fold.

    The fold (:mod:`processors.analytics.desk`) reads a session's hand-offs, queue events and
    hang-up in their partition's order and puts each outcome on ``voxbus.analytics.turn-windows``
    keyed by the window of its ``ts``, where the team windows are folded.

    Attributes:
        kind: one of :data:`DeskFactKind`.
        session_id: the session.
        handoff_turn: the hand-off round (the :class:`~schemas.tools.Handoff`'s ``turn_id``).
        agent: the claimant (``taken``) or the agent who ended the call (``handled``); empty
            for ``sla_breach`` and ``abandoned``.
        seconds: ``taken``: the queue wait (hand-off to claim); ``handled``: the handle time
            (claim to release or end); ``sla_breach`` / ``abandoned``: the wait until the expiry
            or the hang-up (s).
        ts: when it happened (epoch s): the claim, the release or end, the expiry, the hang-up.
    """

    type: Literal["desk_fact"] = "desk_fact"
    kind: DeskFactKind
    session_id: SessionId
    handoff_turn: TurnRef
    agent: AgentId = ""
    seconds: float = Field(ge=0.0)
    ts: EpochSeconds


class AgentWindow(WindowedRecord):
    """One agent's (or the whole team's) calls in one window (topic ``voxbus.analytics.agents``).

    Each figure counts the :class:`DeskFact` s whose time falls in the window: a call taken in
    one minute and ended in the next is taken in the first and handled in the second.  Queue
    waits are those of the calls taken (the time to answer); the waits of callers nobody took
    are counted in ``sla_breaches`` and ``abandoned``, which have no agent.

    Attributes:
        agent: the agent (:data:`schemas.desk.AgentId`); empty for the whole team.
        turns: desk facts counted.
        calls_taken: claims that counted.
        calls_handled: calls released or ended.
        handle_s_mean / handle_s_max: handle time of those calls (s); None without one.
        wait_p50_s / wait_p95_s: queue wait of the calls taken (s), nearest rank within 1 %
            (as :class:`LatencyPercentiles`); None without one.
        sla_breaches: waiting callers given back to the bot by the SLA (team only).
        abandoned: callers who hung up while waiting (team only).
    """

    type: Literal["analytics_agent"] = "analytics_agent"
    agent: AgentId = ""
    calls_taken: int = Field(ge=0)
    calls_handled: int = Field(ge=0)
    handle_s_mean: float | None = None
    handle_s_max: float | None = None
    wait_p50_s: float | None = None
    wait_p95_s: float | None = None
    sla_breaches: int = Field(ge=0)
    abandoned: int = Field(ge=0)

    @property
    def dimension(self) -> str:
        """``team``, or ``agent:<agent>``."""
        return f"agent:{self.agent}" if self.agent else "team"


ANALYTICS_RECORDS: tuple[type[WindowedRecord], ...] = (
    TurnsPerMinute, IntentCount, SentimentCount, EscalationCount, LatencyPercentiles, AgentWindow,
)
"""Every analytics record type."""
