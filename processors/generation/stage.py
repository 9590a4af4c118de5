"""The generation stage: retrieval results in, reply sentences out, streamed from an LLM.

It is also the agent loop of tool calls: a turn that needs a tool (chosen by the rules of
:mod:`processors.generation.dialogue`, or by the LLM with ``VOXBUS_LLM_TOOLS``) becomes a
:class:`schemas.ToolCall` for the workflow stage; the :class:`schemas.ToolResult` that
comes back on ``voxbus.tool-results`` is spoken as the turn's reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import Any

import faust
from openai import AsyncOpenAI

from processors.base import Emit, Stage
from processors.cancel import CancelledTurns
from processors.embeddings import calibration_of
from processors.generation.dialogue import DialogueState, ToolChoice, choose_tool
from processors.generation.grounding import cited, direct_answer, relevant, ungrounded
from processors.generation.llm_server import MODEL_ALIAS, embedded_url
from processors.generation.phrases import PHRASES, phrases
from processors.generation.prefixes import warm_prefixes
from processors.generation.prompt import grounded_messages, history_window
from processors.generation.sentences import SentenceAggregator, speech_units
from processors.generation.tools import TOOLS, ToolCallAccumulator
from processors.generation.topic import off_topic
from processors.retrieval.kb import kb_languages, knowledge_base
from schemas import (
    DEFAULT_LANGUAGE,
    ConversationLine,
    HandoffUpdate,
    Passage,
    QueueEvent,
    Record,
    ReplyText,
    RetrievalResult,
    ToolCall,
    ToolResult,
    TurnCancel,
    is_agent_leg,
)
from streams.settings import Settings, localized
from streams.topics import AGENT_QUEUE, EGRESS, HANDOFFS, REPLIES, RETRIEVALS, TOOL_CALLS, TOOL_RESULTS

log = logging.getLogger(__name__)

APOLOGY = PHRASES[DEFAULT_LANGUAGE].apology
"""The English apology (each language's: :mod:`processors.generation.phrases`)."""
MAX_SENTENCES = 3
"""A spoken answer is kept to three sentences; the rest of the generation is dropped."""


class GenerationStage(Stage):
    """Stream a reply from an OpenAI-compatible server, one :class:`ReplyText` per sentence.

    Consumes ``voxbus.retrievals``; produces to ``voxbus.replies`` (for tts and
    analytics) and ``voxbus.egress`` (for the caller).  The LLM is prompted with the turn's
    relevant passages or the whole knowledge base of its language (``VOXBUS_LLM_PROMPT``,
    :mod:`processors.generation.prompt`); either way its reply is checked against the turn's
    relevant passages (:mod:`processors.generation.grounding`).  Turns of different sessions
    stream concurrently (``VOXBUS_GENERATION_CONCURRENCY``), each session's in order.
    Conversation history per session lives in a changelog-backed faust Table, keyed by
    session id; a turn already in the history is not answered twice (idempotent on
    redelivery).  Every write re-reads the entry and changes only its own turn, so the
    tool-result and cancellation handlers, which run while a turn streams, are not
    overwritten by it.

    It also consumes ``voxbus.control``: a cancelled turn stops its LLM stream at the
    next token (closing the HTTP stream, so the server stops decoding it), and after a
    barge-in the history keeps only what the caller heard.

    Tools: a turn that needs one produces a :class:`ToolCall` (``voxbus.tool-calls``)
    instead of an answer; the :class:`ToolResult` (``voxbus.tool-results``, consumed
    here too) is spoken as the reply, and the session's :class:`DialogueState` (on the
    newest history entry) remembers an open booking, unanswered turns and a hand-off.
    After a hand-off the bot no longer answers: each caller turn goes to
    ``voxbus.handoffs`` for the agent, and the turn ends with an empty reply, until the
    agent queue (``voxbus.agent-queue``, consumed here too) says the hand-off is over:
    released or ended by the agent (their note joins the history) or expired unanswered
    (the bot then offers a callback, :mod:`processors.generation.dialogue`).  The turns of an
    agent leg (an agent's voice, :func:`schemas.is_agent_leg`) are never answered.
    """

    name = "generation"
    input = RETRIEVALS
    extra_inputs = (TOOL_RESULTS, AGENT_QUEUE)
    accepts = (RetrievalResult, ToolResult, QueueEvent)
    control = True
    concurrency_setting = "generation_concurrency"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.cancelled = CancelledTurns()
        self.heard: dict[tuple[str, str], str] = {}
        """(session id, turn id) -> what the caller heard of a turn barged in on while it streams."""
        self.calling: dict[tuple[str, str], asyncio.Event] = {}
        """(session id, turn id) -> set when its tool call's history entry is in (:meth:`calling_tool`)."""

    def bind(self, app: faust.App) -> None:
        """Declare the history table (changelog topic ``voxbus-generation-history-changelog``).

        With ``VOXBUS_LLM_PROMPT=knowledge-base`` also the warm-up of the LLM's prompt cache
        (:meth:`warm_up`), a task faust starts in the background once the worker is up.
        """
        self.history = app.Table(
            "history", default=list, partitions=self.settings.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )
        if self.settings.llm_prompt == "knowledge-base":
            app.task(self.warm_up)

    async def warm_up(self) -> dict[str, float]:
        """Have the LLM server cache each language's fixed prefix before the first caller pays for it.

        Waits for the server to answer (it may still be starting), then sends one request of one token
        per language (:func:`processors.generation.prefixes.warm_prefixes`); failures are logged only.

        Returns:
            language -> seconds its prefix took, for those the server answered; empty with the
            ``passages`` prompt.
        """
        return await warm_prefixes(self.client, self.model, self.knowledge_bases)

    def use_history(self, history: MutableMapping[str, list[dict[str, Any]]]) -> None:
        """Keep the conversation history in ``history`` instead of the faust table (no worker needed).

        A replay's hook (:class:`processors.replay.conversation.ProductionHistory`): the stage runs
        in the replaying process, without :meth:`bind`.
        """
        self.history = history

    def load(self) -> None:
        """Create the LLM client (the server is started separately); read the knowledge bases it is given.

        With ``VOXBUS_LLM_PROMPT=knowledge-base`` each language's knowledge base is read here, once
        (:func:`processors.retrieval.kb.knowledge_base`, the languages retrieval serves).

        Raises:
            FileNotFoundError: ``VOXBUS_LLM_PROMPT=knowledge-base`` and ``VOXBUS_KB_DIR`` does not exist.
        """
        s = self.settings
        self.client = AsyncOpenAI(base_url=s.llm_url or embedded_url(s), api_key=s.llm_api_key,
                                  timeout=s.llm_timeout_s, max_retries=0)
        self.model = s.llm_model or MODEL_ALIAS
        self.knowledge_bases = {language: knowledge_base(s, language) for language in kb_languages(s)} \
            if s.llm_prompt == "knowledge-base" else {}

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Stop a turn; after a barge-in, rewrite its history entry to what the caller heard.

        A turn continued by the caller's next words (``continuation``) leaves the history:
        the next turn holds its words, and its reply was never heard.
        """
        key = (cancel.session_id, cancel.turn_id)
        self.cancelled.add(*key)
        history = list(self.history[cancel.session_id])
        if cancel.reason == "continuation" and any(past.get("turn_id") == cancel.turn_id for past in history):
            self.history[cancel.session_id] = [p for p in history if p.get("turn_id") != cancel.turn_id]
        if cancel.reason != "barge_in":
            return []
        for past in history:
            if past.get("turn_id") == cancel.turn_id:
                past["assistant"], past["interrupted"] = cancel.heard_text, True
                self.history[cancel.session_id] = history
                return []
        self.heard[key] = cancel.heard_text  # still generating: applied when the turn ends
        return []

    async def stream_sentences(self, messages: list[dict[str, str]], marks: dict[str, float],
                               tool_calls: ToolCallAccumulator | None = None,
                               key: tuple[str, str] | None = None) -> AsyncIterator[str]:
        """Yield reply sentences as the LLM streams tokens; record time to first token in ``marks``.

        With ``tool_calls``, the :data:`TOOLS` are offered to the model and its streamed
        ``tool_calls`` deltas are collected there.  Once the turn ``key`` is cancelled the
        stream is closed at the next token.  With ``VOXBUS_LLM_SEED`` the request carries that seed.
        """
        offer: dict[str, Any] = {"tools": TOOLS} if tool_calls is not None else {}
        if self.settings.llm_seed is not None:
            offer["seed"] = self.settings.llm_seed
        stream = await self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True,  # type: ignore[arg-type]
            max_tokens=self.settings.llm_max_tokens, temperature=self.settings.llm_temperature, **offer,
        )
        aggregator = SentenceAggregator()
        try:
            async for chunk in stream:
                if key is not None and key in self.cancelled:
                    return
                if tool_calls is not None and chunk.choices:
                    tool_calls.push(chunk.choices[0].delta.tool_calls)
                delta = chunk.choices[0].delta.content if chunk.choices else None
                if not delta:
                    continue
                marks.setdefault("generation.first_token", time.time())
                for sentence in aggregator.push(delta):
                    yield sentence
        finally:
            await stream.close()  # a cancelled or capped reply: the server stops decoding it
        rest = aggregator.flush()
        if rest:
            yield rest

    def fixed_reply(self, turn: RetrievalResult, marks: dict[str, float]) -> tuple[str, list[Passage]] | None:
        """A reply without the LLM: canned by intent, an off-topic turn's redirect, or a confident article.

        An off-topic turn (:mod:`processors.generation.topic`) sets ``marks["generation.redirect"]``.
        Phrases and the redirect are in the turn's language; the floors are those of the model that
        scored its passages (:func:`processors.embeddings.calibration_of`).

        Returns:
            ``(text, the passages it is grounded on)``, or None when the LLM answers.
        """
        canned, floors = phrases(turn.language).canned, calibration_of(turn.embedding_model)
        if turn.intent in canned:
            return canned[turn.intent], []
        if self.settings.redirect_off_topic and off_topic(turn, floors.relevant):
            marks["generation.redirect"] = time.time()
            return localized(self.settings.redirect_text, turn.language), []
        direct = direct_answer(turn.passages, floors.direct or self.settings.grounding_direct_score)
        return (direct, turn.passages[:1]) if direct is not None else None

    @staticmethod
    def facts_of(turn: RetrievalResult) -> list[Passage]:
        """The passages the LLM answers ``turn`` from: those above its embedding model's relevance floor."""
        return relevant(turn.passages, calibration_of(turn.embedding_model).relevant)

    def knowledge_base_of(self, language: str) -> list[Passage] | None:
        """The whole knowledge base a turn in ``language`` is prompted with (``VOXBUS_LLM_PROMPT``).

        Returns:
            The language's passages, English's for a language without a knowledge base (retrieval
            looks its turns up there too); None with the ``passages`` prompt.
        """
        if not self.knowledge_bases:
            return None
        return self.knowledge_bases[language if language in self.knowledge_bases else DEFAULT_LANGUAGE]

    async def answer(self, turn: RetrievalResult, history: list[dict[str, Any]], marks: dict[str, float],
                     tool_calls: ToolCallAccumulator | None = None,
                     sources: list[str] | None = None) -> AsyncIterator[str]:
        """The reply's sentences: canned, a redirect, read from a confident article, or checked LLM output.

        See :mod:`processors.generation.grounding`.  ``sources``, when given, is filled before
        the first sentence with the knowledge-base files the reply is grounded on (the article
        read out, or those of the passages the LLM answered from).  A reply without a relevant passage,
        or whose LLM sentence was cut as ungrounded, is *unanswered*: it sets
        ``marks["generation.unanswered"]`` (repeated, it hands the session off).  With
        ``tool_calls`` (``VOXBUS_LLM_TOOLS``) the LLM may call a tool instead of answering,
        and then says nothing.

        Raises:
            TimeoutError: the LLM took longer than ``llm_timeout_s``.
            openai.OpenAIError: the LLM server failed.
        """
        grounds = [] if sources is None else sources
        fixed = self.fixed_reply(turn, marks)
        if fixed is not None:
            text, passages = fixed
            grounds.extend(cited(passages))
            marks["generation.first_token"] = time.time()
            for unit in speech_units(text):  # a long first clause is synthesized on its own
                yield unit
            return
        facts = self.facts_of(turn)
        grounds.extend(cited(facts))
        if not facts:
            marks["generation.unanswered"] = time.time()
        messages = grounded_messages(turn, facts, history_window(history, self.settings.history_turns),
                                     self.knowledge_base_of(turn.language))
        said = False
        async with asyncio.timeout(self.settings.llm_timeout_s):
            async for sentence in self.stream_sentences(messages, marks, tool_calls,
                                                        (turn.session_id, turn.turn_id)):
                if ungrounded(sentence, facts):
                    marks["generation.ungrounded"] = marks["generation.unanswered"] = time.time()
                    break
                said = True
                yield sentence
        if tool_calls is not None and tool_calls.complete():
            return
        if not said:
            yield facts[0].text if facts else phrases(turn.language).fallback

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Answer one turn (or call a tool for it), or speak a tool's result."""
        if isinstance(record, ToolResult):
            async for emit in self.on_result(record):
                yield emit
            return
        if isinstance(record, QueueEvent):
            self.on_queue(record)
            return
        assert isinstance(record, RetrievalResult)
        if is_agent_leg(record.session_id):
            return  # an agent's own words (schemas.voice): transcribed for the record, never answered
        key = (record.session_id, record.turn_id)
        if key in self.cancelled:
            return
        history: list[dict[str, Any]] = list(self.history[record.session_id])
        if any(past.get("turn_id") == record.turn_id for past in history):
            log.info("turn %s/%s already answered; skipping redelivery", record.session_id, record.turn_id)
            return
        state = DialogueState.of(history)
        marks = {**record.marks, "generation.start": time.time()}
        if state.handoff:  # a person has the session: pass the turn on, say nothing
            yield Emit(HANDOFFS, HandoffUpdate(
                session_id=record.session_id, egress_partition=record.egress_partition, kind="caller",
                turn_id=record.turn_id, text=record.text, speak=record.speak, ts=time.time(),
            ))
            for emit in self.reply(record, 0, "", marks, final=True):
                yield emit
            self.remember(record, "", state)
            return
        choice = choose_tool(record, state, self.settings)
        if choice is not None:
            with self.calling_tool(key):
                yield self.call(record, choice, "rules-1", "rules", history, marks)
                self.remember(record, "", state, tool="rules-1")
            return
        sentences: list[str] = []
        sources: list[str] = []
        tool_calls = ToolCallAccumulator() if self.settings.llm_tools else None
        try:
            answer = self.answer(record, history, marks, tool_calls, sources)
            async with contextlib.aclosing(answer):
                async for sentence in answer:
                    if key in self.cancelled:
                        break
                    sentences.append(sentence)
                    for emit in self.reply(record, len(sentences) - 1, sentence, marks, final=False,
                                           sources=sources):
                        yield emit
                    if len(sentences) >= MAX_SENTENCES:
                        break
        except Exception as exc:  # the LLM server is down, slow or broken: say so, never stay silent
            log.warning("LLM failed on %s/%s: %s: %s", record.session_id, record.turn_id,
                        type(exc).__name__, exc)
            marks["generation.error"] = time.time()
            apology = phrases(record.language).apology
            sentences.append(apology)
            for emit in self.reply(record, len(sentences) - 1, apology, marks, final=True):
                yield emit
        else:
            follow_up = self.follow_up(record, state, marks, tool_calls)
            if follow_up is not None and key not in self.cancelled:
                call_id, source, choice = follow_up
                with self.calling_tool(key):
                    yield self.call(record, choice, call_id, source, history, marks)
                    self.remember(record, " ".join(sentences), state, tool=call_id, said=len(sentences))
                return
            if key not in self.cancelled:
                for emit in self.reply(record, len(sentences), "", marks, final=True, sources=sources):
                    yield emit
        if key in self.cancelled and key not in self.heard:
            return  # a backchannel or a hang-up: not part of the conversation
        answer = self.heard.pop(key) if key in self.heard else " ".join(sentences)
        missed = "generation.unanswered" in marks
        self.remember(record, answer, DialogueState(misses=state.misses + 1 if missed else 0,
                                                    callback=state.callback))

    def follow_up(self, turn: RetrievalResult, state: DialogueState, marks: dict[str, float],
                  tool_calls: ToolCallAccumulator | None) -> tuple[str, str, ToolChoice] | None:
        """A tool call that ends the turn after its answer: the LLM's, or a hand-off after repeated misses.

        Returns:
            ``(call id, source, choice)``, or None when the answer ends the turn.
        """
        calls = tool_calls.complete() if tool_calls is not None else []
        if calls:  # one tool per turn: the first the model called
            call_id, name, arguments = calls[0]
            return call_id, "llm", ToolChoice(name, arguments)  # type: ignore[arg-type]
        if "generation.unanswered" in marks and state.misses + 1 >= self.settings.handoff_after_misses:
            return "rules-1", "rules", ToolChoice("escalate_to_human", {"reason": "repeated_failure"})
        return None

    def call(self, turn: RetrievalResult, choice: ToolChoice, call_id: str, source: str,
             history: list[dict[str, Any]], marks: dict[str, float]) -> Emit:
        """The :class:`ToolCall` of ``turn``, with the conversation so far (for a hand-off summary)."""
        lines: list[ConversationLine] = []
        for past in history:
            turn_id = past.get("turn_id", "")
            for role, key in (("caller", "user"), ("assistant", "assistant"), ("agent", "note")):
                if past.get(key):
                    lines.append(ConversationLine(role=role, text=past[key], turn_id=turn_id))
        lines.append(ConversationLine(role="caller", text=turn.text, turn_id=turn.turn_id))
        return Emit(TOOL_CALLS, ToolCall(
            session_id=turn.session_id, egress_partition=turn.egress_partition, turn_id=turn.turn_id,
            call_id=call_id, tool=choice.tool, arguments=choice.arguments, source=source,  # type: ignore[arg-type]
            intent=turn.intent, sentiment_score=turn.sentiment_score, history=lines, speak=turn.speak,
            language=turn.language, marks={**marks, "generation.tool_call": time.time()},
        ))

    @contextlib.contextmanager
    def calling_tool(self, key: tuple[str, str]) -> Iterator[None]:
        """While turn ``key``'s tool call is produced and then written into the history, its result waits.

        The call is produced (and acknowledged) before the history entry that expects its
        result is written, so a crash between the two redelivers the turn and calls again
        (the workflow answers a repeated call from its log).  The result arrives on another
        input (``voxbus.tool-results``) and can be handled in that gap, on a busy event loop:
        :meth:`on_result` then waits for this block to end instead of finding no entry and
        leaving the turn unanswered.
        """
        written = self.calling[key] = asyncio.Event()
        try:
            yield
        finally:
            written.set()
            if self.calling.get(key) is written:
                del self.calling[key]

    def remember(self, turn: RetrievalResult, answer: str, state: DialogueState, tool: str = "",
                 said: int = 0) -> None:
        """Append the turn to the session's history, with the dialogue state after it.

        Args:
            turn: the caller's turn.
            answer: what the assistant said (so far).
            state: the dialogue state after the turn.
            tool: the id of the tool call whose result will end the turn (empty: none).
            said: reply sentences already sent before that call (the result continues them).
        """
        entry: dict[str, Any] = {"turn_id": turn.turn_id, "user": turn.text, "assistant": answer,
                                 "state": state.as_dict()}
        if tool:
            entry.update(tool=tool, said=said)
        # merge on write: the entries as they are now (a tool result or a barge-in may have
        # changed them while this turn streamed), plus this turn
        current = [past for past in self.history[turn.session_id] if past.get("turn_id") != turn.turn_id]
        self.history[turn.session_id] = history_window([*current, entry], self.settings.history_turns)

    async def on_result(self, result: ToolResult) -> AsyncIterator[Emit]:
        """Speak a tool's result as the end of its turn's reply, once, and update the dialogue state."""
        writing = self.calling.get((result.session_id, result.turn_id))
        if writing is not None:  # the result overtook its call's history entry (:meth:`calling_tool`)
            await writing.wait()
        history: list[dict[str, Any]] = list(self.history[result.session_id])
        entry = next((past for past in history if past.get("turn_id") == result.turn_id), None)
        if entry is None or entry.get("tool") != result.call_id or entry.get("result"):
            log.info("result %s/%s/%s unknown or already spoken; skipping", result.session_id, result.turn_id,
                     result.call_id)
            return
        if (result.session_id, result.turn_id) not in self.cancelled:
            marks = {**result.marks, "generation.tool_result": time.time()}
            marks.setdefault("generation.first_token", marks["generation.tool_result"])
            for emit in self.reply(result, entry.get("said", 0), result.say, marks, final=True):
                yield emit
        entry["assistant"] = f"{entry.get('assistant', '')} {result.say}".strip()
        entry["result"] = result.status
        entry["state"] = DialogueState(**entry["state"]).after_result(result).as_dict()
        self.history[result.session_id] = history

    def on_queue(self, event: QueueEvent) -> None:
        """The bot has the session again after ``release``, ``end`` or ``expire`` of its current hand-off.

        The history gets an entry for it: the agent's note (``note``), or what the caller was
        told when the hand-off expired (``assistant``).  Other events, and events of an earlier
        hand-off, change nothing (a redelivered one neither).
        """
        if event.kind not in ("release", "end", "expire"):
            return
        history: list[dict[str, Any]] = list(self.history[event.session_id])
        expired = event.kind == "expire"
        state = DialogueState.of(history).back_to_bot(event.handoff_turn, offer_callback=expired)
        if state is None:
            return
        entry: dict[str, Any] = {"turn_id": f"{event.kind}-{event.handoff_turn}", "user": "", "assistant": "",
                                 "state": state.as_dict()}
        entry["assistant" if expired else "note"] = event.note
        self.history[event.session_id] = history_window([*history, entry], self.settings.history_turns)

    def reply(self, turn: RetrievalResult | ToolResult, index: int, text: str, marks: dict[str, float],
              final: bool, sources: list[str] | None = None) -> list[Emit]:
        """One reply sentence, to the replies topic and the caller.

        The empty final sentence marks the end of the reply.  ``sources`` are the
        knowledge-base files the reply is grounded on (:attr:`ReplyText.sources`), in the turn's (or
        the tool call's) language.
        """
        now = time.time()
        stamped = {**marks, f"generation.sentence{index}": now}
        if final:
            stamped["generation.end"] = now
        reply = ReplyText(
            session_id=turn.session_id, egress_partition=turn.egress_partition, turn_id=turn.turn_id,
            index=index, text=text, final=final, speak=turn.speak, marks=stamped, sources=list(sources or []),
            language=turn.language,
        )
        return [Emit(REPLIES, reply), Emit(EGRESS, reply)]
