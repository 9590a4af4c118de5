"""Turn-taking benchmark: one answer per thought, not per pause; no answers to noise (issue 14).

Real recordings are joined into *thoughts*, each what one caller says before waiting for
the answer, with real-room-tone pauses drawn uniformly from 0.2-1.5 s (seeded):

* ``split``: a LibriVox sentence of ``tests/data`` cut at one or two word boundaries (the
  pocketsphinx forced alignments in ``tests/data/alignments``), a pause in each cut, as a
  caller who hesitates mid-sentence;
* ``joined``: two consecutive LibriVox sentences, a pause between them (0880 and 0890 are
  the two halves of one sentence of the book: a pause at its comma);
* ``single``: each referenced clip of ``tests/data`` alone (0880 ends at that comma: the
  thoughts ending with it are not *complete*);
* ``prompts`` (with ``--prompts DIR``): two Asterisk prompts (Allison Smith, Debian
  ``asterisk-core-sounds-en-wav``, 8 kHz resampled) joined by a pause; no reference text.

Each thought runs through the vad stage (its real silero-vad and, when on, Smart Turn
v3.2) chunk by chunk (``VOXBUS_CHUNK_MS``, 128 ms) in audio time, then 4 s of silence;
the reply is taken to reach the caller ``--reply-after-ms`` after each turn's end (the ingress's
``SessionControl(action="replied")``; speech starting more than
``VOXBUS_VAD_CONTINUATION_REACTION_MS`` later answers it).  Every answered utterance is
decoded by the asr stage's Whisper with its noise rejection (and its
``VOXBUS_WHISPER_WINDOW_PAD_S``), and the whole thought once more offline (one decode of all its
audio, in Whisper's whole 30 s window).  Per configuration (silence-only or Smart Turn
endpointing, continuations on or off):

* **false cut-offs**: sentences an answered turn cut (its speech ended inside the sentence,
  or two answers share the sentence's words), of all sentences; an answer at the pause
  between two sentences cuts neither;
* **false endpoints**: thoughts in which a turn ended before their last piece began (answered
  or, continued, cancelled);
* **split answers**: thoughts answered more than once (an answer per pause);
* **answers per thought** (mean);
* **endpoint delay**: end of the thought's speech (the VAD's, no padding) to the end of
  the turn that answers it, audio ms, p50/p95, over all thoughts and over the *complete*
  ones (ending at the end of a sentence);
* **transcript delay**: end of speech to the asr stage's transcript of the last turn: the
  chunk's end, the vad stage's measured handling of it until it yielded the utterance
  (VAD; the turn model when it judged first: a pause's speculation goes out before), and
  the asr stage replayed as one worker with the measured Whisper decode times, speculative
  decoding included (:func:`transcripts_ready`).  Everything after the transcript (intent,
  retrieval, LLM, tts) does not depend on the endpointer, so voice-to-voice on one caller
  moves by exactly this figure's change;
* **WER**: pipeline (the answered utterances' transcripts, joined) and offline Whisper on
  the referenced thoughts; and the pipeline's WER against the offline transcript on all;
* **answers to noise**: answered utterances on real non-speech (:mod:`benchmarks.noises`):
  ``tests/data/nonspeech``, babble of the benchmark's talkers, and with ``--moh DIR``
  ``--moh-s`` seconds of each Debian ``asterisk-moh-opsound-wav`` track, with ``--sfx``
  OpenSFX's traffic, machines and crowd (``openttd-opensfx``), with ``--keys`` typing
  (``bucklespring-data``).

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

from benchmarks import noises
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


ENDS_MID_SENTENCE = {"sense_and_sensibility_01_austen_64kb-0880"}
"""Clips that stop inside a sentence: 0880 ends at the comma of "He was not an ill-disposed young
man, unless to be ..." (the book's sentence goes on in 0890, read in one breath group)."""


