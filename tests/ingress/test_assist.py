"""Agent assist and team analytics at the ingress (on the fake bus): the suggestions endpoint, Send and
Speak, the team's figures on the analytics page's JSON, and 403 for a caller's key on the new endpoint.

The same with the real stages on the real broker: tests/integration/test_agent_assist.py.
"""

from __future__ import annotations

from pathlib import Path

from ingress.analytics import summarize
from schemas import AgentWindow, HandoffUpdate, Passage, ReplyText, Suggestion
from streams.topics import HANDOFFS, SUGGESTIONS
from tests.ingress.test_agents import BOB, CAROL, KEYS, handoff

STATIC = Path(__file__).parents[2] / "ingress" / "static"
ALICE = {"Authorization": "Bearer key-alice-0123456789"}
BILL = Passage(text="Your bill is due on the 15th of each month.", source="billing.md", score=0.9)


def suggestion(turn_id: str, text: str, ts: float, session: str = "s1") -> Suggestion:
    return Suggestion(session_id=session, turn_id=turn_id, handoff_turn="t1",
                      caller_text="When is my bill due?", text=text, passages=[BILL], sources=["billing.md"],
                      ts=ts)


async def test_the_console_reads_the_suggestions_and_sends_or_speaks_one(serve):
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, handoff("s1", 10.0, speak=True))
    await gateway.produce(HANDOFFS, handoff("s2", 11.0, speak=False))
    url = "/v1/agent/sessions/s1/suggestions"
    assert (await (await client.get(url, headers=BOB)).json())["suggestions"] == []
    await gateway.produce(SUGGESTIONS, suggestion("a2", "On the 15th.", 20.0))
    await gateway.produce(SUGGESTIONS, suggestion("a2", "On the 15th of each month.", 21.0))  # redelivered
    await gateway.produce(SUGGESTIONS, suggestion("a3", "", 22.0).model_copy(update={"error": "llm_failed"}))
    await gateway.produce(SUGGESTIONS, suggestion("a9", "Not yours.", 23.0, session="s2"))
    body = await (await client.get(url, headers=BOB)).json()
    assert [(s["turn_id"], s["text"], s["error"]) for s in body["suggestions"]] == [
        ("a2", "On the 15th of each month.", ""), ("a3", "", "llm_failed")]
    assert body["suggestions"][0]["passages"][0]["source"] == "billing.md"
    assert body["suggestions"][0]["sources"] == ["billing.md"]
    assert (await client.get("/v1/agent/sessions/nope/suggestions", headers=BOB)).status == 404

    await client.post("/v1/agent/sessions/s1/take", json={}, headers=BOB)
    reply = "/v1/agent/sessions/s1/reply"
    sent = await client.post(reply, json={"text": "On the 15th of each month.", "speak": False}, headers=BOB)
    assert (await sent.json())["speak"] is False
    spoken = await client.post(reply, json={"text": "On the 15th of each month.", "speak": True}, headers=BOB)
    assert (await spoken.json())["speak"] is True
    typed = await client.post(reply, json={"text": "Anything else?"}, headers=BOB)  # as before: the session's
    assert (await typed.json())["speak"] is True
    assert [r.speak for r in gateway.records(ReplyText, "s1")] == [False, False, True, True, True, True]
    assert [u.text for u in gateway.records(HandoffUpdate, "s1") if u.kind == "agent"] == [
        "On the 15th of each month.", "On the 15th of each month.", "Anything else?"]
    assert (await client.post(reply, json={"text": "x", "speak": "yes"}, headers=BOB)).status == 400
    await client.post("/v1/agent/sessions/s2/take", json={}, headers=CAROL)
    typing = await client.post("/v1/agent/sessions/s2/reply", json={"text": "Hi", "speak": True},
                               headers=CAROL)
    assert (await typing.json())["speak"] is False  # a typing caller's session is never spoken


async def test_a_callers_key_gets_403_on_the_suggestions(serve):
    client, gateway = await serve(api_keys=KEYS)
    await gateway.produce(HANDOFFS, handoff("s1", 10.0))
    await gateway.produce(SUGGESTIONS, suggestion("a2", "On the 15th.", 20.0))
    produced = len(gateway.produced)
    url = "/v1/agent/sessions/s1/suggestions"
    assert (await client.get(url, headers=ALICE)).status == 403
    assert (await client.get(url)).status == 401
    speak = await client.post("/v1/agent/sessions/s1/reply", json={"text": "x", "speak": True}, headers=ALICE)
    assert speak.status == 403
    assert len(gateway.produced) == produced
    assert (await client.get(url, headers=BOB)).status == 200


def test_the_analytics_json_has_the_team_per_minute_and_each_agent():
    now = 1_700_000_100.0  # the window of 1_700_000_100 is the current one

    def window(start: float, agent: str = "", **figures) -> AgentWindow:
        base = {"calls_taken": 0, "calls_handled": 0, "sla_breaches": 0, "abandoned": 0}
        return AgentWindow(window_start=start, window_end=start + 60, turns=1, ts=start, agent=agent,
                           **{**base, **figures})

    records = [
        window(now - 60, calls_taken=2, calls_handled=1, handle_s_mean=40.0, wait_p50_s=8.0, wait_p95_s=20.0,
               abandoned=1),
        window(now - 60, "key:bob", calls_taken=1, calls_handled=1, handle_s_mean=40.0, wait_p50_s=20.0,
               wait_p95_s=20.0),
        window(now - 60, "key:carol", calls_taken=1, wait_p50_s=8.0, wait_p95_s=8.0),
        window(now, sla_breaches=2, calls_handled=1, handle_s_mean=10.0),
        window(now, "key:carol", calls_handled=1, handle_s_mean=10.0),
    ]
    team = summarize(records, now, 3)["team"]
    assert team["series"]["calls_taken"] == [0, 2, 0]
    assert team["series"]["wait_p95_s"] == [None, 20.0, None]
    assert team["series"]["sla_breaches"] == [0, 0, 2] and team["series"]["abandoned"] == [0, 1, 0]
    assert team["totals"] == {"calls_taken": 2, "calls_handled": 2, "sla_breaches": 2, "abandoned": 1}
    assert team["agents"] == [
        {"agent": "key:bob", "calls_taken": 1, "calls_handled": 1, "handle_s_mean": 40.0, "wait_p95_s": 20.0,
         "last_taken": now - 60},
        {"agent": "key:carol", "calls_taken": 1, "calls_handled": 1, "handle_s_mean": 10.0, "wait_p95_s": 8.0,
         "last_taken": now - 60},
    ]


def test_the_pages_show_the_suggestions_and_the_team():
    agent = (STATIC / "agent.html").read_text()
    for needle in ("/suggestions", 'id="assist"', "speak", "p.source"):
        assert needle in agent, needle
    analytics = (STATIC / "analytics.html").read_text()
    for needle in ("data.team", "agents-table", "wait_p95_s", "sla_breaches", "abandoned"):
        assert needle in analytics, needle
