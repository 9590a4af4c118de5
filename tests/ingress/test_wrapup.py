"""Wrap-up, tickets and a caller's history through the agent API (on the fake bus).

The same on the real broker: tests/integration/test_agent_queue.py.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ingress import twilio
from ingress.agents.tickets import TicketBook, ticket_id
from ingress.edge import Rejection
from ingress.protocol import ClientMessage
from schemas import QueueEvent, SessionCaller, Ticket
from streams.settings import Settings
from streams.topics import AGENT_QUEUE, HANDOFFS, TICKETS
from tests.ingress.test_agents import BOB, CAROL, KEYS, handoff, message


def test_the_last_version_of_a_ticket_read_is_the_ticket(tmp_path):
    book = TicketBook(Settings(data_dir=tmp_path))
    tid = ticket_id("s1", "t1")
    assert tid == ticket_id("s1", "t1") != ticket_id("s1", "t2") and len(tid) == 32
    opened = Ticket(id=tid, session_id="s1", agent="ann", disposition="follow_up", status="open",
                    caller_id="+15550001", created=10.0, updated=10.0)
    other = Ticket(id=ticket_id("s2", "t1"), session_id="s2", agent="ann", disposition="resolved",
                   status="resolved", created=20.0, updated=20.0)
    book.absorb([message(opened, 0, TICKETS.name), message(other, 1, TICKETS.name),
                 message(opened.model_copy(update={"status": "resolved", "updated": 30.0}), 2, TICKETS.name),
                 SimpleNamespace(topic=TICKETS.name, partition=0, offset=3, value=b"\xc1")])
    assert book.read[(TICKETS.name, 0)] == 4  # the undecodable record is skipped
    assert [t.id for t in book.find()] == [tid, other.id]  # most recently updated first
    assert [t.status for t in book.find(caller_id="+15550001")] == ["resolved"]
    assert book.find(status="open") == [] and [t.id for t in book.find(session_id="s2")] == [other.id]


def test_a_caller_id_from_the_start_message_or_the_twilio_parameters():
    start = ClientMessage.validate_python({"type": "start", "sample_rate": 16000,
                                           "caller_id": "+15551234567"})
    assert start.caller_id == "+15551234567"
    with pytest.raises(ValueError, match="caller_id"):
        ClientMessage.validate_python({"type": "start", "sample_rate": 16000, "caller_id": "555 1234"})

    def call(**parameters):
        return twilio.StreamStart.model_validate({
            "streamSid": "MZ1", "customParameters": parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})

    assert twilio.caller_id_for(call(caller_id="cust-42", **{"from": "+15550001"})) == "cust-42"
    assert twilio.caller_id_for(call(**{"from": "+15550001"})) == "+15550001"
    assert twilio.caller_id_for(call()) == ""
    with pytest.raises(Rejection):
        twilio.caller_id_for(call(**{"from": "<script>"}))


async def test_end_writes_the_ticket_search_finds_it_and_resolve_closes_it(serve):
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, SessionCaller(session_id="s1", caller_id="+15550001", ts=9.0))
    await gateway.produce(HANDOFFS, handoff("s1", 10.0, intent="billing"))
    await gateway.produce(HANDOFFS, handoff("s2", 11.0))
    base = "/v1/agent/sessions/s1"
    assert (await client.post(f"{base}/end", json={"disposition": "resolved"}, headers=BOB)).status == 409
    assert (await client.post(f"{base}/take", json={}, headers=BOB)).status == 200
    for body in ({"disposition": "done"}, {}, {"disposition": "resolved", "note": 5}):
        assert (await client.post(f"{base}/end", json=body, headers=BOB)).status == 400, body
    assert (await client.post(f"{base}/end", json={"disposition": "resolved"}, headers=CAROL)).status == 409
    ended = await client.post(f"{base}/end", json={"disposition": "follow_up", "note": "Call back Monday."},
                              headers=BOB)
    body = await ended.json()
    assert ended.status == 200 and body["status"] == "ended"
    ticket = body["ticket"]
    fields = ("session_id", "agent", "intent", "disposition", "note", "status", "caller_id")
    assert {k: ticket[k] for k in fields} == {
        "session_id": "s1", "agent": "key:bob", "intent": "billing", "disposition": "follow_up",
        "note": "Call back Monday.", "status": "open", "caller_id": "+15550001"}
    assert [(e.kind, e.note) for e in gateway.records(QueueEvent, "s1")][-1] == ("end", "Call back Monday.")
    assert [t for t, r in gateway.produced if isinstance(r, Ticket)] == [TICKETS.name]
    again = await client.post(f"{base}/end", json={"disposition": "resolved"}, headers=BOB)
    assert again.status == 409  # ended, and its ticket is stored: nothing to retry

    for query, found in (("caller_id=%2B15550001", 1), ("session_id=s1&status=open", 1),
                         ("status=resolved", 0), ("caller_id=nobody", 0), ("", 1)):
        listed = await (await client.get(f"/v1/agent/tickets?{query}", headers=CAROL)).json()
        assert len(listed["tickets"]) == found, query
    assert (await client.get("/v1/agent/tickets?status=closed", headers=BOB)).status == 400

    resolve = f"/v1/agent/tickets/{ticket['id']}/resolve"
    resolved = await (await client.post(resolve, json={"note": "Refund sent."}, headers=CAROL)).json()
    assert (resolved["status"], resolved["resolved_by"], resolved["resolution"]) == (
        "resolved", "key:carol", "Refund sent.")
    assert resolved["created"] == ticket["created"] and resolved["updated"] >= ticket["updated"]
    assert (await client.post(resolve, json={}, headers=BOB)).status == 409
    assert (await client.post("/v1/agent/tickets/nope/resolve", json={}, headers=BOB)).status == 404

    history = await (await client.get("/v1/agent/callers/+15550001/sessions", headers=BOB)).json()
    [session] = history["sessions"]
    assert (session["session_id"], session["started"], session["handoff"]["intent"]) == ("s1", 9.0, "billing")
    assert [t["status"] for t in session["tickets"]] == ["resolved"]
    nobody = await (await client.get("/v1/agent/callers/nobody/sessions", headers=BOB)).json()
    assert nobody["sessions"] == []
    assert (await client.get("/v1/agent/callers/a%20b/sessions", headers=BOB)).status == 400


async def test_a_retried_end_writes_the_missing_ticket(serve):
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, handoff("s1", 10.0))
    assert (await client.post("/v1/agent/sessions/s1/take", json={}, headers=BOB)).status == 200
    # the end event stored, the ticket lost (the broker failed between the two writes)
    await gateway.produce(AGENT_QUEUE, QueueEvent(session_id="s1", kind="end", handoff_turn="t1",
                                                  agent="key:bob", ts=20.0))
    retried = await client.post("/v1/agent/sessions/s1/end", json={"disposition": "no_action"}, headers=BOB)
    assert retried.status == 200 and (await retried.json())["ticket"]["status"] == "resolved"
    assert len(gateway.records(Ticket)) == 1
