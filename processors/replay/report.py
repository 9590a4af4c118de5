"""``voxbus shadow report RUN``: a replay's candidate against production, record by record.

For each production topic the candidate wrote (its manifest's ``outputs``, egress aside), the
production records of the replayed sessions and time range (from the archive; their turns can end
up to :data:`LATE_S` after the range) are matched to the candidate's (its shadow topic) by
session, turn and sentence index.  Per pair: the texts and the WER of the candidate against
production (``jiwer``; production is the reference, so it is a difference, not an error rate
unless production is right), whether the intents agree, and each side's stage latency
(``<stage>.end - <stage>.start`` of its marks, when the stage marks both).  In total: the
counts, the pairs matched, corpus WER, intent agreement and a confusion table, mean latencies,
and the candidate's mean CPU time per input (from the manifest; production's is not recorded).

A generation replay is also compared turn by turn (:func:`compare_replies`): each side's whole
reply (its sentences joined), their WER, how many are identical, and each side's grounded-answer
rate by the rule of :mod:`processors.replay.grounded` against the passages of the turn's archived
retrieval result.

With references (:func:`load_references`), both sides' transcripts are also scored against them:
the corpus WER of production and of the candidate over the referenced turns of the report (a turn
a side did not transcribe counts as all deletions).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jiwer

from processors.analytics.io import Read, read_topic
from processors.archive.reader import archive_root, read_archive
from processors.replay.conversation import LATE_S, Turn, whole_replies
from processors.replay.grounded import GROUNDED_PRECISION, grounded
from processors.replay.run import Manifest, shadow_topic
from schemas import Passage, RetrievalResult
from streams.settings import Settings
from streams.topics import EGRESS, INTENTS, REPLIES, RETRIEVALS, TRANSCRIPTS

WORDS = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                      jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
"""How texts are compared: lower-case words without punctuation (``woman,`` is ``woman``)."""


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER of ``hypotheses`` against ``references`` after :data:`WORDS`, rounded to 3 places."""
    return round(jiwer.wer(references, hypotheses, reference_transform=WORDS, hypothesis_transform=WORDS), 3)


References = dict[tuple[str, str], str]
"""Reference transcripts: ``(session_id, turn_id)`` -> text."""


def load_references(path: Path) -> References:
    """Read a manifest of reference transcripts (JSON, UTF-8).

    Two shapes are read: an object ``{session_id: {turn_id: text}}``, or a list of objects
    ``{"session_id": ..., "turn_id": ..., "text": ...}`` (one per utterance; a turn's id is its
    utterance's, ``a<first sample>``).

    Raises:
        OSError: the file cannot be read.
        ValueError: not JSON, or neither shape (every id and text must be a string).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and all(isinstance(turns, dict) for turns in data.values()):
        pairs = [(session, turn, text) for session, turns in data.items() for turn, text in turns.items()]
    elif isinstance(data, list) and all(isinstance(item, dict) for item in data):
        pairs = [(item.get("session_id"), item.get("turn_id"), item.get("text")) for item in data]
    else:
        raise ValueError(f"{path}: references are {{session_id: {{turn_id: text}}}} or a list of "
                         "{session_id, turn_id, text} objects")
    if not all(isinstance(value, str) for triple in pairs for value in triple):
        raise ValueError(f"{path}: every session_id, turn_id and text must be a string")
    return {(session, turn): text for session, turn, text in pairs}


@dataclass
class Pair:
    """One record of production and the candidate's for the same turn (either may be missing)."""

    topic: str
    session_id: str
    turn_id: str
    index: int
    production: str | None
    candidate: str | None
    wer: float | None
    production_intent: str | None = None
    candidate_intent: str | None = None
    production_ms: float | None = None
    candidate_ms: float | None = None
    candidate_cpu_ms: float | None = None
    reference: str | None = None


@dataclass
class ReplyPair:
    """The whole reply of one turn by production and by the candidate (a generation replay).

    ``wer`` is the candidate's against production's words; ``*_grounded`` and ``*_k_precision``
    as :func:`processors.replay.grounded.grounded` (None: that side said nothing in the turn).
    """

    session_id: str
    turn_id: str
    production: str | None
    candidate: str | None
    wer: float | None
    production_sources: list[str] = field(default_factory=list)
    candidate_sources: list[str] = field(default_factory=list)
    production_grounded: bool | None = None
    candidate_grounded: bool | None = None
    production_k_precision: float | None = None
    candidate_k_precision: float | None = None


