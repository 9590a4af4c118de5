"""processors.holds: a partition's commit floor is the first record still needed by any session on it."""

from __future__ import annotations

from faust.types import TP

from processors.holds import InputHolds
from schemas import SessionControl

P0, P1 = TP("voxbus.audio", 0), TP("voxbus.audio", 1)


def record(session: str, n: int) -> SessionControl:
    return SessionControl(session_id=session, action="config", config={"n": n}, ts=0.0)


def test_the_floor_is_the_oldest_record_still_needed_per_partition():
    holds = InputHolds()
    for offset, (session, tp) in enumerate([("a", P0), ("b", P0), ("a", P0), ("b", P0), ("c", P1)]):
        holds.track(session, tp, offset, record(session, offset))
    needed = {"a": 2, "b": 1, "c": 99}  # each session's first record still needed
    holds.release(lambda r: r.config["n"] >= needed[r.session_id])
    assert holds.floor(P0) == 1 and holds.floor(P1) is None
    needed["b"] = 99  # b's utterance was sent: a's open one now holds the partition
    holds.release(lambda r: r.config["n"] >= needed[r.session_id])
    assert holds.floor(P0) == 2


def test_revoked_partitions_hold_nothing():
    holds = InputHolds()
    holds.track("a", P0, 5, record("a", 5))
    holds.track("c", P1, 7, record("c", 7))
    holds.drop({P0})
    assert holds.floor(P0) is None and holds.floor(P1) == 7
