"""A scripted caller: speaks real recordings in real time and waits for events, like a phone."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np

from tests.conftest import DATA
from voxbus.client import FRAME_MS, load_pcm16


def piper_speech(settings: Any, text: str) -> np.ndarray:
    """``text`` spoken by the configured Piper voice: int16 mono samples at 16 kHz (a synthetic caller).

    The recordings in tests/data are audiobook lines; a customer-service request spoken here is
    what a test needs when the words matter (an in-domain question, a request for a person).
    """
    import soxr

    from processors.tts.piper_voice import Synthesizer

    voice = Synthesizer.from_settings(settings)
    pcm = np.frombuffer(b"".join(voice.synthesize(text)), dtype="<i2")
    speech = soxr.resample(pcm.astype(np.float32) / 32768, voice.sample_rate, 16000)
    return (speech * 32767).astype(np.int16)


class ScriptedCaller:
    """Streams audio frames in real time (silence between utterances) and records every event.

    ``events`` holds ``(monotonic time, event dict)``; binary frames are recorded as
    ``{"type": "binary", "bytes": n}``.
    """

    def __init__(self, url: str, **start: Any) -> None:
        self.url = url
        self.start = start
        """More fields of the start message (``caller_id``...)."""
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.frame = 16000 * FRAME_MS // 1000
        self.clock = 0.0

    async def __aenter__(self) -> ScriptedCaller:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, max_msg_size=16 * 1024 * 1024)
        await self.ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, **self.start}))
        ready = await self.ws.receive_json(timeout=10)
        assert ready["type"] == "ready", ready
        self.session_id = ready["session_id"]
        self.reader = asyncio.create_task(self._read())
        self.clock = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        self.reader.cancel()
        await self.http.close()

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append((time.monotonic(), json.loads(msg.data)))
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.events.append((time.monotonic(), {"type": "binary", "bytes": len(msg.data)}))

    async def _send(self, samples: np.ndarray) -> None:
        for start in range(0, samples.size, self.frame):
            await self.ws.send_bytes(samples[start:start + self.frame].tobytes())
            self.clock += FRAME_MS / 1000
            await asyncio.sleep(max(0.0, self.clock - time.monotonic()))

    async def say(self, clip: str) -> float:
        """Speak a recording from tests/data in real time; return when it started (monotonic)."""
        samples, rate = load_pcm16(DATA / f"{clip}.wav")
        assert rate == 16000
        return await self.speak(samples)

    async def speak(self, samples: np.ndarray) -> float:
        """Speak int16 16 kHz ``samples`` in real time; return when it started (monotonic)."""
        self.clock = max(self.clock, time.monotonic())
        started = self.clock
        await self._send(samples)
        return started

    async def until(self, predicate: Any, timeout_s: float = 60.0) -> dict[str, Any]:
        """Keep the line open with silence until an event matches ``predicate``; return it."""
        seen = 0
        silence = np.zeros(self.frame, dtype=np.int16)
        deadline = time.monotonic() + timeout_s
        self.clock = max(self.clock, time.monotonic())
        while time.monotonic() < deadline:
            for _, event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            await self._send(silence)
        raise TimeoutError(f"no matching event in {timeout_s} s; last events: {self.events[-5:]}")

    def after(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Events received after ``event``."""
        index = next(i for i, (_, e) in enumerate(self.events) if e is event)
        return [e for _, e in self.events[index + 1:]]
