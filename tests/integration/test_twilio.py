"""A phone call over the Twilio Media Streams protocol (``/v1/twilio``), through every stage.

The test plays Twilio's part: ``connected`` and ``start``, then a real recording as
20 ms base64 mu-law 8 kHz ``media`` frames in real time (silence between utterances,
as a phone line sends), and it "plays" the reply it receives in real time, echoing
each ``mark`` when the audio before it has played and dropping its buffer on ``clear``
(echoing the marks it drops), as Twilio does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import soxr
from aiokafka import AIOKafkaConsumer

from ingress.g711 import ulaw_decode, ulaw_encode
from schemas import SchemaError, TurnRecord, decode
from streams.settings import Settings
from streams.topics import TURNS
from tests.conftest import DATA, load_clip, wer
from voxbus.client import load_pcm16

pytestmark = pytest.mark.integration

QUESTION = "sense_and_sensibility_01_austen_64kb-0880"
INTERRUPTION = "sense_and_sensibility_01_austen_64kb-0930"
FRAME = 160  # 20 ms of 8 kHz mu-law
REACTION_S = Settings().vad_continuation_reaction_ms / 1000 + 0.4
"""Reply playing before the caller speaks again: past the reaction time that still continues a turn."""
SILENCE = bytes([0xFF]) * FRAME  # mu-law zero


class Twilio:
    """Twilio's side of one bidirectional media stream."""

    def __init__(self, url: str, **custom: str) -> None:
        self.url = url
        self.custom = {"caller": "+15550100", **custom}
        """The stream's ``customParameters`` (TwiML ``<Parameter>`` s)."""
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.reply = bytearray()  # every reply byte received (mu-law)
        self.played_until = 0.0  # monotonic time at which the buffered reply audio ends
        self.pending_marks: dict[str, asyncio.TimerHandle] = {}
        self.echoed: list[str] = []
        self.sequence = 0
        self.chunk = 0
        self.clock = 0.0

    async def __aenter__(self) -> Twilio:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send({"event": "start", "streamSid": self.stream_sid, "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid, "callSid": self.call_sid,
            "tracks": ["inbound"], "customParameters": self.custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self.reader = asyncio.create_task(self._read())
        self.clock = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.ws.closed:
            await self.send({"event": "stop", "streamSid": self.stream_sid,
                             "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
            await self.ws.close()
        self.reader.cancel()
        await self.http.close()

    async def send(self, message: dict[str, Any]) -> None:
        self.sequence += 1
        await self.ws.send_str(json.dumps({**message, "sequenceNumber": str(self.sequence)}))

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(msg.data)
            now = time.monotonic()
            self.received.append((now, message))
            event = message["event"]
            if event == "media":
                audio = base64.b64decode(message["media"]["payload"])
                self.reply.extend(audio)
                self.played_until = max(now, self.played_until) + len(audio) / 8000
            elif event == "mark":
                name = message["mark"]["name"]
                delay = max(0.0, self.played_until - now)
                self.pending_marks[name] = loop.call_later(delay, self._echo, name)
            elif event == "clear":
                self.played_until = now
                for name, timer in list(self.pending_marks.items()):
                    timer.cancel()
                    self._echo(name)

    def _echo(self, name: str) -> None:
        self.pending_marks.pop(name, None)
        self.echoed.append(name)
        echo = {"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}}
        asyncio.ensure_future(self.send(echo))

    async def _media(self, payload: bytes) -> None:
        self.chunk += 1
        await self.send({"event": "media", "streamSid": self.stream_sid, "media": {
            "track": "inbound", "chunk": str(self.chunk), "timestamp": str(self.chunk * 20),
            "payload": base64.b64encode(payload).decode()}})
        self.clock += 0.02
        await asyncio.sleep(max(0.0, self.clock - time.monotonic()))

    async def say(self, clip: str | Path) -> float:
        """Speak a clip of tests/data (or a WAV file) as 8 kHz mu-law in real time; return when it ended."""
        samples, rate = load_pcm16(clip if isinstance(clip, Path) else DATA / f"{clip}.wav")
        encoded = ulaw_encode(soxr.resample(samples, rate, 8000))
        self.clock = max(self.clock, time.monotonic())
        for start in range(0, len(encoded), FRAME):
            await self._media(encoded[start:start + FRAME].ljust(FRAME, b"\xff"))
        return time.monotonic()

    def events(self, kind: str, after: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.received if m["event"] == kind and t >= after]

    async def until(self, predicate: Any, timeout_s: float = 60.0) -> None:
        """Keep sending silence until ``predicate()``."""
        deadline = time.monotonic() + timeout_s
        self.clock = max(self.clock, time.monotonic())
        while not predicate():
            last = [m["event"] for _, m in self.received][-8:]
            assert time.monotonic() < deadline, f"timed out; last messages: {last}"
            await self._media(SILENCE)


async def turn_records(bootstrap: str, session_id: str, count: int | Callable[[list[TurnRecord]], bool],
                       timeout_s: float = 20.0, settle_s: float = 0.0) -> list[TurnRecord]:
    """The session's turn records on ``voxbus.turns`` once there are ``count`` (or ``count(found)``
    is true), plus those that follow within ``settle_s`` (to see that no more come); after
    ``timeout_s``, those there are."""
    enough = count if callable(count) else lambda found: len(found) >= count
    consumer = AIOKafkaConsumer(TURNS.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    found: list[TurnRecord] = []
    try:
        deadline, settling = time.monotonic() + timeout_s, False
        while time.monotonic() < deadline:
            if not settling and enough(found):
                settling, deadline = True, min(deadline, time.monotonic() + settle_s)
                continue
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    try:
                        record = decode(message.value)
                    except SchemaError:
                        continue  # other tests put garbage on the topics (dead-letter tests)
                    if isinstance(record, TurnRecord) and record.session_id == session_id:
                        found.append(record)
        return found
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def twilio_url(stack) -> str:
    return f"ws://{stack.host}:{stack.port}/v1/twilio"


async def test_phone_call_gets_a_spoken_reply(twilio_url, stack, recognizer):
    async with Twilio(twilio_url) as phone:
        spoken = await phone.say(QUESTION)
        await phone.until(lambda: phone.events("media"), timeout_s=60)
        first_media = phone.events("media")[0][0]
        # the whole reply: until its last mark has been echoed (played) and nothing more comes
        await phone.until(lambda: phone.echoed and not phone.pending_marks
                          and time.monotonic() - phone.received[-1][0] > 5.0, timeout_s=90)
        media = phone.events("media")
        marks = phone.events("mark")
    assert all(m["streamSid"] == phone.stream_sid and len(base64.b64decode(m["media"]["payload"])) <= FRAME
               for _, m in media)
    assert marks and all(name in phone.echoed for name in (m["mark"]["name"] for _, m in marks))
    assert not phone.events("clear")
    records = await turn_records(stack.bootstrap, phone.call_sid, 1)
    assert records, "no turn record for the call"
    record = records[0]
    _, reference = load_clip(QUESTION)
    assert wer(reference, record.transcript) <= 0.4, record.transcript
    reply = ulaw_decode(bytes(phone.reply)).astype(np.float32) / 32768
    heard = recognizer.transcribe(soxr.resample(reply, 8000, 16000)).text
    assert wer(record.reply_text, heard) <= 0.5, (record.reply_text, heard)
    seconds = len(phone.reply) / 8000
    print(f"\ntwilio: heard {record.transcript!r}; caller speech end -> first reply media "
          f"{(first_media - spoken) * 1000:.0f} ms (voice-to-voice at the ingress "
          f"{record.voice_to_voice_ms} ms); {len(media)} media frames = {seconds:.1f} s, "
          f"{len(marks)} marks echoed; reply {record.reply_text!r}")


async def test_caller_speech_clears_twilio_playback(twilio_url, stack):
    async with Twilio(twilio_url) as phone:
        await phone.say(QUESTION)
        await phone.until(lambda: phone.events("media"), timeout_s=60)
        # a barge-in answers what the caller heard: speech starting within VOXBUS_VAD_CONTINUATION_REACTION_MS
        # (600 ms) of the reply reaching them still continues their turn (processors/vad/continuation.py)
        heard_from = time.monotonic()
        await phone.until(lambda: time.monotonic() - heard_from > REACTION_S)
        interrupting = time.monotonic()
        await phone.say(INTERRUPTION)
        await phone.until(lambda: phone.events("clear"), timeout_s=30)
        cleared = phone.events("clear")[0][0]
        clears = len(phone.events("clear"))
        # the interruption is answered in its turn
        await phone.until(lambda: len(phone.events("media", after=cleared + 0.5)) > 0, timeout_s=90)
        await phone.until(lambda: not phone.pending_marks and time.monotonic() - phone.received[-1][0] > 2.0,
                          timeout_s=90)
    assert phone.events("clear")[0][1] == {"event": "clear", "streamSid": phone.stream_sid}
    records = await turn_records(stack.bootstrap, phone.call_sid, 2)
    interrupted = [r for r in records if r.interrupted]
    assert interrupted, [(r.transcript, r.interrupted) for r in records]
    answered = [r for r in records if not r.interrupted and r.reply_text]
    assert answered and wer(load_clip(INTERRUPTION)[1], answered[-1].transcript) <= 0.4
    print(f"\ntwilio barge-in: interruption start -> clear {(cleared - interrupting) * 1000:.0f} ms "
          f"(onset -> stop at the ingress {interrupted[0].latency_ms.get('barge_in_stop')} ms), "
          f"{clears} clear(s); "
          f"heard before the cut: {interrupted[0].heard_text!r}")
