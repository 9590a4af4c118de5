"""Issue 16 holes 6 and 9: the ingress's readiness is its own (a real broker request), not the pipeline's;
callers are told what is down, and get text replies while tts is."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

from aiohttp.test_utils import TestClient, TestServer

from ingress.gateway import Gateway
from ingress.health import capabilities
from ingress.server import make_app
from schemas import ReplyText, Transcript
from streams.broker import start_embedded_broker, stop_process
from streams.settings import Settings
from tests.streams.test_broker import bootstrap, pytestmark  # noqa: F401 - the fixture, the Java check


async def status(client: TestClient, path: str) -> tuple[int, dict]:
    response = await client.get(path)
    return response.status, await response.json()


async def readiness_follows_the_broker_not_the_stages(address: str, restart) -> None:
    settings = Settings(kafka_bootstrap=address)
    client = TestClient(TestServer(make_app(settings, Gateway(settings))))
    await client.start_server()
    try:
        assert await status(client, "/livez") == (200, {"alive": True})
        code, ready = await status(client, "/readyz")
        assert (code, ready["broker"]) == (200, True), ready  # no stage runs: the ingress is still ready
        code, health = await status(client, "/healthz")
        assert code == 503 and health["broker"] is True and not any(health["stages"].values()), health
        assert health["pipeline"] == {"hearing": False, "answering": False, "speaking": False}

        await asyncio.to_thread(restart, "stop")  # the broker goes away; the consumers just fetch nothing
        deadline = time.monotonic() + 20
        while (await status(client, "/healthz"))[1]["broker"]:
            assert time.monotonic() < deadline, "the broker is gone but /healthz says it is up"
            await asyncio.sleep(0.5)
        assert (await status(client, "/readyz"))[0] == 503
        assert (await status(client, "/livez"))[0] == 200, "liveness asks the process only"

        await asyncio.to_thread(restart, "start")
        deadline = time.monotonic() + 60
        while (await status(client, "/readyz"))[0] != 200:
            assert time.monotonic() < deadline, "the broker is back but the ingress is not ready"
            await asyncio.sleep(0.5)
    finally:
        await client.close()


def test_readiness_and_health_follow_the_real_broker(bootstrap, tmp_path):  # noqa: F811
    def broker() -> subprocess.Popen:
        return start_embedded_broker(bootstrap, str(tmp_path / "broker.log"), kind="kafka",
                                     data_dir=tmp_path / "kafka", settings=Settings(broker="kafka"))

    procs = [broker()]

    def restart(action: str) -> None:
        if action == "stop":
            stop_process(procs[-1])
        else:
            procs.append(broker())

    try:
        asyncio.run(readiness_follows_the_broker_not_the_stages(bootstrap, restart))
    finally:
        stop_process(procs[-1])


def test_capabilities_name_what_a_missing_stage_takes_away():
    up = dict.fromkeys(["vad", "asr", "intent", "retrieval", "generation", "tts", "workflow"], 1)
    assert capabilities(up) == {"hearing": True, "answering": True, "speaking": True}
    assert capabilities({**up, "asr": 0}) == {"hearing": False, "answering": True, "speaking": True}
    assert capabilities({**up, "tts": 0}) == {"hearing": True, "answering": True, "speaking": False}


async def test_a_caller_is_told_what_is_down_and_gets_text_replies_while_tts_is(serve):
    client, gateway = await serve()
    gateway.pipeline = {"hearing": True, "answering": True, "speaking": False}
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
    ready = await ws.receive_json(timeout=5)
    degraded = await ws.receive_json(timeout=5)
    assert degraded["type"] == "degraded" and degraded["speaking"] is False, degraded
    assert "text only" in degraded["message"]
    sid = ready["session_id"]
    # a spoken turn while tts is down: it ends with its text, it does not wait for audio
    await gateway.deliver(Transcript(session_id=sid, turn_id="a100-1", text="when is my bill due"))
    await gateway.deliver(ReplyText(session_id=sid, turn_id="a100-1", index=0, text="On the 15th.",
                                    final=True, sources=["billing.md"]))
    events = [await ws.receive_json(timeout=5) for _ in range(3)]
    assert [e["type"] for e in events] == ["transcript", "reply_text", "turn_end"], events
    assert events[1]["sources"] == ["billing.md"]  # the caller sees what the reply is grounded on
    assert events[-1]["reply_text"] == "On the 15th."
    # the pipeline heals: the caller is told
    whole = {"hearing": True, "answering": True, "speaking": True}
    await gateway.sessions[sid].pipeline_changed(whole)
    assert await ws.receive_json(timeout=5) == {"type": "degraded", **whole, "message": ""}
    await ws.close()