@dataclass(frozen=True)
class Thought:
    """What one caller says before waiting for the answer.

    Attributes:
        name: kind and sources.
        audio: float32 16 kHz mono, the thought then :data:`WAIT_S` of silence.
        last_piece: first sample of the thought's last piece (a turn ending before it cut the thought).
        sentences: per sentence, (its first sample, the first sample of its last piece).
        complete: the thought ends where a sentence ends (not at a comma).
        pauses_s: the pauses put inside it (s).
        reference: what was said ('' when unknown).
    """

    name: str
    audio: np.ndarray
    last_piece: int
    sentences: tuple[tuple[int, int], ...]
    complete: bool = True
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


def join(name: str, pieces: list[np.ndarray], rng: np.random.Generator, reference: str,
         sentence_starts: tuple[int, ...] = (0,), complete: bool = True) -> Thought:
    """``pieces`` with a drawn pause of the first piece's room tone between each two, then the wait.

    Args:
        sentence_starts: indices of the pieces that begin a sentence (the first always does).
        complete: the last piece ends a sentence.
    """
    parts, pauses = [pieces[0]], []
    for piece in pieces[1:]:
        pauses.append(round(float(rng.uniform(*PAUSE_S)), 2))
        parts += [room_tone(pieces[0], pauses[-1]), piece]
    starts = np.cumsum([0] + [p.size for p in parts])[::2]  # first sample of each piece
    bounds = [*sentence_starts, len(pieces)]
    sentences = tuple((int(starts[a]), int(starts[b - 1])) for a, b in zip(bounds, bounds[1:], strict=False))
    audio = np.concatenate([*parts, np.zeros(int(WAIT_S * RATE), dtype=np.float32)])
    return Thought(name, audio, int(starts[-1]), sentences, complete, tuple(pauses), reference)


def word_cuts(name: str) -> list[int]:
    """Samples between two words of a LibriVox clip (the pocketsphinx alignment), not next to its ends."""
    aligned = json.loads((DATA / "alignments" / f"{name}.json").read_text())["w"]
    words = [w for w in aligned if w["t"] != "<sil>"]
    return [int((a["b"] + a["d"] + b["b"]) / 2 * RATE) for a, b in zip(words[1:-2], words[2:-1], strict=True)]


def thoughts(rng: np.random.Generator, prompts: Path | None, prompt_pairs: int) -> list[Thought]:
    """Every thought of the benchmark (see the module docstring), in a fixed order for ``rng``."""
    text = {n: (DATA / f"{n}.txt").read_text().strip() for n in LIBRIVOX}
    audio = {n: load(DATA / f"{n}.wav") for n in LIBRIVOX}
    out = [join(f"single:{p.stem}", [load(p)], rng, (DATA / f"{p.stem}.txt").read_text().strip(),
                complete=p.stem not in ENDS_MID_SENTENCE)
           for p in sorted(DATA.glob("*.wav"))]
    for name in LIBRIVOX:
        cuts = word_cuts(name)
        for count in (1, 2):
            at = sorted(rng.choice(cuts, size=min(count, len(cuts)), replace=False))
            pieces = np.split(audio[name], at)
            out.append(join(f"split{count}:{name[-4:]}", pieces, rng, text[name],
                            complete=name not in ENDS_MID_SENTENCE))
    for first, second in zip(LIBRIVOX, LIBRIVOX[1:], strict=False):
        out.append(join(f"joined:{first[-4:]}+{second[-4:]}", [audio[first], audio[second]], rng,
                        f"{text[first]} {text[second]}", (0,) if first in ENDS_MID_SENTENCE else (0, 1),
                        complete=second not in ENDS_MID_SENTENCE))
    if prompts is not None:
        for a, b in prompt_pairs_of(prompts, rng, prompt_pairs):
            out.append(join(f"prompts:{a.stem}+{b.stem}", [load(a), load(b)], rng, "", (0, 1)))
    return out


