"""Prometheus metrics of the ingress."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from processors.metrics import LATENCY_BUCKETS

ACTIVE_SESSIONS = Gauge("voxbus_active_sessions", "Caller sessions open on this ingress.")
TURNS = Counter("voxbus_turns_total", "Completed turns.", ["source"])
VOICE_TO_VOICE = Histogram(
    "voxbus_voice_to_voice_seconds", "End of caller speech to first reply audio byte sent.",
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "voxbus_turn_stage_seconds", "Per-stage latency of completed turns.", ["span"], buckets=LATENCY_BUCKETS
)
REJECTIONS = Counter("voxbus_ingress_rejections_total", "Rejected frames or sessions.", ["code"])
BARGE_INS = Counter("voxbus_barge_ins_total", "Replies cut short by the caller speaking.")
DTMF = Counter("voxbus_dtmf_total", "DTMF digits received from telephony callers.")
BUFFERED = Gauge("voxbus_ingress_buffered_bytes", "Caller audio not yet acknowledged by the broker.")
SHED = Counter("voxbus_ingress_shed_bytes_total", "Caller audio dropped: a buffer was full.", ["bound"])
LOST = Counter("voxbus_ingress_produce_failures_total", "Records the broker did not acknowledge.", ["type"])
DUPLICATES = Counter("voxbus_ingress_duplicate_events_total", "Events of turns already finished, dropped.")
UNROUTED = Counter("voxbus_ingress_unrouted_events_total", "Events of sessions not connected here, dropped.")
EGRESS_DROPPED = Counter("voxbus_ingress_egress_dropped_total",
                         "Events of callers who could not keep up (mailbox full: closed with 4420), dropped.")
TURN_TIMEOUTS = Counter("voxbus_ingress_turn_timeouts_total", "Voice turns ended unanswered (turn_timeout).")
ADMISSION_REFUSED = Counter("voxbus_ingress_admission_refused_total",
                            "New sessions refused for capacity (ingress/admission.py).", ["reason"])
PIPELINE_LAG = Gauge("voxbus_ingress_pipeline_lag_records",
                     "Records a stage's consumer group has not processed (VOXBUS_ADMISSION_MAX_LAG on).",
                     ["group"])
