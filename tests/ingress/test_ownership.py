"""Session ownership on the bus (issue 13, finding 2): it survives an ingress restart, across replicas."""

from __future__ import annotations

import time
from types import SimpleNamespace

from ingress.ownership import SessionLedger
from schemas import SessionControl, Transcript, decode, encode
from schemas.sessions import SessionOwner
from streams.settings import Settings
from streams.topics import SESSIONS
from tests.ingress.test_edge import KEYS, START, session

ALICE = {"Authorization": "Bearer key-alice-0123456789"}
BOB = {"Authorization": "Bearer key-bob-0123456789"}


async def test_another_principal_cannot_take_a_session_after_an_ingress_restart(serve):
    bus: list = []
    client, gateway = await serve(bus, api_keys=KEYS)
    events, _, _, ws = await session(client, headers=ALICE, hold=True)
    sid = events[0]["session_id"]
    [binding] = [r for topic, r in bus if topic == SESSIONS.name]
    assert (binding.session_id, binding.principal) == (sid, "key:alice")
    first = [type(r).__name__ for _, r in gateway.produced]
    assert first.index("SessionOwner") < first.index("SessionControl")  # bound before the session's records
    await client.close()  # the ingress restarts: its memory is gone, the bus is not

    client, gateway = await serve(bus, api_keys=KEYS)
    _, code, message, _ = await session(client, {**START, "session_id": sid}, headers=BOB)
    assert code == 4403 and message.startswith("session_forbidden")
    assert not gateway.records(SessionControl) and not gateway.records(Transcript)  # nothing of bob's
    # the owner resumes (another replica would do the same: it reads the same bindings)
    events, _, _, ws = await session(client, {**START, "session_id": sid}, headers=ALICE, hold=True)
    assert events[0]["type"] == "ready" and events[0]["session_id"] == sid
    await ws.close()


async def test_two_replicas_claiming_a_new_id_at_once_agree_on_the_first(serve):
    """A caller-chosen id nobody holds: the claim first on the topic wins, on every replica."""
    bus: list = []
    client, gateway = await serve(bus, api_keys=KEYS)
    # bob's claim, by another replica, is on the topic but not read here yet
    bus.append((SESSIONS.name, owner("fresh-id", "key:bob", time.time())))
    _, code, message, _ = await session(client, {**START, "session_id": "fresh-id"}, headers=ALICE)
    assert code == 4403 and message.startswith("session_forbidden")
    assert not gateway.records(SessionControl)  # nothing of alice's reached the session
    events, _, _, ws = await session(client, {**START, "session_id": "own-id"}, headers=ALICE, hold=True)
    assert events[0]["session_id"] == "own-id"  # a new id nobody claimed is hers
    await ws.close()


async def test_a_named_session_waits_for_the_ledger(serve):
    client, gateway = await serve(api_keys=KEYS)
    gateway.ledger.caught_up.clear()  # still reading voxbus.sessions back
    _, code, message, _ = await session(client, {**START, "session_id": "resume-me"}, headers=ALICE)
    assert code == 1013 and message.startswith("ownership_loading")
    events, _, _, ws = await session(client, headers=ALICE, hold=True)  # a new session needs no history
    assert events[0]["type"] == "ready"
    await ws.close()


async def test_a_binding_the_broker_does_not_take_refuses_the_session(serve):
    client, gateway = await serve(api_keys=KEYS)

    async def down(topic, record):
        raise ConnectionError("broker unreachable")

    gateway.ledger.produce = down
    _, code, message, _ = await session(client, headers=ALICE)
    assert code == 1013 and message.startswith("ownership_unavailable")
    assert not gateway.records(SessionControl)


def owner(session_id, principal, ts, horizon=100.0):
    return SessionOwner(session_id=session_id, principal=principal, expires=ts + horizon, ts=ts)


def test_the_ledger_folds_first_owner_wins_and_expires():
    ledger = SessionLedger(Settings(max_session_s=60, session_binding_ttl_s=40), produce=None)
    now = time.time()
    ledger.absorb([SimpleNamespace(topic=SESSIONS.name, partition=0, offset=i, value=encode(r)) for i, r in
                   enumerate([owner("s1", "key:alice", now), owner("s1", "key:bob", now + 1),
                              owner("s1", "key:alice", now + 5, horizon=200)])])
    ledger.absorb([SimpleNamespace(topic=SESSIONS.name, partition=0, offset=9, value=b"\xc1")])  # skipped
    found = ledger.owner("s1", now + 150)
    assert found is not None and found.principal == "key:alice"  # bob's claim did not take it
    assert ledger.owner("s1", now + 300) is None
    ledger.apply(owner("s1", "key:bob", now + 400))  # expired: a new owner may take the id
    assert ledger.owner("s1", now + 401).principal == "key:bob"
    assert ledger.horizon_s == 100.0 and ledger.since() < now - 99


def test_a_session_owner_record_round_trips():
    record = SessionOwner(session_id="s1", egress_partition=2, principal="jwt:carol",
                          expires=2.0, ts=1.0)
    assert decode(encode(record), SessionOwner) == record
