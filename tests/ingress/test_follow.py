"""ingress.follow.started: a slow start outlives one request's timeout and the next request shares it."""

from __future__ import annotations

import asyncio

import pytest

from ingress import follow
from ingress.follow import TopicFollower, started
from streams.settings import Settings


class SlowView(TopicFollower):
    """A view whose start takes ``delay`` seconds (a loaded broker), counting its starts."""

    topics = ()

    def __init__(self, delay: float) -> None:
        super().__init__(Settings())
        self.delay = delay
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        await asyncio.sleep(self.delay)
        self.task = asyncio.create_task(asyncio.sleep(3600))


async def test_a_start_slower_than_a_request_goes_on_and_is_shared(monkeypatch):
    monkeypatch.setattr(follow, "START_TIMEOUT_S", 0.05)
    view, lock = SlowView(delay=0.2), asyncio.Lock()
    with pytest.raises(TimeoutError):
        await started(view, lock)  # this request gives up ...
    assert not view.running and view.starts == 1
    await asyncio.sleep(0.25)  # ... but the start finishes
    assert await started(view, lock) is view and view.running and view.starts == 1
    await view.stop()
    assert not view.running


async def test_stop_cancels_a_start_in_progress(monkeypatch):
    monkeypatch.setattr(follow, "START_TIMEOUT_S", 0.05)
    view, lock = SlowView(delay=10.0), asyncio.Lock()
    with pytest.raises(TimeoutError):
        await started(view, lock)
    await view.stop()
    assert view.starting.cancelled() and not view.running
