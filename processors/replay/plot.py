"""``voxbus shadow report RUN --plot out.png``: a shadow report as a picture (matplotlib, PNG).

Left: WER bars: the candidate against production and, when references were given, each side
against the references.  Right: per record, each side's stage latency (ms, from the records'
marks) and the candidate's CPU time per input (ms), as box plots with every record drawn on top.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from processors.replay.report import Report

SIZE_IN = (11.0, 4.5)
"""Figure size in inches (width, height)."""

DPI = 110
"""Resolution of the PNG (dots per inch)."""


COLOURS = ["#777777", "#1f77b4", "#ff7f0e"]
"""Bar colours: candidate vs production, production vs references, candidate vs references."""


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)


def _wer_bars(report: Report) -> dict[str, float]:
    bars = {} if report.wer is None else {"candidate vs\nproduction": report.wer}
    for side in ("production", "candidate"):
        if report.reference_wer.get(side) is not None:
            bars[f"{side} vs\nreferences"] = report.reference_wer[side]
    return bars


def _distributions(report: Report) -> dict[str, list[float]]:
    series = {"production\nlatency": [p.production_ms for p in report.pairs],
              "candidate\nlatency": [p.candidate_ms for p in report.pairs],
              "candidate\nCPU": [p.candidate_cpu_ms for p in report.pairs]}
    return {name: [v for v in values if v is not None] for name, values in series.items()
            if any(v is not None for v in values)}


def plot_report(report: Report, path: Path) -> Path:
    """Draw ``report`` to the PNG ``path`` (overwritten); returns ``path``.

    Raises:
        OSError: the file cannot be written.
    """
    figure = Figure(figsize=SIZE_IN, dpi=DPI, layout="constrained")
    wer_axes, ms_axes = figure.subplots(1, 2, width_ratios=(1, 1.4))
    bars = _wer_bars(report)
    if bars:
        drawn = wer_axes.bar(list(bars), list(bars.values()), color=COLOURS[:len(bars)])
        wer_axes.bar_label(drawn, fmt="%.3f")
        wer_axes.set_ylim(0, max(max(bars.values()) * 1.25, 0.05))
    else:
        _note(wer_axes, "no transcripts compared")
    wer_axes.set_ylabel("word error rate")
    wer_axes.set_title("WER")
    series = _distributions(report)
    if series:
        ms_axes.boxplot(list(series.values()), tick_labels=list(series), showfliers=False)
        for position, values in enumerate(series.values(), start=1):
            offsets = [position + 0.06 * ((i % 5) - 2) for i in range(len(values))]  # spread, reproducibly
            ms_axes.scatter(offsets, values, s=14, alpha=0.7, zorder=3)
    else:
        _note(ms_axes, "no marks or CPU times")
    ms_axes.set_ylabel("ms per record")
    ms_axes.set_title("latency and CPU per record")
    figure.suptitle(f"shadow run {report.run}: {report.stage} with {report.overrides}")
    figure.savefig(path, format="png")
    return Path(path)
