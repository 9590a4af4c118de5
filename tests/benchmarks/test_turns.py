"""Smoke test of the turn-taking benchmark on a tiny input (two recordings, two configurations)."""

from __future__ import annotations

import json

from benchmarks import turns


def test_the_benchmark_writes_its_figures_and_a_continuation_folds_jfks_pauses(tmp_path):
    out = tmp_path / "turns.json"
    report = turns.main(["--limit", "2", "--configs", "silence", "silence+continuation", "--noise-s", "4",
                         "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 0
    results = report["results"]
    rows = {c: {r["name"]: r for r in results[c]["rows"]} for c in results}
    # jfk.wav is one sentence with ~1 s pauses: silence endpointing answers each piece
    assert rows["silence"]["single:jfk"]["answers"] > 1
    assert rows["silence+continuation"]["single:jfk"]["answers"] == 1
    assert rows["silence"]["single:jfk"]["sentences_cut_off"] == 1
    assert rows["silence+continuation"]["single:jfk"]["sentences_cut_off"] == 0
    for config in results.values():
        assert config["thoughts"] == 2 == config["sentences"] and config["noise_seconds"] > 20
        assert "babble" in config["noise"]
        assert config["endpoint_delay_ms"]["n"] == 2 and config["endpoint_delay_ms"]["p50"] > 0
        # a transcript is never ready before its turn ended
        assert config["transcript_delay_ms"]["p50"] >= config["endpoint_delay_ms"]["p50"]
        assert 0 <= config["wer_pipeline"] <= 1
