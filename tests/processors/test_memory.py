"""The heap trim gives freed pages back (real glibc), and the asr stage trims after its decodes."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from processors.asr import stage as asr_module
from processors.memory import _malloc_trim, trim_heap
from schemas import Utterance
from tests.conftest import load_clip
from tests.processors.conftest import asr_stage

BLOCK = 64 * 1024
"""Under glibc's initial mmap threshold (128 KiB): the blocks come from the heap."""


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(_malloc_trim() is None, reason="no glibc malloc_trim here")
def test_freed_heap_pages_go_back_to_the_os_only_when_trimmed():
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(BLOCK) for _ in range(1600)]  # 100 MiB
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    pin = libc.malloc(BLOCK)  # above them: the freed blocks are not the top of the heap
    before = rss_mb()
    for block in blocks:
        libc.free(block)
    kept = rss_mb()
    trim_heap()
    after = rss_mb()
    libc.free(pin)
    assert kept > before - 20  # free() alone keeps them resident
    assert after < kept - 60, (before, kept, after)


async def test_the_asr_stage_trims_after_each_decode_unless_told_not_to(settings, recognizer, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(asr_module, "trim_heap", lambda: calls.append(1) or True)
    audio, _ = load_clip("jfk")
    pcm = (audio * 32767).astype("<i2").tobytes()
    for trim, expected in ((True, 1), (False, 1)):
        stage = asr_stage(settings.model_copy(update={"asr_trim_heap": trim}), recognizer)
        utterance = Utterance(session_id="m", turn_id=f"a0-{int(trim)}", start_sample=0,
                              end_sample=audio.size, pcm=pcm, speech_end_ts=1.0)
        assert [e async for e in stage.handle(utterance)]
        assert len(calls) == expected
