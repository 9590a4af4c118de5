"""Prometheus metrics of the stage workers (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Histogram buckets (s) from a 5 ms broker hop to a 30 s worst-case ASR call."""

RECORDS = Counter(
    "voxbus_stage_records_total", "Records consumed by a stage, by outcome.", ["stage", "outcome"]
)
PROCESSING = Histogram(
    "voxbus_stage_processing_seconds", "Time a stage spends on one record.", ["stage"],
    buckets=LATENCY_BUCKETS,
)
HOP = Histogram(
    "voxbus_stage_hop_seconds",
    "Broker hop: producer timestamp of a record to its consumption by the stage.",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
DEAD_LETTERS = Counter(
    "voxbus_dead_letters_total", "Records sent to the dead-letter topic.", ["stage", "kind"]
)
EMITTED = Counter("voxbus_stage_emitted_total", "Records produced by a stage.", ["stage", "topic"])
READY = Gauge("voxbus_stage_ready", "1 once the stage's models are loaded.", ["stage"])
BATCH_SIZE = Histogram(
    "voxbus_stage_batch_size", "Records processed together by a batching stage.", ["stage"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16),
)
TOOL_CALLS = Counter(
    "voxbus_tool_calls_total", "Tool calls executed by the workflow stage, by tool and status.",
    ["tool", "status"],
)
HANDOFFS = Counter(
    "voxbus_handoffs_total", "Sessions handed to a person, by reason (requested, repeated_failure, "
    "negative_sentiment).", ["reason"]
)
TURN_VERDICTS = Counter(
    "voxbus_vad_turn_verdicts_total", "Pauses judged by the vad stage's end-of-turn model, by verdict "
    "(complete, incomplete).", ["verdict"]
)
ASR_REJECTED = Counter(
    "voxbus_asr_rejected_total", "Utterances the asr stage did not take as a caller's turn, by reason "
    "(no_speech, repetition, failed_decode, hallucination).", ["reason"]
)
