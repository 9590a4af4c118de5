"""/v1/twilio in-process (fake Kafka side): protocol, mu-law codec, marks, clear, signatures."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import warnings

import aiohttp
import numpy as np
import pytest
import soxr

from ingress.auth import twilio_signature
from ingress.g711 import ulaw_decode, ulaw_encode
from ingress.playback import Playback
from schemas import AudioChunk, ReplyText, SessionControl, SynthAudio, Transcript, VadEvent
from tests.conftest import DATA
from voxbus.client import load_pcm16

CALL_SID = "CA" + "0123456789abcdef" * 2
STREAM_SID = "MZ" + "fedcba9876543210" * 2
TOKEN = "twilio-auth-token-0123456789"


def g711_reference_decode(code: int) -> int:
    """ITU-T G.711 mu-law expansion."""
    u = ~code & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return -(magnitude - 0x84) if u & 0x80 else magnitude - 0x84


def test_mulaw_codec_is_g711():
    assert [int(v) for v in ulaw_decode(bytes(range(256)))] == [g711_reference_decode(c) for c in range(256)]
    samples = np.arange(-32768, 32768, 7, dtype=np.int16)
    decoded = ulaw_decode(ulaw_encode(samples)).astype(int)
    # mu-law quantization: the error grows with the magnitude, 1/32 of it at most (+ the bias at 0)
    assert np.all(np.abs(decoded - samples) <= np.abs(samples.astype(int)) / 32 + 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # stdlib reference (deprecated, still in 3.11)
    reference = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(samples.tobytes(), 2), 2), "<i2")
    assert np.mean(np.abs(decoded - samples)) <= 1.05 * np.mean(np.abs(reference.astype(int) - samples))


def test_playback_restarts_after_an_underrun():
    playback = Playback()
    playback.add(b"\0\0" * 1000, 1000, 0)  # 1 s
    playback.started_at -= 5.0  # played out long ago
    playback.add(b"\0\0" * 1000, 1000, 1)
    assert 2000 <= playback.heard() < 2000 + 100  # the second sentence starts now, not 4 s in
    assert playback.playing()


def media(payload: bytes, chunk: int) -> dict:
    return {"event": "media", "sequenceNumber": str(chunk + 2), "streamSid": STREAM_SID,
            "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                      "payload": base64.b64encode(payload).decode()}}


def start_message(custom: dict | None = None) -> dict:
    return {"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": STREAM_SID, "callSid": CALL_SID,
                      "tracks": ["inbound"], "customParameters": custom or {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}


class Phone:
    """Twilio's side of a media stream, enough for unit tests."""

    def __init__(self, ws):
        self.ws = ws
        self.received: list[dict] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))

    async def send(self, message: dict) -> None:
        await self.ws.send_str(json.dumps(message))

    async def wait(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in self.received if predicate(m)]
            if found:
                return found
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no such message; got {[m['event'] for m in self.received]}")


