"""Whether a reply is grounded on the passages it was given: K-Precision and a threshold.

K-Precision is the share of the reply's tokens that occur in the passages (each passage token
counted at most as often as it occurs there).  It is the lexical faithfulness metric of Adlakha
et al., "Evaluating Correctness and Faithfulness of Instruction-Following Models for Question
Answering" (TACL 2024), whose human study found it the automatic metric that agrees best with
people's judgement of whether a response stays within its knowledge; this is their
``KPrecision`` (McGill-NLP/instruct-qa, ``instruct_qa/evaluation/faithfulness_metrics.py``) with
SQuAD's token normalization, re-implemented here in a few lines (that module imports torch,
transformers, evaluate and openai to load).

A reply is *grounded* (:func:`grounded`) when it names knowledge-base sources
(:attr:`schemas.ReplyText.sources`: the generation stage cites the articles it answered from or
read out) and at least :data:`GROUNDED_PRECISION` of its tokens are in the passages of those
sources.  A canned reply, a redirect and the fallback cite nothing and are not grounded.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

from schemas import Passage

GROUNDED_PRECISION = 0.5
"""K-Precision at or above which a reply with sources is grounded: most of its words come from its
passages.  Chosen before any replay was measured (not fitted to one); the report states it."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def tokens(text: str) -> list[str]:
    """SQuAD's normalization: lower case, no punctuation, no articles, split on white space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def knowledge_precision(reply: str, passages: Iterable[str]) -> float:
    """K-Precision of ``reply`` against ``passages``: in [0, 1], 0.0 for a reply with no tokens."""
    said = Counter(tokens(reply))
    if not said:
        return 0.0
    known = Counter(tokens(" ".join(passages)))
    return round(sum((said & known).values()) / sum(said.values()), 3)


def grounded(reply: str, sources: list[str], passages: list[Passage]) -> tuple[bool, float]:
    """Whether ``reply`` is grounded (see the module docstring), and its K-Precision.

    Args:
        reply: the whole reply of a turn (its sentences joined).
        sources: the knowledge-base files the reply cites.
        passages: the passages the turn's retrieval gave generation; those of ``sources`` count.

    Returns:
        ``(grounded, k_precision)``; the precision is against the cited passages (0.0 without any).
    """
    cited = [p.text for p in passages if p.source in set(sources)]
    precision = knowledge_precision(reply, cited) if cited else 0.0
    return bool(sources) and precision >= GROUNDED_PRECISION, precision
