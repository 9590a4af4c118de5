"""Turn-taking benchmark: one answer per thought, not per pause; no answers to noise (issue 14).

Real recordings are joined into *thoughts*, each what one caller says before waiting for
the answer, with real-room-tone pauses drawn uniformly from 0.2-1.5 s (seeded):

* ``split``: a LibriVox sentence of ``tests/data`` cut at one or two word boundaries (the
  pocketsphinx forced alignments in ``tests/data/alignments``), a pause in each cut, as a
  caller who hesitates mid-sentence;
* ``joined``: two consecutive LibriVox sentences, a pause between them;
* ``single``: each referenced clip of ``tests/data`` alone (a complete sentence);
* ``prompts`` (with ``--prompts DIR``): two Asterisk prompts (Allison Smith, Debian
  ``asterisk-core-sounds-en-wav``, 8 kHz resampled) joined by a pause; no reference text.

Each thought runs through the vad stage (its real silero-vad and, when on, Smart Turn
v3.2) chunk by chunk (64 ms) in audio time, then 4 s of silence; the reply is taken to
reach the caller ``--reply-after-ms`` after each turn's end (the ingress's
``SessionControl(action="replied")``, which closes the continuation window).  Every
answered utterance is decoded by the asr stage's Whisper with its noise rejection, and the
whole thought once more offline (one decode of all its audio).  Per configuration
(silence-only or Smart Turn endpointing, continuations on or off):

* **false endpoints**: thoughts in which a turn ended before their last piece began;
* **split answers**: thoughts answered more than once (an answer per pause);
* **answers per thought** (mean);
* **endpoint delay**: end of the thought's speech (the VAD's, no padding) to the end of
  the turn that answers it, audio ms, p50/p95 (voice-to-voice moves by the same amount:
  the rest of the pipeline does not depend on the endpointer);
* **WER**: pipeline (the answered utterances' transcripts, joined) and offline Whisper on
  the referenced thoughts; and the pipeline's WER against the offline transcript on all;
* **answers to noise**: answered utterances on the real non-speech of ``tests/data/nonspeech``
  and, with ``--moh DIR``, ``--moh-s`` seconds of each Debian ``asterisk-moh-opsound-wav`` track.

Writes ``benchmarks/results/turns.json`` and ``turns.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import soxr

from benchmarks.eval import wer
from benchmarks.report import percentiles
from processors.asr.whisper import Recognizer
from processors.vad.stage import VadStage
from schemas import AudioChunk, Record, SessionControl, TurnCancel, Utterance
from streams.settings import Settings

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data"
RESULTS = Path(__file__).parent / "results"
RATE = 16_000
CHUNK = 1024
"""Samples per bus chunk: the ingress's default ``VOXBUS_CHUNK_MS`` (64 ms)."""
WAIT_S = 4.0
"""Silence after each thought (s): longer than ``VOXBUS_VAD_MAX_SILENCE_MS`` (3 s), so every turn ends."""
PAUSE_S = (0.2, 1.5)
"""Range of the pauses put inside a thought (s), the issue's."""
REPLY_AFTER_MS = 1000.0
"""Default end of turn to first reply audio at the caller (ms): the one-caller voice-to-voice p50
of ``benchmarks/results/latency.json`` (1450 ms) less its 400 ms silence endpointing, rounded."""
LIBRIVOX = [f"sense_and_sensibility_01_austen_64kb-0{n}" for n in (870, 880, 890, 920, 930)]
"""The referenced LibriVox sentences of ``tests/data``, in book order (0880 and 0890 are one sentence)."""
CONFIGS: dict[str, dict[str, Any]] = {
    "silence": {"vad_turn_model": "off", "vad_continuation_ms": 0},
    "silence+continuation": {"vad_turn_model": "off"},
    "smart-turn": {"vad_turn_model": "smart-turn", "vad_continuation_ms": 0},
    "smart-turn+continuation": {"vad_turn_model": "smart-turn"},
}
"""Settings of each configuration over the defaults (continuations: ``VOXBUS_VAD_CONTINUATION_MS``)."""


