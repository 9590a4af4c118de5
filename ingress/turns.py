"""Per-turn bookkeeping at the ingress: what the caller got, and the turn record for analytics."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from ingress.playback import Playback
from schemas import ErrorEvent, IntentResult, ReplyText, SynthAudio, Transcript, TurnRecord, VadEvent

STAGE_SPANS: dict[str, tuple[str, str]] = {
    "endpointing": ("vad.speech_end", "vad.emit"),
    "asr_wait": ("vad.emit", "asr.start"),
    "asr": ("asr.start", "asr.end"),
    "intent": ("asr.end", "intent.end"),
    "retrieval": ("intent.end", "retrieval.end"),
    "llm_ttft": ("generation.start", "generation.first_token"),
    "first_sentence": ("retrieval.end", "generation.sentence0"),
    "tts_first_sentence": ("generation.sentence0", "tts.sentence0"),
    "egress": ("tts.sentence0", "ingress.first_audio"),
    "voice_to_voice": ("vad.speech_end", "ingress.first_audio"),
    "barge_in_stop": ("barge_in.onset", "ingress.playback_stop"),
    "text_to_first_sentence": ("ingress.text", "ingress.first_reply_text"),
}
"""Latency name -> (start mark, end mark); a latency is reported when both marks exist.

``voice_to_voice`` is the end of caller speech (as placed by the VAD) to the first
byte of reply audio sent to the caller; it includes the endpointing silence.
"""


def stage_latencies(marks: dict[str, float]) -> dict[str, float]:
    """Per-stage latencies in ms, from the marks (epoch s) of one turn."""
    return {
        name: round((marks[end] - marks[start]) * 1000.0, 1)
        for name, (start, end) in STAGE_SPANS.items()
        if start in marks and end in marks
    }


@dataclass
class Turn:
    """What the ingress has seen of one turn."""

    turn_id: str
    source: str = "voice"
    transcript: str = ""
    intent: str = ""
    confidence: float = 0.0
    sentiment: str = "neutral"
    sentiment_score: float = 0.0
    sentences: dict[int, str] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    text_done: bool = False
    audio_done: bool = False
    speak: bool = True
    failed: bool = False
    dropped: bool = False
    heard_nothing: bool = False
    paused_by: str = ""
    interrupted: bool = False
    heard_text: str = ""
    playback: Playback = field(default_factory=Playback)
    delivered: set[tuple[str, int, int]] = field(default_factory=set)
    reply_reported: bool = False

    def reply_began(self) -> bool:
        """True once, when the reply to this caller turn first reached the caller.

        Reached means audio sent for a spoken turn, a sentence sent for a text-only one.
        The ingress then tells the vad stage (``SessionControl(action="replied")``): from
        there on, the caller's speech is an answer to the reply, not a continuation of the
        turn (:mod:`processors.vad.continuation`).  Agent and text turns never report.
        """
        if self.reply_reported or self.source != "voice" or not self.transcript:
            return False
        self.reply_reported = self.playback.sent > 0 if self.speak else bool(self.sentences)
        return self.reply_reported

    def repeats(self, event: ReplyText | SynthAudio) -> bool:
        """True if this reply sentence or audio chunk was delivered already (a stage's redelivery).

        Remembers ``event`` otherwise: keyed by record type, sentence ``index`` and chunk ``seq``.
        """
        key = (event.type, event.index, getattr(event, "seq", 0))
        if key in self.delivered:
            return True
        self.delivered.add(key)
        return False

    def absorb(self, event: VadEvent | Transcript | IntentResult | ReplyText | SynthAudio | ErrorEvent,
               ) -> None:
        """Merge one caller-facing event into the turn."""
        marks = getattr(event, "marks", None)
        if marks:
            self.marks.update(marks)
        if isinstance(event, VadEvent):
            self.marks[f"vad.{event.kind}"] = event.ts
            self.dropped = event.kind == "speech_end" and not event.utterance
        elif isinstance(event, Transcript):
            self.transcript, self.source, self.speak = event.text, event.source, event.speak
            self.heard_nothing = not event.text
        elif isinstance(event, IntentResult):
            self.intent, self.confidence = event.intent, event.confidence
            self.sentiment, self.sentiment_score = event.sentiment, event.sentiment_score
        elif isinstance(event, ReplyText):
            if not self.transcript:  # a reply to no caller words: an agent's (ingress.agents)
                self.speak = event.speak
            self.marks.setdefault("ingress.first_reply_text", time.time())
            if event.text:
                self.sentences[event.index] = event.text
            self.text_done = self.text_done or event.final
        elif isinstance(event, SynthAudio):
            if event.pcm:
                self.marks.setdefault("ingress.first_audio", time.time())
            self.audio_done = self.audio_done or event.final
        elif isinstance(event, ErrorEvent):
            self.failed = True

    @property
    def reply_text(self) -> str:
        """The reply sentences received so far, in order."""
        return " ".join(self.sentences[i] for i in sorted(self.sentences))

    @property
    def complete(self) -> bool:
        """True once the reply text (and, for spoken turns, its audio) has been delivered."""
        if self.failed or self.dropped:
            return True
        if self.heard_nothing:
            return True  # the asr stage rejected the utterance (no speech, noise): nothing to answer
        return self.text_done and (self.audio_done or not self.speak)

    def record(self, session_id: str, egress_partition: int) -> TurnRecord:
        """The analytics record of this (complete) turn."""
        latencies = stage_latencies(self.marks)
        return TurnRecord(
            session_id=session_id, egress_partition=egress_partition, turn_id=self.turn_id,
            source="text" if self.source == "text" else "voice", transcript=self.transcript,
            intent=self.intent, confidence=self.confidence, sentiment=self.sentiment,
            sentiment_score=self.sentiment_score, reply_text=self.reply_text,
            marks=self.marks, latency_ms=latencies, voice_to_voice_ms=latencies.get("voice_to_voice"),
            interrupted=self.interrupted, heard_text=self.heard_text, ts=time.time(),
        )


class FinishedTurns:
    """Turns the ingress has finished, per session: a later event of one is a duplicate.

    An at-least-once stage that crashed after producing may produce a turn's events
    again; once the turn has ended for the caller they are dropped.  Kept per ingress
    process (across reconnections of a session), bounded: the last ``per_session``
    turns of the last ``sessions`` sessions seen.

    Args:
        sessions: most sessions remembered (least recently finished forgotten first).
        per_session: most turn ids remembered per session.
    """

    def __init__(self, sessions: int = 4096, per_session: int = 64) -> None:
        self.sessions = sessions
        self.per_session = per_session
        self.turns: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()

    def add(self, session_id: str, turn_id: str) -> None:
        """Remember that ``turn_id`` of ``session_id`` has ended."""
        turns = self.turns.pop(session_id, None) or OrderedDict()
        turns[turn_id] = None
        while len(turns) > self.per_session:
            turns.popitem(last=False)
        self.turns[session_id] = turns
        while len(self.turns) > self.sessions:
            self.turns.popitem(last=False)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """``(session_id, turn_id) in finished``."""
        session_id, turn_id = key
        return turn_id in self.turns.get(session_id, ())