def prompt_pairs_of(prompts: Path, rng: np.random.Generator, pairs: int) -> list[tuple[Path, Path]]:
    """``pairs`` pairs of distinct Asterisk prompts of 1.5-5 s, drawn with ``rng``."""
    files = sorted(p for p in prompts.glob("*.wav") if 1.5 <= soundfile.info(p).duration <= 5.0)
    picked = [files[int(i)] for i in rng.choice(len(files), size=2 * pairs, replace=False)]
    return list(zip(picked[::2], picked[1::2], strict=True))


@dataclass(frozen=True)
class Emitted:
    """An utterance the vad stage sent.

    Attributes:
        utterance: the utterance (confirmed or speculative).
        at: sample position of the end of the chunk whose handling emitted it.
        compute_ms: wall time the vad stage had spent on that chunk when it yielded the utterance
            (VAD, and the turn model if it was judged before), ms.
    """

    utterance: Utterance
    at: int
    compute_ms: float

    @property
    def sent_ms(self) -> float:
        """When it reached the bus on the caller's audio clock (ms): the chunk's end plus its handling."""
        return self.at * 1000 / RATE + self.compute_ms


@dataclass
class Endpointed:
    """What the vad stage made of one recording.

    Attributes:
        sent: every utterance sent, speculative ones included, in order.
        cancelled: turn ids cancelled as continued.
    """

    sent: list[Emitted] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)

    @property
    def turns(self) -> list[Emitted]:
        """The confirmed utterances."""
        return [e for e in self.sent if not e.utterance.speculative]

    def answered(self) -> list[Emitted]:
        """The turns the pipeline answers: every confirmed one but those continued."""
        return [e for e in self.turns if e.utterance.turn_id not in self.cancelled]


async def endpoint(stage: VadStage, session_id: str, audio: np.ndarray, reply_after_ms: float) -> Endpointed:
    """Stream ``audio`` through ``stage`` in bus chunks of its ``VOXBUS_CHUNK_MS``; each turn's reply
    reaches the caller ``reply_after_ms`` after its end unless continued (a ``replied`` record then)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    chunk = stage.settings.chunk_ms * RATE // 1000
    found = Endpointed()
    replies: dict[str, int] = {}  # turn id -> sample at which its reply reaches the caller
    for seq, start in enumerate(range(0, pcm.size, chunk)):
        records: list[Record] = [SessionControl(session_id=session_id, action="replied", turn_id=t, ts=0.0)
                                 for t, at in replies.items() if at <= start]
        for record in records:
            replies.pop(record.turn_id)  # type: ignore[attr-defined]
        records.append(AudioChunk(session_id=session_id, seq=seq, start_sample=start,
                                  pcm=pcm[start:start + chunk].tobytes(), recv_ts=1000.0 + start / RATE))
        end = min(start + chunk, pcm.size)
        began, emitted = time.perf_counter(), []
        async for emit in stage.handle_batch(records):  # the runtime produces each output as it is yielded
            emitted.append((emit.record, (time.perf_counter() - began) * 1000))
        for record, compute_ms in emitted:
            if isinstance(record, Utterance):
                found.sent.append(Emitted(record, end, compute_ms))
                if not record.speculative:
                    replies[record.turn_id] = end + int(reply_after_ms * RATE / 1000)
            elif isinstance(record, TurnCancel):
                found.cancelled.add(record.turn_id)
                replies.pop(record.turn_id, None)
    async for _ in stage.handle_batch([SessionControl(session_id=session_id, action="end", ts=0.0)]):
        pass  # the caller waited: nothing is left to end
    return found


@dataclass(frozen=True)
class Decoded:
    """One recognition by the asr stage's recognizer.

    Attributes:
        text: the transcript ('' when rejected).
        rejected: the rejection reason ('' when kept).
        ms: wall time of the decode (ms), the first time this audio was decoded.
    """

    text: str
    rejected: str
    ms: float


class Decoder:
    """The asr stage's recognizer, each distinct utterance decoded once across configurations.

    Args:
        settings: the ``VOXBUS_WHISPER_*`` settings the recognizer is built with.
    """

    def __init__(self, settings: Settings) -> None:
        self.recognizer = Recognizer.from_settings(settings)
        self.recognizer.transcribe(np.zeros(RATE, dtype=np.float32))  # the asr stage's warm-up
        self.cache: dict[str, Decoded] = {}

    def __call__(self, audio: np.ndarray) -> Decoded:
        """The recognition of float32 16 kHz ``audio``."""
        key = hashlib.sha1(audio.tobytes()).hexdigest()
        if key not in self.cache:
            began = time.perf_counter()
            result = self.recognizer.transcribe(audio)
            self.cache[key] = Decoded(result.text, result.rejected, (time.perf_counter() - began) * 1000)
        return self.cache[key]


def floats(utterance: Utterance) -> np.ndarray:
    """An utterance's audio as float32."""
    return np.frombuffer(utterance.pcm, dtype="<i2").astype(np.float32) / 32768.0


