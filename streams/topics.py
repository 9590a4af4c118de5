"""Every topic of voxbus, declared once.

Pipeline topics are keyed by session id, so all records of a session land in one
partition and stay ordered; their partition count bounds the replicas of the stage
that consumes them.  ``voxbus.egress`` is the exception: its records are produced to
an explicit partition, the one read by the ingress replica that holds the caller's
socket (see :mod:`ingress.egress`).
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.settings import Settings, get_settings


@dataclass(frozen=True)
class TopicSpec:
    """A topic declaration.

    Attributes:
        name: Kafka topic name.
        records: names of the :mod:`schemas` record types it carries.
        partitions_from: the :class:`Settings` field giving its partition count, or a
            fixed count.
        retention_ms: retention (ms); -1 keeps forever.
        doc: what the topic is for.
        cleanup_policy: Kafka's ``cleanup.policy``: ``delete`` (by age), or ``compact`` (the last
            record per key is kept; records must have a key).
    """

    name: str
    records: tuple[str, ...]
    partitions_from: str | int
    retention_ms: int
    doc: str
    cleanup_policy: str = "delete"

    def partitions(self, settings: Settings | None = None) -> int:
        """Partition count under ``settings`` (default: this process's)."""
        if isinstance(self.partitions_from, int):
            return self.partitions_from
        return int(getattr(settings or get_settings(), self.partitions_from))


HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

AUDIO = TopicSpec("voxbus.audio", ("audio_chunk", "session_control"), "partitions", HOUR_MS,
                  "Caller audio chunks and session start/end, ordered per session.")
UTTERANCES = TopicSpec("voxbus.utterances", ("utterance",), "partitions", DAY_MS,
                       "Speech segments after VAD endpointing.")
TRANSCRIPTS = TopicSpec("voxbus.transcripts", ("transcript",), "partitions", 7 * DAY_MS,
                        "ASR transcripts and text-channel input.")
INTENTS = TopicSpec("voxbus.intents", ("intent_result",), "partitions", 7 * DAY_MS,
                    "Intent and sentiment per turn.")
RETRIEVALS = TopicSpec("voxbus.retrievals", ("retrieval_result",), "partitions", 7 * DAY_MS,
                       "Knowledge-base passages per turn.")
REPLIES = TopicSpec("voxbus.replies", ("reply_text",), "partitions", 7 * DAY_MS,
                    "Reply sentences, emitted as generated.")
CONTROL = TopicSpec("voxbus.control", ("turn_cancel",), "partitions", DAY_MS,
                    "Turn cancellations (barge-in, backchannel, hang-up), read by the stages that drop work.")
EGRESS = TopicSpec("voxbus.egress",
                   ("vad_event", "transcript", "intent_result", "reply_text", "synth_audio", "error_event",
                    "agent_audio"),
                   "egress_partitions", HOUR_MS,
                   "Caller-facing events (an agent's voice too); partition = the ingress replica holding "
                   "the socket.")
TURNS = TopicSpec("voxbus.turns", ("turn_record",), "partitions", 30 * DAY_MS,
                  "One analytics record per completed turn.")
DEAD_LETTER = TopicSpec("voxbus.dead-letter", ("dead_letter",), "partitions", 30 * DAY_MS,
                        "Records a stage could not process, with the reason.")
HEARTBEATS = TopicSpec("voxbus.heartbeats", ("stage_heartbeat", "live_turns"), 1, HOUR_MS,
                       "Stage liveness, read by every ingress for /healthz; each ingress's live turns in "
                       "flight, read by every ingress's yielding recorded calls (ingress/live_turns.py).")

# -- tools and hand-off (processors/workflow, the agent console): keyed by session id
TOOL_CALLS = TopicSpec("voxbus.tool-calls", ("tool_call",), "partitions", 30 * DAY_MS,
                       "Tool calls of the agent loop (generation), run by the workflow stage (audit log).")
TOOL_RESULTS = TopicSpec("voxbus.tool-results", ("tool_result",), "partitions", 30 * DAY_MS,
                         "Tool outcomes (done, need_info, failed) and what to say, back to generation.")
BOOKINGS = TopicSpec("voxbus.bookings", ("booking",), "partitions", 30 * DAY_MS,
                     "Booked appointments, as stored by the workflow stage.")
SESSIONS = TopicSpec("voxbus.sessions", ("session_owner",), "partitions", DAY_MS,
                     "Session id -> owning principal, written at admission, read back by every ingress at "
                     "startup (retention must exceed VOXBUS_MAX_SESSION_S + VOXBUS_SESSION_BINDING_TTL_S).")
HANDOFFS = TopicSpec("voxbus.handoffs", ("handoff", "handoff_update", "session_caller"), "partitions",
                     7 * DAY_MS,
                     "Sessions handed to a person (with a summary), their later caller turns and agent "
                     "replies, and the caller ids sessions start with; read by the agent console.")
AGENT_QUEUE = TopicSpec("voxbus.agent-queue", ("queue_event",), "partitions", 7 * DAY_MS,
                        "What happens to handed-off sessions (claim, release, transfer, SLA expiry, end), "
                        "keyed by session id: the first claim in log order wins; read by every ingress "
                        "and by the generation stage (the bot is back).")

SUGGESTIONS = TopicSpec("voxbus.suggestions", ("suggestion",), "partitions", 7 * DAY_MS,
                        "Agent assist: a suggested reply, with the passages and sources it rests on, for "
                        "each caller turn of a handed-off session (the suggest stage); read by every "
                        "ingress.")

TICKETS = TopicSpec("voxbus.tickets", ("ticket",), "partitions", -1,
                    "Wrap-up tickets of agent calls, keyed and compacted by ticket id (the last version "
                    "is the ticket); read from the beginning by every ingress.", "compact")

# -- analytics (processors/analytics): windowed upsert streams, key "<window_start>/<dimension>";
# consumers keep the last record per key. One partition each: a few records per turn, in order.
ANALYTICS_WINDOWS = TopicSpec("voxbus.analytics.turn-windows", ("turn_record", "desk_fact"), "partitions",
                              DAY_MS, "Turn records and the agent desk's outcomes re-keyed by their 1-minute "
                              "window, so one window is folded by one analytics worker (the faust tables' "
                              "partitioning).")
ANALYTICS_TURNS = TopicSpec("voxbus.analytics.turns-per-minute", ("analytics_turns",), 1, 30 * DAY_MS,
                            "Turns and sessions per 1-minute window (upserts).")
ANALYTICS_INTENTS = TopicSpec("voxbus.analytics.intents", ("analytics_intent",), 1, 30 * DAY_MS,
                              "Turns per intent per 1-minute window (upserts).")
ANALYTICS_SENTIMENT = TopicSpec("voxbus.analytics.sentiment", ("analytics_sentiment",), 1, 30 * DAY_MS,
                                "Turns per sentiment label per 1-minute window (upserts).")
ANALYTICS_ESCALATIONS = TopicSpec("voxbus.analytics.escalations", ("analytics_escalations",), 1, 30 * DAY_MS,
                                  "Escalation requests (human_agent or sentiment <= -0.5) per 1-minute "
                                  "window (upserts).")
ANALYTICS_LATENCY = TopicSpec("voxbus.analytics.latency", ("analytics_latency",), 1, 30 * DAY_MS,
                              "p50/p95/p99 of each latency span per 1-minute window (upserts).")
ANALYTICS_AGENTS = TopicSpec("voxbus.analytics.agents", ("analytics_agent",), 1, 30 * DAY_MS,
                             "Per agent and for the team, per 1-minute window: calls taken and handled, "
                             "handle time, queue wait p50/p95, SLA breaches, callers who hung up waiting "
                             "(upserts).")
ANALYTICS_TOPICS: tuple[TopicSpec, ...] = (
    ANALYTICS_TURNS, ANALYTICS_INTENTS, ANALYTICS_SENTIMENT, ANALYTICS_ESCALATIONS, ANALYTICS_LATENCY,
    ANALYTICS_AGENTS,
)
"""The analytics output topics (what the analytics page and analysts read)."""

ALL_TOPICS: tuple[TopicSpec, ...] = (
    AUDIO, UTTERANCES, TRANSCRIPTS, INTENTS, RETRIEVALS, REPLIES, CONTROL, EGRESS,
    TURNS, DEAD_LETTER, HEARTBEATS,
    ANALYTICS_WINDOWS, *ANALYTICS_TOPICS,
    TOOL_CALLS, TOOL_RESULTS, BOOKINGS, HANDOFFS, SESSIONS, AGENT_QUEUE,
    TICKETS, SUGGESTIONS,
)
