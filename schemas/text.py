"""Text records of a turn: transcript, intent, retrieval, reply."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import DEFAULT_LANGUAGE, Language, Marks, Name, Part, SessionRecord, Text, TurnId

Intent = Literal[
    "billing",
    "refund",
    "order_status",
    "account_access",
    "plan_change",
    "cancel_service",
    "roaming",
    "store_hours",
    "tech_support",
    "book_appointment",
    "human_agent",
    "greeting",
    "goodbye",
    "other",
]
"""The closed set of customer-service intents voxbus classifies."""

Sentiment = Literal["negative", "neutral", "positive"]

MAX_EMBEDDING_BYTES = 4 * 4096
"""Largest :attr:`IntentResult.embedding`: float32 vectors of up to 4096 dimensions."""

MAX_PASSAGES = 20
"""Most passages in a :class:`RetrievalResult`: the retrieval stage keeps ``VOXBUS_RETRIEVAL_TOP_K``
(3 by default); room for an operator's 20."""


class TurnText(SessionRecord):
    """Fields every text record of a turn carries.

    Attributes:
        turn_id: the turn.
        text: the caller's words (transcript or typed text), at most
            :data:`schemas.base.MAX_TEXT_CHARS` characters.
        source: ``voice`` (through vad/asr) or ``text`` (the text channel).
        speak: whether the reply is synthesized (False on the text channel).
        language: the language of ``text`` and of the reply (:data:`schemas.base.Language`): the
            session's, or the one the asr stage detected; a field with a default, so older
            producers' records read as English (the compatibility rule of :mod:`schemas.base`).
        marks: per-stage wall-clock timestamps, see :data:`schemas.base.Marks`.
    """

    turn_id: TurnId
    text: Text
    source: Literal["voice", "text"] = "voice"
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE
    marks: Marks = Field(default_factory=dict)


class Transcript(TurnText):
    """What the recognizer heard.

    Attributes:
        avg_logprob: mean token log-probability from Whisper (nats); 0.0 for text.
        no_speech_prob: Whisper's probability that the segment holds no speech.
        audio_seconds: duration of the recognized utterance (s); 0.0 for text.
    """

    type: Literal["transcript"] = "transcript"
    avg_logprob: float = 0.0
    no_speech_prob: float = Field(default=0.0, ge=0.0, le=1.0)
    audio_seconds: float = Field(default=0.0, ge=0.0)


class IntentResult(TurnText):
    """Intent and sentiment of a transcript.

    Attributes:
        intent: one of :data:`Intent`.
        confidence: classifier confidence in [0, 1].
        sentiment: coarse label from ``sentiment_score``.
        sentiment_score: VADER compound score in [-1, 1].
        embedding: the text's unit-norm sentence embedding as little-endian float32
            bytes (4 x dim), computed once by the intent stage for retrieval to reuse;
            empty on caller-facing copies and when not computed.
        embedding_model: the embedding model's id (its configured path); a stage
            with another model embeds the text itself.
    """

    type: Literal["intent_result"] = "intent_result"
    intent: Intent
    confidence: float = Field(ge=0.0, le=1.0)
    sentiment: Sentiment
    sentiment_score: float = Field(ge=-1.0, le=1.0)
    embedding: bytes = Field(default=b"", max_length=MAX_EMBEDDING_BYTES)
    embedding_model: Name = ""


class Passage(Part):
    """One knowledge-base passage.

    Attributes:
        text: passage text (a line of an article).
        source: file the passage came from (e.g. ``billing.md``).
        title: article title (its ``#`` heading).
        score: cosine similarity to the query in [-1, 1].
    """

    text: Text
    source: Name
    title: Text = ""
    score: float


class RetrievalResult(IntentResult):
    """An intent result with the knowledge-base passages retrieved for it, best first.

    Its ``embedding`` is empty and its ``embedding_model`` names the model whose cosines the
    passages' scores are (their floors differ by model, :mod:`processors.embeddings`); empty
    from a producer older than that: all-MiniLM-L6-v2's.

    Attributes:
        passages: at most :data:`MAX_PASSAGES`.
    """

    type: Literal["retrieval_result"] = "retrieval_result"  # type: ignore[assignment]
    passages: list[Passage] = Field(default_factory=list, max_length=MAX_PASSAGES)


class ReplyText(SessionRecord):
    """One sentence of the assistant's reply, emitted as soon as it is complete.

    Attributes:
        turn_id: the turn this answers.
        index: sentence index within the reply (0-based).
        text: the sentence, at most :data:`schemas.base.MAX_TEXT_CHARS` characters.
        final: True on the last sentence of the reply.
        speak: whether the tts stage should synthesize it.
        language: the sentence's language (the tts stage picks its voice by it).
        marks: per-stage wall-clock timestamps.
        sources: the knowledge-base files (:attr:`Passage.source`, e.g. ``billing.md``) the
            reply is grounded on, best first, at most :data:`MAX_PASSAGES`; empty for a reply
            of no article (canned, redirect, tool result) and in records of older producers.
    """

    type: Literal["reply_text"] = "reply_text"
    turn_id: TurnId
    index: int = Field(ge=0)
    text: Text
    final: bool = False
    speak: bool = True
    language: Language = DEFAULT_LANGUAGE
    marks: Marks = Field(default_factory=dict)
    sources: list[Name] = Field(default_factory=list, max_length=MAX_PASSAGES)
