"""voxbus's intent + sentiment + retrieval + grounded prompt, as an HTTP service for the Pipecat bot.

So the two systems of ``make bench`` do identical work per turn, the Pipecat pipeline
asks this service for the system prompt of each caller turn: it runs voxbus's own
:class:`processors.intent.stage.IntentStage` (all-MiniLM-L6-v2 kNN + VADER) and
:class:`processors.retrieval.stage.RetrievalStage` (the same embedder, the same Qdrant
collection ingested from the same ``kb/``), keeps the passages voxbus's generation
stage keeps (:func:`processors.generation.grounding.relevant`) and builds the system
message with :func:`processors.generation.prompt.build_messages`.  Its CPU is counted
as Pipecat's (``benchmarks/latency.py``).

    POST /prompt {"text": "when is my bill due"} -> {"system": "...", "intent": "billing", "passages": 2}

Run: ``python -m benchmarks.understanding --port N`` (voxbus's virtualenv; the data dir
from ``VOXBUS_DATA_DIR``).
"""

from __future__ import annotations

import argparse
import asyncio

from aiohttp import web

from processors.generation.grounding import relevant
from processors.generation.prompt import build_messages
from processors.intent.stage import IntentStage, sentiment_label
from processors.retrieval.stage import NO_LOOKUP_INTENTS, RetrievalStage
from schemas import RetrievalResult
from streams.settings import get_settings


def build_app() -> web.Application:
    """Load the models and return the service's aiohttp app."""
    settings = get_settings()
    intent, retrieval = IntentStage(settings), RetrievalStage(settings)
    intent.load()
    retrieval.load()

    def prompt(text: str) -> dict[str, object]:
        label, confidence, compound, embedding, model = intent.analyse(text)  # embedded once, as in voxbus
        vector = retrieval.embedders["en"].reuse(embedding, model)
        passages = [] if label in NO_LOOKUP_INTENTS else retrieval.search(text, vector)
        turn = RetrievalResult(session_id="pipecat", turn_id="t", text=text, intent=label, confidence=confidence,
                               sentiment=sentiment_label(compound), sentiment_score=compound,
                               passages=relevant(passages))
        system = build_messages(turn, [])[0]["content"]
        return {"system": system, "intent": label, "passages": len(turn.passages)}

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(await asyncio.to_thread(prompt, str(body.get("text", ""))))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.add_routes([web.post("/prompt", handle), web.get("/healthz", healthz)])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(build_app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
