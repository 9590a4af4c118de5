"""Issue 16 hole 4: connection epochs are ordered by the claims on voxbus.sessions, not by clocks."""

from __future__ import annotations

import time

from ingress.epochs import EpochClock
from schemas import SessionControl
from tests.ingress.test_edge import START, session

BEHIND_S = 600.0
"""How far behind the second replica's clock is (s): the vad stage forgets a session after 600 s."""


def test_a_claim_proposed_by_a_clock_behind_still_folds_past_the_last_epoch():
    clock = EpochClock()
    now = time.time()
    first = clock.fold("s1", clock.propose("s1", now), (0, 0))
    assert first == int(now * 1000)
    behind = clock.propose("s1", now - BEHIND_S)  # a replica that has read the first claim
    assert behind == first + 1
    stale = int((now - BEHIND_S) * 1000)  # a replica that had not: the fold corrects it
    assert clock.fold("s1", stale, (0, 1)) == first + 1 and clock.at((0, 1)) == first + 1
    # two replicas admitting the session at once propose the same epoch: the log orders them
    same = clock.propose("s1", now)
    assert clock.fold("s1", same, (0, 2)) < clock.fold("s1", same, (0, 3))
    assert clock.fold("s2", 0, (1, 0)) == 1  # a claim of an older release (no epoch) still orders
    clock.forget("s1")
    assert clock.propose("s1", 0.0) == 1


async def test_a_reconnection_on_a_replica_whose_clock_is_behind_gets_a_newer_epoch(serve, monkeypatch):
    bus: list = []
    client, gateway = await serve(bus)
    events, _, _, ws = await session(client, hold=True)
    sid = events[0]["session_id"]
    await ws.close()
    other, other_gateway = await serve(bus)  # another replica, on the same bus
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - BEHIND_S)
    events, _, _, ws = await session(other, {**START, "session_id": sid}, hold=True)
    assert events[0]["session_id"] == sid
    await ws.close()
    [first] = [r for r in gateway.records(SessionControl, sid) if r.action == "start"]
    [second] = [r for r in other_gateway.records(SessionControl, sid) if r.action == "start"]
    assert second.epoch > first.epoch, "the vad stage would drop the reconnected caller's audio"
