"""processors.generation.prompt: the ``passages`` and ``knowledge-base`` prompts (``VOXBUS_LLM_PROMPT``)."""

from __future__ import annotations

import pytest

from processors.generation.phrases import phrases
from processors.generation.prompt import build_messages, history_window
from processors.retrieval.kb import knowledge_base
from schemas import Passage, RetrievalResult
from streams.settings import Settings

BILL = Passage(text="Your bill is due on the 15th of each month.", title="Billing", source="billing.md",
               score=0.5)
STORES = Passage(text="Stores open at 9 am.", title="Stores", source="stores.md", score=0.45)
HISTORY = [{"user": "hello", "assistant": "Hello, this is Harbor Mobile."},
           {"turn_id": "r", "user": "", "assistant": "", "note": "Refund of 12 dollars issued."}]


def turn(text: str, intent: str, passages: list[Passage], language: str = "en") -> RetrievalResult:
    return RetrievalResult(session_id="s", turn_id="t", text=text, intent=intent, confidence=0.9,
                           sentiment="neutral", sentiment_score=0.0, language=language, passages=passages)


@pytest.fixture(scope="module")
def kbs() -> dict[str, list[Passage]]:
    """The sample knowledge bases (``kb/``, ``kb/es``), as the stage reads them at load."""
    return {language: knowledge_base(Settings(), language) for language in ("en", "es")}


def test_the_passages_prompt_has_the_turns_intent_and_passages_in_its_system_message():
    bill = build_messages(turn("When is my bill due?", "billing", [BILL]), HISTORY)
    stores = build_messages(turn("Are you open on Sunday?", "store_hours", [STORES]), HISTORY)
    assert bill[0]["role"] == "system" and bill[0] != stores[0]
    assert "Topic: billing" in bill[0]["content"] and BILL.text in bill[0]["content"]
    assert STORES.text not in bill[0]["content"]
    assert bill[-1] == {"role": "user", "content": "When is my bill due?"}


def test_the_knowledge_base_prefix_is_the_same_for_every_turn_and_intent_of_a_language(kbs):
    kb = kbs["en"]
    assert len(kb) > 20 and {p.source for p in kb} >= {"billing.md", "stores.md", "roaming.md"}
    assert all(p.score == 1.0 for p in kb)
    bill = build_messages(turn("When is my bill due?", "billing", [BILL]), [], kb)
    stores = build_messages(turn("Are you open on Sunday?", "store_hours", [STORES]), HISTORY, kb)
    other = build_messages(turn("uh, what?", "other", []), HISTORY[:1], kb)
    assert bill[0] == stores[0] == other[0] and bill[0]["role"] == "system"
    system = bill[0]["content"]
    assert system.startswith(phrases("en").system_prompt) and "Topic: customer service" in system
    assert all(f"- {p.text}" in system for p in kb)
    assert "billing" not in system.split("Facts:")[0], "no turn's intent in the fixed prefix"


def test_the_turn_follows_the_knowledge_base_prefix_and_its_words_come_last(kbs):
    messages = build_messages(turn("Are you open on Sunday?", "store_hours", [STORES]), HISTORY, kbs["en"])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "system", "user"]
    assert messages[3]["content"].endswith("Refund of 12 dollars issued."), "an agent's note after the prefix"
    assert messages[-1] == {"role": "user", "content": "Are you open on Sunday?"}
    assert not any(STORES.text in m["content"] for m in messages[1:]), "the kb holds the facts"


def test_each_language_has_its_own_knowledge_base_prefix(kbs):
    english = build_messages(turn("When is my bill due?", "billing", []), [], kbs["en"])[0]["content"]
    first, second = (build_messages(turn(text, intent, [], "es"), [], kbs["es"])[0]["content"]
                     for text, intent in (("¿Cuándo vence mi factura?", "billing"),
                                          ("¿Abren el domingo?", "store_hours")))
    assert first == second != english
    assert first.startswith(phrases("es").system_prompt) and "español" in first
    assert all(f"- {p.text}" in first for p in kbs["es"])
    assert not any(f"- {p.text}" in first for p in kbs["en"])


@pytest.mark.parametrize("turns", [1, 2, 4, 5])
def test_the_history_window_keeps_turns_to_twice_turns_and_is_its_own_window(turns):
    for length in range(0, 5 * turns):
        history = list(range(length))
        window = history_window(history, turns)
        assert window == history[len(history) - len(window):]  # the newest entries
        assert len(window) == length if length < 2 * turns else turns <= len(window) < 2 * turns
        assert history_window(window, turns) == window
        assert history_window([*window, length], turns) == history_window([*history, length], turns)
    assert history_window(list(range(9)), 0) == []


def test_a_long_session_keeps_its_prompt_prefix_for_turns_in_a_row(kbs):
    """With the cached knowledge base, turn k+1's prompt starts with turn k's (all but its last words)
    except once every ``turns`` turns, where a sliding window would change it on every turn."""
    turns, kept, changed = 4, [], []
    last: list[dict[str, str]] = []
    for k in range(20):
        now = turn(f"question {k}", "billing", [BILL])
        prompt = build_messages(now, history_window(kept, turns), kbs["en"])
        if last and prompt[:len(last) - 1] != last[:-1]:
            changed.append(k)
        last = prompt
        kept = history_window([*kept, {"user": now.text, "assistant": f"answer {k}"}], turns)
    assert changed == [8, 12, 16]  # a sliding window: every turn from the 5th on
