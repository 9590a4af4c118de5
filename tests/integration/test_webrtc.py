"""A WebRTC call from the voice page (``<voice-mic transport="webrtc">``) in real headless Chromium.

Chromium's fake capture device plays a real recording as the microphone; the page sends it as
Opus over RTP (ICE on loopback, host candidates only) to an in-process ingress replica
(``ingress_slot=2``, ``VOXBUS_WEBRTC_ICE_NETWORKS=127.0.0.0/8``) next to the stack, which runs the
whole pipeline.  The page records the reply track it plays (MediaRecorder, Opus in WebM), and
the test transcribes that recording.

``VOXBUS_MEASURE_TURNS=N`` also runs :func:`test_voice_to_voice_webrtc_beside_websocket`: N turns
of the same clip over each transport on the same ingress, p50 of the voice-to-voice figures.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shutil
import statistics
import time

import av
import numpy as np
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from ingress.server import make_app
from schemas import AudioChunk, VadEvent
from streams.settings import Settings
from tests.conftest import load_clip, wer

# test_browser skips this module too where Debian's chromium is missing
from tests.integration.test_browser import BASE_ARGS, CHROMIUM, QUESTION, RECORD_EVENTS, Bot, mic_recording

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

WEBRTC_ARGS = [
    "--allow-loopback-in-peer-connection",  # Chromium leaves loopback out of ICE otherwise
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain host addresses, no .local names (mDNS)
]
RECORD_REPLY = """() => {
  const el = document.querySelector('voice-mic');
  window.__chunks = [];
  window.__recorder = new MediaRecorder(el.remoteStream, {mimeType: 'audio/webm;codecs=opus'});
  window.__recorder.ondataavailable = (e) => { if (e.data.size) window.__chunks.push(e.data); };
  window.__recorder.start(250);
}"""
STOP_RECORDING = """async () => {
  const stopped = new Promise((resolve) => { window.__recorder.onstop = resolve; });
  window.__recorder.stop();
  await stopped;
  const bytes = new Uint8Array(await new Blob(window.__chunks).arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}"""
READY = "voice-mic[data-state=ready]"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ingress(stack):
    settings = Settings(ingress_slot=2, webrtc_ice_networks="127.0.0.0/8", sessions_per_minute=0,
                        max_concurrent_sessions=0)
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    yield f"http://127.0.0.1:{server.port}"
    await server.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def chromium(tmp_path_factory):
    from playwright.async_api import async_playwright

    tmp = tmp_path_factory.mktemp("chromium-webrtc")
    args = [*BASE_ARGS, *WEBRTC_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic_recording(tmp / 'mic.wav')}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch_persistent_context(
            str(tmp / "profile"), executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        await browser.close()
    shutil.rmtree(tmp, ignore_errors=True)


async def open_call(browser, url: str):
    """The voice page in hands-free mode on ``url`` (its transport in the query), ready, events recorded."""
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto(url)
    await page.wait_for_selector(READY, timeout=20_000)
    await page.evaluate(RECORD_EVENTS)
    return page


def decode_webm(data: bytes) -> np.ndarray:
    """The recording (WebM/Opus) as float32 mono samples at 16 kHz."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    parts = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(audio=0):
            parts.extend(out.to_ndarray()[0] for out in resampler.resample(frame))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


async def events(page) -> list[dict]:
    return await page.evaluate("window.__events")


async def test_webrtc_call_is_transcribed_and_answered_aloud(chromium, ingress, recognizer):
    page = await open_call(chromium, f"{ingress}/?mode=hands-free&transport=webrtc")
    await page.wait_for_function("() => document.querySelector('voice-mic').remoteStream", timeout=10_000)
    await page.evaluate(RECORD_REPLY)
    await page.click("voice-mic >> button.mic")
    await page.wait_for_selector("voice-mic[data-mic=on]", timeout=10_000)
    await page.wait_for_selector("voice-mic >> .msg.you", timeout=60_000)
    await page.wait_for_selector("voice-mic >> .msg.bot", timeout=90_000)
    await page.wait_for_function(
        "() => +document.querySelector('voice-mic').dataset.chunksPlayed > 0", timeout=90_000)
    # the reply plays out (the state leaves 'speaking'), then the mic stops before the clip loops
    await page.wait_for_function("() => window.__events.some(e => e.type === 'turn_end' && e.transcript)",
                                 timeout=90_000)
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.state === 'listening'",
                                 timeout=60_000)
    await page.click("voice-mic >> button.mic")
    recording = base64.b64decode(await page.evaluate(STOP_RECORDING))

    heard = (await page.inner_text("voice-mic >> .msg.you .text")).strip()
    reply = (await page.inner_text("voice-mic >> .msg.bot .text")).strip()
    _, reference = load_clip(QUESTION)
    assert wer(reference, heard) <= 0.35, heard
    kinds = [e["type"] for e in await events(page)]
    for kind in ("speech_started", "speech_ended", "transcript", "reply_text", "reply_audio", "reply_played",
                 "turn_end"):
        assert kind in kinds, kinds
    states = [s["state"] for s in await page.evaluate("window.__states")]
    assert {"listening", "thinking", "speaking"} <= set(states), states

    played = decode_webm(recording)
    spoken = recognizer.transcribe(played).text
    assert wer(reply, spoken) <= 0.5, (reply, spoken)
    turn_end = next(e for e in await events(page) if e["type"] == "turn_end" and e["transcript"])
    first_audio = await page.get_attribute("voice-mic", "data-first-audio-ms")
    print(f"\nwebrtc: heard {heard!r}; reply {reply!r}; the page played {played.size / 16000:.1f} s, "
          f"transcribed {spoken!r}; voice-to-voice at the ingress {turn_end['voice_to_voice_ms']} ms, "
          f"page speech end -> first reply audio {first_audio} ms")
    assert not page.errors, page.errors
    await page.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scripted():
    settings = Settings(webrtc_ice_networks="127.0.0.0/8", sessions_per_minute=0, max_concurrent_sessions=0)
    bot = Bot(settings)
    server = TestServer(make_app(settings, bot), host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    yield bot, f"http://127.0.0.1:{server.port}/?transport=webrtc"
    await server.close()


async def test_barge_in_stops_webrtc_playback_where_the_caller_was(chromium, scripted):
    bot, url = scripted
    page = await open_call(chromium, url)
    session_id = await page.get_attribute("voice-mic", "data-session-id")
    session = bot.sessions[session_id]
    await bot.speak(session_id, "a100", chunks=2, seconds=0.5)  # gapless: 1 s then the state is back
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.chunksPlayed === '2'",
                                 timeout=10_000)
    await page.wait_for_selector(READY, timeout=5_000)

    await bot.speak(session_id, "a200", chunks=10, seconds=1.0)  # 10 s of reply
    await page.wait_for_selector("voice-mic[data-state=speaking]", timeout=5_000)
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.chunksPlayed === '3'",
                                 timeout=5_000)  # a second of it out
    await bot.deliver(VadEvent(session_id=session_id, turn_id="a300", kind="speech_start", sample=1,
                               ts=time.time()))
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.state !== 'speaking'",
                                 timeout=2_000)
    stop = [e for e in await events(page) if e["type"] == "playback_stop"]
    assert stop and stop[0]["turn_id"] == "a200"
    assert session.transport.track.queued_s == 0.0
    playback = session.turns["a200"].playback
    heard_s = playback.heard_at_pause / playback.bytes_per_second
    assert 1.0 <= heard_s < 3.0, heard_s  # where the reply track was, not the 10 s the ingress had
    assert await page.get_attribute("voice-mic", "data-chunks-scheduled") == "12"
    assert int(await page.get_attribute("voice-mic", "data-chunks-played")) < 6
    await page.fill("voice-mic >> input.text", "still there?")  # typed turns on the data channel
    await page.press("voice-mic >> input.text", "Enter")
    await page.wait_for_function("() => [...document.querySelector('voice-mic').shadowRoot"
                                 ".querySelectorAll('.msg.bot')]"
                                 ".some(m => m.textContent.includes('still there?'))", timeout=5_000)
    assert not page.errors, page.errors
    await page.close()


