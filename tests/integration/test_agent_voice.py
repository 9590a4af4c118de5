"""The agent speaks: caller and agent on two ingress replicas, both voices through the bus.

Two ingress apps in-process (egress partitions 1 and 2, those of test_agent_queue.py) next to
the stack's own, with authentication on; the caller is on the first, the agent on the second.
The hand-off comes from the real pipeline.  In headless Chromium, each page's fake microphone plays a real
recording: the caller's question reaches the agent's console (``<voice-mic>`` on the voice
socket) and the agent's answer reaches the caller's page; what each page got to play is
transcribed by Whisper.  A Twilio caller (the Twilio side of the media stream played by the
test) hears the agent's voice as mu-law media.  Both measure the agent's voice latency: a
sample leaves the agent (their page's socket, or the test's) -> it reaches the caller.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time

import aiohttp
import numpy as np
import pytest
import soxr
from playwright.async_api import async_playwright

from ingress.agents.voice_play import AGENT_AUDIO_LATENCY, AGENT_VOICE_TURN
from ingress.g711 import ulaw_decode, ulaw_encode
from tests.conftest import load_clip, wer
from tests.integration.caller import piper_speech
from tests.integration.test_agent_queue import listed, replicas  # noqa: F401 (a fixture)
from tests.integration.test_browser import launch, mic_recording, open_page
from tests.integration.test_twilio import FRAME, Twilio, turn_records

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CALLER_KEY, AGENT_KEY = "alice-key-0123456789", "bob-key-0123456789"
ASK = "I want to talk to a person."
QUESTION = "sense_and_sensibility_01_austen_64kb-0880"  # 3.0 s
ANSWER = "sense_and_sensibility_01_austen_64kb-0890"  # 5.3 s

HEAR = """([selector, turn]) => {
  const el = document.querySelector(selector);
  const heard = window.__heard = {pcm: [], at: []};
  const play = el.onAudio.bind(el);
  el.onAudio = (buffer) => {
    const header = el.pendingAudio;
    if (header && header.turn_id === turn) {
      for (const sample of new Int16Array(buffer)) heard.pcm.push(sample);
      heard.at.push([Date.now(), heard.pcm.length]);
    }
    play(buffer);
  };
}"""
"""Record what a page's ``<voice-mic>`` gets to play of one turn: 16 kHz samples, and (ms, samples so far)."""
SENT = """(selector) => {
  const el = document.querySelector(selector);
  const sent = window.__sent = [];
  let total = 0;
  const send = el.sendFrame.bind(el);
  el.sendFrame = (pcm) => { send(pcm); total += pcm.byteLength / 2; sent.push([Date.now(), total]); };
}"""
"""Record when a page's ``<voice-mic>`` sent its microphone's samples: (ms, samples so far)."""

def spoke(records: list) -> bool:
    """The agent's voice is among a session's turn records (then the rest follow within a few s)."""
    return any(r.speaker == "agent" for r in records)


def latencies_ms(sent: list[tuple[float, int]], heard: list[tuple[float, int]]) -> list[float]:
    """For each arrival (time, samples so far), the time since the sample it completes was sent.

    Both lists are (time, cumulative sample count) in the same clock and unit (ms), the same
    stream counted from its first sample at both ends.
    """
    times = np.array([t for t, _ in sent])
    totals = np.array([n for _, n in sent])
    out = []
    for at, count in heard:
        index = int(np.searchsorted(totals, count))
        if index < len(times):
            out.append(at - times[index])
    return out


def percentiles(values: list[float]) -> str:
    return f"p50 {np.percentile(values, 50):.0f} ms, p95 {np.percentile(values, 95):.0f} ms (n={len(values)})"


def hop() -> str:
    """The bus hop alone, agent's replica -> caller's replica (``voxbus_agent_audio_seconds`` of this process,
    both replicas, every test so far): the bucket bounds holding p50 and p95."""
    samples = AGENT_AUDIO_LATENCY.collect()[0].samples
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]
    total = buckets[-1][1]

    def bound(share: float) -> str:
        return f"{1000 * next(le for le, n in buckets if n >= share * total):.0f}"

    return f"p50 <= {bound(0.5)} ms, p95 <= {bound(0.95)} ms (n={total:.0f})"


def transcribe(recognizer, pcm16: np.ndarray) -> str:
    return recognizer.transcribe(pcm16.astype(np.float32) / 32768).text


