"""The greeting on pickup and the ``record`` wish at the ingress (fake Kafka side): what a new session is
told and how, no greeting on a reconnection, barge-in over it, and no analytics turn of it."""

from __future__ import annotations

import json

import aiohttp
import pytest

from ingress.greeting import localized, pickup_lines
from schemas import ReplyText, SessionControl, SynthAudio, Transcript, TurnCancel, TurnRecord, VadEvent
from streams.settings import Settings
from tests.ingress.test_continuation import received
from tests.ingress.test_twilio import CALL_SID, Phone, start_message, wait_for

GREETING = "Thanks for calling Harbor Mobile. How can I help?"
NOTICE = "This call may be recorded for quality."
CALLER = "a9000-1"


def test_pickup_lines_notice_first_and_none_when_not_recorded():
    settings = Settings(greeting=GREETING, consent_notice=NOTICE)
    assert pickup_lines(settings, None) == [NOTICE, GREETING]
    assert pickup_lines(settings, True) == [NOTICE, GREETING]
    assert pickup_lines(settings, False) == [GREETING]  # not recorded: no notice to give
    assert pickup_lines(Settings(), None) == []  # the defaults: a silent pickup
    assert pickup_lines(Settings(consent_notice=NOTICE), None) == [NOTICE]


def test_localized_text_falls_back_to_english(monkeypatch):
    monkeypatch.setenv("VOXBUS_GREETING", json.dumps({"en": "Hello.", "es": "Hola."}))
    monkeypatch.setenv("VOXBUS_CONSENT_NOTICE", "  Recorded.  ")
    settings = Settings()
    assert localized(settings.greeting, "es") == "Hola."
    assert localized(settings.greeting, "fr") == "Hello."
    assert localized(settings.consent_notice, "es") == "Recorded."
    assert localized({"es": "Hola."}, "de") == ""


def test_a_greeting_setting_that_is_neither_text_nor_texts_fails_at_startup(monkeypatch):
    monkeypatch.setenv("VOXBUS_GREETING", json.dumps({"en": 3}))
    with pytest.raises(ValueError):
        Settings()


async def start(client, **fields) -> tuple[aiohttp.ClientWebSocketResponse, dict]:
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, **fields}))
    return ws, await ws.receive_json(timeout=5)


def greetings(gateway, sid: str) -> list[tuple[str, ReplyText]]:
    return [(topic, r) for topic, r in gateway.produced if isinstance(r, ReplyText) and r.session_id == sid]


async def test_a_new_session_is_told_the_notice_and_the_greeting_on_the_reply_path(serve):
    client, gateway = await serve(greeting=GREETING, consent_notice=NOTICE)
    ws, ready = await start(client)
    sid = ready["session_id"]
    said = greetings(gateway, sid)
    assert [(topic, r.index, r.text, r.final, r.speak) for topic, r in said] == [
        ("voxbus.replies", 0, NOTICE, False, True), ("voxbus.egress", 0, NOTICE, False, True),
        ("voxbus.replies", 1, GREETING, True, True), ("voxbus.egress", 1, GREETING, True, True)]
    turn_id = said[0][1].turn_id
    assert turn_id.startswith("greeting-") and {r.turn_id for _, r in said} == {turn_id}
    [control] = gateway.records(SessionControl, sid)
    assert "record" not in control.config  # no wish stated: the archive keeps the audio
    # the egress side brings it back: shown, played, ended; no analytics turn of it
    for _, reply in said[1::2]:
        await gateway.deliver(reply)
    await gateway.deliver(SynthAudio(session_id=sid, turn_id=turn_id, index=1, seq=0, sample_rate=16000,
                                     pcm=b"\1\0" * 160, final=True))
    events = await received(ws, 0.5)
    assert [e["text"] for e in events if e["type"] == "reply_text"] == [NOTICE, GREETING]
    assert {"type": "binary"} in events
    assert [e["turn_id"] for e in events if e["type"] == "turn_end"] == [turn_id]
    assert not gateway.records(TurnRecord)
    await ws.close()


async def test_record_false_is_on_the_start_record_and_drops_the_notice(serve):
    client, gateway = await serve(greeting=GREETING, consent_notice=NOTICE)
    ws, ready = await start(client, record=False)
    sid = ready["session_id"]
    [control] = gateway.records(SessionControl, sid)
    assert control.config == {"speak": True, "language": "en", "record": False}
    assert [r.text for topic, r in greetings(gateway, sid) if topic == "voxbus.replies"] == [GREETING]
    await ws.close()
    ws, ready = await start(client, record=True, speak=False)
    control = gateway.records(SessionControl, ready["session_id"])[0]
    assert control.config == {"speak": False, "language": "en", "record": True}
    assert {r.speak for _, r in greetings(gateway, ready["session_id"])} == {False}  # shown, not spoken
    await ws.close()


async def test_a_bad_record_value_is_refused_at_start(serve):
    client, _gateway = await serve()
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000, "record": "perhaps"}))
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error" and error["code"] == "bad_message" and "record" in error["message"]
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4400


async def test_a_reconnection_is_not_greeted_again(serve):
    client, gateway = await serve(greeting=GREETING)
    ws, _ready = await start(client, session_id="greeted-once")
    await ws.close()
    ws, _ready = await start(client, session_id="greeted-once")
    said = [r.text for topic, r in greetings(gateway, "greeted-once") if topic == "voxbus.replies"]
    assert said == [GREETING]
    await ws.close()


async def test_the_caller_barges_in_on_the_greeting(serve):
    client, gateway = await serve(greeting=GREETING)
    ws, ready = await start(client)
    sid = ready["session_id"]
    [(_, reply)] = [(t, r) for t, r in greetings(gateway, sid) if t == "voxbus.egress"]
    await gateway.deliver(reply)
    await gateway.deliver(SynthAudio(session_id=sid, turn_id=reply.turn_id, index=0, seq=0, sample_rate=16000,
                                     pcm=b"\1\0" * 32000))  # 2 s of greeting, still playing
    await received(ws)
    for kind in ("speech_start", "speech_end"):
        await gateway.deliver(VadEvent(session_id=sid, turn_id=CALLER, kind=kind, sample=100, ts=1.0))
    await gateway.deliver(Transcript(session_id=sid, turn_id=CALLER, text="I lost my phone yesterday"))
    events = await received(ws)
    assert {"type": "playback_stop", "turn_id": reply.turn_id} in events
    [end] = [e for e in events if e["type"] == "turn_end" and e["turn_id"] == reply.turn_id]
    assert end["interrupted"]
    [cancel] = gateway.records(TurnCancel, sid)
    assert (cancel.turn_id, cancel.reason) == (reply.turn_id, "barge_in")
    await ws.close()


async def test_a_twilio_call_is_greeted_and_its_record_parameter_read(serve):
    client, gateway = await serve(greeting=GREETING, consent_notice=NOTICE)
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send(start_message({"record": "false"}))
    await wait_for(lambda: greetings(gateway, CALL_SID))
    [control] = gateway.records(SessionControl, CALL_SID)
    assert control.config["record"] is False
    assert [r.text for t, r in greetings(gateway, CALL_SID) if t == "voxbus.replies"] == [GREETING]
    await phone.ws.close()


async def test_a_twilio_record_parameter_that_is_no_bool_closes_the_stream(serve):
    client, gateway = await serve()
    ws = await client.ws_connect("/v1/twilio")
    await ws.send_str(json.dumps(start_message({"record": "perhaps"})))
    assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 4400 and not gateway.records(SessionControl)
