"""voxbus's intent + sentiment + retrieval + grounded prompt, as an HTTP service for the Pipecat bot.

So the two systems of ``make bench`` do identical work per turn, the Pipecat pipeline
asks this service for the system prompt of each caller turn: it runs voxbus's own
:class:`processors.intent.stage.IntentStage` (all-MiniLM-L6-v2 kNN + VADER) and
:class:`processors.retrieval.stage.RetrievalStage` (the same embedder, the same Qdrant
collection ingested from the same ``kb/``), keeps the passages voxbus's generation
stage keeps (:func:`processors.generation.grounding.relevant`) and builds the system
message with :func:`processors.generation.prompt.grounded_messages`, as the generation
stage does, with the knowledge base it reads for ``VOXBUS_LLM_PROMPT=knowledge-base``
(the whole knowledge base of the turn's language as a fixed system message).  Its CPU is
counted as Pipecat's (``benchmarks/latency.py``).

It also gives the bot voxbus's reply policy (:meth:`GenerationStage.answer
<processors.generation.stage.GenerationStage.answer>`), so both systems say the same
thing: ``fixed`` is the reply voxbus gives without the LLM (canned by intent, the
off-topic redirect, a confident article), ``facts`` the passages the LLM may state
numbers from, ``fallback`` what is said when nothing usable is left; ``/grounded``
applies voxbus's check to one streamed sentence
(:func:`processors.generation.grounding.ungrounded`).

    POST /prompt {"text": "when is my bill due"}
      -> {"system": "...", "intent": "billing", "passages": 2, "fixed": null,
          "facts": [{"text": ..., "score": ..., "source": ...}], "fallback": "Sorry, ..."}
    POST /grounded {"sentence": "It is due on the 15th.", "facts": [...]} -> {"ungrounded": false}

Run: ``python -m benchmarks.understanding --port N`` (voxbus's virtualenv; the data dir
from ``VOXBUS_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from processors.generation.grounding import ungrounded
from processors.generation.phrases import phrases
from processors.generation.prompt import grounded_messages
from processors.generation.stage import GenerationStage
from processors.intent.stage import IntentStage, sentiment_label
from processors.retrieval.stage import NO_LOOKUP_INTENTS, RetrievalStage
from schemas import Passage, RetrievalResult
from streams.settings import Settings, get_settings


def build_app(settings: Settings | None = None) -> web.Application:
    """Load the models and return the service's aiohttp app (``settings``: default this process's)."""
    settings = settings or get_settings()
    intent, retrieval = IntentStage(settings), RetrievalStage(settings)
    intent.load()
    retrieval.load()
    generation = GenerationStage(settings)  # its reply policy and prompt; its LLM client is never used
    generation.load()

    def prompt(text: str) -> dict[str, object]:
        label, confidence, compound, embedding, model = intent.analyse(text)  # embedded once, as in voxbus
        vector = retrieval.embedders["en"].reuse(embedding, model)
        passages = [] if label in NO_LOOKUP_INTENTS else retrieval.search(text, vector)
        turn = RetrievalResult(session_id="pipecat", turn_id="t", text=text, intent=label,
                               confidence=confidence, sentiment=sentiment_label(compound),
                               sentiment_score=compound, passages=passages, embedding_model=model)
        fixed = generation.fixed_reply(turn, {})
        facts = generation.facts_of(turn)
        system = grounded_messages(turn, facts, [], generation.knowledge_base_of(turn.language))[0]["content"]
        return {"system": system, "intent": label, "passages": len(facts), "fixed": fixed and fixed[0],
                "facts": [p.model_dump(mode="json") for p in facts],
                "fallback": phrases(turn.language).fallback}

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(await asyncio.to_thread(prompt, str(body.get("text", ""))))

    async def grounded(request: web.Request) -> web.Response:
        body = await request.json()
        facts = [Passage.model_validate(p) for p in body.get("facts", [])]
        return web.json_response({"ungrounded": ungrounded(str(body.get("sentence", "")), facts)})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.post("/prompt", handle), web.post("/grounded", grounded),
                    web.get("/healthz", healthz)])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
