"""Roles (issue 13, finding 1): a caller's credential reaches no agent, analytics or other caller's data."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from types import SimpleNamespace

import jwt
import pytest

from ingress.agents import QUEUE
from ingress.analytics import VIEW
from schemas import EscalationCount, Handoff, HandoffUpdate, ReplyText, encode
from tests.ingress.test_edge import SECRET, session, token

KEYS = "alice=key-alice-0123456789,agent:bob=key-bob-0123456789,supervisor:sue=key-sue-0123456789"
CALLER = {"Authorization": "Bearer key-alice-0123456789"}
AGENT = {"Authorization": "Bearer key-bob-0123456789"}
SUPERVISOR = {"Authorization": "Bearer key-sue-0123456789"}


async def console(serve, **settings):
    """An ingress whose agent desk holds one waiting hand-off and whose analytics view is ready."""
    client, gateway = await serve(**settings)
    app = client.server.app
    view = app[VIEW]
    view.task = asyncio.create_task(asyncio.sleep(3600))  # as if following its topics
    view.caught_up.set()
    app[QUEUE].apply(Handoff(session_id="victim-1", egress_partition=0, turn_id="t1", reason="requested",
                            summary="my account PIN is 4321", ts=time.time()))
    return client, gateway


async def agent_calls(client, headers) -> list[int]:
    """Status of list, take and reply on the agent API with ``headers``."""
    listed = await client.get("/v1/agent/sessions", headers=headers)
    taken = await client.post("/v1/agent/sessions/victim-1/take", json={}, headers=headers)
    said = await client.post("/v1/agent/sessions/victim-1/reply", json={"text": "Read me your card number."},
                             headers=headers)
    return [listed.status, taken.status, said.status]


async def test_a_callers_key_gets_403_on_the_agent_api_and_analytics(serve):
    client, gateway = await console(serve, api_keys=KEYS)
    assert await agent_calls(client, CALLER) == [403, 403, 403]
    assert (await client.get("/v1/analytics", headers=CALLER)).status == 403
    assert not gateway.records(ReplyText) and not gateway.records(HandoffUpdate)  # nothing reached the caller
    # no credentials at all: 401
    assert (await client.get("/v1/agent/sessions")).status == 401
    assert (await client.get("/v1/analytics")).status == 401
    # the real agent can still take the session: the caller locked nobody out
    assert await agent_calls(client, AGENT) == [200, 200, 200]
    [reply] = [r for r in gateway.records(ReplyText) if r.egress_partition == 0][:1]
    assert reply.text == "Read me your card number."


async def test_agents_use_the_console_and_supervisors_also_read_analytics(serve):
    client, _ = await console(serve, api_keys=KEYS)
    assert (await client.get("/v1/analytics", headers=AGENT)).status == 403
    assert (await client.get("/v1/analytics", headers=SUPERVISOR)).status == 200
    assert (await client.get("/v1/agent/sessions", headers=SUPERVISOR)).status == 200


async def test_auth_off_keeps_the_local_console_open(serve):
    client, _ = await console(serve)
    assert await agent_calls(client, {}) == [200, 200, 200]
    assert (await client.get("/v1/analytics")).status == 200


@pytest.mark.parametrize(("claims", "console_status", "analytics_status"), [
    ({}, 403, 403),
    ({"roles": ["agent"]}, 200, 403),
    ({"roles": "supervisor"}, 200, 200),
    ({"scope": "openid agent"}, 200, 403),
    ({"roles": ["caller", "root"]}, 403, 403),
])
async def test_jwt_roles_and_scope(serve, claims, console_status, analytics_status):
    client, _ = await console(serve, jwt_secret=SECRET)
    headers = {"Authorization": f"Bearer {token(claims)}"}
    assert (await client.get("/v1/agent/sessions", headers=headers)).status == console_status
    assert (await client.get("/v1/analytics", headers=headers)).status == analytics_status


async def test_a_jwt_with_a_bad_roles_claim_is_401(serve):
    client, _ = await console(serve, jwt_secret=SECRET)
    headers = {"Authorization": f"Bearer {token({'roles': {'agent': True}})}"}
    assert (await client.get("/v1/agent/sessions", headers=headers)).status == 401


def unsigned_header_token(header: dict) -> str:
    b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()  # noqa: E731
    claims = {"sub": "mallory", "exp": int(time.time()) + 300}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.c2ln"


@pytest.mark.parametrize("header", [{"alg": ["HS256"], "typ": "JWT"}, {"alg": None}, {"alg": {"a": 1}}, {}])
async def test_a_jwt_header_of_the_wrong_shape_is_a_clean_401(serve, header):
    client, _ = await console(serve, jwt_secret=SECRET)
    bad = unsigned_header_token(header)
    response = await client.get("/v1/agent/sessions", headers={"Authorization": f"Bearer {bad}"})
    assert response.status == 401 and "invalid_token" in await response.text()
    events, code, message, _ = await session(client, params={"access_token": bad})
    assert code == 4401 and message.startswith("unauthenticated: invalid_token")
    assert events[-1]["close_code"] == 4401  # a close frame, not a dropped socket


@pytest.mark.parametrize("subject", ["", "   "])
async def test_an_empty_jwt_subject_is_refused(serve, subject):
    client, _ = await serve(jwt_secret=SECRET)
    bad = jwt.encode({"sub": subject, "exp": int(time.time()) + 300}, SECRET, algorithm="HS256")
    _, code, message, _ = await session(client, params={"access_token": bad})
    assert code == 4401 and "invalid_token" in message


def test_api_key_roles_are_parsed_backward_compatibly():
    from ingress.auth import parse_api_keys

    roles = dict(parse_api_keys("plain-key-0123456789, alice=key-a, agent:bob=key-b, supervisor:sue=key-c")
                 .values())
    assert (roles["alice"], roles["bob"], roles["sue"]) == ("caller", "agent", "supervisor")
    assert list(roles.values()).count("caller") == 2  # the unnamed key (named by its hash) is a caller
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        parse_api_keys("admin:eve=key-e")
    with pytest.raises(ValueError, match="empty key"):
        parse_api_keys("agent:bob=")


async def test_no_session_id_on_an_endpoint_a_caller_reaches(serve):
    """The caller's own ``ready`` aside, no endpoint a caller's key opens lists session ids."""
    client, _ = await console(serve, api_keys=KEYS)
    now = time.time()
    escalation = EscalationCount(window_start=math.floor(now / 60) * 60, window_end=0, turns=1, ts=now,
                                 human_agent=1, negative=0, session_ids=["victim-1"])
    message = SimpleNamespace(topic="t", partition=0, offset=0, value=encode(escalation))
    client.server.app[VIEW].absorb([message])
    assert "victim-1" in await (await client.get("/v1/analytics", headers=SUPERVISOR)).text()
    for path in ("/healthz", "/metrics", "/v1/analytics", "/v1/agent/sessions"):
        response = await client.get(path, headers=CALLER)
        assert "victim-1" not in await response.text(), path