@dataclass(frozen=True)
class Thought:
    """What one caller says before waiting for the answer.

    Attributes:
        name: kind and sources.
        audio: float32 16 kHz mono, the thought then :data:`WAIT_S` of silence.
        last_piece: first sample of the thought's last piece (a turn ending before it cut the thought).
        pauses_s: the pauses put inside it (s).
        reference: what was said ('' when unknown).
    """

    name: str
    audio: np.ndarray
    last_piece: int
    pauses_s: tuple[float, ...] = ()
    reference: str = ""


def load(path: Path) -> np.ndarray:
    """A mono recording as float32 at 16 kHz (resampled with soxr if needed)."""
    audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    return audio if rate == RATE else soxr.resample(audio, rate, RATE).astype(np.float32)


def room_tone(audio: np.ndarray, seconds: float) -> np.ndarray:
    """``seconds`` of the recording's own background: its first 150 ms (before speech), tiled."""
    return np.resize(audio[: int(0.15 * RATE)], int(seconds * RATE)).astype(np.float32)


def join(name: str, pieces: list[np.ndarray], rng: np.random.Generator, reference: str) -> Thought:
    """``pieces`` with a drawn pause of the first piece's room tone between each two, then the wait."""
    parts, pauses = [pieces[0]], []
    for piece in pieces[1:]:
        pauses.append(round(float(rng.uniform(*PAUSE_S)), 2))
        parts += [room_tone(pieces[0], pauses[-1]), piece]
    last_piece = sum(p.size for p in parts[:-1])
    audio = np.concatenate([*parts, np.zeros(int(WAIT_S * RATE), dtype=np.float32)])
    return Thought(name, audio, last_piece, tuple(pauses), reference)


def word_cuts(name: str) -> list[int]:
    """Samples between two words of a LibriVox clip (the pocketsphinx alignment), not next to its ends."""
    aligned = json.loads((DATA / "alignments" / f"{name}.json").read_text())["w"]
    words = [w for w in aligned if w["t"] != "<sil>"]
    return [int((a["b"] + a["d"] + b["b"]) / 2 * RATE) for a, b in zip(words[1:-2], words[2:-1], strict=True)]


def thoughts(rng: np.random.Generator, prompts: Path | None, prompt_pairs: int) -> list[Thought]:
    """Every thought of the benchmark (see the module docstring), in a fixed order for ``rng``."""
    text = {n: (DATA / f"{n}.txt").read_text().strip() for n in LIBRIVOX}
    audio = {n: load(DATA / f"{n}.wav") for n in LIBRIVOX}
    out = [join(f"single:{p.stem}", [load(p)], rng, (DATA / f"{p.stem}.txt").read_text().strip())
           for p in sorted(DATA.glob("*.wav"))]
    for name in LIBRIVOX:
        cuts = word_cuts(name)
        for count in (1, 2):
            at = sorted(rng.choice(cuts, size=min(count, len(cuts)), replace=False))
            pieces = np.split(audio[name], at)
            out.append(join(f"split{count}:{name[-4:]}", pieces, rng, text[name]))
    for first, second in zip(LIBRIVOX, LIBRIVOX[1:], strict=False):
        out.append(join(f"joined:{first[-4:]}+{second[-4:]}", [audio[first], audio[second]], rng,
                        f"{text[first]} {text[second]}"))
    if prompts is not None:
        files = sorted(p for p in prompts.glob("*.wav") if 1.5 <= soundfile.info(p).duration <= 5.0)
        picked = [files[int(i)] for i in rng.choice(len(files), size=2 * prompt_pairs, replace=False)]
        for a, b in zip(picked[::2], picked[1::2], strict=True):
            out.append(join(f"prompts:{a.stem}+{b.stem}", [load(a), load(b)], rng, ""))
    return out


@dataclass
class Endpointed:
    """What the vad stage made of one recording.

    Attributes:
        turns: confirmed utterances with the sample position whose chunk emitted each.
        cancelled: turn ids cancelled as continued.
    """

    turns: list[tuple[Utterance, int]] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)

    def answered(self) -> list[tuple[Utterance, int]]:
        """The turns the pipeline answers: every confirmed one but those continued."""
        return [(u, at) for u, at in self.turns if u.turn_id not in self.cancelled]


