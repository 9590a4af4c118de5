"""What an LLM server evaluated per request, from llama-server's own log: prompt and generated tokens.

The embedded server runs with ``--log-disable`` (:func:`processors.generation.llm_server.server_command`).
For a measurement, ``benchmarks/llama_server_logged.sh`` is a ``VOXBUS_LLM_SERVER_BIN`` that runs the
same server with its log on and timestamps; a benchmark then leaves the log in its stack's
``logs/llm.log`` (``benchmarks/latency.py --work-dir DIR``: ``DIR/voxbus-N/logs``, ``DIR/pipecat/logs``).
llama-server prints two ``print_timing`` lines per finished request::

    slot print_timing: id  6 | task 20 | prompt eval time =      50.33 ms /    14 tokens (...)
    slot print_timing: id  6 | task 20 |        eval time =     107.24 ms /     8 tokens (...)

The prompt tokens are those the server had to evaluate (the prefix its cache kept is not counted),
which is how the sliding history window was found (README, "The prompt cache").

Usage::

    VOXBUS_LLM_SERVER_BIN=benchmarks/llama_server_logged.sh python -m benchmarks.latency \\
        --callers 1 --min-turns 12 --idle 0 --tag llmlog --work-dir /tmp/bw
    python -m benchmarks.llm_requests /tmp/bw/voxbus-1/logs/llm.log /tmp/bw/pipecat/logs/llm.log
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

TIMING = re.compile(r"task (?P<task>-?\d+) \|\s+(?P<kind>prompt eval|eval) time =\s*(?P<ms>[\d.]+) ms /\s*"
                    r"(?P<tokens>\d+) tokens")
"""One ``print_timing`` line of llama-server (``tools/server/server-context.cpp`` of the llama.cpp that
llama-cpp-python 0.3.36 vendors, which ``make llama-server`` builds)."""


def requests(log: str) -> list[dict[str, Any]]:
    """The finished requests of a llama-server log, in the order they finished.

    Returns:
        One dict per request: ``task`` (the server's task id), ``prompt_tokens`` and ``prompt_ms``
        (evaluated, not taken from the cache), ``generated_tokens`` and ``generated_ms``.
    """
    done: dict[int, dict[str, Any]] = {}
    for match in TIMING.finditer(log):
        entry = done.setdefault(int(match["task"]), {"task": int(match["task"])})
        prefix = "prompt" if match["kind"] == "prompt eval" else "generated"
        entry[f"{prefix}_tokens"], entry[f"{prefix}_ms"] = int(match["tokens"]), float(match["ms"])
    return list(done.values())


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over ``rows`` (:func:`requests`), and the prompt tokens of each request."""
    return {
        "requests": len(rows),
        "prompt_tokens": sum(r.get("prompt_tokens", 0) for r in rows),
        "prompt_ms": round(sum(r.get("prompt_ms", 0.0) for r in rows), 1),
        "generated_tokens": sum(r.get("generated_tokens", 0) for r in rows),
        "generated_ms": round(sum(r.get("generated_ms", 0.0) for r in rows), 1),
        "prompt_tokens_by_request": [r.get("prompt_tokens", 0) for r in rows],
    }


def main(argv: list[str] | None = None) -> None:
    """Print the totals of each log given, as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="llama-server logs (llm.log)")
    args = parser.parse_args(argv)
    print(json.dumps({str(p): totals(requests(p.read_text(errors="replace"))) for p in args.logs}, indent=1))


if __name__ == "__main__":
    main()
