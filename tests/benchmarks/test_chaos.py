"""The chaos soak's accounting: outcomes across reconnections, duplicates, recovery per kill, the summary."""

import random
import time
from datetime import datetime

import numpy as np

from benchmarks.caller import FRAME_SAMPLES, TurnResult
from benchmarks.chaos import (
    LOG_MARKS,
    TAIL_S,
    TARGETS,
    CallerRun,
    ChaosCaller,
    ChaosTurn,
    Kill,
    account,
    between_kills,
    connection_epochs,
    duplicate_counts,
    is_apology,
    kill_excess,
    kill_plan,
    life_growth,
    log_marks,
    mark_recovery,
    next_answer,
    outcome,
    plot,
    summarize,
    turn_epoch,
)
from benchmarks.soak import CallerLog
from benchmarks.utterances import Utterance


def turn(span=(16000, 40000), connection=0, first_audio=None, timed_out=True, disconnected=False,
         turn_id=None):
    result = TurnResult("voxbus", 1, 0, 0, "clip#0", speech_end_at=100.0, first_audio_at=first_audio,
                        timed_out=timed_out, turn_id=turn_id)
    return ChaosTurn(result, span, 90.0, 130.0, connection=connection, disconnected=disconnected)


def event(t, kind, turn_id="", connection=0, **fields):
    return (t, {"type": kind, "turn_id": turn_id, "connection": connection, **fields})


def test_turn_epoch():
    assert turn_epoch("a16000-7") == 7
    assert turn_epoch("t3-7") is None
    assert turn_epoch("") is None
    assert turn_epoch("a16000") is None


def test_connection_epochs_take_each_connections_own_turns():
    events = [event(1, "speech_started", "a100-3"), event(2, "speech_started", "a900-3"),
              # after the reconnect: a late event of the first connection's turn, then the new ones
              event(5, "speech_started", "a900-3", connection=1),
              event(6, "speech_started", "a50-9", connection=1),
              event(7, "turn_end", "a50-12", connection=1)]
    assert connection_epochs(events) == {0: 3, 1: 9}


def test_outcome_matches_turn_ids_of_the_turns_connection_only():
    # the second connection counts samples from 0 again: a turn id of its own overlaps the first one's span
    events = [event(1, "speech_started", "a16000-3"), event(2, "speech_started", "a16000-9", connection=1),
              event(3, "turn_end", "a16000-9", connection=1, reply_text="For the new turn.")]
    epochs = connection_epochs(events)
    assert outcome(turn(connection=0, disconnected=True), events, epochs) == "disconnected"
    assert outcome(turn(connection=0), events, epochs) == "lost"
    assert outcome(turn(connection=1), events, epochs) == "late"
    # the first connection's turn answered on the new connection, after the resume
    late = events + [event(4, "turn_end", "a16000-3", connection=1, reply_text="Resumed.")]
    assert outcome(turn(connection=0, disconnected=True), late, connection_epochs(late)) == "late"
    assert outcome(turn(first_audio=101.0, timed_out=False), [], {}) == "answered"
    failed = events + [event(4, "error", "a16000-3", code="stage_error")]
    assert outcome(turn(connection=0), failed, connection_epochs(failed)) == "error"
    assert outcome(turn(connection=2, disconnected=True), events, epochs) == "disconnected"


def test_duplicate_counts_every_kind():
    events = [event(1, "reply_text", "a1-1", index=0), event(2, "reply_text", "a1-1", index=1),
              event(3, "reply_audio", "a1-1", bytes=3200, offset=3200),
              event(4, "reply_audio", "a1-1", bytes=3200, offset=6400),
              event(5, "reply_audio", "a1-1", bytes=0, offset=6400, final=True),
              event(6, "turn_end", "a1-1")]
    assert duplicate_counts(events) == {"turn_end": 0, "sentence": 0, "audio": 0}
    again = events + [event(7, "reply_text", "a1-1", index=1), event(8, "reply_audio", "a1-1", bytes=3200,
                                                                     offset=3200),
                      event(9, "turn_end", "a1-1"), event(10, "reply_audio", "a2-1", bytes=3200, offset=3200)]
    assert duplicate_counts(again) == {"turn_end": 1, "sentence": 1, "audio": 1}