async def endpoint(stage: VadStage, session_id: str, audio: np.ndarray, reply_after_ms: float) -> Endpointed:
    """Stream ``audio`` through ``stage`` in 64 ms chunks; each turn's reply reaches the caller
    ``reply_after_ms`` after its end unless continued (a ``replied`` record at that point)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    found = Endpointed()
    replies: dict[str, int] = {}  # turn id -> sample at which its reply reaches the caller
    for seq, start in enumerate(range(0, pcm.size, CHUNK)):
        records: list[Record] = [SessionControl(session_id=session_id, action="replied", turn_id=t, ts=0.0)
                                 for t, at in replies.items() if at <= start]
        for record in records:
            replies.pop(record.turn_id)  # type: ignore[attr-defined]
        records.append(AudioChunk(session_id=session_id, seq=seq, start_sample=start,
                                  pcm=pcm[start:start + CHUNK].tobytes(), recv_ts=1000.0 + start / RATE))
        end = min(start + CHUNK, pcm.size)
        async for emit in stage.handle_batch(records):
            record = emit.record
            if isinstance(record, Utterance) and not record.speculative:
                found.turns.append((record, end))
                replies[record.turn_id] = end + int(reply_after_ms * RATE / 1000)
            elif isinstance(record, TurnCancel):
                found.cancelled.add(record.turn_id)
                replies.pop(record.turn_id, None)
    async for _ in stage.handle_batch([SessionControl(session_id=session_id, action="end", ts=0.0)]):
        pass  # the caller waited: nothing is left to end
    return found


class Decoder:
    """The asr stage's recognizer, each distinct utterance decoded once across configurations."""

    def __init__(self) -> None:
        self.recognizer = Recognizer.from_settings(Settings())
        self.cache: dict[str, tuple[str, str]] = {}

    def __call__(self, audio: np.ndarray) -> tuple[str, str]:
        """(text, rejection reason) of float32 16 kHz ``audio``."""
        key = hashlib.sha1(audio.tobytes()).hexdigest()
        if key not in self.cache:
            result = self.recognizer.transcribe(audio)
            self.cache[key] = (result.text, result.rejected)
        return self.cache[key]


def floats(utterance: Utterance) -> np.ndarray:
    """An utterance's audio as float32."""
    return np.frombuffer(utterance.pcm, dtype="<i2").astype(np.float32) / 32768.0


def measure(config: str, stage: VadStage, items: list[Thought], noise: dict[str, np.ndarray],
            decode: Decoder, offline: dict[str, str], reply_after_ms: float) -> dict[str, Any]:
    """All figures of one configuration (see the module docstring)."""
    pad = stage.config.samples(stage.config.speech_pad_ms)
    rows = []
    session = config.replace("+", ".")
    for i, thought in enumerate(items):
        found = asyncio.run(endpoint(stage, f"{session}-{i}", thought.audio, reply_after_ms))
        texts = [decode(floats(u))[0] for u, _ in found.answered()]
        answers = [t for t in texts if t]
        last, at = found.turns[-1] if found.turns else (None, 0)
        rows.append({
            "name": thought.name, "pauses_s": list(thought.pauses_s), "answers": len(answers),
            "false_endpoint": any(at_ < thought.last_piece for _, at_ in found.turns),
            "endpoint_delay_ms": round((at - (last.end_sample - pad)) * 1000 / RATE, 1) if last else None,
            "transcript": " ".join(answers), "reference": thought.reference,
        })
    referenced = [r for r in rows if r["reference"]]
    noise_rows = {}
    for i, (name, audio) in enumerate(noise.items()):
        found = asyncio.run(endpoint(stage, f"{session}-noise-{i}", audio, reply_after_ms))
        decoded = [decode(floats(u)) for u, _ in found.answered()]
        noise_rows[name] = {"seconds": round(audio.size / RATE, 1), "utterances": len(decoded),
                            "answers": [t for t, _ in decoded if t],
                            "rejected": sorted(reason for t, reason in decoded if not t)}
    n = len(rows)
    return {
        "thoughts": n,
        "false_endpoints": round(sum(r["false_endpoint"] for r in rows) / n, 3),
        "split_answers": round(sum(r["answers"] > 1 for r in rows) / n, 3),
        "unanswered": round(sum(r["answers"] == 0 for r in rows) / n, 3),
        "answers_per_thought": round(sum(r["answers"] for r in rows) / n, 3),
        "endpoint_delay_ms": percentiles(r["endpoint_delay_ms"] for r in rows),
        "endpoint_delay_ms_single_sentences": percentiles(
            r["endpoint_delay_ms"] for r in rows if r["name"].startswith("single:")),
        "wer_pipeline": wer([r["reference"] for r in referenced], [r["transcript"] for r in referenced]),
        "wer_offline": wer([r["reference"] for r in referenced], [offline[r["name"]] for r in referenced]),
        "wer_pipeline_vs_offline": wer([offline[r["name"]] or "<empty>" for r in rows],
                                       [r["transcript"] for r in rows]),
        "noise_seconds": round(sum(v["seconds"] for v in noise_rows.values()), 1),
        "noise_answers": sum(len(v["answers"]) for v in noise_rows.values()),
        "noise": noise_rows,
        "rows": rows,
    }


