"""A simulated caller that speaks to voxbus (``/v1/stream``) or to the Pipecat bot (``/ws``).

Like ``tests/integration/caller.py``: recordings are streamed in real time as 20 ms
PCM16 frames, with silence frames between utterances, over one WebSocket per caller.
After each utterance the caller keeps the line open with silence until the reply has
finished playing (or a timeout), then speaks the next one.

What is measured, identically for both systems, on the client's monotonic clock:

* ``speech_end_at``: when the frame holding the utterance's last speech sample
  (silero-vad's end, see :mod:`benchmarks.utterances`) was sent;
* ``first_audio_at``: when the first byte of reply audio arrived after that;
* voice-to-voice = ``first_audio_at - speech_end_at``.

"Finished playing" is judged on the client too, the same way for both: reply audio is
played in real time from its arrival (each chunk after the previous one), and the reply
is over once that playback has ended and no reply audio has arrived for
:data:`QUIET_S`.  voxbus's ``turn_end`` events (per-stage ``latency_ms``) are collected
on the side, matched to turns by ``turn_id``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import numpy as np

from benchmarks.utterances import SAMPLE_RATE, Utterance

FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
QUIET_S = 1.0
"""A reply is over when its playback has ended and no reply audio came for this long (s)."""
PLAYBACK_CAP_S = 60.0
"""Longest a caller waits for a started reply to finish playing (s)."""
TRACE = bool(os.environ.get("BENCH_TRACE"))
"""Print every JSON event the callers receive (set ``BENCH_TRACE=1``)."""
LEAD_IN_S = 0.5
"""Silence a caller sends after connecting, before its first utterance (s)."""


@dataclass
class TurnResult:
    """One turn as the caller saw it."""

    system: str
    callers: int
    caller: int
    turn: int
    utterance: str
    speech_end_at: float
    first_audio_at: float | None = None
    reply_done_at: float | None = None
    reply_audio_s: float = 0.0
    timed_out: bool = False
    turn_id: str | None = None
    session_id: str | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_voice_to_voice_ms: float | None = None
    transcript: str = ""
    reply_text: str = ""
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def voice_to_voice_ms(self) -> float | None:
        """First reply audio byte received minus last speech sample sent (ms)."""
        if self.first_audio_at is None:
            return None
        return round((self.first_audio_at - self.speech_end_at) * 1000.0, 1)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["voice_to_voice_ms"] = self.voice_to_voice_ms
        return out


@dataclass
class AudioArrival:
    at: float
    nbytes: int
    sample_rate: int
    turn_id: str | None


class SimulatedCaller:
    """One caller on one WebSocket.

    Args:
        system: ``"voxbus"`` (the ``/v1/stream`` protocol) or ``"pipecat"`` (raw PCM, see
            ``benchmarks/pipecat_bot.py``).
        url: the WebSocket URL.
        pipecat_rate: sample rate of the Pipecat bot's reply audio (it sends no header).
    """

    def __init__(self, system: str, url: str, pipecat_rate: int = 22050) -> None:
        if system not in ("voxbus", "pipecat"):
            raise ValueError(f"unknown system {system!r}")
        self.system = system
        self.url = url
        self.pipecat_rate = pipecat_rate
        self.audio: list[AudioArrival] = []
        self.turn_ends: dict[str, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self._header: dict[str, Any] | None = None
        self.clock = 0.0
        self.samples_sent = 0
        self.silence = np.zeros(FRAME_SAMPLES, dtype=np.int16).tobytes()
        self.speech_span = (0, 0)

    async def __aenter__(self) -> SimulatedCaller:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url, max_msg_size=16 * 1024 * 1024, heartbeat=None)
        if self.system == "voxbus":
            await self.ws.send_str(json.dumps({"type": "start", "sample_rate": SAMPLE_RATE,
                                               "encoding": "pcm_s16le"}))
        ready = await self.ws.receive_json(timeout=60)
        if ready.get("type") != "ready":
            raise RuntimeError(f"{self.system}: session refused: {ready}")
        self.session_id = ready.get("session_id")
        self.reader = asyncio.create_task(self._read())
        self.clock = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self.system == "voxbus" and not self.ws.closed:
                await self.ws.send_str(json.dumps({"type": "end"}))
            await self.ws.close()
        finally:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
            await self.http.close()

    async def _read(self) -> None:
        async for msg in self.ws:
            now = time.monotonic()
            if msg.type == aiohttp.WSMsgType.BINARY:
                if self.system == "voxbus":
                    header, self._header = self._header, None
                    if header is None:
                        continue
                    self.audio.append(AudioArrival(now, len(msg.data), header["sample_rate"],
                                                   header["turn_id"]))
                else:
                    self.audio.append(AudioArrival(now, len(msg.data), self.pipecat_rate, None))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                event = json.loads(msg.data)
                if TRACE:
                    print(f"[trace {self.system} {now:.3f}] {event}", file=sys.stderr, flush=True)
                self._on_event(event)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "reply_audio":
            self._header = event if event.get("bytes") else None
        elif kind == "turn_end":
            self.turn_ends[event["turn_id"]] = event
        elif kind == "error":
            self.errors.append(event)

    async def _send(self, pcm: bytes) -> float:
        """Send one frame at its real-time slot; return when it was sent (monotonic)."""
        await asyncio.sleep(max(0.0, self.clock - time.monotonic()))
        await self.ws.send_bytes(pcm)
        sent = time.monotonic()
        self.samples_sent += len(pcm) // 2
        self.clock += FRAME_MS / 1000
        return sent

    async def silence_for(self, seconds: float) -> None:
        """Stream ``seconds`` of silence in real time."""
        self.clock = max(self.clock, time.monotonic())
        for _ in range(round(seconds * 1000 / FRAME_MS)):
            await self._send(self.silence)

    async def speak(self, utterance: Utterance) -> float:
        """Stream ``utterance`` in real time; return when its last speech sample was sent.

        Sets :attr:`speech_span`: the session samples of the utterance's speech.
        """
        self.clock = max(self.clock, time.monotonic())
        pcm = utterance.pcm
        offset = self.samples_sent
        self.speech_span = (offset + utterance.speech_start, offset + utterance.speech_end)
        speech_end_at = 0.0
        last_speech_frame = (utterance.speech_end - 1) // FRAME_SAMPLES
        for index, offset in enumerate(range(0, pcm.size, FRAME_SAMPLES)):
            frame = pcm[offset:offset + FRAME_SAMPLES]
            if frame.size < FRAME_SAMPLES:
                frame = np.concatenate([frame, np.zeros(FRAME_SAMPLES - frame.size, dtype=np.int16)])
            sent = await self._send(frame.tobytes())
            if index == last_speech_frame:
                speech_end_at = sent
        return speech_end_at

    def turn_abandoned(self) -> bool:
        """Whether the caller stops waiting for the reply to the utterance just spoken (never, here)."""
        return False

    def is_reply_to(self, arrival: AudioArrival) -> bool:
        """Whether reply audio answers the utterance being spoken.

        voxbus names a turn ``a<first speech sample of the connection>-<epoch>``, so its audio is
        matched to the utterance whose speech it starts in (a late reply to an earlier
        utterance is not this one's).  The Pipecat bot sends no turn ids: any reply audio
        after the speech end counts.
        """
        if self.system != "voxbus" or not (arrival.turn_id or "").startswith("a"):
            return True
        try:
            sample = int(arrival.turn_id[1:].split("-")[0])  # type: ignore[index]
        except ValueError:
            return True
        start, end = self.speech_span
        return start - SAMPLE_RATE // 2 <= sample < end

    async def turn(self, utterance: Utterance, result: TurnResult, timeout_s: float) -> TurnResult:
        """Speak, then keep the line open with silence until the reply has played out.

        ``timeout_s`` bounds the wait for the first reply audio (then the turn is
        ``timed_out``, as it is at once when :meth:`turn_abandoned` says so); the reply then
        gets up to :data:`PLAYBACK_CAP_S` to play out.
        """
        result.speech_end_at = await self.speak(utterance)
        if TRACE:
            print(f"[trace {self.system} {result.speech_end_at:.3f}] speech end of {utterance.name}",
                  file=sys.stderr, flush=True)
        first = len(self.audio)
        while first > 0 and self.audio[first - 1].at >= result.speech_end_at:
            first -= 1  # audio that arrived while the clip's trailing padding was sent
        deadline = result.speech_end_at + timeout_s
        while True:
            await self._send(self.silence)
            now = time.monotonic()
            arrivals = [a for a in self.audio[first:] if self.is_reply_to(a)]
            if not arrivals:
                if now > deadline or self.turn_abandoned():
                    result.timed_out = True
                    return result
                continue
            result.first_audio_at = arrivals[0].at
            result.turn_id = arrivals[0].turn_id
            playback_end = 0.0
            for a in arrivals:
                playback_end = max(playback_end, a.at) + a.nbytes / 2 / a.sample_rate
            result.reply_audio_s = round(sum(a.nbytes / 2 / a.sample_rate for a in arrivals), 3)
            if now >= playback_end and now - arrivals[-1].at >= QUIET_S:
                result.reply_done_at = now
                return result
            if now - result.first_audio_at > PLAYBACK_CAP_S:
                return result

    def attach_turn_ends(self, results: list[TurnResult]) -> None:
        """Copy voxbus's ``turn_end`` data (per-stage latencies, transcript) into the results."""
        for result in results:
            result.session_id = self.session_id
            event = self.turn_ends.get(result.turn_id or "")
            if event is None:
                continue
            result.latency_ms = dict(event.get("latency_ms") or {})
            result.server_voice_to_voice_ms = event.get("voice_to_voice_ms")
            result.transcript = event.get("transcript", "")
            result.reply_text = event.get("reply_text", "")


async def run_caller(system: str, url: str, callers: int, index: int, plan: list[Utterance],
                     start_delay_s: float, timeout_s: float, pipecat_rate: int = 22050,
                     tail_s: float = 0.0, unmatched: list[dict[str, Any]] | None = None) -> list[TurnResult]:
    """One caller's session: wait ``start_delay_s``, connect, speak every utterance of ``plan``.

    ``tail_s`` of silence is streamed after the last turn before hanging up (lets late
    ``turn_end`` events arrive).  voxbus ``turn_end`` events that match none of the
    caller's turns are appended to ``unmatched``.
    """
    await asyncio.sleep(start_delay_s)
    results: list[TurnResult] = []
    async with SimulatedCaller(system, url, pipecat_rate) as caller:
        await caller.silence_for(LEAD_IN_S)
        for turn, utterance in enumerate(plan):
            result = TurnResult(system, callers, index, turn, utterance.name, speech_end_at=0.0)
            results.append(await caller.turn(utterance, result, timeout_s))
        if tail_s:
            await caller.silence_for(tail_s)
        caller.attach_turn_ends(results)
        if unmatched is not None:
            matched = {r.turn_id for r in results}
            unmatched.extend({"caller": index, **event} for turn_id, event in caller.turn_ends.items()
                             if turn_id not in matched)
    return results
