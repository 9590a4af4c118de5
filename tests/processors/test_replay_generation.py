"""The parts of a generation replay that need no broker and no model: K-Precision and the grounded rule,
whole replies, the history read back with production's lines, the per-turn reply comparison, the
candidate's seed, and --live refused."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.structs import ConsumerRecord

from processors.analytics.io import Read
from processors.generation.stage import GenerationStage
from processors.replay.conversation import ProductionHistory, whole_replies
from processors.replay.grounded import GROUNDED_PRECISION, grounded, knowledge_precision, tokens
from processors.replay.report import Report, compare_replies
from processors.replay.run import SEED, candidate, conversational, replay
from processors.tts.stage import TtsStage
from schemas import Passage, ReplyText
from streams.settings import Settings
from streams.topics import REPLIES

PASSAGE = Passage(source="billing.md", score=0.7,
                  text="Your bill is issued on the 1st of each month and is due 14 days later.")


def sentence(turn: str, index: int, text: str, sources: tuple[str, ...] = (), session: str = "s-1") -> Read:
    record = ReplyText(session_id=session, egress_partition=0, turn_id=turn, index=index, text=text,
                       final=not text, sources=list(sources))
    message = ConsumerRecord(REPLIES.name, 0, index, 0, 0, None, b"", None, 0, 0, ())
    return Read(message, record)


def test_k_precision_is_the_share_of_reply_tokens_in_the_passages():
    assert tokens("The bill, due on the 15th!") == ["bill", "due", "on", "15th"]
    assert knowledge_precision("Your bill is issued on the 1st.", [PASSAGE.text]) == 1.0
    # 'paid', 'by', 'card' and 'monthly' are not in the passage: 3 of 7 tokens are
    assert knowledge_precision("Your bill is paid by card monthly", [PASSAGE.text]) == 0.429
    assert knowledge_precision("", [PASSAGE.text]) == 0.0
    # a token counts at most as often as the passages have it
    assert knowledge_precision("bill bill bill bill", ["bill"]) == 0.25


def test_a_reply_is_grounded_when_it_cites_sources_and_most_of_its_words_are_theirs():
    assert grounded(PASSAGE.text, ["billing.md"], [PASSAGE]) == (True, 1.0)
    assert grounded(PASSAGE.text, [], [PASSAGE]) == (False, 0.0), "no sources: not grounded"
    assert grounded(PASSAGE.text, ["plans.md"], [PASSAGE]) == (False, 0.0), "only the cited passages count"
    made_up, precision = grounded("We will send a technician tomorrow morning", ["billing.md"], [PASSAGE])
    assert not made_up and precision < GROUNDED_PRECISION


def test_whole_replies_join_sentences_in_index_order_with_their_sources():
    reads = [sentence("a9", 1, "It is due 14 days later.", ("billing.md",)), sentence("a9", 2, ""),
             sentence("a9", 0, "Your bill is issued on the 1st.", ("billing.md",)),
             sentence("a0", 0, "Hello.")]
    replies = whole_replies(reads)
    assert replies["s-1", "a9"].text == "Your bill is issued on the 1st. It is due 14 days later."
    assert replies["s-1", "a9"].sources == ["billing.md"]
    assert replies["s-1", "a0"].text == "Hello." and replies["s-1", "a0"].sources == []


def test_the_history_reads_back_with_what_production_said():
    history = ProductionHistory({("s-1", "a0"): "What production said."})
    assert history["s-new"] == []
    history["s-1"] = [{"turn_id": "a0", "user": "hi", "assistant": "What the candidate said.", "state": {}},
                      {"turn_id": "a9", "user": "bill?", "assistant": "Candidate only.", "state": {}}]
    assert [e["assistant"] for e in history["s-1"]] == ["What production said.", "Candidate only."]
    history["s-1"][0]["assistant"] = "changed on a copy"
    assert history["s-1"][0]["assistant"] == "What production said."


def test_replies_are_compared_per_turn_with_grounded_answer_rates():
    production = [sentence("a0", 0, PASSAGE.text, ("billing.md",)), sentence("a9", 0, "Hello there.")]
    candidate = [sentence("a0", 0, "Your bill is issued on the 1st.", ("billing.md",)),
                 sentence("a9", 0, "Hello there."), sentence("a20", 0, "")]
    passages = {("s-1", "a0"): [PASSAGE], ("s-1", "a9"): [], ("s-1", "a20"): [PASSAGE]}
    report = Report("r", "generation", {})
    compare_replies(report, production, candidate, passages)
    by_turn = {p.turn_id: p for p in report.replies}
    assert by_turn["a0"].production_grounded and by_turn["a0"].candidate_grounded
    assert by_turn["a0"].candidate_k_precision == 1.0 and 0 < by_turn["a0"].wer < 1
    assert by_turn["a9"].wer == 0.0 and by_turn["a9"].production_grounded is False
    assert by_turn["a20"].production is None and by_turn["a20"].candidate_grounded is None
    assert report.reply_difference["turns"] == 2 and report.reply_difference["identical"] == 1
    assert report.grounded["production"] == {"turns": 2, "grounded": 1, "rate": 0.5}
    assert report.grounded["candidate"] == {"turns": 2, "grounded": 1, "rate": 0.5}
    assert str(GROUNDED_PRECISION) in report.grounded["rule"]


def test_generation_is_replayable_from_the_archive_with_the_seed_and_not_live(tmp_path):
    settings = Settings(data_dir=tmp_path, llm_url="http://127.0.0.1:9/v1")
    assert conversational(GenerationStage) and not conversational(TtsStage)
    model = candidate("generation", settings, {"llm_temperature": 0.0})
    assert model.settings.llm_seed == SEED and model.settings.llm_temperature == 0.0
    assert candidate("generation", settings, {"llm_seed": 7}).settings.llm_seed == 7
    with pytest.raises(ValueError, match="not --live"):
        asyncio.run(replay(settings, "generation", "g", 0.0, 0.0, live=True, seconds=1.0))
