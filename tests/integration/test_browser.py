"""The browser voice page (``<voice-mic>`` on ``/``) in real headless Chromium.

Chromium's fake capture device plays a real recording as the microphone
(``--use-file-for-fake-audio-capture``), through the page's AudioWorklet (resampling
to 16 kHz), over ``/v1/stream``.  Two sets of tests:

* against the whole pipeline (``stack``): a spoken question gets its transcript, reply
  text and reply audio on the page; a typed question gets its reply;
* against an in-process ingress whose Kafka side is scripted (``Bot``), for what the
  pipeline cannot make happen on cue: barge-in's ``playback_stop``, gapless playback,
  reconnection with the same session id, a denied microphone, the keyboard shortcut,
  and that the page loads nothing from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import soundfile
from aiohttp.test_utils import TestServer

from ingress.server import make_app
from schemas import AudioChunk, ReplyText, SynthAudio, Transcript, VadEvent
from streams.settings import Settings
from tests.conftest import ARTIFACTS, load_clip, wer
from tests.ingress.conftest import FakeGateway

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = "/usr/bin/chromium"
QUESTION = "sense_and_sensibility_01_austen_64kb-0880"
BASE_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
RECORD_EVENTS = """() => {
  const el = document.querySelector('voice-mic');
  window.__events = []; window.__states = [];
  el.addEventListener('voice-event', (e) => window.__events.push({t: performance.now(), ...e.detail}));
  el.addEventListener('voice-state',
    (e) => window.__states.push({t: performance.now(), state: e.detail.state}));
}"""

if not Path(CHROMIUM).exists():  # `make test` installs it (Debian's chromium)
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)


def mic_recording(path: Path, clip: str = QUESTION) -> Path:
    """The recording ``clip`` with 0.5 s of silence before and 30 s after (Chromium loops the file)."""
    audio, _ = load_clip(clip)
    pcm = (np.concatenate([np.zeros(8000), audio, np.zeros(16000 * 30)]) * 32767).astype(np.int16)
    soundfile.write(path, pcm, 16000, subtype="PCM_16")
    return path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def playwright():
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        yield pw


@contextlib.asynccontextmanager
async def console_page(playwright: Any, url: str) -> AsyncIterator[tuple[Any, list[str]]]:
    """A page of headless Chromium (no microphone) opened on ``url``: yields (page, its script errors so far).

    The browser is closed on leaving, whatever happened inside.
    """
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=BASE_ARGS, headless=True)
    try:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(url)
        yield page, errors
    finally:
        await browser.close()


async def launch(playwright, tmp: Path, microphone: bool = True, recording: Path | None = None):
    """Chromium with a fresh profile (``--user-data-dir``), as a browser context.

    Its fake microphone plays ``recording`` (a 16-bit WAV file, looped), by default :func:`mic_recording`.
    """
    profile = tmp / f"profile-{time.monotonic_ns()}"
    args = list(BASE_ARGS)
    if microphone:
        args += ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={recording or mic_recording(tmp / 'mic.wav')}"]
    else:
        args += ["--use-fake-device-for-media-stream", "--deny-permission-prompts"]
    # Playwright sets --user-data-dir itself from user_data_dir
    return await playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, args=args, headless=True)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser(playwright, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chromium")
    browser = await launch(playwright, tmp)
    yield browser
    await browser.close()
    shutil.rmtree(tmp, ignore_errors=True)


async def open_page(browser, url: str, errors: list[str] | None = None):
    page = await browser.new_page()
    outside: list[str] = []
    origin = url.split("/", 3)[:3]

    async def only_this_server(route):
        if route.request.url.split("/", 3)[:3] == origin:
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_this_server)
    page.on("pageerror", lambda exc: (errors if errors is not None else []).append(str(exc)))
    page.outside = outside  # type: ignore[attr-defined]
    await page.goto(url)
    await page.wait_for_selector("voice-mic[data-state=ready]", timeout=15_000)
    await page.evaluate(RECORD_EVENTS)
    return page


async def attribute(page, name: str) -> str | None:
    return await page.get_attribute("voice-mic", name)


# -- the whole pipeline -------------------------------------------------------------------------
async def test_spoken_question_on_the_voice_page(browser, stack):
    errors: list[str] = []
    page = await open_page(browser, f"http://{stack.host}:{stack.port}/?mode=hands-free", errors)
    started = time.monotonic()
    await page.click("voice-mic >> button.mic")  # hands-free: the mic streams until pressed again
    await page.wait_for_selector("voice-mic[data-mic=on]", timeout=10_000)
    await page.wait_for_selector("voice-mic >> .msg.you", timeout=60_000)
    await page.wait_for_selector("voice-mic >> .msg.bot", timeout=90_000)
    await page.wait_for_function(
        "() => +document.querySelector('voice-mic').dataset.chunksPlayed > 0", timeout=90_000)
    await page.screenshot(path=str(ARTIFACTS / "voice_page.png"), full_page=True)
    # let the reply play out, then stop the mic before the looped recording asks again
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.state === 'listening'",
                                 timeout=60_000)
    await page.click("voice-mic >> button.mic")
    elapsed = time.monotonic() - started

    heard = (await page.inner_text("voice-mic >> .msg.you .text")).strip()
    reply = (await page.inner_text("voice-mic >> .msg.bot .text")).strip()
    _, reference = load_clip(QUESTION)
    assert wer(reference, heard) <= 0.35, heard
    assert reply
    events = await page.evaluate("window.__events")
    kinds = [e["type"] for e in events]
    for kind in ("speech_started", "speech_ended", "transcript", "reply_text", "reply_audio", "turn_end"):
        assert kind in kinds, kinds
    states = [s["state"] for s in await page.evaluate("window.__states")]
    assert {"listening", "thinking", "speaking"} <= set(states), states
    assert await page.evaluate("document.querySelector('voice-mic').shadowRoot"
                               ".querySelector('.log').getAttribute('aria-live')") == "polite"
    end = next(e["t"] for e in events if e["type"] == "speech_ended")
    first_audio = next(e["t"] for e in events if e["type"] == "reply_audio" and e["bytes"])
    played = int(await attribute(page, "data-chunks-played"))
    print(f"\nbrowser: heard {heard!r}; reply {reply!r}; speech end -> first reply audio "
          f"{first_audio - end:.0f} ms (page: {await attribute(page, 'data-first-audio-ms')} ms); "
          f"{played} chunks played; {await attribute(page, 'data-frames-sent')} mic frames; {elapsed:.1f} s")
    assert not errors and not page.outside, (errors, page.outside)
    await page.close()


async def test_typed_question_on_the_voice_page(browser, stack):
    page = await open_page(browser, f"http://{stack.host}:{stack.port}/")
    await page.fill("voice-mic >> input.text", "When is my bill due?")
    sent = time.monotonic()
    await page.press("voice-mic >> input.text", "Enter")
    await page.wait_for_function(
        "() => [...document.querySelector('voice-mic').shadowRoot.querySelectorAll('.msg.you .tag')]"
        ".some(t => t.textContent)", timeout=60_000)
    await page.wait_for_selector("voice-mic >> .msg.bot", timeout=60_000)
    first_text = time.monotonic() - sent
    assert (await page.inner_text("voice-mic >> .msg.you .tag")) == "billing"
    assert (await page.inner_text("voice-mic >> .msg.bot .text")).strip()
    await page.wait_for_selector("voice-mic[data-state=ready]", timeout=30_000)
    print(f"\nbrowser text turn: first reply text after {first_text * 1000:.0f} ms")
    await page.close()


# -- a scripted pipeline ------------------------------------------------------------------------
class Bot(FakeGateway):
    """Answers every typed turn; tests script the rest through :meth:`deliver`."""

    async def produce(self, topic, record):
        written = await super().produce(topic, record)  # its metadata: the session ledger reads it back
        if isinstance(record, Transcript) and record.source == "text":
            asyncio.get_running_loop().create_task(self.deliver(ReplyText(
                session_id=record.session_id, turn_id=record.turn_id, index=0,
                text=f"You said: {record.text}", final=True)))
        return written

    async def speak(self, session_id: str, turn_id: str, chunks: int, seconds: float) -> None:
        """A voice turn's transcript, a sentence, then ``chunks`` tone chunks of ``seconds`` each."""
        await self.deliver(Transcript(session_id=session_id, turn_id=turn_id, text="when is my bill due"))
        await self.deliver(ReplyText(session_id=session_id, turn_id=turn_id, index=0, text="On the 15th.",
                                     final=True))
        n = int(22050 * seconds)
        tone = (np.sin(np.arange(n) * 2 * np.pi * 330 / 22050) * 5000).astype("<i2").tobytes()
        for seq in range(chunks):
            await self.deliver(SynthAudio(session_id=session_id, turn_id=turn_id, index=0, seq=seq,
                                          sample_rate=22050, pcm=tone, final=seq == chunks - 1))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def scripted():
    settings = Settings(sessions_per_minute=0, max_concurrent_sessions=0)
    bot = Bot(settings)
    server = TestServer(make_app(settings, bot), host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    yield bot, f"http://127.0.0.1:{server.port}/"
    await server.close()


async def session_of(page) -> str:
    return await attribute(page, "data-session-id")  # type: ignore[return-value]


async def test_reply_audio_is_gapless_and_playback_stop_drops_it(browser, scripted):
    bot, url = scripted
    page = await open_page(browser, url)
    session_id = await session_of(page)
    await bot.speak(session_id, "a100", chunks=4, seconds=0.25)
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.chunksPlayed === '4'",
                                 timeout=10_000)
    states = await page.evaluate("window.__states")
    speaking = [s["t"] for s in states if s["state"] == "speaking"]
    after = [s["t"] for s in states if s["state"] != "speaking" and s["t"] > speaking[0]]
    assert 950 <= after[0] - speaking[0] <= 1300, states  # 4 x 250 ms back to back

    # barge-in: 10 s of reply, the caller starts speaking 0.3 s in
    await bot.speak(session_id, "a200", chunks=10, seconds=1.0)
    await page.wait_for_selector("voice-mic[data-state=speaking]", timeout=5_000)
    await asyncio.sleep(0.3)
    onset = await page.evaluate("performance.now()")
    await bot.deliver(VadEvent(session_id=session_id, turn_id="a300", kind="speech_start", sample=1,
                               ts=time.time()))
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.state !== 'speaking'",
                                 timeout=2_000)
    states = await page.evaluate("window.__states")
    stopped = next(s["t"] for s in states if s["t"] > onset)
    stop = [e for e in await page.evaluate("window.__events") if e["type"] == "playback_stop"]
    assert stop and stop[0]["turn_id"] == "a200"
    assert await attribute(page, "data-chunks-scheduled") == "14"
    assert await attribute(page, "data-chunks-played") == "4"  # none of the 10 s played to the end
    print(f"\nbrowser: speech onset -> playback stopped {stopped - onset:.0f} ms")
    await page.close()


