"""Logs (issue 13, finding 6): one line per event, control characters escaped, no credential in any line."""

from __future__ import annotations

import io
import json
import logging
import time

import jwt

from ingress.logs import MAX_LINE_CHARS, OneLineFilter, escape, scrub_query
from tests.ingress.test_edge import KEYS, SECRET, session
from tests.ingress.test_twilio import Phone, start_message, wait_for


def test_escape_keeps_a_message_on_one_bounded_line():
    assert escape("DTMF 5\nINFO ingress.auth: admin logged in\r\x1b[31m") == (
        "DTMF 5\\nINFO ingress.auth: admin logged in\\r\\x1b[31m")
    assert escape("a\u2028b\tc") == "a\\x2028b\\tc"
    long = escape("x" * 180_000)
    assert len(long) < MAX_LINE_CHARS + 40 and long.endswith("[178000 more characters]")


def test_the_filter_makes_every_record_one_line():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(OneLineFilter())
    logger = logging.getLogger("tests.one-line")
    logger.addHandler(handler)
    try:
        logger.warning("twilio stream %s: DTMF %s", "MZ1", "5\nERROR forged line")
        logger.warning("plain %d", 3)
    finally:
        logger.removeHandler(handler)
    assert out.getvalue().splitlines() == ["twilio stream MZ1: DTMF 5\\nERROR forged line", "plain 3"]


def test_scrub_query():
    assert scrub_query("/v1/stream?api_key=k1&x=1&access_token=t.o.k") == (
        "/v1/stream?api_key=[redacted]&x=1&access_token=[redacted]")
    assert scrub_query("/healthz") == "/healthz"


async def test_no_credential_in_any_log_line(serve, caplog):
    caplog.set_level(logging.DEBUG)
    key = "key-alice-0123456789"
    client, gateway = await serve(api_keys=f"agent:{KEYS}", jwt_secret=SECRET)
    good_jwt = jwt.encode({"sub": "carol", "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "carol", "exp": int(time.time()) - 300}, SECRET, algorithm="HS256")
    for kwargs in ({"params": {"api_key": key}}, {"params": {"access_token": good_jwt}},
                   {"headers": {"Authorization": f"Bearer {good_jwt}"}},
                   {"params": {"access_token": expired}}, {"params": {"api_key": key + "-wrong"}}):
        events, code, _, ws = await session(client, hold=True, **kwargs)
        if code is None:
            await ws.send_str(json.dumps({"type": "text", "text": "hi"}))
            await ws.close()
    for path in (f"/v1/agent/sessions?api_key={key}", f"/agent?api_key={key}", f"/?access_token={good_jwt}"):
        await client.get(path)
    await client.get("/v1/agent/sessions", headers={"Authorization": f"Bearer {key}"})
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send(start_message({"api_key": key, "session_id": "pbx-1"}))
    await wait_for(lambda: "pbx-1" in gateway.sessions)
    await phone.ws.close()
    await wait_for(lambda: any("/v1/twilio" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records]
    assert any("[redacted]" in line for line in lines)  # the access log did see the requests
    for secret in (key, good_jwt, expired, good_jwt.split(".")[2]):
        assert not [line for line in lines if secret in line]