def test_recovery_is_the_first_answer_to_speech_ended_after_the_kill():
    # answered before (in flight at the kill, answered after it: not proof of recovery), then two after
    answered = [(99.0, 101.0), (103.0, 112.5), (104.0, 109.0)]
    assert next_answer(100.0, answered) == (104.0, 109.0)
    assert next_answer(100.0, [(99.0, 101.0)]) is None


def test_a_kills_excess_is_its_answers_voice_to_voice_over_the_calm_median():
    kills = [{"recovery_s": 12.0, "speech_wait_s": 4.0, "answer_v2v_s": 8.0},
             {"recovery_s": 5.0, "speech_wait_s": 2.0, "answer_v2v_s": 3.0}, {"recovery_s": None}]
    calm = [(10.0, 14.0), (20.0, 25.0), (30.0, 36.0)]  # voice-to-voice 4, 5 and 6 s: median 5
    excess = kill_excess(kills, calm)
    assert excess["calm_v2v_p50"] == 5.0 and excess["n"] == 2
    assert excess["max"] == 3.0 and excess["p50"] == 0.5  # 8 - 5 and 3 - 5
    assert kill_excess(kills, [])["p50"] is None and kill_excess(kills, [])["n"] == 0


def test_the_no_kill_instants_lie_halfway_between_kills():
    kills = [Kill("asr", at=160.0, wall="", pid=1), Kill("tts", at=220.0, wall="", pid=2)]
    assert between_kills(kills, t0=100.0) == [130.0, 190.0]
    assert between_kills([], t0=100.0) == []


class _Line(ChaosCaller):
    """A socket-less line: each frame is kept with the connection it went out on; sending frame
    ``drop_at`` fails once (the line dropped), and :meth:`reconnect` brings up the next connection
    (the ingress counts samples from 0 again)."""

    def __init__(self, drop_at: int | None = None) -> None:
        self.connection = self.turn_connection = 0
        self.speaking, self.closed = False, False
        self.drop_at, self.frames, self.samples_sent, self.clock = drop_at, [], 0, 0.0
        self.ws, self.silence = self, bytes(2 * FRAME_SAMPLES)

    async def send_bytes(self, pcm: bytes) -> None:
        if len(self.frames) == self.drop_at and self.connection == 0:
            raise ConnectionResetError("the ingress was killed")
        self.frames.append(self.connection)

    async def reconnect(self) -> None:
        self.connection, self.samples_sent = self.connection + 1, 0


def test_a_caller_whose_line_dropped_stops_waiting_for_that_reply():
    caller = _Line()
    assert not caller.turn_abandoned()
    caller.connection += 1  # reconnected under the turn: its reply went down with the old ingress
    assert caller.turn_abandoned()


async def test_a_caller_whose_line_dropped_mid_utterance_pauses_then_says_it_again_from_the_start(
        monkeypatch):
    monkeypatch.setattr("benchmarks.chaos.REDIAL_PAUSE_S", 5 * FRAME_SAMPLES / 16000)
    frames = 10
    utterance = Utterance("u#0", np.zeros(frames * FRAME_SAMPLES, dtype=np.int16), FRAME_SAMPLES,
                          9 * FRAME_SAMPLES)
    caller = _Line(drop_at=4)
    await caller.speak(utterance)
    # the rest of the first try is not sent: 5 frames of silence, then all 10 frames again
    assert caller.frames == [0] * 4 + [1] * (5 + frames)
    assert caller.speech_span == (6 * FRAME_SAMPLES, 14 * FRAME_SAMPLES)  # the new connection's samples
    assert caller.turn_connection == 1 and not caller.turn_abandoned() and not caller.speaking


async def test_a_caller_whose_line_dropped_in_silence_goes_on_with_it():
    caller = _Line(drop_at=2)
    await caller.silence_for(5 * FRAME_SAMPLES / 16000)
    assert caller.frames == [0, 0, 1, 1, 1]  # the failed frame is sent again on the new connection


