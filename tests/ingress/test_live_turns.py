"""When a live turn counts as in flight (what a yielding recorded call waits for), from the egress events;
when the count is produced, and when a waiting call goes on.

Through the real broker and a live caller beside a recorded call: tests/integration/test_calls.py.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import ingress.live_turns as live_turns_module
from ingress.connections import attach
from ingress.live_turns import COALESCE_S, REFRESH_S, LiveLoad, in_flight
from ingress.session import CallerSession
from ingress.turns import Turn
from schemas import LiveTurns, ReplyText, SynthAudio, Transcript, VadEvent
from streams.settings import Settings
from tests.ingress.conftest import FakeGateway

SESSION = {"session_id": "s1", "turn_id": "a16000"}


def vad(kind: str, utterance: bool = True) -> VadEvent:
    return VadEvent(**SESSION, kind=kind, sample=16000, ts=time.time(), utterance=utterance)


def test_a_spoken_turn_is_in_flight_from_its_speech_end_to_its_first_reply_audio():
    turn = Turn("a16000")
    turn.absorb(vad("speech_start"))
    assert not in_flight(turn)  # the caller is still speaking
    turn.absorb(vad("speech_end"))
    assert in_flight(turn)
    turn.absorb(Transcript(**SESSION, text="what is my balance"))
    turn.absorb(ReplyText(**SESSION, index=0, text="Your balance is ten dollars.", final=True))
    assert in_flight(turn)  # the words are there, the caller hears nothing yet
    turn.absorb(SynthAudio(**SESSION, index=0, seq=0, sample_rate=22050, pcm=b"\1\0" * 100))
    assert not in_flight(turn)


def test_a_blip_a_failed_turn_and_no_words_are_not_in_flight():
    blip = Turn("a16000")
    blip.absorb(vad("speech_end", utterance=False))
    failed = Turn("a16000")
    failed.absorb(vad("speech_end"))
    failed.failed = True
    silent = Turn("a16000")
    silent.absorb(vad("speech_end"))
    silent.absorb(Transcript(**SESSION, text="", marks={"asr.end": time.time()}))
    assert not any(in_flight(turn) for turn in (blip, failed, silent))


def test_a_text_only_turn_is_in_flight_until_its_first_sentence():
    turn = Turn("t1", source="text", speak=False)
    turn.absorb(Transcript(**SESSION, text="hello", source="text", speak=False))
    assert in_flight(turn)
    turn.absorb(ReplyText(**SESSION, index=0, text="Hi.", final=False))
    assert not in_flight(turn)


class Caller:
    """A caller's connection that takes everything it is sent."""

    closed = False

    async def send_event(self, payload: dict) -> None:
        pass

    async def send_audio(self, turn_id: str, pcm: bytes, sample_rate: int, final: bool, offset: int) -> None:
        pass

    async def stop_playback(self, turn_id: str) -> None:
        pass

    async def close(self, code: int, message: bytes) -> None:
        self.closed = True


def counts(gateway: FakeGateway) -> list[int]:
    """The counts the replica produced to ``voxbus.heartbeats``, in order."""
    return [record.in_flight for topic, record in gateway.produced if isinstance(record, LiveTurns)]


def watch_counts(live: LiveLoad) -> list[float]:
    """When (monotonic s) ``live`` counts this replica's turns from now on: the list fills as it does."""
    looks: list[float] = []
    count = live.local

    def counted() -> int:
        looks.append(time.monotonic())
        return count()

    live.local = counted  # type: ignore[method-assign]
    return looks


async def test_the_count_is_produced_when_a_turn_changes_and_not_looked_at_while_nothing_does(tmp_path):
    gateway = FakeGateway(Settings(data_dir=tmp_path, turn_timeout_s=0))
    live = gateway.live
    looks = watch_counts(live)
    await live.start()
    try:
        await asyncio.sleep(0.3)
        assert len(looks) == 1 and counts(gateway) == []  # no caller: one count at start, then nothing

        session = CallerSession(gateway, Caller(), "s1", 16000)  # type: ignore[arg-type]
        await attach(gateway, session)  # type: ignore[arg-type]
        await session.deliver(vad("speech_start"))
        await session.deliver(vad("speech_end"))
        ended = time.monotonic()
        waiting = asyncio.create_task(live.until_idle(5.0))
        await asyncio.sleep(0.05)
        assert counts(gateway) == [1] and not waiting.done()

        await asyncio.sleep(REFRESH_S + 0.1)
        assert counts(gateway) == [1, 1]  # produced again while above zero, so readers know it is current
        await session.deliver(SynthAudio(**SESSION, index=0, seq=0, sample_rate=22050, pcm=b"\1\0" * 100))
        answered = time.monotonic()
        waited = await asyncio.wait_for(waiting, 0.2)  # woken by the change, not by a timeout
        assert waited == pytest.approx(answered - ended, abs=0.1)
        await asyncio.sleep(0.05)
        assert counts(gateway) == [1, 1, 0]
        settled = len(looks)
        await asyncio.sleep(REFRESH_S + 0.1)
        assert len(looks) == settled and counts(gateway) == [1, 1, 0]  # at zero nothing is looked at again
    finally:
        await live.stop()


def live_turns(instance: str, count: int) -> LiveTurns:
    return LiveTurns(instance=instance, in_flight=count, ts=time.time())


async def test_a_waiting_call_goes_on_when_the_other_replica_says_so_or_its_count_is_stale(tmp_path,
                                                                                            monkeypatch):
    gateway = FakeGateway(Settings(data_dir=tmp_path))
    live = gateway.live
    live.absorb(live_turns("other:1:2", 1))
    waiting = asyncio.create_task(live.until_idle(5.0))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    live.absorb(live_turns("other:1:2", 0))
    assert await asyncio.wait_for(waiting, 0.1) == pytest.approx(0.2, abs=0.05)

    monkeypatch.setattr(live_turns_module, "STALE_S", 0.4)
    live.absorb(live_turns("other:1:2", 1))  # then the replica dies mid-turn: no record again
    assert await asyncio.wait_for(live.until_idle(5.0), 1.0) == pytest.approx(0.4, abs=0.05)


async def test_a_burst_of_changes_is_counted_once(tmp_path):
    gateway = FakeGateway(Settings(data_dir=tmp_path))
    live = gateway.live
    looks = watch_counts(live)
    await live.start()
    try:
        await asyncio.sleep(0.01)
        for _ in range(100):  # a reply's audio chunks, callers' events: each a change
            live.changed()
            await asyncio.sleep(0)
        await asyncio.sleep(COALESCE_S * 2)
        assert len(looks) == 2  # the count at start, then one for the whole burst
    finally:
        await live.stop()
