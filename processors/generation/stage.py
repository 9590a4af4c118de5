"""The generation stage: retrieval results in, reply sentences out, streamed from an LLM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import faust
from openai import AsyncOpenAI

from processors.base import Emit, Stage
from processors.cancel import CancelledTurns
from processors.generation.grounding import CANNED, FALLBACK, direct_answer, relevant, ungrounded
from processors.generation.llm_server import MODEL_ALIAS, embedded_url
from processors.generation.prompt import build_messages
from processors.generation.sentences import SentenceAggregator
from schemas import Record, ReplyText, RetrievalResult, TurnCancel
from streams.topics import EGRESS, REPLIES, RETRIEVALS

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I'm having trouble answering right now. Please try again in a moment."
MAX_SENTENCES = 3
"""A spoken answer is kept to three sentences; the rest of the generation is dropped."""


class GenerationStage(Stage):
    """Stream a reply from an OpenAI-compatible server, one :class:`ReplyText` per sentence.

    Consumes ``voxbus.retrievals``; produces to ``voxbus.replies`` (for tts and
    analytics) and ``voxbus.egress`` (for the caller).  Conversation history per
    session lives in a changelog-backed faust Table, keyed by session id; a turn
    already in the history is not answered twice (idempotent on redelivery).

    It also consumes ``voxbus.control``: a cancelled turn stops streaming at the next
    token, and after a barge-in the history keeps only what the caller heard.
    """

    name = "generation"
    input = RETRIEVALS
    accepts = (RetrievalResult,)
    control = True

    def bind(self, app: faust.App) -> None:
        """Declare the history table (changelog topic ``voxbus-generation-history-changelog``)."""
        self.history = app.Table(
            "history", default=list, partitions=self.settings.partitions,
            schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
        )

    def load(self) -> None:
        """Create the LLM client (the server is started separately)."""
        s = self.settings
        self.client = AsyncOpenAI(base_url=s.llm_url or embedded_url(s), api_key=s.llm_api_key,
                                  timeout=s.llm_timeout_s, max_retries=0)
        self.model = s.llm_model or MODEL_ALIAS
        self.cancelled = CancelledTurns()
        self.heard: dict[tuple[str, str], str] = {}

    async def on_cancel(self, cancel: TurnCancel) -> list[Emit]:
        """Stop a turn; after a barge-in, rewrite its history entry to what the caller heard."""
        key = (cancel.session_id, cancel.turn_id)
        self.cancelled.add(*key)
        if cancel.reason != "barge_in":
            return []
        history = list(self.history[cancel.session_id])
        for past in history:
            if past.get("turn_id") == cancel.turn_id:
                past["assistant"], past["interrupted"] = cancel.heard_text, True
                self.history[cancel.session_id] = history
                return []
        self.heard[key] = cancel.heard_text  # still generating: applied when the turn ends
        return []

    async def stream_sentences(self, messages: list[dict[str, str]], marks: dict[str, float]) -> AsyncIterator[str]:
        """Yield reply sentences as the LLM streams tokens; record time to first token in ``marks``."""
        stream = await self.client.chat.completions.create(
            model=self.model, messages=messages, stream=True,  # type: ignore[arg-type]
            max_tokens=self.settings.llm_max_tokens, temperature=self.settings.llm_temperature,
        )
        aggregator = SentenceAggregator()
        async for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if not delta:
                continue
            marks.setdefault("generation.first_token", time.time())
            for sentence in aggregator.push(delta):
                yield sentence
        rest = aggregator.flush()
        if rest:
            yield rest

    async def answer(self, turn: RetrievalResult, history: list[dict[str, Any]],
                     marks: dict[str, float]) -> AsyncIterator[str]:
        """The reply's sentences: canned, read from a confident article, or checked LLM output.

        See :mod:`processors.generation.grounding`.

        Raises:
            TimeoutError: the LLM took longer than ``llm_timeout_s``.
            openai.OpenAIError: the LLM server failed.
        """
        fixed = CANNED.get(turn.intent) or direct_answer(turn.passages, self.settings.grounding_direct_score)
        if fixed is not None:
            marks["generation.first_token"] = time.time()
            yield fixed
            return
        facts = relevant(turn.passages)
        grounded_turn = turn.model_copy(update={"passages": facts})
        messages = build_messages(grounded_turn, history[-self.settings.history_turns:])
        said = False
        async with asyncio.timeout(self.settings.llm_timeout_s):
            async for sentence in self.stream_sentences(messages, marks):
                if ungrounded(sentence, facts):
                    marks["generation.ungrounded"] = time.time()
                    break
                said = True
                yield sentence
        if not said:
            yield facts[0].text if facts else FALLBACK

    async def handle(self, record: Record) -> AsyncIterator[Emit]:
        """Answer one turn, emitting each sentence as soon as it is complete."""
        assert isinstance(record, RetrievalResult)
        key = (record.session_id, record.turn_id)
        if key in self.cancelled:
            return
        history: list[dict[str, Any]] = list(self.history[record.session_id])
        if any(past.get("turn_id") == record.turn_id for past in history):
            log.info("turn %s/%s already answered; skipping redelivery", record.session_id, record.turn_id)
            return
        marks = {**record.marks, "generation.start": time.time()}
        sentences: list[str] = []
        try:
            async with contextlib.aclosing(self.answer(record, history, marks)) as answer:
                async for sentence in answer:
                    if key in self.cancelled:
                        break
                    sentences.append(sentence)
                    for emit in self.reply(record, len(sentences) - 1, sentence, marks, final=False):
                        yield emit
                    if len(sentences) >= MAX_SENTENCES:
                        break
        except Exception as exc:  # the LLM server is down, slow or broken: say so, never stay silent
            log.warning("LLM failed on %s/%s: %s: %s", record.session_id, record.turn_id, type(exc).__name__, exc)
            marks["generation.error"] = time.time()
            sentences.append(APOLOGY)
            for emit in self.reply(record, len(sentences) - 1, APOLOGY, marks, final=True):
                yield emit
        else:
            if key not in self.cancelled:
                for emit in self.reply(record, len(sentences), "", marks, final=True):
                    yield emit
        if key in self.cancelled and key not in self.heard:
            return  # a backchannel or a hang-up: not part of the conversation
        answer = self.heard.pop(key) if key in self.heard else " ".join(sentences)
        history.append({"turn_id": record.turn_id, "user": record.text, "assistant": answer})
        self.history[record.session_id] = history[-self.settings.history_turns:]

    def reply(self, turn: RetrievalResult, index: int, text: str, marks: dict[str, float],
              final: bool) -> list[Emit]:
        """One reply sentence, to the replies topic and the caller.

        The empty final sentence marks the end of the reply.
        """
        now = time.time()
        stamped = {**marks, f"generation.sentence{index}": now}
        if final:
            stamped["generation.end"] = now
        reply = ReplyText(
            session_id=turn.session_id, egress_partition=turn.egress_partition, turn_id=turn.turn_id,
            index=index, text=text, final=final, speak=turn.speak, marks=stamped,
        )
        return [Emit(REPLIES, reply), Emit(EGRESS, reply)]