def test_apology_is_not_an_answer():
    apology = "Sorry, I'm having trouble answering right now."
    spoken = turn(turn_id="a1-1")
    assert is_apology(spoken, [event(1, "reply_text", "a1-1", index=0, text=apology)], apology)
    answer = event(1, "reply_text", "a1-1", index=0, text="Your bill is due.")
    assert not is_apology(spoken, [answer], apology)
    assert not is_apology(spoken, [event(1, "reply_text", "a2-1", index=0, text=apology)], apology)


def test_kill_plan_every_minute_all_targets_before_repeats_none_at_the_end():
    plan = kill_plan(600.0, 60.0, TARGETS, random.Random(1))
    assert [t for t, _ in plan] == [60.0 * k for k in range(1, 10)]
    assert all(t <= 600.0 - TAIL_S for t, _ in plan)
    assert sorted(target for _, target in plan) == sorted(TARGETS)
    longer = kill_plan(1200.0, 60.0, TARGETS, random.Random(2))
    assert set(target for _, target in longer[:9]) == set(TARGETS)
    assert kill_plan(180.0, 45.0, ("asr", "ingress", "llm"), random.Random(3))[-1][0] == 135.0
    assert kill_plan(600.0, 60.0, TARGETS, random.Random(1)) == plan  # seeded: reproducible


def test_summary():
    turns = [turn() for _ in range(6)]
    for t, name in zip(turns, ("answered", "answered", "error", "disconnected", "lost", "late"), strict=True):
        t.outcome = name
    kills = [{"target": "asr", "recovery_s": 4.0}, {"target": "ingress", "recovery_s": 12.0},
             {"target": "llm", "recovery_s": None}, {"target": "tts", "recovery_s": 6.0}]
    growth = {"asr": {"first_mb": 300.0, "last_mb": 309.0, "growth_pct": 3.0},
              "llm": {"first_mb": 200.0, "last_mb": None, "growth_pct": None}}
    summary = summarize(turns, {"turn_end": 0, "sentence": 1, "audio": 2}, kills, growth, [])
    assert summary["turns"] == 6
    counts = [summary[k] for k in ("answered", "failed", "disconnected", "lost", "late")]
    assert counts == [2, 1, 1, 1, 1]
    assert summary["duplicated"] == 3
    assert summary["kills"] == 4 and summary["unrecovered"] == 1
    assert summary["recovery_s"]["p50"] == 6.0 and summary["recovery_s"]["max"] == 12.0
    assert summary["recovery_s"]["n"] == 3
    assert 6.0 < summary["recovery_s"]["p95"] <= 12.0
    assert summary["recovery_over_target"] == 2  # the ingress at 12 s and the llm never
    assert summary["max_rss_growth_pct"] == 3.0
    empty = summarize([], {"turn_end": 0, "sentence": 0, "audio": 0}, [], {}, [])
    assert empty["recovery_s"] == {"p50": None, "p95": None, "max": None, "n": 0}


def test_log_marks_after_the_kill_only():
    lines = ["2026-12-01 15:32:59,614 INFO processors.runtime: stage asr loaded in 4.9 s",
             "[2026-12-01 15:33:00,847] [20091] [INFO] [^Worker]: Ready ",
             "+---------+ a table line without a time stamp",
             "2026-12-01 15:40:05,500 INFO processors.runtime: stage asr loaded in 2.1 s",
             "[2026-12-01 15:40:06,750] [20093] [INFO] [^Worker]: Ready "]
    since = datetime(2026, 12, 1, 15, 40, 1).timestamp()
    marks = log_marks(lines, since, LOG_MARKS)
    assert {k: round(v - since, 2) for k, v in marks.items()} == {"loaded": 4.5, "ready": 5.75}
    assert log_marks(lines[:2], since, LOG_MARKS) == {}


