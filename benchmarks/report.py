"""Statistics, the JSON report, the plot and the printed table of ``benchmarks/latency.py``."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)
BUS_HOPS: dict[str, tuple[str, str]] = {
    "vad>asr": ("vad.emit", "asr.start"),
    "retrieval>generation": ("retrieval.end", "generation.start"),
    "tts>ingress": ("tts.sentence0", "ingress.first_audio"),
}
"""The hops between two voxbus stages whose marks show both ends: the sending stage's
end mark and the receiving stage's start mark (includes queueing at the receiver)."""
HOPS_AFTER_SPEECH = 6
"""Bus hops on a turn's path after the vad stage: vad>asr>intent>retrieval>generation>tts>ingress."""


def percentiles(values: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99 (linear interpolation), mean and n of ``values``; None when empty."""
    data = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    out: dict[str, float | None] = {"n": int(data.size)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(float(np.percentile(data, p)), 1) if data.size else None
    out["mean"] = round(float(data.mean()), 1) if data.size else None
    return out


def bus_hops(marks: dict[str, float]) -> dict[str, float]:
    """Observed bus hops of one voxbus turn (ms), from its stage marks (epoch s)."""
    hops = {name: round((marks[b] - marks[a]) * 1000.0, 1)
            for name, (a, b) in BUS_HOPS.items() if a in marks and b in marks}
    if "asr.speculative" in marks:  # the confirmed utterance also waited for the speculative decode
        hops.pop("vad>asr", None)
    return hops


def phase_stats(turns: Sequence[dict[str, Any]], wall_s: float, cpu_s: float | None,
                budget_ms: float) -> dict[str, Any]:
    """Everything reported for one (system, number of callers) run.

    ``turns`` are :meth:`TurnResult.to_json` dicts (voxbus ones may carry ``bus_hops``).
    """
    answered = [t for t in turns if not t["timed_out"] and t["voice_to_voice_ms"] is not None]
    v2v = percentiles(t["voice_to_voice_ms"] for t in answered)
    stats: dict[str, Any] = {
        "turns": len(turns),
        "answered": len(answered),
        "timeouts": sum(1 for t in turns if t["timed_out"]),
        "voice_to_voice_ms": v2v,
        "wall_s": round(wall_s, 1),
        "turns_per_min": round(len(answered) / (wall_s / 60.0), 2) if wall_s > 0 else None,
        "cpu_s": round(cpu_s, 1) if cpu_s is not None else None,
        "cpu_s_per_turn": round(cpu_s / len(answered), 2) if cpu_s is not None and answered else None,
        "reply_audio_s": percentiles(t["reply_audio_s"] for t in answered),
    }
    p95 = v2v["p95"]
    stats["within_budget"] = bool(p95 is not None and p95 <= budget_ms and stats["timeouts"] == 0)
    stages = sorted({k for t in answered for k in t.get("latency_ms", {})})
    if stages:
        stats["stages_ms"] = {k: percentiles(t["latency_ms"].get(k) for t in answered) for k in stages}
        stats["server_voice_to_voice_ms"] = percentiles(t.get("server_voice_to_voice_ms") for t in answered)
    hops = [t["bus_hops"] for t in answered if t.get("bus_hops")]
    if hops:
        names = sorted({k for h in hops for k in h})
        stats["bus_ms"] = {
            "hops": {k: percentiles(h.get(k) for h in hops) for k in names},
            "observed": percentiles(sum(h.values()) for h in hops),
            "estimated_all_hops": percentiles(sum(h.values()) / len(h) * HOPS_AFTER_SPEECH for h in hops),
        }
    return stats


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def summarize(results: dict[str, dict[str, dict[str, Any]]], budget_ms: float) -> dict[str, Any]:
    """Per system: what it holds within the p95 budget; plus voxbus/pipecat ratios.

    ``callers_at_budget`` is the largest caller count whose run met the budget (p95 at most
    ``budget_ms``, no timed-out turn); ``turns_per_min_at_budget`` is the best turns/minute
    among those runs and ``turns_per_min_at_budget_callers`` the caller count it was reached
    at (a 1-caller run speaks its turns back to back, so it can out-run a 2-caller one).

    ``results[system][str(callers)]`` is a :func:`phase_stats` dict.
    """
    summary: dict[str, Any] = {"budget_ms": budget_ms, "systems": {}, "ratios_voxbus_over_pipecat": {}}
    for system, phases in results.items():
        ok = [(s["turns_per_min"], int(c)) for c, s in phases.items() if s["within_budget"]]
        best = max(ok) if ok else None
        summary["systems"][system] = {
            "callers_at_budget": max(c for _, c in ok) if ok else None,
            "turns_per_min_at_budget": best[0] if best else None,
            "turns_per_min_at_budget_callers": best[1] if best else None,
            "p95_ms_by_callers": {c: s["voice_to_voice_ms"]["p95"] for c, s in phases.items()},
            "turns_per_min_by_callers": {c: s["turns_per_min"] for c, s in phases.items()},
        }
    if "voxbus" in results and "pipecat" in results:
        for callers in results["voxbus"]:
            vox, pc = results["voxbus"][callers], results["pipecat"].get(callers)
            if pc is None:
                continue
            summary["ratios_voxbus_over_pipecat"][callers] = {
                **{f"p{p}": ratio(vox["voice_to_voice_ms"][f"p{p}"], pc["voice_to_voice_ms"][f"p{p}"])
                   for p in PERCENTILES},
                "cpu_s_per_turn": ratio(vox["cpu_s_per_turn"], pc["cpu_s_per_turn"]),
                "turns_per_min": ratio(vox["turns_per_min"], pc["turns_per_min"]),
            }
    return summary


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def markdown_table(results: dict[str, dict[str, dict[str, Any]]], summary: dict[str, Any]) -> str:
    """The comparison table (Markdown), one row per system and number of callers, plus ratio rows."""
    lines = [
        "| callers | system | turns | p50 ms | p95 ms | p99 ms | turns/min | p95 ≤ budget | CPU s/turn |",
        "|---:|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    callers = sorted({int(c) for phases in results.values() for c in phases})
    for n in callers:
        for system in ("voxbus", "pipecat"):
            s = results.get(system, {}).get(str(n))
            if s is None:
                continue
            v = s["voice_to_voice_ms"]
            turns = f"{s['answered']}/{s['turns']}"
            lines.append(f"| {n} | {system} | {turns} | {_fmt(v['p50'])} | {_fmt(v['p95'])} "
                         f"| {_fmt(v['p99'])} | {_fmt(s['turns_per_min'], 1)} | {_fmt(s['within_budget'])} "
                         f"| {_fmt(s['cpu_s_per_turn'], 2)} |")
        r = summary["ratios_voxbus_over_pipecat"].get(str(n))
        if r:
            lines.append(f"| {n} | voxbus/pipecat | | {_fmt(r['p50'], 2)}× | {_fmt(r['p95'], 2)}× "
                         f"| {_fmt(r['p99'], 2)}× | {_fmt(r['turns_per_min'], 2)}× | "
                         f"| {_fmt(r['cpu_s_per_turn'], 2)}× |")
    lines.append("")
    budget = summary["budget_ms"] / 1000
    for system, s in summary["systems"].items():
        best = s["turns_per_min_at_budget"]
        if best is None:
            lines.append(f"- {system}: no run met a {budget:g} s p95 budget")
            continue
        at = s["turns_per_min_at_budget_callers"]
        lines.append(f"- {system}: up to {s['callers_at_budget']} callers within a {budget:g} s p95 budget; "
                     f"best {_fmt(best, 1)} turns/min within it (at {at} callers)")
    return "\n".join(lines)


def stage_table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    """voxbus per-stage p50 (ms) by number of callers, plus the bus hops (Markdown)."""
    phases = results.get("voxbus", {})
    if not phases:
        return ""
    callers = sorted(phases, key=int)
    stages = [k for k in ("endpointing", "asr_wait", "asr", "intent", "retrieval", "llm_ttft",
                          "first_sentence", "tts_first_sentence", "egress", "voice_to_voice")
              if any(k in phases[c].get("stages_ms", {}) for c in callers)]
    names = [f"{c} caller{'s' * (int(c) > 1)}" for c in callers]
    head = "| voxbus stage (p50 ms) | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---:|" * len(callers)]
    for k in stages:
        row = [_fmt(phases[c].get("stages_ms", {}).get(k, {}).get("p50")) for c in callers]
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    for label, key in (("bus hops observed (vad>asr unless speculative, retrieval>generation, tts>ingress)",
                        "observed"),
                       ("bus, all 6 hops (estimate: mean observed hop × 6)", "estimated_all_hops")):
        row = [_fmt(phases[c].get("bus_ms", {}).get(key, {}).get("p50")) for c in callers]
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: dict[str, dict[str, dict[str, Any]]], summary: dict[str, Any], path: Path) -> None:
    """voxbus vs Pipecat per number of callers: voice-to-voice percentiles, turns/min, CPU s/turn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"voxbus": "#1f77b4", "pipecat": "#ff7f0e"}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    callers = sorted({int(c) for phases in results.values() for c in phases})
    ax = axes[0]
    for system, phases in results.items():
        xs = [n for n in callers if str(n) in phases]
        for p, style in ((50, "-o"), (95, "--s"), (99, ":^")):
            ys = [phases[str(n)]["voice_to_voice_ms"][f"p{p}"] for n in xs]
            ys = [y / 1000 if y is not None else np.nan for y in ys]
            ax.plot(xs, ys, style, color=colors.get(system), label=f"{system} p{p}")
            if p == 50:
                for x, y in zip(xs, ys, strict=True):
                    s = phases[str(x)]
                    ax.annotate(f"{s['answered']}/{s['turns']}", (x, 0 if np.isnan(y) else y),
                                textcoords="offset points", xytext=(4, -10), fontsize=7,
                                color=colors.get(system))
    ax.axhline(summary["budget_ms"] / 1000, color="grey", lw=0.8, ls="-.", label="p95 budget")
    ax.set(xlabel="concurrent callers", ylabel="voice-to-voice (s)",
           title="Voice-to-voice latency (labels: turns answered)", xticks=callers)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, ncol=2)
    width = 0.38
    for ax, key, title, digits in ((axes[1], "turns_per_min", "Turns per minute (achieved)", 1),
                                   (axes[2], "cpu_s_per_turn", "CPU seconds per turn", 2)):
        for i, (system, phases) in enumerate(results.items()):
            xs = np.arange(len(callers)) + (i - (len(results) - 1) / 2) * width
            ys = [phases.get(str(n), {}).get(key) for n in callers]
            bars = ax.bar(xs, [y if y is not None else 0 for y in ys], width, color=colors.get(system),
                          label=system)
            ax.bar_label(bars, labels=[_fmt(y, digits) for y in ys], fontsize=7)
        ax.set(xticks=np.arange(len(callers)), xticklabels=[str(n) for n in callers],
               xlabel="concurrent callers", title=title)
        ax.legend(fontsize=7)
    fig.suptitle("voxbus vs Pipecat on identical models (faster-whisper tiny.en, SmolLM2-135M, Piper joe)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
