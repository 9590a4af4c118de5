"""The queue benchmark's accounting: outcomes from the queue's own view, the summary, the plot."""

from benchmarks.agent_queue import QueuedCall, note_queue, plot, settle, summarize

T0 = 1_700_000_000.0


def view(session_id, status, taken_at=0.0, returned="", agent="", since=T0):
    return {"session_id": session_id, "status": status, "taken_at": taken_at, "returned": returned,
            "agent": agent, "since": since}


def test_outcomes_follow_the_queue_not_the_callers_clock():
    calls = [QueuedCall(i, "wave", session_id=f"s{i}") for i in range(1, 6)]
    calls[2].left_at = T0 + 45.5  # told the bot is back
    calls[3].left_at = T0 + 25.0  # hung up
    settle(calls, [
        view("s1", "ended", T0 + 0.4, "end", "a1"),
        view("s2", "taken", T0 + 20.0, agent="a2"),
        view("s3", "bot", returned="expire"),
        view("s4", "abandoned", returned="abandon"),
        # s5: never listed (its hand-off did not happen): lost
    ])
    assert [c.outcome for c in calls] == ["taken", "taken", "expired", "abandoned", "lost"]
    assert [c.wait_s for c in calls] == [0.4, 20.0, 45.5, 25.0, None]
    assert calls[0].agent == "a1"


def test_a_claim_before_the_hang_up_counts_as_taken():
    """The queue's rule: a claim before the abandon wins (the agent then ends a call whose caller left)."""
    [call] = calls = [QueuedCall(1, "wave", session_id="s1")]
    call.left_at = T0 + 30.0
    settle(calls, [view("s1", "ended", T0 + 29.0, "end", "a1")])
    assert call.outcome == "taken" and call.wait_s == 29.0


def test_the_first_listing_gives_the_place_and_the_estimate():
    calls = {"s1": QueuedCall(1, "wave", session_id="s1")}
    note_queue(calls, [{"session_id": "other", "position": 1, "estimated_wait_s": 10.0},
                       {"session_id": "s1", "position": 2, "estimated_wait_s": None}], T0)
    note_queue(calls, [{"session_id": "s1", "position": 1, "estimated_wait_s": 10.0}], T0 + 1)
    call = calls["s1"]
    assert (call.first_position, call.first_estimate_s, call.first_seen_at) == (2, None, T0)
    assert call.estimates == [(T0, 2, None), (T0 + 1, 1, 10.0)]


def synthetic_run():
    waits = [0.5, 1.0, 19.0, 20.0, 39.0, None, 58.0, None]
    estimates = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0]
    outcomes = ["taken"] * 5 + ["abandoned", "taken", "expired"]
    calls = [QueuedCall(1, "warmup", session_id="w1", since=T0 - 60, taken_at=T0 - 59, outcome="taken")]
    for i, (wait, estimate, outcome) in enumerate(zip(waits, estimates, outcomes, strict=True)):
        call = QueuedCall(i + 1, "wave", session_id=f"s{i}", since=T0 + i, first_position=i + 1,
                          first_estimate_s=estimate, first_seen_at=T0 + i, outcome=outcome, agent="a1")
        if outcome == "taken":
            call.taken_at, call.ended_at = T0 + i + wait, T0 + i + wait + 20
        else:
            call.left_at = T0 + i + (25.0 if outcome == "abandoned" else 45.0)
        calls.append(call)
    return calls


def test_summary_of_a_wave():
    summary = summarize(synthetic_run(), sla_s=45.0)
    assert summary["callers"] == 8  # the warm-up is not counted
    assert summary["outcomes"] == {"taken": 6, "expired": 1, "abandoned": 1, "lost": 0}
    assert summary["wait_s"]["n"] == 6 and summary["wait_s"]["p50"] == 19.5
    assert summary["time_in_queue_s"]["n"] == 8
    assert summary["answered_within_sla"] == round(5 / 8, 3)  # 58 s is over the SLA
    assert (summary["sla_breaches"], summary["abandoned"]) == (1, 1)
    assert summary["sla_breach_rate"] == summary["abandon_rate"] == 0.125
    # estimates 10, 20, 30, 40, 50, 70 against waits 0.5, 1, 19, 20, 39, 58
    assert summary["estimate_error_s"]["n"] == 6 and summary["estimate_error_s"]["mean"] == 13.8
    assert summary["no_estimate"] == 0


def test_the_plot_is_written(tmp_path):
    calls = synthetic_run()
    path = tmp_path / "queue.png"
    plot(calls, summarize(calls, 45.0), 45.0, path)
    assert path.stat().st_size > 10_000
