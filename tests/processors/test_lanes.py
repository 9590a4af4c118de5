"""Concurrency across sessions, order within one (processors/lanes.py)."""

from __future__ import annotations

import asyncio

import pytest

from processors.lanes import SessionLanes


async def test_sessions_run_concurrently_and_each_in_order():
    lanes = SessionLanes(8)
    log: list[str] = []

    def job(key: str, index: int, seconds: float):
        async def work() -> None:
            log.append(f"{key}{index}+")
            await asyncio.sleep(seconds)
            log.append(f"{key}{index}-")
        return work

    started = asyncio.get_running_loop().time()
    await lanes.submit("a", job("a", 1, 0.2))
    await lanes.submit("b", job("b", 1, 0.2))
    await lanes.submit("a", job("a", 2, 0.05))
    await lanes.drain()
    elapsed = asyncio.get_running_loop().time() - started
    assert log.index("a1-") < log.index("a2+")  # a's second record waited for its first
    assert log.index("b1+") < log.index("a1-")  # b did not wait for a
    assert elapsed < 0.4  # 0.25 (a) in parallel with 0.2 (b), not 0.45 in series
    assert lanes.in_flight == 0


async def test_a_failing_record_does_not_stop_its_session():
    lanes = SessionLanes(2)
    done: list[int] = []

    async def boom() -> None:
        raise RuntimeError("stage bug")

    async def ok() -> None:
        done.append(1)

    await lanes.submit("s", boom)
    await lanes.submit("s", ok)
    await lanes.drain()
    assert done == [1]


async def test_submit_waits_when_the_limit_is_reached():
    lanes = SessionLanes(2)
    release = asyncio.Event()

    async def blocked() -> None:
        await release.wait()

    await lanes.submit("a", blocked)
    await lanes.submit("b", blocked)
    third = asyncio.create_task(lanes.submit("c", blocked))
    await asyncio.sleep(0.05)
    assert not third.done()  # backpressure: the consumer stops here
    release.set()
    await asyncio.wait_for(third, 1)
    await lanes.drain()


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        SessionLanes(0)