def test_mark_recovery(tmp_path):
    now = time.time()
    stamp = datetime.fromtimestamp(now + 3.0).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    (tmp_path / "tts.log").write_text(f"{stamp} INFO processors.runtime: stage tts loaded in 1.8 s\n")
    kill = Kill("tts", at=100.0, wall="", pid=1, wall_ts=now)
    mark_recovery(kill, tmp_path, [(101.0, 107.5)], [(50.0, 52.0)])
    assert kill.answered_at == 107.5
    assert round(kill.marks["loaded"], 1) == 3.0
    assert kill.report(t0=40.0) == {"target": "tts", "at_s": 60.0, "wall": "", "pid": 1, "restart_s": None,
                                    "speech_wait_s": 1.0, "answer_v2v_s": 6.5,
                                    "loaded_s": round(kill.marks["loaded"], 2), "recovery_s": 7.5}
    ingress = Kill("ingress", at=100.0, wall="", pid=2)
    mark_recovery(ingress, tmp_path, [], [(50.0, 52.0), (100.2, 104.0), (100.3, 103.5)])
    assert ingress.marks == {"reconnected": 3.5} and ingress.answered_at is None


def test_account_and_plot(tmp_path):
    apology = "Sorry, I'm having trouble answering right now."
    record = CallerLog(0, session_id="s1")
    record.events = [event(101.0, "speech_started", "a16000-3"),
                     event(104.0, "reply_text", "a16000-3", index=0, text="Fine."),
                     event(104.2, "reply_audio", "a16000-3", bytes=3200, offset=3200),
                     event(104.2, "reply_audio", "a16000-3", bytes=3200, offset=3200)]
    answered = turn(first_audio=104.2, timed_out=False, turn_id="a16000-3")
    answered.result.speech_end_at = 102.0
    answered.outcome = "answered"
    gone = turn(connection=0, disconnected=True)
    gone.outcome = "disconnected"
    run = CallerRun(record, [answered, gone], duplicate_counts(record.events), [(110.0, 111.0)])
    kills = [Kill("asr", at=100.0, wall="", pid=1), Kill("ingress", at=109.9, wall="", pid=2)]
    samples = [{"t": 0.0, "rss_mb": {"asr": 300.0}}, {"t": 70.0, "rss_mb": {"asr": 303.0}}]
    summary, kill_rows, rows = account([run], kills, 40.0, tmp_path, samples, 60.0, apology)
    assert [summary[k] for k in ("turns", "answered", "disconnected", "duplicated")] == [2, 1, 1, 1]
    assert [k["recovery_s"] for k in kill_rows] == [4.2, None]
    assert kill_rows[1]["reconnected_s"] == 1.1
    assert summary["reconnects"] == 1 and summary["apologies"] == 0
    assert summary["no_kill_s"] == {"p50": 34.2, "p95": 34.2, "n": 1}  # from 70 s, halfway to the first kill
    assert rows[0]["speech_end_s"] == 62.0 and rows[0]["outcome"] == "answered"
    plot({"turns": rows, "kills": kill_rows}, tmp_path / "chaos.png")
    assert (tmp_path / "chaos.png").stat().st_size > 0


def test_rss_growth_is_counted_over_each_process_life_not_across_a_restart():
    samples = [{"t": t, "rss_mb": {"tts": mb, "broker": 400.0 + t / 10}}
               for t, mb in ((0, 300.0), (60, 350.0), (120, 357.0), (180, 300.0), (240, 310.0), (300, 312.0))]
    growth = life_growth(samples, [{"target": "tts", "at_s": 150.0}], warmup_s=60.0)
    assert growth["tts"] == {"first_mb": 350.0, "last_mb": 357.0, "growth_pct": 2.0}
    assert growth["tts after the kill at 150 s"] == {"first_mb": 310.0, "last_mb": 312.0, "growth_pct": 0.6}
    assert growth["broker"]["growth_pct"] == 5.9  # 406 -> 430 MB: it ran the whole time
    short = life_growth(samples[:3], [{"target": "tts", "at_s": 100.0}], 60.0)["tts after the kill at 100 s"]
    assert short == {"first_mb": None, "last_mb": None, "growth_pct": None}  # too short a life to tell