async def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_call_end_to_end(serve):
    client, gateway = await serve()
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await phone.send(start_message())
    await wait_for(lambda: gateway.records(SessionControl))
    assert gateway.records(SessionControl)[0].session_id == CALL_SID
    # caller audio: one second of real speech as 20 ms mu-law frames
    pcm, rate = load_pcm16(DATA / "jfk.wav")
    telephone = soxr.resample(pcm[:rate], rate, 8000).astype(np.int16)
    encoded = ulaw_encode(telephone)
    for i in range(0, len(encoded), 160):
        await phone.send(media(encoded[i:i + 160], i // 160))
    await phone.send({"event": "dtmf", "streamSid": STREAM_SID, "sequenceNumber": "60",
                      "dtmf": {"track": "inbound_track", "digit": "5"}})
    await wait_for(lambda: sum(len(c.pcm) for c in gateway.records(AudioChunk)) >= 2 * 14000)
    chunks = gateway.records(AudioChunk)
    heard = np.frombuffer(b"".join(c.pcm for c in chunks), "<i2").astype(np.float32)
    reference = pcm[:rate][: heard.size].astype(np.float32)
    # the same speech, through 8 kHz mu-law
    assert np.corrcoef(heard[200:], reference[200:heard.size])[0, 1] > 0.8

    # a reply: two sentences of audio at 22.05 kHz
    turn = "a1000"
    tone = (np.sin(np.arange(22050) * 2 * np.pi * 440 / 22050) * 8000).astype("<i2").tobytes()
    await gateway.deliver(Transcript(session_id=CALL_SID, turn_id=turn, text="hello there"))
    await gateway.deliver(ReplyText(session_id=CALL_SID, turn_id=turn, index=0, text="Hi.", final=True))
    await gateway.deliver(SynthAudio(session_id=CALL_SID, turn_id=turn, index=0, seq=0, sample_rate=22050,
                                     pcm=tone))
    marks = await phone.wait(lambda m: m["event"] == "mark")
    frames = [m for m in phone.received if m["event"] == "media"]
    assert all(m["streamSid"] == STREAM_SID and set(m) == {"event", "streamSid", "media"} for m in frames)
    payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in frames)
    assert all(len(base64.b64decode(m["media"]["payload"])) == 160 for m in frames[:-1])
    assert 0.9 * 8000 < len(payload) <= 8000  # ~1 s of 8 kHz mu-law (the resampler holds a few ms back)
    assert marks[0]["mark"]["name"] == f"{turn}:0:{len(tone)}"
    session = gateway.sessions[CALL_SID]
    # Twilio echoes the mark when it has played: the session's clock follows
    await phone.send({"event": "mark", "streamSid": STREAM_SID, "sequenceNumber": "70",
                      "mark": {"name": marks[0]["mark"]["name"]}})
    await wait_for(lambda: session.turns[turn].playback.heard() == len(tone))

    # more audio, then the caller starts speaking: barge-in clears Twilio's buffer
    await gateway.deliver(SynthAudio(session_id=CALL_SID, turn_id=turn, index=0, seq=1, sample_rate=22050,
                                     pcm=tone))
    await gateway.deliver(VadEvent(session_id=CALL_SID, turn_id="a9000", kind="speech_start", sample=9000,
                                   ts=time.time()))
    clear = await phone.wait(lambda m: m["event"] == "clear")
    assert clear == [{"event": "clear", "streamSid": STREAM_SID}]
    # echoes of cleared marks (older epoch) do not move the clock
    stale = [m for m in phone.received if m["event"] == "mark"][-1]["mark"]["name"]
    await phone.send({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": stale}})
    await asyncio.sleep(0.1)
    assert session.turns[turn].playback.paused

    await phone.send({"event": "stop", "sequenceNumber": "99", "streamSid": STREAM_SID,
                      "stop": {"accountSid": "AC" + "0" * 32, "callSid": CALL_SID}})
    await wait_for(lambda: [r.action for r in gateway.records(SessionControl)] == ["start", "replied", "end"])
    await wait_for(lambda: CALL_SID not in gateway.sessions)


@pytest.mark.parametrize(("first", "reason"), [
    ({"event": "media"}, "expected_start"),
    ({"event": "start", "streamSid": STREAM_SID, "start": {"streamSid": STREAM_SID, "callSid": CALL_SID,
      "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1}}}, "bad_media_format"),
])
async def test_bad_start_is_4400(serve, first, reason):
    client, _ = await serve()
    ws = await client.ws_connect("/v1/twilio")
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send_str(json.dumps(first))
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4400 and msg.extra.startswith(reason)


PUBLIC = "https://voice.example.com"
SIGNED = {"X-Twilio-Signature": twilio_signature(TOKEN, "wss://voice.example.com/v1/twilio")}


async def stream_token(client, call_sid=CALL_SID) -> str:
    """The stream token the signed TwiML webhook gives ``call_sid``."""
    params = {"CallSid": call_sid, "From": "+15550100", "To": "+15550199"}
    signature = twilio_signature(TOKEN, f"{PUBLIC}/v1/twilio/twiml", params.items())
    response = await client.post("/v1/twilio/twiml", data=params, headers={"X-Twilio-Signature": signature})
    assert response.status == 200
    return re.search(r'<Parameter name="voxbus_token" value="([^"]+)" />', await response.text()).group(1)


async def closed_with(ws) -> tuple[int, str]:
    """Read until the server closes ``ws``: (close code, reason)."""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code, msg.extra or ""


async def signed_call(client, token: str | None, headers=SIGNED) -> Phone:
    phone = Phone(await client.ws_connect("/v1/twilio", headers=headers))
    await phone.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    await phone.send(start_message({"voxbus_token": token} if token else {}))
    return phone


async def test_signature_and_stream_token_required_when_a_token_is_configured(serve):
    client, gateway = await serve(twilio_auth_token=TOKEN, public_url=PUBLIC)
    bad = {"X-Twilio-Signature": "bm9wZQ=="}
    for headers, expected in [({}, "missing_signature"), (bad, "invalid_signature")]:
        ws = await client.ws_connect("/v1/twilio", headers=headers)
        msg = await ws.receive(timeout=5)
        assert msg.data == 4401 and expected in msg.extra
    # a valid handshake signature alone is replayable: the call's token is required too
    phone = await signed_call(client, None)
    code, reason = await closed_with(phone.ws)
    assert (code, reason) == (4401, 'unauthenticated: missing_stream_token: the stream needs its <Parameter '
                                    'name="voxbus_token">')
    phone = await signed_call(client, await stream_token(client))
    await wait_for(lambda: CALL_SID in gateway.sessions)
    await phone.ws.close()


def test_a_twilio_token_needs_the_public_url():
    from ingress.server import make_app
    from streams.settings import Settings
    from tests.ingress.conftest import FakeGateway

    settings = Settings(twilio_auth_token=TOKEN)
    with pytest.raises(ValueError, match="VOXBUS_PUBLIC_URL"):
        make_app(settings, FakeGateway(settings))  # type: ignore[arg-type]


async def test_a_replayed_stream_cannot_take_over_the_call(serve):
    client, gateway = await serve(twilio_auth_token=TOKEN, public_url=PUBLIC)
    token = await stream_token(client)
    victim = await signed_call(client, token)
    await wait_for(lambda: CALL_SID in gateway.sessions)
    session = gateway.sessions[CALL_SID]
    # the same signature and token again (a replay), and the same call's token reissued: refused
    for again in (token, await stream_token(client)):
        attacker = await signed_call(client, again)
        code, reason = await closed_with(attacker.ws)
        assert (code, reason.split(":")[0]) == (4409, "call_already_streaming")
    other_call = "CA" + "f" * 32
    for forged in (await stream_token(client, other_call), token[:-4] + "AAAA", "CA.1.x"):
        attacker = await signed_call(client, forged)
        code, reason = await closed_with(attacker.ws)
        assert code == 4401 and "invalid_stream_token" in reason
    # the victim's stream is untouched: still the session, still heard
    assert gateway.sessions[CALL_SID] is session and not victim.ws.closed
    await victim.send(media(ulaw_encode(np.zeros(8000, np.int16)), 0))
    await wait_for(lambda: gateway.records(AudioChunk, CALL_SID))
    await victim.ws.close()


async def test_an_expired_stream_token_is_refused(serve):
    client, _ = await serve(twilio_auth_token=TOKEN, public_url=PUBLIC)
    from ingress.auth import CallTokens

    expired = CallTokens(TOKEN, 60.0).issue(CALL_SID, now=time.time() - 120)
    code, reason = await closed_with((await signed_call(client, expired)).ws)
    assert code == 4401 and "expired_stream_token" in reason


async def test_a_signature_for_another_host_is_refused(serve):
    """The Host header is the caller's: only the public URL's signature counts."""
    client, gateway = await serve(twilio_auth_token=TOKEN, public_url=PUBLIC)
    forged_host = {"Host": "attacker.example",
                   "X-Twilio-Signature": twilio_signature(TOKEN, "wss://attacker.example/v1/twilio")}
    ws = await client.ws_connect("/v1/twilio", headers=forged_host)
    code, reason = await closed_with(ws)
    assert code == 4401 and "invalid_signature" in reason
    assert not gateway.produced


async def test_a_second_stream_for_a_call_is_refused_after_an_ingress_restart(serve):
    bus: list = []
    client, gateway = await serve(bus, twilio_auth_token=TOKEN, public_url=PUBLIC)
    token = await stream_token(client)
    phone = await signed_call(client, token)
    await wait_for(lambda: CALL_SID in gateway.sessions)
    await client.close()  # the ingress restarts
    client, gateway = await serve(bus, twilio_auth_token=TOKEN, public_url=PUBLIC)
    code, reason = await closed_with((await signed_call(client, token)).ws)
    assert (code, reason.split(":")[0]) == (4409, "call_already_streaming")
    assert phone.ws.close_code != 4409  # the first stream was never replaced


@pytest.mark.parametrize("message", [
    {"event": "media", "media": {"payload": 12345}},
    {"event": "media", "media": "AAAA"},
    {"event": "media"},
    {"event": "dtmf", "dtmf": "5"},
    {"event": "dtmf", "dtmf": {"digit": "5\nINFO ingress.auth: admin logged in"}},
    {"event": "dtmf", "dtmf": {"digit": ["5"]}},
    {"event": "mark", "mark": ["a1000:0:100"]},
    {"event": "mark", "mark": {"name": 7}},
    {"event": "media", "media": {"payload": "not base64!"}},
], ids=lambda m: json.dumps(m)[:60])
async def test_a_malformed_message_is_dropped_and_the_call_goes_on(serve, message, caplog):
    client, gateway = await serve()
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send(start_message())
    await wait_for(lambda: CALL_SID in gateway.sessions)
    await phone.send({"streamSid": STREAM_SID, **message})
    await phone.send(media(ulaw_encode(np.zeros(8000, np.int16)), 0))  # one second of audio after it
    await wait_for(lambda: sum(len(c.pcm) for c in gateway.records(AudioChunk)) >= 28000)
    assert not phone.ws.closed and CALL_SID in gateway.sessions
    assert [r.getMessage() for r in caplog.records if "dropped a message" in r.getMessage()]
    await phone.ws.close()


async def test_a_start_with_a_malformed_sid_is_4400(serve):
    client, gateway = await serve()
    ws = await client.ws_connect("/v1/twilio")
    bad = start_message()
    bad["start"]["streamSid"] = "MZ1\nforged log line"
    await ws.send_str(json.dumps(bad))
    msg = await ws.receive(timeout=5)
    assert msg.data == 4400 and msg.extra.startswith("bad_message")
    assert not gateway.produced


async def test_api_key_in_custom_parameters(serve):
    client, gateway = await serve(api_keys="pbx=pbx-key-0123456789")
    ws = await client.ws_connect("/v1/twilio")
    await ws.send_str(json.dumps(start_message({"api_key": "wrong"})))
    msg = await ws.receive(timeout=5)
    assert msg.data == 4401
    ws = await client.ws_connect("/v1/twilio")
    phone = Phone(ws)
    await phone.send(start_message({"api_key": "pbx-key-0123456789", "session_id": "pbx-call-1"}))
    await wait_for(lambda: "pbx-call-1" in gateway.sessions)
    await ws.close()


async def test_twiml_webhook(serve):
    client, _ = await serve(twilio_auth_token=TOKEN, public_url="https://voice.example.com")
    params = {"CallSid": CALL_SID, "From": "+15550100", "To": "+15550199"}
    signature = twilio_signature(TOKEN, "https://voice.example.com/v1/twilio/twiml", params.items())
    response = await client.post("/v1/twilio/twiml", data=params, headers={"X-Twilio-Signature": signature})
    assert response.status == 200 and response.content_type == "text/xml"
    assert re.search(r'<Connect><Stream url="wss://voice.example.com/v1/twilio"><Parameter '
                     rf'name="voxbus_token" value="{CALL_SID}\.\d+\.[\w-]+" /></Stream></Connect>',
                     await response.text())
    response = await client.post("/v1/twilio/twiml", data={**params, "From": "+1999"},
                                 headers={"X-Twilio-Signature": signature})
    assert response.status == 403
    no_call = {"From": "+15550100"}
    signature = twilio_signature(TOKEN, "https://voice.example.com/v1/twilio/twiml", no_call.items())
    response = await client.post("/v1/twilio/twiml", data=no_call, headers={"X-Twilio-Signature": signature})
    assert response.status == 400
