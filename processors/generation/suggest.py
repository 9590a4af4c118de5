"""Agent assist: the generation stage's answer to each caller turn of a call an agent holds, for the agent.

While a person holds a handed-off session the bot is silent, but the caller's turns still run
through intent and retrieval.  The suggest stage (consumer group ``voxbus-suggest``, its own
worker: ``voxbus suggest``, started by ``voxbus up``) reads those turns from
``voxbus.retrievals`` and answers each one as the generation stage would
(:meth:`processors.generation.stage.GenerationStage.answer`: a confident article read out,
or the LLM grounded on the passages; no tools), and writes a :class:`schemas.Suggestion`, with
the turn's passages and their sources, to ``voxbus.suggestions``.  Every ingress replica
reads that topic for the agent console (:mod:`ingress.agents.assist`), where the agent sends
or speaks the suggestion, or does not; nothing reaches the caller from here.

Which sessions an agent holds it folds itself from ``voxbus.handoffs`` (a
:class:`schemas.Handoff` opens a round; the agents' replies, :class:`schemas.HandoffUpdate`,
join the round's conversation, which the LLM sees) and ``voxbus.agent-queue`` (a ``claim`` of
the round holds it; ``release``, ``end``, or an ``expire`` before any claim closes it), in a
changelog-backed table keyed by session id.  The turns of an agent leg (the agent's own
voice, :func:`schemas.is_agent_leg`) are not answered.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust

from processors.base import Emit, Stage
from processors.generation.prompt import history_window
from processors.generation.stage import MAX_SENTENCES, GenerationStage
from processors.runtime import STAGES, build_stage, run_stage
from schemas import (
    Handoff,
    HandoffUpdate,
    QueueEvent,
    Record,
    RetrievalResult,
    SessionCaller,
    Suggestion,
    is_agent_leg,
)
from streams.settings import Settings, get_settings
from streams.topics import AGENT_QUEUE, HANDOFFS, RETRIEVALS, SUGGESTIONS

log = logging.getLogger(__name__)

NAME = "suggest"
"""Stage name: consumer group ``voxbus-suggest``, heartbeats as ``suggest``."""


def opened(handoff: Handoff) -> dict[str, Any]:
    """The state of a new hand-off round: not held yet, the conversation so far as LLM history.

    Returns:
        ``{"round", "since", "held", "history"}``; ``history`` as
        :func:`processors.generation.prompt.build_messages` takes it (``user`` / ``assistant`` pairs).
    """
    history: list[dict[str, str]] = []
    for line in handoff.transcript:
        if line.role == "caller":
            history.append({"user": line.text, "assistant": ""})
        elif history:
            history[-1]["assistant"] = f"{history[-1]['assistant']} {line.text}".strip()
    return {"round": handoff.turn_id, "since": handoff.ts, "held": False, "history": history}


def follow(state: dict[str, Any] | None, record: Record, keep: int) -> dict[str, Any] | None:
    """A session's round after one desk record (None: no round an agent could hold).

    Args:
        state: the session's round (:func:`opened`), or None.
        record: a :class:`schemas.Handoff`, :class:`schemas.QueueEvent` or
            :class:`schemas.HandoffUpdate` of the session (anything else changes nothing).
        keep: the fewest conversation turns kept (``VOXBUS_HISTORY_TURNS``; :func:`history_window`).
    """
    if isinstance(record, Handoff):
        if state is not None and (state["round"] == record.turn_id or record.ts <= state["since"]):
            return state  # redelivered, or an older round
        return opened(record)
    if state is None:
        return None
    if isinstance(record, QueueEvent) and record.handoff_turn == state["round"]:
        if record.kind == "claim":
            return {**state, "held": True}
        if record.kind in ("release", "end") or (record.kind == "expire" and not state["held"]):
            return None
    if isinstance(record, HandoffUpdate) and record.kind == "agent" and state["history"]:
        history = [dict(turn) for turn in state["history"]]
        history[-1]["assistant"] = f"{history[-1]['assistant']} {record.text}".strip()
        return {**state, "history": history_window(history, keep)}
    return state


class SuggestStage(Stage):
    """Suggest a reply, with its passages and sources, for each caller turn of a held session.

    Consumes ``voxbus.retrievals``, ``voxbus.handoffs`` and ``voxbus.agent-queue``; produces
    :class:`schemas.Suggestion` to ``voxbus.suggestions``.  Sessions are served concurrently
    (``VOXBUS_GENERATION_CONCURRENCY``), each session's turns in order.  The answer is the
    generation stage's own code (:class:`GenerationStage`, its LLM client), not a copy.
    """

    name = NAME
    input = RETRIEVALS
    extra_inputs = (HANDOFFS, AGENT_QUEUE)
    accepts = (RetrievalResult, Handoff, HandoffUpdate, SessionCaller, QueueEvent)
    concurrency_setting = "generation_concurrency"
    caller_path = False  # the caller never hears of agent assist, nor of its failures

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.writer = GenerationStage(settings)
        self.rounds: Any = {}
        """Session id -> its hand-off round (:func:`opened`); a faust Table once bound."""

    def bind(self, app: faust.App) -> None:
        """Declare the rounds table (changelog topic ``voxbus-suggest-rounds-changelog``)."""
        self.rounds = app.Table(
            "rounds", default=None, partitions=self.settings.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )

    def load(self) -> None:
        """Create the generation code's LLM client (the server is started separately)."""
        self.writer.load()

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Follow a desk record, or suggest a reply to a held session's caller turn."""
        if not isinstance(record, RetrievalResult):
            before = self.rounds.get(record.session_id)
            after = follow(before, record, self.settings.history_turns)
            if after is None:
                self.rounds.pop(record.session_id, None)
            elif after != before:
                self.rounds[record.session_id] = after
            return
        state = self.rounds.get(record.session_id)
        if state is None or not state["held"] or is_agent_leg(record.session_id):
            return
        yield Emit(SUGGESTIONS, await self.suggest(record, state))
        current = self.rounds.get(record.session_id)
        if current is not None and current["round"] == state["round"]:  # the caller's words join the history
            history = [*current["history"], {"user": record.text, "assistant": ""}]
            kept = history_window(history, self.settings.history_turns)
            self.rounds[record.session_id] = {**current, "history": kept}

    async def suggest(self, turn: RetrievalResult, state: dict[str, Any]) -> Suggestion:
        """The suggestion for ``turn``: up to :data:`MAX_SENTENCES` sentences of the generation's answer.

        An LLM failure gives a suggestion without text (``error`` ``llm_failed``): the agent
        still sees the passages.
        """
        marks = {**turn.marks, "suggest.start": time.time()}
        sentences: list[str] = []
        sources: list[str] = []
        error = ""
        try:
            answer = self.writer.answer(turn, state["history"], marks, None, sources)
            async with contextlib.aclosing(answer):
                async for sentence in answer:
                    sentences.append(sentence)
                    if len(sentences) >= MAX_SENTENCES:
                        break
        except Exception as exc:  # the LLM server is down or slow: the passages still help
            log.warning("suggestion for %s/%s failed: %s: %s", turn.session_id, turn.turn_id,
                        type(exc).__name__, exc)
            sentences, error = [], "llm_failed"
        now = time.time()
        return Suggestion(
            session_id=turn.session_id, egress_partition=turn.egress_partition, turn_id=turn.turn_id,
            handoff_turn=state["round"], caller_text=turn.text, text=" ".join(sentences),
            passages=turn.passages, sources=sources, error=error, marks={**marks, "suggest.end": now}, ts=now,
        )


def metrics_port(settings: Settings) -> int:
    """Port of the suggest worker's ``/metrics``: the setting, or the one after the analytics worker's.

    The stages serve ``VOXBUS_METRICS_BASE_PORT + i`` (:data:`processors.runtime.STAGES`), the
    analytics worker the port after them (:func:`processors.analytics.stage.metrics_port`).
    """
    return settings.suggest_metrics_port or settings.metrics_base_port + len(STAGES) + 1


def run_worker() -> None:
    """Run the suggest worker until SIGINT/SIGTERM (``/metrics`` on :func:`metrics_port`)."""
    settings = get_settings()
    app, runner = build_stage(SuggestStage(settings), metrics_port(settings))
    run_stage(app, runner)