async def test_pressing_the_mic_stops_the_assistant(browser, scripted):
    bot, url = scripted
    page = await open_page(browser, url)
    await bot.speak(await session_of(page), "a400", chunks=5, seconds=1.0)
    await page.wait_for_selector("voice-mic[data-state=speaking]", timeout=5_000)
    await page.click("h1")
    await page.keyboard.down("Space")
    await page.wait_for_selector("voice-mic[data-state=listening]", timeout=2_000)
    await page.keyboard.up("Space")
    assert await attribute(page, "data-chunks-played") == "0"
    await page.close()


async def test_reconnects_with_the_same_session(browser, scripted):
    bot, url = scripted
    page = await open_page(browser, url)
    session_id = await session_of(page)
    await bot.sessions[session_id].transport.close(1012, b"service restart")
    await page.wait_for_function(
        "() => window.__states.some(s => s.state === 'reconnecting')", timeout=5_000)
    await page.wait_for_function("() => document.querySelector('voice-mic').dataset.state === 'ready'",
                                 timeout=10_000)
    assert await session_of(page) == session_id
    assert session_id in bot.sessions
    await page.fill("voice-mic >> input.text", "still there?")
    await page.press("voice-mic >> input.text", "Enter")
    await page.wait_for_selector("voice-mic >> .msg.bot", timeout=5_000)
    assert "still there?" in await page.inner_text("voice-mic >> .msg.bot .text")
    await page.close()


