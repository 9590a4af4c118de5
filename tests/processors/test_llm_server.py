"""processors/generation/llm_server: which GGUF the embedded server runs."""

from __future__ import annotations

import pytest

from processors.generation.llm_server import embedded_model, server_command
from streams.settings import Settings


def test_a_configured_gguf_is_the_model_the_server_runs(tmp_path):
    gguf = tmp_path / "other-model.gguf"
    gguf.write_bytes(b"GGUF")
    settings = Settings(data_dir=tmp_path, llm_gguf=gguf)
    assert embedded_model(settings) == gguf
    command = server_command(settings, embedded_model(settings))
    assert command[command.index("--model") + 1] == str(gguf)


def test_a_configured_gguf_that_is_missing_is_a_clear_error(tmp_path):
    settings = Settings(data_dir=tmp_path, llm_gguf=tmp_path / "missing.gguf")
    with pytest.raises(FileNotFoundError, match="VOXBUS_LLM_GGUF"):
        embedded_model(settings)