async def agent_lines(console, reference: str, timeout_s: float = 60.0) -> list[str]:
    """The console's agent transcript lines, once they say ``reference`` (or as they are at the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        said = await console.evaluate(
            "[...document.querySelectorAll('.line.agent')].map(line => line.lastChild.textContent)")
        if (said and wer(reference, " ".join(said)) <= 0.5) or time.monotonic() > deadline:
            return said
        await asyncio.sleep(0.5)


async def wait_for_samples(page, count: int, timeout_s: float) -> None:
    await page.wait_for_function(f"() => window.__heard && window.__heard.pcm.length >= {count}",
                                 timeout=timeout_s * 1000)


async def test_caller_and_agent_hear_each_other_in_the_browser(stack, replicas, recognizer, tmp_path):  # noqa: F811
    (a, b), http = replicas
    async with async_playwright() as pw:
        caller_browser = await launch(pw, tmp_path, recording=mic_recording(tmp_path / "q.wav", QUESTION))
        agent_browser = await launch(pw, tmp_path, recording=mic_recording(tmp_path / "a.wav", ANSWER))
        try:
            caller = await open_page(caller_browser, f"http://{a}/?mode=hands-free&api_key={CALLER_KEY}")
            session_id = await caller.get_attribute("voice-mic", "data-session-id")
            await caller.fill("voice-mic >> input.text", ASK)
            await caller.press("voice-mic >> input.text", "Enter")
            await caller.wait_for_selector("voice-mic >> .msg.bot:has-text('connecting you')", timeout=60_000)

            console = await agent_browser.new_page()
            errors: list[str] = []
            console.on("pageerror", lambda exc: errors.append(str(exc)))
            await console.goto(f"http://{b}/agent?api_key={AGENT_KEY}")
            await console.click(f'li[data-session="{session_id}"]', timeout=20_000)
            await console.click("#take")
            mic = "#voice voice-mic"
            await console.wait_for_selector(f"{mic}[data-state=ready]", timeout=20_000)
            await console.evaluate(HEAR, [mic, "caller"])
            await console.evaluate(SENT, mic)
            await caller.evaluate(HEAR, ["voice-mic", AGENT_VOICE_TURN])

            await caller.click("voice-mic >> button.mic")  # hands-free: the caller's question streams
            await console.click(f"{mic} >> button.mic")  # and so does the agent's answer
            question, question_text = load_clip(QUESTION)
            answer, answer_text = load_clip(ANSWER)
            await wait_for_samples(console, 16000 // 2 + question.size + 16000, 60)
            await wait_for_samples(caller, 16000 // 2 + answer.size + 16000, 60)
            # the latency series as they are now: the pages go on sending and hearing while Whisper runs
            latency = latencies_ms(await console.evaluate("window.__sent"),
                                   await caller.evaluate("window.__heard.at"))

            heard_by_agent = np.array(await console.evaluate("window.__heard.pcm"), dtype=np.int16)
            heard_by_caller = np.array(await caller.evaluate("window.__heard.pcm"), dtype=np.int16)
            # in a thread: this event loop serves both ingress replicas (a decode here stalled the agent's
            # voice for up to 2 s, which the latency read after it counted as the bus's)
            agent_heard = await asyncio.to_thread(transcribe, recognizer, heard_by_agent)
            caller_heard = await asyncio.to_thread(transcribe, recognizer, heard_by_caller)
            assert wer(question_text, agent_heard) <= 0.35, agent_heard
            assert wer(answer_text, caller_heard) <= 0.35, caller_heard

            # the agent's words are transcribed too: transcript lines on every console, turn records
            said = await agent_lines(console, answer_text)
            spoken = " ".join(said)
            assert wer(answer_text, spoken) <= 0.5, spoken
            # and the bot said nothing to the caller's spoken question
            ended = await caller.wait_for_function(
                "() => window.__events.find(e => e.type === 'turn_end' && e.transcript"
                " && e.turn_id.startsWith('a'))", timeout=60_000)
            assert (await ended.json_value())["reply_text"] == ""
            assert not errors, errors
        finally:
            await caller_browser.close()
            await agent_browser.close()
    records = await turn_records(stack.bootstrap, session_id, spoke, timeout_s=15, settle_s=3)
    agent_turns = [r for r in records if r.speaker == "agent"]
    assert agent_turns and all(r.turn_id.startswith("agent.") for r in agent_turns), records
    assert wer(answer_text, " ".join(r.transcript for r in agent_turns)) <= 0.5, agent_turns
    print(f"\nagent voice, browser to browser across replicas: heard by the agent {agent_heard!r}, "
          f"by the caller {caller_heard!r}; agent's page sends -> caller's page gets: "
          f"{percentiles(latency)}; replica to replica: {hop()}")


async def test_a_twilio_caller_hears_the_agent_as_mulaw_media(stack, replicas, recognizer):  # noqa: F811
    (a, b), http = replicas
    agent = {"Authorization": f"Bearer {AGENT_KEY}"}
    ask = piper_speech(stack, ASK)
    async with Twilio(f"ws://{a}/v1/twilio?api_key={CALLER_KEY}") as phone:
        await speak(phone, np.concatenate([ask, np.zeros(8000, dtype=np.int16)]))
        handed = asyncio.create_task(listed(http, b, phone.call_sid, "waiting", timeout_s=90))
        await phone.until(handed.done, timeout_s=95)
        await handed
        base = f"http://{b}/v1/agent/sessions/{phone.call_sid}"
        async with http.post(f"{base}/take", json={}, headers=agent) as r:
            assert r.status == 200, await r.text()
        voice_url = f"ws://{b}/v1/agent/sessions/{phone.call_sid}/voice"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:  # a caller's key
            await http.ws_connect(f"{voice_url}?api_key={CALLER_KEY}")
        assert refused.value.status == 403
        async with http.ws_connect(f"{voice_url}?api_key={AGENT_KEY}") as ws:
            await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
            assert (await ws.receive_json(timeout=10))["type"] == "ready"
            started = len(phone.received)
            answer, answer_text = load_clip(ANSWER)
            samples = (np.concatenate([np.zeros(8000), answer, np.zeros(32000)]) * 32767).astype(np.int16)
            sending = asyncio.create_task(stream_frames(ws, samples))
            await phone.until(sending.done, timeout_s=30)
            sent = await sending
            await phone.until(lambda: time.monotonic() - phone.received[-1][0] > 1.0, timeout_s=10)
    heard, arrivals = agent_voice(phone.received[started:])
    audio = soxr.resample(ulaw_decode(heard).astype(np.float32) / 32768, 8000, 16000)
    said = recognizer.transcribe(audio).text
    assert wer(answer_text, said) <= 0.4, said
    latency = latencies_ms(sent, arrivals)
    records = await turn_records(stack.bootstrap, phone.call_sid, spoke, timeout_s=15, settle_s=3)
    assert any(r.speaker == "agent" for r in records), records
    print(f"\nagent voice to a Twilio caller across replicas: heard {said!r}; "
          f"sent by the agent -> mu-law media at the caller: {percentiles(latency)}; "
          f"replica to replica: {hop()}")


async def speak(phone: Twilio, samples: np.ndarray) -> None:
    """Speak int16 16 kHz ``samples`` on the phone line in real time (mu-law 8 kHz ``media``)."""
    encoded = ulaw_encode(soxr.resample(samples, 16000, 8000))
    phone.clock = max(phone.clock, time.monotonic())
    for start in range(0, len(encoded), FRAME):
        await phone._media(encoded[start:start + FRAME].ljust(FRAME, b"\xff"))


async def stream_frames(ws: aiohttp.ClientWebSocketResponse, samples: np.ndarray) -> list[tuple[float, int]]:
    """Send ``samples`` as 20 ms frames in real time; return (ms, samples sent so far) per frame."""
    sent: list[tuple[float, int]] = []
    clock = time.monotonic()
    for start in range(0, samples.size, 320):
        await ws.send_bytes(samples[start:start + 320].tobytes())
        sent.append((time.monotonic() * 1000, min(samples.size, start + 320)))
        clock += 0.02
        await asyncio.sleep(max(0.0, clock - time.monotonic()))
    return sent


def agent_voice(received: list[tuple[float, dict]]) -> tuple[bytes, list[tuple[float, int]]]:
    """The agent's voice among Twilio messages: its mu-law bytes, and (ms, 16 kHz samples so far) per media.

    Each audio segment the ingress sends is its ``media`` messages then a ``mark`` naming the turn,
    so a media message is the agent's when the mark after it is ``agent-voice:...``.
    """
    heard = bytearray()
    arrivals: list[tuple[float, int]] = []
    pending: list[tuple[float, bytes]] = []
    for at, message in received:
        if message["event"] == "media":
            pending.append((at, base64.b64decode(message["media"]["payload"])))
        elif message["event"] == "mark":
            if message["mark"]["name"].startswith(f"{AGENT_VOICE_TURN}:"):
                for media_at, payload in pending:
                    heard.extend(payload)
                    arrivals.append((media_at * 1000, 2 * len(heard)))
            pending = []
    return bytes(heard), arrivals
