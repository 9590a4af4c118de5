"""On topic, with sources, on the real stack by text turn (issue 19 part 3).

An off-topic text gets ``VOXBUS_REDIRECT_TEXT`` and no source; a knowledge-base question
gets the article's fact, and its ``reply_text`` records on ``voxbus.replies`` name the
article.  Both replies come without the LLM (the redirect, and the billing article read
out above ``VOXBUS_GROUNDING_DIRECT_SCORE``), so they do not depend on a model's wording.
"""

from __future__ import annotations

import uuid

import pytest

from schemas import ReplyText
from streams.settings import localized
from streams.topics import REPLIES
from tests.integration.test_pipeline import read_topic
from voxbus.client import ask

pytestmark = pytest.mark.integration


async def replies_of(stack, session_id: str) -> ReplyText:
    """The final ``reply_text`` record of ``session_id``'s one turn on ``voxbus.replies``."""
    return await read_topic(stack.bootstrap, REPLIES.name,
                            lambda r: isinstance(r, ReplyText) and r.session_id == session_id and r.final)


async def test_an_off_topic_text_gets_the_redirect(stack, url):
    session_id = f"ot-{uuid.uuid4().hex[:8]}"
    turn = await ask(url, "Front, left.", session_id=session_id)
    assert turn.intent == "other"
    assert turn.reply_text.strip() == localized(stack.redirect_text)
    final = await replies_of(stack, session_id)
    assert final.sources == [] and "generation.redirect" in final.marks


async def test_an_in_domain_question_gets_an_answer_with_its_source(stack, url):
    session_id = f"ot-{uuid.uuid4().hex[:8]}"
    turn = await ask(url, "When is my bill due?", session_id=session_id)
    assert turn.intent == "billing" and "15th" in turn.reply_text
    final = await replies_of(stack, session_id)
    assert final.sources == ["billing.md"]
    assert "generation.redirect" not in final.marks