async def test_space_is_push_to_talk_outside_the_text_box(browser, scripted):
    bot, url = scripted
    page = await open_page(browser, url)
    session_id = await session_of(page)
    await page.focus("voice-mic >> input.text")
    await page.keyboard.press("Space")
    assert await attribute(page, "data-mic") == "off"  # a space typed into the text box
    await page.click("h1")
    await page.keyboard.down("Space")
    await page.wait_for_selector("voice-mic[data-state=listening]", timeout=10_000)
    assert await page.evaluate("document.querySelector('voice-mic').shadowRoot"
                               ".querySelector('.mic').getAttribute('aria-pressed')") == "true"
    await asyncio.sleep(1.0)
    await page.keyboard.up("Space")
    await page.wait_for_selector("voice-mic[data-state=ready]", timeout=5_000)
    await asyncio.sleep(0.3)
    seconds = sum(len(r.pcm) for r in bot.records(AudioChunk, session_id)) / 32000
    assert 1.2 < seconds < 3.0, seconds  # ~1 s held + the 0.8 s tail of silence, at 16 kHz
    await page.close()


async def test_text_fallback_when_the_microphone_is_denied(playwright, scripted, tmp_path):
    _bot, url = scripted
    browser = await launch(playwright, tmp_path, microphone=False)
    try:
        page = await open_page(browser, url)
        await page.click("voice-mic >> button.mic")
        await page.wait_for_selector("voice-mic[data-mic=denied]", timeout=10_000)
        assert await page.is_visible("voice-mic >> .notice")
        focused = "document.querySelector('voice-mic').shadowRoot.activeElement?.id"
        assert await page.evaluate(focused) == "vm-text"
        await page.keyboard.type("Can I pay in cash?")
        await page.keyboard.press("Enter")
        await page.wait_for_selector("voice-mic >> .msg.bot", timeout=5_000)
        assert "Can I pay in cash?" in await page.inner_text("voice-mic >> .msg.bot .text")
        assert not page.outside
    finally:
        await browser.close()