GROUNDED_RULE = (f"grounded: the reply cites knowledge-base sources and K-Precision (Adlakha et al. 2024: "
                 f"share of its tokens in the cited passages) >= {GROUNDED_PRECISION}")
"""How the report states the grounded-answer rule (:mod:`processors.replay.grounded`)."""


@dataclass
class Report:
    """The comparison of one run (``pairs`` record by record; the rest in total)."""

    run: str
    stage: str
    overrides: dict[str, Any]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    wer: float | None = None
    intent_agreement: float | None = None
    confusion: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    cpu_ms: dict[str, float | None] = field(default_factory=dict)
    reference_wer: dict[str, Any] = field(default_factory=dict)
    pairs: list[Pair] = field(default_factory=list)
    reply_difference: dict[str, Any] = field(default_factory=dict)
    grounded: dict[str, Any] = field(default_factory=dict)
    replies: list[ReplyPair] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return asdict(self)


def _key(read: Read) -> tuple[str, str, int] | None:
    record = read.record
    if record is None or not hasattr(record, "turn_id"):
        return None
    return record.session_id, record.turn_id, int(getattr(record, "index", 0))  # type: ignore[attr-defined]


def _latency_ms(read: Read | None, stage: str) -> float | None:
    marks = getattr(read.record, "marks", {}) if read is not None else {}
    start, end = marks.get(f"{stage}.start"), marks.get(f"{stage}.end")
    return None if start is None or end is None else round((end - start) * 1000, 1)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.fmean(present), 1) if present else None


def score_references(report: Report, references: References) -> None:
    """Set ``report.reference_wer`` and each transcript pair's ``reference`` from ``references``.

    ``reference_wer`` holds ``production`` and ``candidate`` (corpus WER over the referenced
    turns, or None when no turn of the report has a reference) and ``turns`` (how many).
    """
    scored = [p for p in report.pairs if p.topic == TRANSCRIPTS.name and p.index == 0
              and (p.session_id, p.turn_id) in references]
    for pair in scored:
        pair.reference = references[pair.session_id, pair.turn_id]
    kept = [p for p in scored if WORDS(p.reference) != [[]]]
    texts = [p.reference for p in kept]
    report.reference_wer = {"turns": len(kept), "production": None, "candidate": None}
    if kept:
        for side in ("production", "candidate"):
            report.reference_wer[side] = word_error_rate(texts, [getattr(p, side) or "" for p in kept])


def compare_replies(report: Report, production: list[Read], candidate: list[Read],
                    passages: dict[Turn, list[Passage]]) -> None:
    """Set ``report.replies``, ``reply_difference`` and ``grounded`` for the turns of ``passages``.

    Args:
        report: the report to fill.
        production: production's reply sentences (archived ``voxbus.replies`` reads).
        candidate: the candidate's (its shadow topic's reads).
        passages: per replayed turn, the passages its retrieval result gave generation.

    ``reply_difference`` holds ``turns`` (both sides replied with words), ``identical`` (the same
    words, :data:`WORDS`) and ``wer`` (corpus WER of the candidate against production);
    ``grounded`` holds the ``rule`` and per side ``turns`` replied with words, ``grounded`` and
    ``rate``.
    """
    sides = {"production": whole_replies(production), "candidate": whole_replies(candidate)}
    for key in sorted(passages):
        replies = [sides[side].get(key) for side in sides]
        texts = [reply.text if reply is not None and WORDS(reply.text) != [[]] else None for reply in replies]
        checks = [grounded(reply.text, reply.sources, passages[key]) if text is not None else (None, None)
                  for reply, text in zip(replies, texts, strict=True)]
        difference = word_error_rate([texts[0]], [texts[1]]) if None not in texts else None
        report.replies.append(ReplyPair(
            *key, *texts, difference,  # type: ignore[arg-type]
            *[list(reply.sources) if reply is not None else [] for reply in replies],
            checks[0][0], checks[1][0], checks[0][1], checks[1][1]))
    both = [p for p in report.replies if p.production is not None and p.candidate is not None]
    report.reply_difference = {
        "turns": len(both),
        "identical": sum(WORDS(p.production) == WORDS(p.candidate) for p in both),  # type: ignore[arg-type]
        "wer": word_error_rate([p.production for p in both], [p.candidate for p in both]) if both else None,
    }
    report.grounded = {"rule": GROUNDED_RULE}
    for side in sides:
        flags = [getattr(p, f"{side}_grounded") for p in report.replies]
        said = [flag for flag in flags if flag is not None]
        report.grounded[side] = {"turns": len(said), "grounded": sum(said),
                                 "rate": round(sum(said) / len(said), 3) if said else None}


