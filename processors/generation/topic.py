"""On topic: speech that is no customer-service request gets a short in-domain redirect.

A stray phrase ("front, left"), a song line or small talk is not sent to the LLM, which
would answer anything in free prose; the caller hears ``VOXBUS_REDIRECT_TEXT`` instead.
The decision uses two signals the pipeline already computes, each with its own floor:

* the intent stage said ``other``: its best label's similarity stayed under the embedding
  model's calibrated floor (:attr:`processors.embeddings.Calibration.intent_floor`), or the
  nearest labelled examples were its ``other`` examples;
* and no retrieved passage reaches the model's
  :attr:`~processors.embeddings.Calibration.relevant` floor
  (:data:`processors.generation.grounding.RELEVANT_SCORE` in English), the cosine below which a
  passage is not shown to the LLM.

Both must hold: an in-domain question the classifier missed still reaches the knowledge
base when an article matches it.  Measured by ``benchmarks/on_topic.py`` on the held-out
intents and knowledge-base questions (no in-domain utterance redirected) and on the
off-topic utterances of ``benchmarks/eval/off_topic.yaml`` (see the README).
"""

from __future__ import annotations

from processors.generation.grounding import RELEVANT_SCORE, relevant
from schemas import RetrievalResult


def off_topic(turn: RetrievalResult, floor: float = RELEVANT_SCORE) -> bool:
    """True when ``turn`` is no customer-service request: intent ``other`` and no relevant passage.

    Args:
        turn: the caller's turn with its intent and retrieved passages (cosine scores).
        floor: the passages' embedding model's relevance floor.
    """
    return turn.intent == "other" and not relevant(turn.passages, floor)
