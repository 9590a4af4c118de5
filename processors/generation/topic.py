"""On topic: speech that is no customer-service request gets a short in-domain redirect.

A stray phrase ("front, left"), a song line or small talk is not sent to the LLM, which
would answer anything in free prose; the caller hears ``VOXBUS_REDIRECT_TEXT`` instead.
The decision uses two signals the pipeline already computes, each with its own floor:

* the intent stage said ``other``: its best label's similarity stayed under the
  classifier's calibrated :data:`processors.intent.classifier.MIN_SIMILARITY`, or the
  nearest labelled examples were its ``other`` examples;
* and no retrieved passage reaches :data:`processors.generation.grounding.RELEVANT_SCORE`,
  the cosine below which a passage is not shown to the LLM.

Both must hold: an in-domain question the classifier missed still reaches the knowledge
base when an article matches it.  Measured by ``benchmarks/on_topic.py`` on the held-out
intents and knowledge-base questions (no in-domain utterance redirected) and on the
off-topic utterances of ``benchmarks/eval/off_topic.yaml`` (see the README).
"""

from __future__ import annotations

from processors.generation.grounding import relevant
from schemas import RetrievalResult


def off_topic(turn: RetrievalResult) -> bool:
    """True when ``turn`` is no customer-service request: intent ``other`` and no relevant passage.

    Args:
        turn: the caller's turn with its intent and retrieved passages (cosine scores).
    """
    return turn.intent == "other" and not relevant(turn.passages)
