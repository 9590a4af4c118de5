"""Knowledge-base articles -> passages, and ingestion into Qdrant.

An article is a Markdown file whose first ``# `` line is its title.  Each passage is
one line of the article (the sample KB states one fact per line), prefixed by the
title so the passage embeds with its topic: small passages keep the fact a caller
asked about at the top of the retrieval result.

The knowledge base of a language but English lives in a folder named by its code under
``VOXBUS_KB_DIR`` (``kb/es/``: the sample carrier's articles in Spanish), is embedded by that
language's model (:func:`processors.embeddings.embedding_model_for`) and kept in its own
collection (``<VOXBUS_QDRANT_COLLECTION>-es``); the English knowledge base is the rest of the folder.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from qdrant_client import QdrantClient, models
from tqdm import tqdm

from processors.embeddings import Embedder
from schemas import DEFAULT_LANGUAGE, Passage
from streams.settings import Settings

BATCH = 32
LANGUAGE_DIR = re.compile(r"^[a-z]{2,3}$")
"""A folder of the knowledge base named by a language code (:data:`schemas.base.Language`) holds that
language's articles."""


def kb_dir_for(settings: Settings, language: str) -> Path:
    """The knowledge-base folder of ``language``: ``VOXBUS_KB_DIR`` for English, else its ``<language>/``."""
    return settings.kb_dir if language == DEFAULT_LANGUAGE else settings.kb_dir / language


def kb_languages(settings: Settings) -> list[str]:
    """English, then each language with a folder under ``VOXBUS_KB_DIR`` (its name, :data:`LANGUAGE_DIR`)."""
    folders = sorted(p.name for p in settings.kb_dir.iterdir() if p.is_dir() and LANGUAGE_DIR.match(p.name)) \
        if settings.kb_dir.is_dir() else []
    return [DEFAULT_LANGUAGE, *(name for name in folders if name != DEFAULT_LANGUAGE)]


def collection_for(settings: Settings, language: str) -> str:
    """The Qdrant collection of ``language``.

    ``VOXBUS_QDRANT_COLLECTION`` for English; for another language, that name suffixed ``-<language>``.
    """
    collection = settings.qdrant_collection
    return collection if language == DEFAULT_LANGUAGE else f"{collection}-{language}"


@dataclass(frozen=True)
class KbPassage:
    """One passage: ``text`` (one fact), ``title`` (article) and ``source`` (file name)."""

    text: str
    title: str
    source: str

    @property
    def point_id(self) -> str:
        """Deterministic Qdrant point id, so re-ingesting replaces instead of duplicating."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.source}\n{self.text}"))


def read_passages(kb_dir: Path) -> Iterator[KbPassage]:
    """Yield the passages of every ``*.md`` article under ``kb_dir`` (README and language folders excluded).

    Raises:
        FileNotFoundError: ``kb_dir`` does not exist.
    """
    if not kb_dir.is_dir():
        raise FileNotFoundError(f"knowledge base directory {kb_dir} does not exist")
    for path in sorted(kb_dir.rglob("*.md")):
        folders = path.relative_to(kb_dir).parts[:-1]
        if path.name.lower() == "readme.md" or (folders and LANGUAGE_DIR.match(folders[0])):
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        title = next((line[2:].strip() for line in lines if line.startswith("# ")), path.stem)
        for line in lines:
            if not line.startswith("#"):
                yield KbPassage(text=line, title=title, source=path.name)


def knowledge_base(settings: Settings, language: str) -> list[Passage]:
    """Every passage of the knowledge base of ``language`` (:func:`kb_dir_for`), in file order.

    The whole knowledge base as an LLM is given it (``VOXBUS_LLM_PROMPT=knowledge-base``,
    :func:`processors.generation.prompt.build_messages`): no passage is ranked, each has score 1.0.

    Raises:
        FileNotFoundError: the language's folder does not exist.
    """
    return [Passage(text=p.text, title=p.title, source=p.source, score=1.0)
            for p in read_passages(kb_dir_for(settings, language))]


def open_client(settings: Settings) -> QdrantClient:
    """A Qdrant client: the server at ``VOXBUS_QDRANT_URL``, else embedded local storage.

    Local storage (``<data_dir>/qdrant``) is a single-process store: run one retrieval
    replica on it, or configure a Qdrant server to scale out.
    """
    if settings.qdrant_url:
        return QdrantClient(url=settings.qdrant_url)
    path = settings.data_dir / "qdrant"
    path.mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=str(path))


def ingest(kb_dir: Path, client: QdrantClient, embedder: Embedder, collection: str,
           progress: bool = True) -> int:
    """Chunk, embed and upsert the articles under ``kb_dir`` into ``collection``.

    The collection is recreated, so passages removed from the KB disappear.

    Returns:
        Number of passages upserted.
    """
    passages = list(read_passages(kb_dir))
    if client.collection_exists(collection):
        client.delete_collection(collection)
    client.create_collection(
        collection, vectors_config=models.VectorParams(size=embedder.dim, distance=models.Distance.COSINE)
    )
    bar = tqdm(total=len(passages), desc=f"ingest {kb_dir.name}", unit="passage", disable=not progress)
    for start in range(0, len(passages), BATCH):
        batch = passages[start:start + BATCH]
        vectors = embedder.encode([f"{p.title}: {p.text}" for p in batch], passages=True)
        client.upsert(collection, points=[
            models.PointStruct(id=p.point_id, vector=v.tolist(),
                               payload={"text": p.text, "title": p.title, "source": p.source})
            for p, v in zip(batch, vectors, strict=True)
        ])
        bar.update(len(batch))
    bar.close()
    return len(passages)