def transcripts_ready(found: Endpointed, decode: Decoder) -> dict[str, float]:
    """When each confirmed turn's transcript is ready, on the caller's audio clock (ms).

    Replays the asr stage (:class:`processors.asr.stage.AsrStage`) as one worker with the
    measured decode times: it takes every utterance sent by the time it is free; a lone
    speculative utterance is decoded and kept, a confirmed one with the same bounds is then
    answered from it, any other confirmed one is decoded (one after another).

    Returns:
        turn id -> ready time (ms) of every confirmed utterance.
    """
    events = sorted(found.sent, key=lambda e: e.sent_ms)
    known: dict[tuple[str, int, int], float] = {}
    ready: dict[str, float] = {}
    now, i = 0.0, 0
    while i < len(events):
        now = max(now, events[i].sent_ms)
        batch = []
        while i < len(events) and events[i].sent_ms <= now:
            batch.append(events[i].utterance)
            i += 1
        confirmed = [u for u in batch if not u.speculative]
        if not confirmed:
            if len(batch) == 1:
                now += decode(floats(batch[0])).ms
                known[speculation_key(batch[0])] = now
            continue
        handled = now
        now += sum(decode(floats(u)).ms for u in confirmed if speculation_key(u) not in known)
        for u in confirmed:
            ready[u.turn_id] = handled if known.pop(speculation_key(u), None) is not None else now
    return ready


def speculation_key(utterance: Utterance) -> tuple[str, int, int]:
    """What a speculative utterance and its confirmed twin share (the asr stage's key, per session)."""
    return utterance.turn_id, utterance.start_sample, utterance.end_sample


def sentence_cut_offs(thought: Thought, ends: list[int]) -> int:
    """How many of ``thought``'s sentences an answered turn cut off.

    A sentence is cut off when an answered turn's speech ends inside it (before its last
    piece), or when two answered turns end between its start and the next sentence's (its
    words went to two answers).  An answer at the pause between two sentences cuts neither.

    Args:
        ends: speech end sample of each answered turn.
    """
    starts = [first for first, _ in thought.sentences] + [thought.audio.size]
    cut = 0
    for (first, last_piece), following in zip(thought.sentences, starts[1:], strict=True):
        inside = [e for e in ends if first <= e < following]
        cut += any(e < last_piece for e in inside) or len(inside) > 1
    return cut


