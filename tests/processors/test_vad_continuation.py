"""Continuations on real speech: a caller who resumes before the reply is heard stays on one turn."""

from __future__ import annotations

import numpy as np

from processors.vad.continuation import ClosedTurn, Continuation
from schemas import SessionControl, TurnCancel, Utterance, VadEvent
from tests.conftest import load_clip
from tests.processors.conftest import chunks, collect, is_turn

FIRST = "sense_and_sensibility_01_austen_64kb-0880"  # "he was not an ill disposed young man"
SECOND = "sense_and_sensibility_01_austen_64kb-0890"  # "unless to be rather cold hearted and ..."
RATE = 16_000


def two_pieces(gap_s: float) -> tuple[np.ndarray, int]:
    """The two real clips, ``gap_s`` of silence between them and 1 s after; and where the gap starts."""
    first, _ = load_clip(FIRST)
    second, _ = load_clip(SECOND)
    silence = np.zeros(int(gap_s * RATE), dtype=np.float32)
    return np.concatenate([first, silence, second, np.zeros(RATE, dtype=np.float32)]), first.size


def kinds(out, kind):
    return [e.record for e in out if isinstance(e.record, kind)]


async def test_speech_resuming_within_the_window_is_one_turn(vad_stage):
    audio, _ = two_pieces(0.6)
    out = await collect(vad_stage, chunks("cont-1", audio))
    first, merged = [e.record for e in out if is_turn(e)]
    assert merged.start_sample == first.start_sample, "the second utterance holds both pieces"
    assert merged.end_sample - merged.start_sample > 7.5 * RATE
    assert merged.pcm[:len(first.pcm)] == first.pcm
    [cancel] = kinds(out, TurnCancel)
    assert (cancel.turn_id, cancel.reason) == (first.turn_id, "continuation")
    starts = [v for v in kinds(out, VadEvent) if v.kind == "speech_start"]
    ends = [v for v in kinds(out, VadEvent) if v.kind == "speech_end"]
    assert [v.continues for v in starts] == ["", first.turn_id], "the second speech holds the first reply"
    assert [v.continues for v in ends] == ["", first.turn_id]
    assert ends[1].turn_id == merged.turn_id != first.turn_id
    # speculation keeps working: the pause's copy has the merged bounds, so the asr stage reuses it
    [speculative] = [u for u in kinds(out, Utterance) if u.speculative and u.turn_id == merged.turn_id]
    assert (speculative.start_sample, speculative.end_sample, speculative.pcm) == (
        merged.start_sample, merged.end_sample, merged.pcm)


async def run_with_reply(stage, session_id: str, gap_s: float, replied_after_s: float):
    """Two pieces ``gap_s`` apart; the first turn's reply reaches the caller ``replied_after_s`` into it."""
    audio, gap_at = two_pieces(gap_s)
    records = list(chunks(session_id, audio))
    split = next(i for i, r in enumerate(records) if r.start_sample >= gap_at + replied_after_s * RATE)
    out = await collect(stage, records[:split])  # the first turn ended in the gap
    [first] = [e.record for e in out if is_turn(e)]
    replied = SessionControl(session_id=session_id, action="replied", turn_id=first.turn_id, ts=2000.0)
    return first, out + await collect(stage, [replied, *records[split:]])


async def test_a_reply_heard_before_the_caller_resumes_keeps_two_turns(settings):
    from processors.vad.stage import VadStage

    stage = VadStage(settings.model_copy(update={"vad_continuation_ms": 5000}))  # only the reply closes it
    stage.load()
    # the second piece starts 0.9 s or more after the reply reached the caller: past the 0.6 s reaction
    _, out = await run_with_reply(stage, "cont-2", gap_s=1.4, replied_after_s=0.5)
    turns = [e.record for e in out if is_turn(e)]
    assert len(turns) == 2 and turns[1].start_sample > turns[0].end_sample
    assert not kinds(out, TurnCancel)
    assert all(not v.continues for v in kinds(out, VadEvent))


async def test_speech_starting_before_the_caller_could_answer_the_reply_continues_the_turn(vad_stage):
    # the reply began 0.1 s before the second piece (plus the clip's lead-in): too soon to be an answer
    first, out = await run_with_reply(vad_stage, "cont-7", gap_s=0.8, replied_after_s=0.7)
    merged = [e.record for e in out if is_turn(e)][-1]
    assert merged.start_sample == first.start_sample and merged.turn_id != first.turn_id
    [cancel] = kinds(out, TurnCancel)
    assert (cancel.turn_id, cancel.reason) == (first.turn_id, "continuation")