def noise_clips(moh: Path | None, moh_s: float) -> dict[str, np.ndarray]:
    """The real non-speech recordings: ``tests/data/nonspeech`` and the first ``moh_s`` of each MOH track."""
    clips = {p.stem: load(p) for p in sorted((DATA / "nonspeech").glob("*.wav"))}
    if moh is not None:
        clips.update({f"moh:{p.stem}": load(p)[: int(moh_s * RATE)] for p in sorted(moh.glob("*.wav"))})
    return clips


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """Split answers and endpoint delay (p50, p95) per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(names, [100 * results[n]["split_answers"] for n in names], color="tab:red",
             label="split answers")
    left.bar(names, [100 * results[n]["false_endpoints"] for n in names], color="none", edgecolor="black",
             label="false endpoints")
    left.set_ylabel("% of thoughts")
    left.legend()
    x = np.arange(len(names))
    for offset, p in ((-0.2, "p50"), (0.2, "p95")):
        right.bar(x + offset, [results[n]["endpoint_delay_ms"][p] or 0 for n in names], width=0.4, label=p)
    right.set_xticks(x, names)
    right.set_ylabel("end of speech to end of turn (ms)")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=20)
    fig.suptitle("voxbus turn-taking on real recordings (benchmarks/turns.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; write and return the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=Path,
                        help="asterisk-core-sounds-en-wav's en_US_f_Allison directory")
    parser.add_argument("--prompt-pairs", type=int, default=12)
    parser.add_argument("--moh", type=Path, help="asterisk-moh-opsound-wav's moh directory")
    parser.add_argument("--moh-s", type=float, default=60.0, help="seconds taken from each MOH track")
    parser.add_argument("--reply-after-ms", type=float, default=REPLY_AFTER_MS)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N thoughts (a smoke run)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, default=RESULTS / "turns.json")
    args = parser.parse_args(argv)
    started = time.time()
    items = thoughts(np.random.default_rng(args.seed), args.prompts, args.prompt_pairs)
    items = items[: args.limit] if args.limit else items
    noise = noise_clips(args.moh, args.moh_s)
    decode = Decoder()
    offline = {t.name: decode(t.audio[: -int(WAIT_S * RATE)])[0] for t in items}
    results = {}
    for config in args.configs:
        stage = VadStage(Settings().model_copy(update=CONFIGS[config]))
        stage.load()
        results[config] = measure(config, stage, items, noise, decode, offline, args.reply_after_ms)
        summary = {k: v for k, v in results[config].items() if k not in ("rows", "noise")}
        print(config, json.dumps(summary))
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": round(time.time() - started, 1),
        "method": {"chunk_ms": CHUNK * 1000 // RATE, "wait_s": WAIT_S, "pause_s": PAUSE_S,
                   "reply_after_ms": args.reply_after_ms, "seed": args.seed, "configs": CONFIGS,
                   "thought_kinds": sorted({t.name.split(":")[0] for t in items}),
                   "defaults": {k: getattr(Settings(), k) for k in (
                       "vad_min_silence_ms", "vad_turn_pause_ms", "vad_max_silence_ms",
                       "vad_continuation_ms")}},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(results, args.out.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