def measure(config: str, stage: VadStage, items: list[Thought], noise: dict[str, np.ndarray],
            decode: Decoder, offline: dict[str, str], reply_after_ms: float) -> dict[str, Any]:
    """All figures of one configuration (see the module docstring)."""
    pad = stage.config.samples(stage.config.speech_pad_ms)
    rows = []
    session = config.replace("+", ".")
    for i, thought in enumerate(items):
        found = asyncio.run(endpoint(stage, f"{session}-{i}", thought.audio, reply_after_ms))
        answered = [(e, decode(floats(e.utterance)).text) for e in found.answered()]
        answers = [t for _, t in answered if t]
        ends = [e.utterance.end_sample - pad for e, t in answered if t]
        ready = transcripts_ready(found, decode)
        last = found.turns[-1] if found.turns else None
        speech_end_ms = (last.utterance.end_sample - pad) * 1000 / RATE if last else 0.0
        rows.append({
            "name": thought.name, "pauses_s": list(thought.pauses_s), "complete": thought.complete,
            "sentences": len(thought.sentences), "answers": len(answers),
            "false_endpoint": any(e.at < thought.last_piece for e in found.turns),
            "sentences_cut_off": sentence_cut_offs(thought, ends),
            "endpoint_delay_ms": round(last.at * 1000 / RATE - speech_end_ms, 1) if last else None,
            "transcript_delay_ms": round(ready[last.utterance.turn_id] - speech_end_ms, 1) if last else None,
            "transcript": " ".join(answers), "reference": thought.reference,
        })
    referenced = [r for r in rows if r["reference"]]
    noise_rows = {}
    for i, (name, audio) in enumerate(noise.items()):
        found = asyncio.run(endpoint(stage, f"{session}-noise-{i}", audio, reply_after_ms))
        decoded = [decode(floats(e.utterance)) for e in found.answered()]
        noise_rows[name] = {"seconds": round(audio.size / RATE, 1), "utterances": len(decoded),
                            "answers": [d.text for d in decoded if d.text],
                            "rejected": sorted(d.rejected for d in decoded if not d.text)}
    n = len(rows)
    sentences = sum(r["sentences"] for r in rows)
    complete = [r for r in rows if r["complete"]]
    return {
        "thoughts": n,
        "sentences": sentences,
        "false_cut_offs": round(sum(r["sentences_cut_off"] for r in rows) / sentences, 3),
        "false_endpoints": round(sum(r["false_endpoint"] for r in rows) / n, 3),
        "split_answers": round(sum(r["answers"] > 1 for r in rows) / n, 3),
        "unanswered": round(sum(r["answers"] == 0 for r in rows) / n, 3),
        "answers_per_thought": round(sum(r["answers"] for r in rows) / n, 3),
        "endpoint_delay_ms": percentiles(r["endpoint_delay_ms"] for r in rows),
        "endpoint_delay_ms_complete": percentiles(r["endpoint_delay_ms"] for r in complete),
        "endpoint_delay_ms_single_sentences": percentiles(
            r["endpoint_delay_ms"] for r in complete if r["name"].startswith("single:")),
        "transcript_delay_ms": percentiles(r["transcript_delay_ms"] for r in rows),
        "transcript_delay_ms_complete": percentiles(r["transcript_delay_ms"] for r in complete),
        "wer_pipeline": wer([r["reference"] for r in referenced], [r["transcript"] for r in referenced]),
        "wer_offline": wer([r["reference"] for r in referenced], [offline[r["name"]] for r in referenced]),
        "wer_pipeline_vs_offline": wer([offline[r["name"]] or "<empty>" for r in rows],
                                       [r["transcript"] for r in rows]),
        "noise_seconds": round(sum(v["seconds"] for v in noise_rows.values()), 1),
        "noise_answers": sum(len(v["answers"]) for v in noise_rows.values()),
        "noise": noise_rows,
        "rows": rows,
    }


