"""DTMF keys at the ingress (fake Kafka side): collected until '#' or a pause, entered as one caller
turn (a lone '0': the words that ask for a person), on the web socket and on a Twilio stream."""

from __future__ import annotations

import json

from ingress.dtmf import MAX_KEYS
from schemas import Transcript
from tests.ingress.test_continuation import received
from tests.ingress.test_greeting import start
from tests.ingress.test_twilio import CALL_SID, STREAM_SID, Phone, start_message, wait_for

AGENT_TEXT = "I want to talk to a person"


def key(digit: str) -> str:
    return json.dumps({"type": "dtmf", "digit": digit})


async def test_digits_then_hash_are_one_spoken_turn(serve):
    client, gateway = await serve(dtmf_timeout_s=30.0)
    ws, ready = await start(client)
    for digit in "12345678#":
        await ws.send_str(key(digit))
    await wait_for(lambda: gateway.records(Transcript))
    [turn] = gateway.records(Transcript, ready["session_id"])
    assert (turn.text, turn.source, turn.speak) == ("12345678", "text", True)
    events = await received(ws)
    assert {"type": "transcript", "turn_id": turn.turn_id, "text": "12345678", "source": "dtmf"} in events
    await ws.close()


async def test_a_lone_zero_asks_for_a_person_after_the_pause(serve):
    client, gateway = await serve(dtmf_timeout_s=0.3)
    ws, ready = await start(client, speak=False)
    await ws.send_str(key("0"))
    await wait_for(lambda: gateway.records(Transcript))
    [turn] = gateway.records(Transcript, ready["session_id"])
    assert (turn.text, turn.speak) == (AGENT_TEXT, False)  # a text-only session stays text-only
    await ws.close()


async def test_star_clears_and_zero_inside_a_number_is_a_digit(serve):
    client, gateway = await serve(dtmf_timeout_s=0.3)
    ws, ready = await start(client)
    for digit in "99*0#":  # cleared, then a lone 0 entered at once
        await ws.send_str(key(digit))
    for digit in "1200":  # entered at the pause, no '#'
        await ws.send_str(key(digit))
    await wait_for(lambda: len(gateway.records(Transcript)) == 2)
    assert [t.text for t in gateway.records(Transcript, ready["session_id"])] == [AGENT_TEXT, "1200"]
    await ws.close()


async def test_bad_keys_get_an_error_and_the_session_goes_on(serve):
    client, gateway = await serve(dtmf_timeout_s=30.0)
    ws, _ready = await start(client)
    await ws.send_str(json.dumps({"type": "dtmf", "digit": "12"}))
    for _ in range(MAX_KEYS + 1):  # one too many: all dropped
        await ws.send_str(key("1"))
    await ws.send_str(key("#"))
    await ws.send_str(key("A"))  # a key with no meaning here: ignored
    events = [e for e in await received(ws) if e["type"] == "error"]
    assert [e["code"] for e in events] == ["bad_message", "too_many_keys"]
    assert not gateway.records(Transcript)
    await ws.close()


async def test_twilio_keys_are_entered_too(serve):
    client, gateway = await serve(dtmf_timeout_s=30.0)
    phone = Phone(await client.ws_connect("/v1/twilio"))
    await phone.send(start_message())
    for digit in "0#":
        await phone.send({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track",
                                                                              "digit": digit}})
    await wait_for(lambda: gateway.records(Transcript))
    [turn] = gateway.records(Transcript, CALL_SID)
    assert (turn.text, turn.speak) == (AGENT_TEXT, True)
    await phone.ws.close()
