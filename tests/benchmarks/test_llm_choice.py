"""benchmarks.llm_choice: the prompts of its two modes, its judgements, and a one-question run."""

from __future__ import annotations

import json

import pytest

from benchmarks import llm_choice
from processors.embeddings import MINILM
from processors.generation.prompt import build_messages
from processors.retrieval.kb import knowledge_base
from schemas import Passage, RetrievalResult
from streams.settings import Settings


def turn(text: str, intent: str, passages: list[Passage], language: str = "en") -> RetrievalResult:
    return RetrievalResult(session_id="s", turn_id="t", text=text, intent=intent, confidence=0.9,
                           sentiment="neutral", sentiment_score=0.0, language=language, passages=passages)


BILL = Passage(text="Your bill is due on the 15th of each month.", title="Billing", source="billing.md",
               score=MINILM.relevant + 0.1)
OFF = Passage(text="Stores open at 9 am.", title="Stores", source="stores.md", score=MINILM.relevant - 0.1)


def test_the_passages_mode_is_the_generation_stages_prompt_of_the_relevant_passages():
    asked = turn("When is my bill due?", "billing", [BILL, OFF])
    expected = build_messages(asked.model_copy(update={"passages": [BILL]}), [])
    assert llm_choice.prompt(asked, "passages", []) == expected


def test_the_cached_mode_is_the_generation_stages_knowledge_base_prompt():
    kb = knowledge_base(Settings(), "en")
    asked = turn("When is my bill due?", "billing", [BILL])
    assert llm_choice.prompt(asked, "cached_kb", kb) == build_messages(asked, [], kb)


def test_the_reply_language_is_judged_by_function_words():
    assert llm_choice.reply_language("La factura vence el día 15 de cada mes.") == "es"
    assert llm_choice.reply_language("The bill is due on the 15th of each month.") == "en"
    assert llm_choice.reply_language("12 dólares") is None
    assert llm_choice.reply_language("") is None


def test_states_fact_as_make_eval_checks():
    assert llm_choice.states_fact("The late fee is 7 Dollars.", ["7 dollars", "$7"])
    assert not llm_choice.states_fact("The late fee is seventy dollars.", ["7 dollars"])


def test_booking_requests_come_from_the_intent_examples_and_the_held_out_set():
    english = llm_choice.booking_requests("en")
    assert "I want to book an appointment" in english
    assert "can I get a slot at the store on Thursday" in english
    assert "me gustaría pedir una cita" in llm_choice.booking_requests("es")


def test_the_estimate_moves_todays_voice_to_voice_by_the_ttft_difference():
    def model(ttft: float, sentence: float) -> dict:
        return {"modes": {"passages": {"ttft_ms": {"p50": ttft}, "first_sentence_ms": {"p50": sentence}}}}

    models = {"smollm2-135m": model(100.0, 200.0), "other": model(250.0, 600.0)}
    estimate = llm_choice.estimates(models, 833.0)
    assert estimate["smollm2-135m"]["passages"] == {"by_ttft_ms": 833.0, "by_first_sentence_ms": 833.0}
    assert estimate["other"]["passages"] == {"by_ttft_ms": 983.0, "by_first_sentence_ms": 1233.0}


@pytest.mark.skipif(not Settings().llm_server_bin.exists(),
                    reason="llama-server is not built (make llama-server)")
def test_one_question_a_language_on_smollm2_writes_the_report(tmp_path):
    out = tmp_path / "llm_choice.json"
    report = llm_choice.main(["--models", "smollm2-135m", "--limit", "1", "--port", "18491",
                              "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert out.with_suffix(".png").stat().st_size > 0
    model = report["models"]["smollm2-135m"]
    for mode in llm_choice.MODES:
        stats = model["modes"][mode]
        assert [a["language"] for a in stats["answers"]] == ["en", "es"]
        assert all(a["answer"] for a in stats["answers"])
        assert stats["ttft_ms"]["n"] == 2 and 0 < stats["ttft_ms"]["p50"] <= stats["first_sentence_ms"]["p50"]
        assert stats["tokens_per_s"]["p50"] > 0
    cached = model["modes"]["cached_kb"]["answers"]
    assert cached[0]["prompt_tokens"] > 4 * model["modes"]["passages"]["answers"][0]["prompt_tokens"]
    assert model["booking"]["n"] == 2 and 0 <= model["booking"]["success_rate"] <= 1
    assert report["voice_to_voice_estimate_ms"]["smollm2-135m"]["passages"]["by_ttft_ms"] == \
        report["setup"]["today_voice_to_voice_p50_ms"]