def noise_clips(args: argparse.Namespace, speech: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The real non-speech recordings (see :mod:`benchmarks.noises`).

    ``tests/data/nonspeech``; with ``--moh``, the first ``--moh-s`` of each Debian
    ``asterisk-moh-opsound-wav`` track; with ``--sfx``, OpenSFX's traffic, machines and
    crowd; with ``--keys``, ``--noise-s`` of typing; and ``--noise-s`` of babble of ``speech``.
    """
    clips = {p.stem: load(p) for p in sorted((DATA / "nonspeech").glob("*.wav"))}
    if args.moh is not None:
        moh = sorted(args.moh.glob("*.wav"))
        clips.update({f"moh:{p.stem}": load(p)[: int(args.moh_s * RATE)] for p in moh})
    if args.sfx is not None:
        clips.update({f"sfx:{kind}": audio for kind, audio in noises.opensfx_kinds(args.sfx).items()})
    rng = np.random.default_rng(args.seed)
    if args.keys is not None:
        clips["typing"] = noises.typing(args.keys, args.noise_s, rng)
    clips["babble"] = noises.babble(speech, args.noise_s, rng)
    return clips


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """False cut-offs, split answers, and endpoint and transcript delays (p50) per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    x = np.arange(len(names))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(x - 0.2, [100 * results[n]["false_cut_offs"] for n in names], width=0.4, color="tab:red",
             label="false cut-offs (% of sentences)")
    left.bar(x + 0.2, [100 * results[n]["split_answers"] for n in names], width=0.4, color="tab:orange",
             label="split answers (% of thoughts)")
    left.set_ylabel("%")
    left.legend()
    for offset, key, label in ((-0.2, "endpoint_delay_ms_complete", "endpoint delay"),
                               (0.2, "transcript_delay_ms_complete", "transcript delay")):
        right.bar(x + offset, [results[n][key]["p50"] or 0 for n in names], width=0.4, label=f"{label} p50")
    right.set_ylabel("from end of speech, complete sentences (ms)")
    right.legend()
    for axis in (left, right):
        axis.set_xticks(x, names)
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
    parser.add_argument("--sfx", type=Path, help="openttd-opensfx's opensfx.cat (traffic, machines, crowd)")
    parser.add_argument("--keys", type=Path, help="bucklespring-data's wav directory (typing)")
    parser.add_argument("--noise-s", type=float, default=90.0, help="seconds of typing and of babble")
    parser.add_argument("--reply-after-ms", type=float, default=REPLY_AFTER_MS)
    parser.add_argument("--chunk-ms", type=int, default=Settings().chunk_ms,
                        help="audio per bus record (default: VOXBUS_CHUNK_MS)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N thoughts (a smoke run)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", type=Path, default=RESULTS / "turns.json")
    args = parser.parse_args(argv)
    started = time.time()
    items = thoughts(np.random.default_rng(args.seed), args.prompts, args.prompt_pairs)
    items = items[: args.limit] if args.limit else items
    speech = [load(p) for p in sorted(DATA.glob("*.wav"))]
    if args.prompts is not None:
        speech += [load(p) for pair in prompt_pairs_of(args.prompts, np.random.default_rng(args.seed),
                                                       args.prompt_pairs) for p in pair]
    noise = noise_clips(args, speech)
    decode = Decoder(Settings())
    # the reference is Whisper's own way, its whole 30 s window, whatever VOXBUS_WHISPER_WINDOW_PAD_S says
    whole_window = Decoder(Settings().model_copy(update={"whisper_window_pad_s": 0.0}))
    offline = {t.name: whole_window(t.audio[: -int(WAIT_S * RATE)]).text for t in items}
    results = {}
    for config in args.configs:
        stage = VadStage(Settings().model_copy(update={**CONFIGS[config], "chunk_ms": args.chunk_ms}))
        stage.load()
        results[config] = measure(config, stage, items, noise, decode, offline, args.reply_after_ms)
        summary = {k: v for k, v in results[config].items() if k not in ("rows", "noise")}
        print(config, json.dumps(summary))
    report = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "duration_s": round(time.time() - started, 1),
        "method": {"chunk_ms": args.chunk_ms, "wait_s": WAIT_S, "pause_s": PAUSE_S,
                   "reply_after_ms": args.reply_after_ms, "seed": args.seed, "configs": CONFIGS,
                   "thought_kinds": sorted({t.name.split(":")[0] for t in items}),
                   "defaults": {k: getattr(Settings(), k) for k in (
                       "vad_min_silence_ms", "vad_early_silence_ms", "vad_turn_pause_ms",
                       "vad_max_silence_ms", "vad_continuation_ms", "vad_continuation_reaction_ms")}},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    plot(results, args.out.with_suffix(".png"))
    return report


if __name__ == "__main__":
    main()
