"""The whole pipeline as separate processes: embedded broker, LLM server, six stages, ingress."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    from streams.settings import Settings, get_settings
    from voxbus.supervisor import Supervisor

    os.environ["VOXBUS_DATA_DIR"] = str(tmp_path_factory.mktemp("stack"))
    # tests/data has no real "mm-hm"; a real "five five" (heard as "5 5") stands in for one
    os.environ["VOXBUS_BACKCHANNELS"] = Settings().backchannels + ",5 5"
    get_settings.cache_clear()
    settings = get_settings()
    supervisor = Supervisor(settings)
    try:
        supervisor.start()
        yield settings
    finally:
        supervisor.stop()


@pytest.fixture(scope="session")
def url(stack) -> str:
    return f"ws://{stack.host}:{stack.port}/v1/stream"
