"""Grounding on a small model: read the article out, and check every generated number.

When retrieval is sure, the answer is the article; otherwise no generated sentence may
state a number the retrieved facts do not contain.

SmolLM2-135M grounded only 1-2 of 5 answers when given the passages in its prompt
(measured here), so the generation stage does not trust it with facts:

1. When the best passage scores at least ``direct_score`` (cosine), the answer *is*
   that passage: a contact-centre article sentence, read out.  No LLM call.
2. Otherwise the LLM answers from the passages, and every sentence is checked as it
   streams: a sentence with a number (amount, day, time, count) that appears in no
   retrieved passage is replaced by the best passage (or dropped if there is none).

Canned replies cover turns that need no knowledge (greeting, goodbye), in the turn's language
(:mod:`processors.generation.phrases`).  The floors are the embedding model's
(:class:`processors.embeddings.Calibration`): a Spanish turn's passages are scored by e5.
"""

from __future__ import annotations

import re

from processors.embeddings import MINILM
from schemas import Passage

RELEVANT_SCORE = MINILM.relevant
"""Passages below this cosine similarity (MiniLM's, English) are not shown to the LLM (off-topic)."""

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_WORD_NUMBERS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "fifteen": "15",
    "twenty": "20", "thirty": "30", "fifty": "50",
}


def numbers(text: str) -> set[str]:
    """The numbers a text states, as digit strings ("15th" -> "15", "seven" -> "7")."""
    found = set(_NUMBER.findall(text.replace(",", "")))
    words = re.findall(r"[a-z]+", text.lower())
    return found | {_WORD_NUMBERS[w] for w in words if w in _WORD_NUMBERS}


def relevant(passages: list[Passage], floor: float = RELEVANT_SCORE) -> list[Passage]:
    """Passages worth showing to the LLM (cosine at least ``floor``, the embedding model's), best first."""
    return [p for p in passages if p.score >= floor]


def cited(passages: list[Passage]) -> list[str]:
    """The knowledge-base files of ``passages``, each once, in the passages' order (best first)."""
    return list(dict.fromkeys(p.source for p in passages))


def direct_answer(passages: list[Passage], direct_score: float) -> str | None:
    """The best passage's text when retrieval is confident enough to answer with it."""
    if passages and passages[0].score >= direct_score:
        return passages[0].text
    return None


def ungrounded(sentence: str, passages: list[Passage]) -> bool:
    """True if ``sentence`` states a number that no passage contains."""
    stated = numbers(sentence)
    if not stated:
        return False
    known: set[str] = set()
    for passage in passages:
        known |= numbers(passage.text)
    return not stated <= known
