"""The soak's accounting: every utterance gets one outcome, duplicates and RSS growth are counted right."""

import argparse
import json
from pathlib import Path

from benchmarks.caller import TurnResult
from benchmarks.soak import (
    SoakTurn,
    classify,
    duplicates,
    open_turns,
    per_minute,
    plot,
    rss_growth,
    write_report,
)


def turn(span=(16000, 40000), first_audio=None, timed_out=False, speech_end=100.0, started=90.0, ended=130.0):
    result = TurnResult("voxbus", 1, 0, 0, "clip#0", speech_end_at=speech_end, first_audio_at=first_audio,
                        timed_out=timed_out)
    return SoakTurn(result, span, started, ended)


def test_outcomes():
    late_end = (140.0, {"type": "turn_end", "turn_id": "a15800-7", "reply_text": "Hello."})
    assert classify(turn(first_audio=101.0), []) == "answered"
    assert classify(turn(timed_out=True), [late_end]) == "late"
    turn_error = (120.0, {"type": "error", "turn_id": "a20000-7", "code": "stage_error"})
    assert classify(turn(timed_out=True), [turn_error]) == "error"
    assert classify(turn(timed_out=True), [(95.0, {"type": "error", "code": "overloaded"})]) == "error"
    no_speech = (95.0, {"type": "turn_end", "turn_id": "a16000-7", "reply_text": ""})
    assert classify(turn(timed_out=True), [no_speech]) == "no_reply"
    cancelled = (95.0, {"type": "turn_end", "turn_id": "a16000-7", "reply_text": "", "interrupted": True})
    assert classify(turn(timed_out=True), [cancelled]) == "interrupted"
    other_turn = (120.0, {"type": "turn_end", "turn_id": "a90000-7", "reply_text": "Not yours."})
    session_error_elsewhere = (200.0, {"type": "error", "code": "overloaded"})
    assert classify(turn(timed_out=True), [other_turn, session_error_elsewhere]) == "lost"


def test_duplicates():
    events = [(0.0, {"type": "reply_text", "turn_id": "a1-1", "index": 0}),
              (0.1, {"type": "reply_text", "turn_id": "a1-1", "index": 0}),
              (0.2, {"type": "reply_text", "turn_id": "a1-1", "index": 1}),
              (0.3, {"type": "turn_end", "turn_id": "a1-1"}),
              (0.4, {"type": "turn_end", "turn_id": "a1-1"}),
              (0.5, {"type": "turn_end", "turn_id": "a2-1"})]
    assert duplicates(events) == 2


def test_rss_growth_after_warm_up():
    samples = [{"t": 0, "rss_mb": {"vad": 50.0}}, {"t": 60, "rss_mb": {"vad": 100.0}},
               {"t": 600, "rss_mb": {"vad": 105.0}}]
    growth = rss_growth(samples, warmup_s=60)
    assert growth == {"vad": {"first_mb": 100.0, "last_mb": 105.0, "growth_pct": 5.0}}


def test_per_minute():
    turns = [turn(first_audio=101.0 + i, speech_end=100.0 + i) for i in range(3)]
    turns.append(turn(speech_end=170.0))
    for t in turns[:3]:
        t.outcome = "answered"
    turns[3].outcome = "lost"
    [first, second] = per_minute(turns, t0=90.0)
    assert first["answered"] == 3 and first["v2v_p95_ms"] == 1000.0
    assert second["minute"] == 1 and second["lost"] == 1 and second["v2v_p95_ms"] is None


def test_open_turns():
    events = [(0.0, {"type": "speech_started", "turn_id": "a1-1"}),
              (0.1, {"type": "speech_started", "turn_id": "a9-1"}),
              (0.2, {"type": "turn_end", "turn_id": "a1-1"})]
    assert open_turns(events) == {"a9-1"}


def test_write_report_writes_the_json_and_the_plot(tmp_path, capsys):
    args = argparse.Namespace(callers=2, work=Path("/w"), out=tmp_path / "results" / "soak.json")
    samples = [{"t": 0, "rss_mb": {"vad": 50.0}}, {"t": 60, "rss_mb": {"vad": 51.0}}]
    turns = [turn(first_audio=101.0, speech_end=100.0)]
    turns[0].outcome = "answered"
    summary = {"per_minute": per_minute(turns, t0=90.0)}
    rows = [{"outcome": "answered"}]
    report = write_report(args, {"seed": 7, "summary": summary}, {"ingress_sessions_total": 2.0}, {"vad": 1},
                          samples, rows, plot)
    assert json.loads(args.out.read_text()) == report
    assert list(report) == ["when", "machine", "args", "seed", "summary", "ingress_counters", "restarts",
                            "rss_samples", "turns"]
    assert report["args"] == {"callers": 2, "work": "/w", "out": str(args.out)}, "paths as strings"
    assert (report["seed"], report["restarts"], report["rss_samples"], report["turns"]) == (7, {"vad": 1},
                                                                                             samples, rows)
    assert args.out.with_suffix(".png").stat().st_size > 0
    assert f"results: {args.out}, {args.out.with_suffix('.png')}" in capsys.readouterr().err
