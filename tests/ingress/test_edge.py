"""Edge security of the ingress, in-process with a fake Kafka side: auth, origins, limits, ownership."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY

from ingress.auth import Principal, twilio_signature, twilio_url_candidates
from ingress.edge import EdgeGuard
from schemas import AudioChunk, SessionControl
from streams.settings import Settings

START = {"type": "start", "sample_rate": 16000}
KEYS = "alice=key-alice-0123456789,bob=key-bob-0123456789"
SECRET = "s3cret-for-hs256-tokens-0123456789abcdef"


def rejections(code: str) -> float:
    return REGISTRY.get_sample_value("voxbus_ingress_rejections_total", {"code": code}) or 0.0


async def session(client, start=None, headers=None, params=None, frames=(), hold=False):
    """Open /v1/stream; return (events, close code, close reason, ws) (ws open if ``hold`` and ready)."""
    ws = await client.ws_connect("/v1/stream", headers=headers or {}, params=params or {})
    if start is not False:
        await ws.send_str(start if isinstance(start, str) else json.dumps(start or START))
    for frame in frames:
        await ws.send_bytes(frame)
    events = []
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.TEXT:
            events.append(json.loads(msg.data))
            if hold and events[-1]["type"] == "ready":
                return events, None, None, ws
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return events, ws.close_code, msg.extra, ws


def token(claims=None, key=SECRET, alg="HS256", **extra):
    payload = {"sub": "carol", "exp": int(time.time()) + 300, **(claims or {}), **extra}
    return jwt.encode(payload, key, algorithm=alg)


async def test_auth_off_by_default(serve):
    client, gateway = await serve()
    events, code, _, ws = await session(client, hold=True)
    assert events[0]["type"] == "ready"
    await ws.close()
    await asyncio.sleep(0.05)
    assert [r.action for r in gateway.records(SessionControl)] == ["start", "end"]


@pytest.mark.parametrize(("headers", "params", "reason"), [
    ({}, {}, "missing_credentials"),
    ({"Authorization": "Bearer nope"}, {}, "invalid_credentials"),
    ({}, {"api_key": "key-alice-wrong"}, "invalid_credentials"),
    ({"Authorization": "Basic a2V5LWFsaWNlLTAxMjM0NTY3ODk="}, {}, "missing_credentials"),
])
async def test_missing_or_wrong_api_key_is_4401(serve, headers, params, reason):
    client, gateway = await serve(api_keys=KEYS)
    before = rejections("unauthenticated")
    events, code, message, _ = await session(client, headers=headers, params=params)
    assert code == 4401 and message.startswith(f"unauthenticated: {reason}")
    assert events == [{"type": "error", "code": "unauthenticated", "message": message.split(": ", 1)[1],
                       "close_code": 4401}]
    assert rejections("unauthenticated") == before + 1
    assert not gateway.produced  # nothing reached the bus


async def test_api_key_in_header_or_query(serve):
    client, _ = await serve(api_keys=KEYS)
    for kwargs in ({"headers": {"Authorization": "Bearer key-alice-0123456789"}},
                   {"params": {"api_key": "key-bob-0123456789"}}):
        events, code, _, ws = await session(client, hold=True, **kwargs)
        assert events[0]["type"] == "ready", (events, code)
        await ws.close()


async def test_jwt_hs256(serve):
    client, _ = await serve(jwt_secret=SECRET, jwt_issuer="harbor", jwt_audience="voxbus")
    good = token(iss="harbor", aud="voxbus")
    events, _, _, ws = await session(client, params={"access_token": good}, hold=True)
    assert events[0]["type"] == "ready"
    await ws.close()
    cases = {
        "expired_token": token(iss="harbor", aud="voxbus", exp=int(time.time()) - 60),
        "invalid_token": token(iss="someone-else", aud="voxbus"),
    }
    cases["wrong audience"] = token(iss="harbor", aud="other")
    cases["bad signature"] = token(key="another-secret-another-secret-0123", iss="harbor", aud="voxbus")
    cases["no exp"] = jwt.encode({"sub": "carol", "iss": "harbor", "aud": "voxbus"}, SECRET, "HS256")
    for name, bad in cases.items():
        _, code, message, _ = await session(client, headers={"Authorization": f"Bearer {bad}"})
        assert code == 4401, name
        if name == "expired_token":
            assert "expired_token" in message


async def test_jwt_rs256_and_no_algorithm_confusion(serve, tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp_path / "pub.pem").write_text(public_pem)
    client, _ = await serve(jwt_public_key=str(tmp_path / "pub.pem"))
    good = token(key=private, alg="RS256")
    events, _, _, ws = await session(client, params={"access_token": good}, hold=True)
    assert events[0]["type"] == "ready"
    await ws.close()
    # HS256 signed with the public key as the secret: must not be accepted
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=")  # noqa: E731
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(
        json.dumps({"sub": "mallory", "exp": int(time.time()) + 300}).encode())
    mac = hmac.new(public_pem.encode(), signing_input, "sha256").digest()
    forged = (signing_input + b"." + b64(mac)).decode()
    _, code, _, _ = await session(client, params={"access_token": forged})
    assert code == 4401


async def test_origin_allow_list(serve):
    client, _ = await serve(allowed_origins="https://harbor.example, http://localhost:8765")
    events, _, _, ws = await session(client, headers={"Origin": "https://harbor.example"}, hold=True)
    assert events[0]["type"] == "ready"
    await ws.close()
    events, _, _, ws = await session(client, hold=True)  # no Origin: not a browser
    assert events[0]["type"] == "ready"
    await ws.close()
    before = rejections("origin_forbidden")
    _, code, message, _ = await session(client, headers={"Origin": "https://evil.example"})
    assert code == 4403 and message.startswith("origin_forbidden")
    assert rejections("origin_forbidden") == before + 1


async def test_rate_limit_per_key(serve):
    client, _ = await serve(api_keys=KEYS, sessions_per_minute=2)
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    for _ in range(2):
        events, _, _, ws = await session(client, headers=alice, hold=True)
        await ws.close()
    _, code, message, _ = await session(client, headers=alice)
    assert code == 4429 and message.startswith("rate_limited")
    bob = {"Authorization": "Bearer key-bob-0123456789"}
    events, _, _, ws = await session(client, headers=bob, hold=True)
    assert events[0]["type"] == "ready"  # other keys are not affected
    await ws.close()


async def test_anonymous_callers_are_limited_per_address_only_when_asked(serve):
    client, _ = await serve(sessions_per_minute=1)
    for _ in range(2):  # authentication off: the local run has no limits
        events, _, _, ws = await session(client, hold=True)
        await ws.close()
    client, _ = await serve(sessions_per_minute=1, limit_anonymous=True)
    events, _, _, ws = await session(client, hold=True)
    await ws.close()
    _, code, message, _ = await session(client)
    assert code == 4429 and message.startswith("rate_limited")


async def test_concurrent_session_limit(serve):
    client, _ = await serve(api_keys=KEYS, max_concurrent_sessions=1)
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    events, _, _, first = await session(client, headers=alice, hold=True)
    _, code, message, _ = await session(client, headers=alice)
    assert code == 4429 and message.startswith("too_many_sessions")
    await first.close()
    await asyncio.sleep(0.05)
    events, _, _, ws = await session(client, headers=alice, hold=True)
    assert events[0]["type"] == "ready"
    await ws.close()


async def test_session_ids_are_bound_to_their_principal(serve):
    client, gateway = await serve(api_keys=KEYS, max_concurrent_sessions=1)
    alice = {"Authorization": "Bearer key-alice-0123456789"}
    bob = {"Authorization": "Bearer key-bob-0123456789"}
    events, _, _, first = await session(client, headers=alice, hold=True)
    sid = events[0]["session_id"]
    before = rejections("session_forbidden")
    _, code, message, _ = await session(client, {**START, "session_id": sid}, headers=bob)
    assert code == 4403 and message.startswith("session_forbidden")
    assert rejections("session_forbidden") == before + 1
    # the owner may resume it from a new socket (even over its concurrency limit): the old one is replaced
    events, _, _, second = await session(client, {**START, "session_id": sid}, headers=alice, hold=True)
    assert events[0] == {"type": "ready", "session_id": sid, "sample_rate": 16000, "chunk_ms": 128}
    closed = await first.receive(timeout=5)
    assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 4409
    assert gateway.sessions[sid] is not None
    await second.close()
    await asyncio.sleep(0.05)
    # once closed, the id stays bound to alice
    _, code, _, _ = await session(client, {**START, "session_id": sid}, headers=bob)
    assert code == 4403
    actions = [r.action for r in gateway.records(SessionControl, sid)]
    assert actions == ["start", "end", "start", "end"]


async def test_oversized_frame_closes_1009_and_others_go_on(serve):
    client, _ = await serve(max_frame_bytes=4096)
    events, _, _, other = await session(client, hold=True)
    before = rejections("frame_too_large")
    _, code, _, _ = await session(client, frames=[b"\0" * 8192])
    assert code == 1009
    for _ in range(50):
        if rejections("frame_too_large") == before + 1:
            break
        await asyncio.sleep(0.02)
    assert rejections("frame_too_large") == before + 1
    await other.send_str(json.dumps({"type": "text", "text": "still there?"}))
    await asyncio.sleep(0.05)
    assert not other.closed
    await other.close()


async def test_idle_timeout_and_max_session_length(serve):
    client, _ = await serve(idle_timeout_s=0.5)
    events, code, message, _ = await session(client)
    assert code == 4408 and message.startswith("idle_timeout")
    assert events[-1]["code"] == "idle_timeout"
    client, _ = await serve(max_session_s=1.0, idle_timeout_s=5)
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps(START))
    started = time.monotonic()
    reader = asyncio.ensure_future(ws.receive_json())
    assert (await reader)["type"] == "ready"
    closing = asyncio.ensure_future(ws.receive())
    while not closing.done() and time.monotonic() - started < 5:  # keep talking: only the length can end it
        await ws.send_bytes(b"\0\0" * 320)
        await asyncio.sleep(0.02)
    await closing
    while not ws.closed:
        await ws.receive(timeout=5)
    assert ws.close_code == 4413
    assert 0.9 < time.monotonic() - started < 3


async def test_existing_protocol_unchanged(serve):
    client, gateway = await serve()
    events, code, _, _ = await session(client, start="{not json")
    assert code == 4400 and events[0]["code"] == "bad_json"
    events, code, _, _ = await session(client, {"type": "start", "sample_rate": 11025})
    assert code == 4400 and events[0]["code"] == "bad_sample_rate"
    events, _, _, ws = await session(client, frames=[b"\x01\x02\x03"], hold=True)
    await ws.send_bytes(b"\0\0" * 2048)
    error = await ws.receive_json(timeout=5)
    assert error == {"type": "error", "code": "odd_length",
                     "message": "PCM16 frame must have an even byte count, got 3"}
    await ws.send_str(json.dumps({"type": "end"}))
    await asyncio.sleep(0.1)
    assert len(gateway.records(AudioChunk)) == 2048 // (16 * gateway.settings.chunk_ms)  # whole chunks only


def test_guard_forgets_bindings_after_their_ttl():
    guard = EdgeGuard(Settings(session_binding_ttl_s=10))
    a, b = Principal("key:a", "api_key", "key:a"), Principal("key:b", "api_key", "key:b")
    admission = guard.admit(a, "s1", now=0.0)
    guard.release(admission, now=1.0)
    with pytest.raises(Exception, match="another caller"):
        guard.admit(b, "s1", now=5.0)
    guard.release(guard.admit(b, "s1", now=12.0), now=12.0)
    assert not guard.active


def test_twilio_signature_documented_example():
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
                            params.items()) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_url_candidates():
    urls = twilio_url_candidates("", "http", "voice.example.com", "/v1/twilio")
    assert "wss://voice.example.com/v1/twilio" in urls
    assert "wss://voice.example.com:443/v1/twilio" in urls
    urls = twilio_url_candidates("https://voice.example.com/", "http", "10.0.0.7:8765", "/v1/twilio")
    assert "wss://voice.example.com/v1/twilio" in urls and not any("10.0.0.7" in u for u in urls)