async def test_the_microphone_reaches_the_bus_over_rtp(chromium, scripted):
    bot, url = scripted
    page = await open_call(chromium, url.replace("?", "?mode=hands-free&"))
    session_id = await page.get_attribute("voice-mic", "data-session-id")
    await page.click("voice-mic >> button.mic")
    await page.wait_for_selector("voice-mic[data-mic=on]", timeout=10_000)

    def received() -> np.ndarray:
        pcm = b"".join(r.pcm for r in bot.records(AudioChunk, session_id))
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768

    deadline = time.monotonic() + 20.0
    while received().size < 16000 * 4.5 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await page.click("voice-mic >> button.mic")
    audio = received()
    clip, _ = load_clip(QUESTION)
    # the recording's 3 s question (after 0.5 s of silence), through Opus and the resamplers
    speech = audio[int(0.5 * 16000):int(4.5 * 16000)]
    rms = float(np.sqrt(np.mean(speech ** 2)))
    assert audio.size >= 16000 * 4.5 and rms > 0.3 * float(np.sqrt(np.mean(clip ** 2))), (audio.size, rms)
    assert await page.get_attribute("voice-mic", "data-frames-sent") != "0"
    await page.close()


async def turns_over(browser, url: str, turns: int) -> tuple[list[float], list[float]]:
    """Speak the looped clip ``turns`` times: (voice-to-voice at the ingress, page first audio), ms a turn."""
    page = await open_call(browser, url)
    await page.click("voice-mic >> button.mic")
    ingress_ms: list[float] = []
    page_ms: list[float] = []
    deadline = time.monotonic() + 60.0 * turns
    while len(ingress_ms) < turns and time.monotonic() < deadline:
        done = len(ingress_ms)
        await page.wait_for_function(
            "n => window.__events.filter(e => e.type === 'turn_end' && e.voice_to_voice_ms).length > n",
            arg=done, timeout=120_000)
        ends = [e for e in await events(page) if e["type"] == "turn_end" and e["voice_to_voice_ms"]]
        ingress_ms.append(float(ends[done]["voice_to_voice_ms"]))
        page_ms.append(float(await page.get_attribute("voice-mic", "data-first-audio-ms") or "nan"))
    await page.click("voice-mic >> button.mic")
    await page.close()
    return ingress_ms, page_ms


@pytest.mark.skipif(not os.environ.get("VOXBUS_MEASURE_TURNS"), reason="measurement: VOXBUS_MEASURE_TURNS=N")
async def test_voice_to_voice_webrtc_beside_websocket(chromium, ingress):
    turns = int(os.environ["VOXBUS_MEASURE_TURNS"])
    figures = {}
    for transport in ("websocket", "webrtc"):
        url = f"{ingress}/?mode=hands-free&transport={transport}"
        figures[transport] = await turns_over(chromium, url, turns)
    for transport, (ingress_ms, page_ms) in figures.items():
        print(f"\n{transport}: voice-to-voice at the ingress p50 {statistics.median(ingress_ms):.0f} ms "
              f"{[round(x) for x in ingress_ms]}; page speech end -> first reply audio p50 "
              f"{statistics.median(page_ms):.0f} ms {[round(x) for x in page_ms]}")
    assert all(len(ingress_ms) == turns for ingress_ms, _ in figures.values()), figures