def retrieved_passages(settings: Settings, manifest: Manifest, seen: set[str]) -> dict[Turn, list[Passage]]:
    """The passages of each archived retrieval result a generation replay answered (sessions in ``seen``)."""
    reads = read_archive(archive_root(settings), [RETRIEVALS.name], start=manifest.start, end=manifest.end,
                         sessions=manifest.sessions, audio=False)
    return {(read.record.session_id, read.record.turn_id): list(read.record.passages) for read in reads
            if isinstance(read.record, RetrievalResult) and read.record.session_id in seen}


async def build_report(settings: Settings, run: str, references: References | None = None) -> Report:
    """Compare ``run``'s candidate with production (and both with ``references``, when given).

    Raises:
        FileNotFoundError: no manifest for ``run``.
        LookupError: a shadow topic of the run is gone.
    """
    manifest = Manifest.load(settings, run)
    report = Report(run, manifest.stage, manifest.overrides)
    compared, candidates = [], []
    cpu: dict[Turn, float] = {}
    for session, turn, ms in manifest.cpu_ms:  # a turn's inputs (generation: its retrieval, its tool result)
        cpu[session, turn] = round(cpu.get((session, turn), 0.0) + ms, 1)
    for topic in manifest.outputs:
        if topic == EGRESS.name:
            continue
        archived = read_archive(archive_root(settings), [topic], start=manifest.start,
                                end=manifest.end + LATE_S, sessions=manifest.sessions, audio=False)
        production = {key: read for read in archived if (key := _key(read)) is not None}
        candidate = {key: read async for read in read_topic(settings, shadow_topic(run, topic))
                     if (key := _key(read)) is not None}
        if manifest.sessions is None:  # production of sessions the candidate saw (a range cuts sessions)
            production = {k: v for k, v in production.items() if k[0] in {c[0] for c in candidate}}
        report.counts[topic] = {"production": len(production), "candidate": len(candidate),
                                "matched": len(production.keys() & candidate.keys())}
        if topic == REPLIES.name:
            passages = retrieved_passages(settings, manifest, {key[0] for key in candidate})
            compare_replies(report, list(production.values()), list(candidate.values()), passages)
        for key in sorted(production.keys() | candidate.keys()):
            prod, cand = production.get(key), candidate.get(key)
            texts = [getattr(r.record, "text", None) if r is not None else None for r in (prod, cand)]
            difference = None
            if texts[0] is not None and texts[1] is not None and WORDS(texts[0]) != [[]]:
                difference = word_error_rate([texts[0]], [texts[1]])
                compared.append(texts[0])
                candidates.append(texts[1])
            intents = [getattr(r.record, "intent", None) if r is not None else None for r in (prod, cand)]
            report.pairs.append(Pair(topic, *key, *texts, difference, *intents,  # type: ignore[arg-type]
                                     _latency_ms(prod, manifest.stage), _latency_ms(cand, manifest.stage),
                                     cpu.get(key[:2]) if cand is not None else None))
    if compared:
        report.wer = word_error_rate(compared, candidates)
    both = [(p.production_intent, p.candidate_intent) for p in report.pairs
            if p.topic == INTENTS.name and p.production_intent is not None and p.candidate_intent is not None]
    if both:
        report.intent_agreement = round(sum(a == b for a, b in both) / len(both), 3)
        report.confusion = {f"{a} -> {b}": n for (a, b), n in sorted(Counter(both).items())}
    report.latency_ms = {"production": _mean([p.production_ms for p in report.pairs]),
                         "candidate": _mean([p.candidate_ms for p in report.pairs])}
    report.cpu_ms = {"production": None, "candidate": _mean([ms for _, _, ms in manifest.cpu_ms])}
    if references is not None:
        score_references(report, references)
    return report
