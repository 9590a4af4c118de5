"""Recorded calls on the real stack: ``POST /v1/calls`` -> poll -> ``done`` with the transcript.

An authenticated ingress runs in-process on the stack's broker (its own egress
partition, ``ingress_slot=3``), next to the stack's open one.  An open one
(``ingress_slot=2``) feeds its calls at twice real time (the default is 4x), so a live
turn on it or on the stack's ingress falls while the call is fed: the feed waits for
that turn (yielding).
How much a recorded call slows a live caller is measured by ``benchmarks/batch_vs_live.py``.
"""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
import soundfile
from aiohttp.test_utils import TestServer

from benchmarks.batch_vs_live import call_recording
from ingress.calls import SERVICE
from ingress.server import make_app
from streams.settings import Settings
from tests.conftest import DATA, wer
from tests.integration.caller import ScriptedCaller

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

KEYS = "alice=alice-calls-key-0123456789,bob=bob-calls-key-0123456789"
ALICE = {"Authorization": "Bearer alice-calls-key-0123456789"}
BOB = {"Authorization": "Bearer bob-calls-key-0123456789"}
MAX_BYTES = 2 * 2**20
LONG_CLIP = "sense_and_sensibility_01_austen_64kb-0870"
LIVE_CLIP = "sense_and_sensibility_01_austen_64kb-0880"
BUS_SLACK_S = 1.0
"""Most the feed's wait may start or end after the live caller saw the speech end or its first reply
audio (s): the turn state goes through the bus (counted at most every 50 ms, a record produced and read)."""


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def calls(stack):
    settings = Settings(api_keys=KEYS, ingress_slot=3, calls_max_bytes=MAX_BYTES)
    server = TestServer(make_app(settings), host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{server.port}", http
    await server.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def realtime_calls(stack):
    """An open in-process ingress (egress partition 2): calls fed at 2x real time, yielding (the default)."""
    app = make_app(Settings(ingress_slot=2, calls_speed=2.0))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        yield f"127.0.0.1:{server.port}", http, app
    await server.close()


def flac_of(clip: str) -> bytes:
    audio, rate = soundfile.read(DATA / f"{clip}.wav", dtype="int16")
    out = io.BytesIO()
    soundfile.write(out, audio, rate, format="FLAC")
    return out.getvalue()


async def post_wav(http, base: str, clip: str, headers=ALICE) -> dict:
    body = (DATA / f"{clip}.wav").read_bytes()
    headers = {**headers, "Content-Type": "audio/wav"}
    async with http.post(f"{base}/v1/calls", data=body, headers=headers) as r:
        assert r.status == 202, await r.text()
        return await r.json()


async def until_done(http, base: str, call_id: str, timeout_s: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with http.get(f"{base}/v1/calls/{call_id}", headers=ALICE) as r:
            assert r.status == 200
            body = await r.json()
        if body["status"] != "running":
            return body
        await asyncio.sleep(0.5)
    raise TimeoutError(f"call {call_id} not done in {timeout_s} s: {body}")


def transcript(body: dict) -> str:
    return " ".join(turn["transcript"] for turn in body["turns"])


async def test_a_wav_call_is_answered_turn_by_turn(calls):
    base, http = calls
    posted = await post_wav(http, base, "jfk")
    assert posted["status"] == "running" and posted["id"]
    body = await until_done(http, base, posted["id"])
    assert body["status"] == "done", body
    assert wer((DATA / "jfk.txt").read_text(), transcript(body)) <= 0.3, body
    assert all(turn["intent"] and turn["sentiment"] and turn["reply_text"] for turn in body["turns"]), body
    async with http.get(f"{base}/v1/calls/{posted['id']}/audio", headers=ALICE) as r:
        assert r.status == 200 and r.content_type == "audio/wav"
        audio, rate = soundfile.read(io.BytesIO(await r.read()), dtype="int16")
    assert audio.size > rate // 2 and np.abs(audio).max() > 1000  # at least half a second of reply speech
    for headers, status in ((BOB, 404), ({}, 401)):  # only alice may read her call
        for path in ("", "/audio"):
            async with http.get(f"{base}/v1/calls/{posted['id']}{path}", headers=headers) as r:
                assert r.status == status and (await r.json())["error"], (headers, path)


async def test_a_multipart_flac_call(calls):
    base, http = calls
    form = aiohttp.FormData()
    form.add_field("file", flac_of(LONG_CLIP), filename="call.flac", content_type="audio/flac")
    async with http.post(f"{base}/v1/calls", data=form, headers=ALICE) as r:
        assert r.status == 202, await r.text()
        posted = await r.json()
    body = await until_done(http, base, posted["id"])
    assert body["status"] == "done", body
    assert wer((DATA / f"{LONG_CLIP}.txt").read_text(), transcript(body)) <= 0.3, body


@pytest.mark.parametrize(("headers", "body", "status", "code"), [
    ({"Content-Type": "audio/wav"}, b"\0" * (MAX_BYTES + 1), 413, "too_large"),
    ({"Content-Type": "text/plain"}, b"hello", 415, "unsupported_media_type"),
    ({"Content-Type": "audio/wav"}, b"RIFF not really a wave file" * 20, 400, "undecodable"),
])
async def test_bad_uploads_are_refused_clearly(calls, headers, body, status, code):
    base, http = calls
    async with http.post(f"{base}/v1/calls", data=body, headers={**ALICE, **headers}) as r:
        assert r.status == status
        answer = await r.json()
    assert answer["error"] == code and answer["message"]


async def test_no_credential_is_401(calls):
    base, http = calls
    wav = (DATA / "jfk.wav").read_bytes()
    async with http.post(f"{base}/v1/calls", data=wav, headers={"Content-Type": "audio/wav"}) as r:
        assert r.status == 401 and (await r.json())["error"] == "unauthenticated"


@pytest.mark.parametrize("replica", ["same", "other"])
async def test_a_recorded_call_waits_while_a_live_turn_is_in_flight(realtime_calls, url, replica, tmp_path):
    """The feed pauses from the live turn's speech end to its first reply audio, then goes on to the end.

    ``same``: the live caller is on the call's ingress (its sessions' turns); ``other``: on the
    stack's ingress (the turns in flight it puts on ``voxbus.heartbeats``).
    """
    host, http, app = realtime_calls
    clips = tmp_path / "call"
    clips.mkdir()
    for name in ("jfk", LONG_CLIP, "sense_and_sensibility_01_austen_64kb-0890"):  # the live clip is not in it
        (clips / f"{name}.wav").symlink_to(DATA / f"{name}.wav")
    recording = call_recording(clips, copies=1, gap_s=1.0)  # 26 s, fed in 13 s
    wav = {"Content-Type": "audio/wav"}
    async with http.post(f"http://{host}/v1/calls", data=recording, headers=wav) as r:
        assert r.status == 202, await r.text()
        call = app[SERVICE].calls[(await r.json())["id"]]
    async with ScriptedCaller(f"ws://{host}/v1/stream" if replica == "same" else url) as caller:
        await caller.say(LIVE_CLIP)
        await caller.until(lambda e: e["type"] == "turn_end" and e.get("transcript"), timeout_s=120)
    speech_end = next(t for t, e in caller.events if e["type"] == "speech_ended")
    first_audio = next(t for t, e in caller.events if e["type"] == "binary" and t > speech_end)
    assert call.end is None, "the call was fed before the live turn was answered: no overlap to see"
    waits = [(at, at + waited) for at, waited in call.yields if at + waited > speech_end - BUS_SLACK_S]
    assert waits, (call.yields, speech_end, first_audio)
    began, ended = waits[0]
    assert speech_end - BUS_SLACK_S <= began <= speech_end + BUS_SLACK_S, (waits, speech_end)
    assert first_audio - BUS_SLACK_S <= ended <= first_audio + BUS_SLACK_S, (waits, first_audio)
    body = await until_done(http, f"http://{host}", call.id)
    assert body["status"] == "done" and body["turns"], body  # it went on after the wait
    assert body["yielded_s"] == pytest.approx(sum(waited for _, waited in call.yields), abs=0.01)
