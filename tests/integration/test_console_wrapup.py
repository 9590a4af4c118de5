"""The agent console's wrap-up and recording in headless Chromium, on the fake bus (no broker, no model).

Take a handed-off session, end it with a disposition and a note: the console shows the ticket the
end wrote, then plays the ended session's stereo recording (from the archive).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import async_playwright

from ingress.server import make_app
from schemas import Ticket
from streams.settings import Settings
from streams.topics import HANDOFFS
from tests.ingress.conftest import FakeGateway
from tests.ingress.test_agents import KEYS, handoff
from tests.ingress.test_recordings import NO_BROKER, archive
from tests.integration.test_browser import CHROMIUM, console_page

if not Path(CHROMIUM).exists():  # `make test` installs it (Debian's chromium)
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)

METADATA = """(audio) => new Promise((done) => audio.readyState >= 1 ? done(audio.duration)
    : audio.addEventListener('loadedmetadata', () => done(audio.duration)))"""


async def test_the_console_ends_a_call_shows_its_ticket_and_plays_its_recording(tmp_path):
    settings = Settings(api_keys=KEYS, archive_dir=tmp_path / "archive", kafka_bootstrap=NO_BROKER)
    gateway = FakeGateway(settings)
    await gateway.produce(HANDOFFS, handoff("s", 10.0))
    archive(tmp_path / "archive")
    server = TestServer(make_app(settings, gateway), host="127.0.0.1")  # type: ignore[arg-type]
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}/agent?api_key=key-bob-0123456789"
        async with async_playwright() as pw, console_page(pw, url) as (page, errors):
            await page.click('li[data-session="s"]', timeout=10_000)
            assert await page.is_hidden("#wrapup")  # not ours yet
            await page.click("#take")
            await page.select_option("#disposition", "follow_up", timeout=10_000)
            await page.fill("#wrapup-note", "Call back Monday.")
            await page.click("#end")
            result = await page.wait_for_selector("#wrapup-result:has-text('Ticket')", timeout=10_000)
            tickets = gateway.records(Ticket, "s")
            assert [(t.disposition, t.note, t.status) for t in tickets] == [
                ("follow_up", "Call back Monday.", "open")]
            assert tickets[0].id in await result.inner_text()
            assert await page.is_hidden("#wrapup")  # ended: nothing to end any more
            # the ended session's recording loads by itself: 3 s of stereo (the reply ends at 3 s)
            await page.wait_for_selector("#recording-slot audio[controls]", timeout=10_000)
            duration = await page.eval_on_selector("#recording-slot audio", METADATA)
            assert duration == pytest.approx(3.0, abs=0.05)
            assert not errors, errors
    finally:
        await server.close()
