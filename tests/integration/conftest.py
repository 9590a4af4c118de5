"""The whole pipeline as separate processes: embedded broker, LLM server, six stages, ingress."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading

import pytest

RUNNING: dict[str, object] = {}
"""The running Supervisor, for tests that kill and watch processes."""


@pytest.fixture(scope="session")
def stack():
    from streams.settings import get_settings
    from voxbus.supervisor import Supervisor

    # not under pytest's basetemp: a concurrent pytest run prunes old basetemps
    data_dir = tempfile.mkdtemp(prefix="voxbus-stack-")
    os.environ["VOXBUS_DATA_DIR"] = data_dir
    get_settings.cache_clear()
    settings = get_settings()
    supervisor = Supervisor(settings)
    stop = threading.Event()
    watcher = threading.Thread(target=supervisor.watch, args=(stop,), daemon=True)
    try:
        supervisor.start()
        watcher.start()  # restarts killed stages, as `voxbus up` does
        RUNNING["supervisor"] = supervisor
        yield settings
    finally:
        stop.set()
        supervisor.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def supervisor(stack):
    return RUNNING["supervisor"]


@pytest.fixture(scope="session")
def url(stack) -> str:
    return f"ws://{stack.host}:{stack.port}/v1/stream"