async def test_speech_resuming_after_the_window_is_a_new_turn(vad_stage):
    audio, _ = two_pieces(2.5)
    out = await collect(vad_stage, chunks("cont-3", audio))
    turns = [e.record for e in out if is_turn(e)]
    assert len(turns) == 2 and turns[1].start_sample > turns[0].end_sample
    assert not kinds(out, TurnCancel)


async def test_the_window_setting_off_keeps_every_pause_a_turn(settings):
    from processors.vad.stage import VadStage

    stage = VadStage(settings.model_copy(update={"vad_continuation_ms": 0}))
    stage.load()
    audio, _ = two_pieces(0.6)
    out = await collect(stage, chunks("cont-4", audio))
    assert len([e for e in out if is_turn(e)]) == 2 and not kinds(out, TurnCancel)


async def test_the_turn_model_judges_the_whole_thought(turn_vad_stage, monkeypatch):
    seen = []
    probabilities = turn_vad_stage.turn_model.probabilities
    monkeypatch.setattr(turn_vad_stage.turn_model, "probabilities",
                        lambda clips: seen.extend(c.size for c in clips) or probabilities(clips))
    audio, _ = two_pieces(0.6)
    out = await collect(turn_vad_stage, chunks("cont-5", audio))
    # whichever ends the thought, the model's verdict at the first pause (incomplete: the
    # turn goes on) or a continuation (complete: the next piece continues it), it is one turn
    turns = [e.record for e in out if is_turn(e)]
    assert turns[-1].start_sample == turns[0].start_sample
    assert turns[-1].end_sample - turns[-1].start_sample > 7.5 * RATE
    assert len(turns) == 1 + len(kinds(out, TurnCancel))
    assert max(seen) > 7.5 * RATE, "the model heard both pieces at the second pause"


async def test_a_blip_after_a_turn_releases_the_held_reply(vad_stage):
    first, _ = load_clip(FIRST)
    blip = load_clip(SECOND)[0][int(0.3 * RATE):int(0.45 * RATE)]  # 150 ms of real speech
    audio = np.concatenate([first, np.zeros(int(0.6 * RATE), np.float32), blip, np.zeros(RATE, np.float32)])
    out = await collect(vad_stage, chunks("cont-6", audio))
    [turn] = [e.record for e in out if is_turn(e)]
    ends = [v for v in kinds(out, VadEvent) if v.kind == "speech_end"]
    assert [(v.utterance, v.continues) for v in ends] == [(True, ""), (False, turn.turn_id)]
    assert not kinds(out, TurnCancel)


def test_continuation_state_machine():
    state = Continuation(window=100, max_samples=1000)
    state.close(ClosedTurn("a", 0, 300))
    state.speech_start(450)  # 150 samples after the end: too late
    assert state.continuing is None and state.closed is None
    state.close(ClosedTurn("a", 0, 300))
    state.replied("other", 350)  # another turn's reply does not count
    state.speech_start(380)
    assert state.continuing == ClosedTurn("a", 0, 300)
    assert state.merged_start(900) == state.continuing
    assert state.merged_start(1200) is None, "longer than an utterance may be"
    state.blip()
    state.replied("a", 390)
    assert state.closed is None and state.keep_from() is None, "no reaction time: the reply ends it"
    state.close(ClosedTurn("b", 0, 300))
    state.expire(401)
    assert state.closed is None


def test_speech_within_the_reaction_time_after_the_reply_continues():
    state = Continuation(window=1000, max_samples=5000, reaction=50)
    state.close(ClosedTurn("a", 0, 300))
    state.replied("a", 500)
    state.replied("a", 520)  # the first report counts
    state.expire(540)
    assert state.keep_from() == 0, "the caller may still be on the turn"
    state.speech_start(550)
    assert state.continuing == ClosedTurn("a", 0, 300)
    state.close(ClosedTurn("b", 600, 900))
    state.replied("b", 1000)
    state.expire(1051)
    assert state.closed is None, "the caller had time to hear the reply"
    state.close(ClosedTurn("c", 1100, 1200))
    state.replied("c", 1300)
    state.speech_start(1351)
    assert state.continuing is None and state.closed is None

