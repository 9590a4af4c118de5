"""The scale benchmark's output-gap measures (pure functions; the benchmark is `make bench-scale`)."""

from __future__ import annotations

from benchmarks.scale import largest_gap, typical_gap


def test_largest_gap_counts_the_window_edges():
    outputs = [10.0, 10.5, 11.0, 15.0, 15.2]
    assert largest_gap(outputs, 10.0, 16.0) == 4.0
    assert largest_gap(outputs, 12.0, 14.0) == 2.0  # no output at all inside the window
    assert largest_gap(outputs, 14.0, 14.0) == 0.0


def test_typical_gap_is_the_95th_percentile_between_outputs():
    outputs = [float(t) for t in range(11)] + [20.0, 30.0]
    assert typical_gap(outputs, 0.0, 10.0) == 1.0
    assert typical_gap(outputs, 0.0, 30.0) == 10.0  # 2 of 12 gaps (17 %) are 10 s
    assert typical_gap([5.0], 0.0, 10.0) == 0.0
