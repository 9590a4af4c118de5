"""Shared fixtures: real recordings, test settings on private ports, loaded models."""

from __future__ import annotations

import os
import re
from pathlib import Path

import jiwer
import numpy as np
import pytest
import soundfile

DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).parent / "artifacts"

# Private ports and data dir, so tests never touch a `voxbus up` running on the defaults.
TEST_ENV = {
    "VOXBUS_KAFKA_BOOTSTRAP": "",
    "VOXBUS_PORT": "18765",
    "VOXBUS_LLM_PORT": "18181",
    "VOXBUS_METRICS_BASE_PORT": "19500",
    "VOXBUS_EMBEDDED_LISTEN": "127.0.0.1:19192",
    "HF_HUB_OFFLINE": "1",
}


def pytest_configure(config: pytest.Config) -> None:
    os.environ.update(TEST_ENV)
    os.environ.pop("VOXBUS_KAFKA_BOOTSTRAP")
    ARTIFACTS.mkdir(exist_ok=True)



DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def normalize(text: str) -> str:
    """Lower-case words, no punctuation, single digits spelled out (Whisper writes "5" for "five")."""
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(DIGITS[int(w)] if w.isdigit() and len(w) == 1 else w for w in words)


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` after :func:`normalize`."""
    return jiwer.wer(normalize(reference), normalize(hypothesis))


def load_clip(name: str) -> tuple[np.ndarray, str]:
    """A test recording as float32 16 kHz mono, with its reference transcript."""
    audio, rate = soundfile.read(DATA / f"{name}.wav", dtype="float32")
    assert rate == 16000
    return audio, (DATA / f"{name}.txt").read_text().strip()


CLIPS = sorted(p.stem for p in DATA.glob("*.wav"))


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory):
    from streams.settings import Settings

    return Settings(data_dir=tmp_path_factory.mktemp("voxbus"))


@pytest.fixture(scope="session")
def recognizer(settings):
    from processors.asr.whisper import Recognizer

    return Recognizer.from_settings(settings)


@pytest.fixture(scope="session")
def embedder(settings):
    from processors.embeddings import Embedder

    return Embedder.from_settings(settings)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the crash tests last: they kill -9 processes of the shared pipeline stack."""
    items.sort(key=lambda item: "test_crash.py" in item.nodeid)
