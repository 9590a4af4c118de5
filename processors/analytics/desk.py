"""Team analytics without Kafka: a session's hand-off rounds into outcomes, outcomes into agent windows.

Two pure folds, shared by the analytics stage (:mod:`processors.analytics.stage`) and the tests:

1. :func:`track` follows one session's hand-offs (:class:`schemas.Handoff`) and queue events
   (:class:`schemas.QueueEvent`) in the order its partition gives them, and says what each round
   came to (:class:`schemas.DeskFact`): a claim that counted (``taken``, with the queue wait), the
   call released or ended (``handled``, with the handle time), the SLA's ``expire`` that counted
   (``sla_breach``), or the ``abandon`` that counted (``abandoned``: the caller hung up while still
   waiting, written by the ingress replica that held their socket).  What counts is the queue's
   rule (:mod:`ingress.agents.queue`, the order every replica folds): a claim, an expiry or an
   abandon only while the round waits (the first in log order wins), a transfer, release or end
   only from the agent holding it, and only events of the current round.  An event read before its
   round's hand-off (the topics are read side by side) waits for it, up to :data:`MAX_PENDING` per
   session.
2. :func:`fold_fact` folds those outcomes into one-minute windows, per agent and for the team
   (:func:`fact_dimensions`), and :func:`to_agent_window` makes the published
   :class:`schemas.AgentWindow`.
"""

from __future__ import annotations

from typing import Any

from processors.analytics.windows import WINDOW_S, Metric, State, add_sample, percentile
from schemas import AgentWindow, DeskFact, Handoff, QueueEvent, Record
from streams.topics import ANALYTICS_AGENTS

DESK = Metric("desk", ANALYTICS_AGENTS)
"""The team windows (table ``desk``, records on ``voxbus.analytics.agents``)."""
TEAM = "team"
"""The dimension of the whole team."""
MAX_PENDING = 20
"""Most queue events kept for a session whose round's hand-off is not read yet."""
WAITING, TAKEN = "waiting", "taken"
"""A tracked round's status; a round that is over (released, ended, expired, abandoned) is dropped."""


def _fact(state: State, kind: str, ts: float, since: float, agent: str = "") -> DeskFact:
    return DeskFact(kind=kind, session_id=state["session_id"], handoff_turn=state["round"],  # type: ignore[arg-type]
                    agent=agent, seconds=max(0.0, ts - since), ts=ts)


def _pending(event: QueueEvent) -> dict[str, Any]:
    return {"kind": event.kind, "round": event.handoff_turn, "agent": event.agent, "to_agent": event.to_agent,
            "ts": event.ts}


def _apply(state: State, event: dict[str, Any]) -> tuple[State | None, list[DeskFact]]:
    """Fold one queue event of the current round (the queue's rule, module docstring)."""
    kind, status = event["kind"], state["status"]
    if status == WAITING and kind == "claim":
        taken = {**state, "status": TAKEN, "agent": event["agent"], "taken_at": event["ts"]}
        return taken, [_fact(state, "taken", event["ts"], state["since"], event["agent"])]
    if status == WAITING and kind in ("expire", "abandon"):
        outcome = "sla_breach" if kind == "expire" else "abandoned"
        return None, [_fact(state, outcome, event["ts"], state["since"])]
    if status == TAKEN and event["agent"] == state["agent"]:
        if kind == "transfer" and event["to_agent"]:
            return {**state, "agent": event["to_agent"]}, []
        if kind in ("release", "end"):
            return None, [_fact(state, "handled", event["ts"], state["taken_at"], state["agent"])]
    return state, []


def track(state: State | None, record: Record) -> tuple[State | None, list[DeskFact]]:
    """Fold one record of a session into its desk state.

    Args:
        state: the session's state (JSON-able, as the ``desk_sessions`` table stores it), or None
            when the session has no round being tracked.
        record: a :class:`schemas.Handoff` or :class:`schemas.QueueEvent` of that session (other
            records change nothing).

    Returns:
        ``(new state or None when nothing is tracked, the outcomes the record brought)``.
    """
    if isinstance(record, Handoff):
        if state is not None and "round" in state and (state["round"] == record.turn_id
                                                        or record.ts <= state["since"]):
            return state, []  # redelivered, or an older round
        pending = [] if state is None else state.get("pending", [])
        new: State | None = {"session_id": record.session_id, "round": record.turn_id, "since": record.ts,
                             "status": WAITING, "agent": "", "taken_at": 0.0, "pending": []}
        facts: list[DeskFact] = []
        for event in (e for e in pending if e["round"] == record.turn_id):
            if new is None:
                break
            new, found = _apply(new, event)
            facts.extend(found)
        return new, facts
    if isinstance(record, QueueEvent):
        if state is not None and state.get("round") == record.handoff_turn:
            return _apply(state, _pending(record))
        held = state or {"session_id": record.session_id}
        return {**held, "pending": [*held.get("pending", []), _pending(record)][-MAX_PENDING:]}, []
    return state, []


def fact_dimensions(fact: DeskFact) -> list[str]:
    """The dimensions of its window a fact updates: the team's, and its agent's when it has one."""
    return [TEAM, f"agent:{fact.agent}"] if fact.agent else [TEAM]


def fold_fact(state: State, fact: DeskFact) -> State:
    """Fold one outcome into a dimension's window state (returns a new state).

    State: ``n`` facts, ``taken``, ``handled``, ``handle_sum`` / ``handle_max`` (s), ``wait``
    (a histogram of the queue waits of the calls taken, :func:`processors.analytics.windows.add_sample`),
    ``sla_breaches``, ``abandoned``.
    """
    new = {
        "n": int(state.get("n", 0)) + 1,
        "taken": int(state.get("taken", 0)),
        "handled": int(state.get("handled", 0)),
        "handle_sum": float(state.get("handle_sum", 0.0)),
        "handle_max": float(state.get("handle_max", 0.0)),
        "wait": dict(state.get("wait", {})),
        "sla_breaches": int(state.get("sla_breaches", 0)),
        "abandoned": int(state.get("abandoned", 0)),
    }
    if fact.kind == "taken":
        new["taken"] += 1
        new["wait"] = add_sample(new["wait"], fact.seconds)
    elif fact.kind == "handled":
        new["handled"] += 1
        new["handle_sum"] += fact.seconds
        new["handle_max"] = max(new["handle_max"], fact.seconds)
    elif fact.kind == "sla_breach":
        new["sla_breaches"] += 1
    else:
        new["abandoned"] += 1
    return new


def to_agent_window(dimension: str, start: float, state: State, now: float) -> AgentWindow:
    """The record publishing ``state``: ``dimension`` (:func:`fact_dimensions`) of the window at ``start``."""
    handled, wait = int(state["handled"]), state["wait"]
    waited = int(wait.get("n", 0)) > 0
    return AgentWindow(
        window_start=start, window_end=start + WINDOW_S, turns=int(state["n"]), ts=now,
        agent="" if dimension == TEAM else dimension.removeprefix("agent:"),
        calls_taken=int(state["taken"]), calls_handled=handled,
        handle_s_mean=round(state["handle_sum"] / handled, 2) if handled else None,
        handle_s_max=round(state["handle_max"], 2) if handled else None,
        wait_p50_s=round(percentile(wait, 0.50), 2) if waited else None,
        wait_p95_s=round(percentile(wait, 0.95), 2) if waited else None,
        sla_breaches=int(state["sla_breaches"]), abandoned=int(state["abandoned"]),
    )
