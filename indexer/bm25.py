"""Each item's words as a BM25 sparse vector, for hybrid and keyword search.

Qdrant's own BM25 (``qdrant_edge.Bm25``: its tokenizer, English stop words and stemmer, and
the hashing of tokens to indices) turns an item's title and ingredients (or its caption) into
term-frequency weights; the collection's ``bm25`` sparse vector applies the inverse document
frequency at query time (Qdrant's IDF modifier), so the weights stay right as the collection
grows. Both stores get the same vectors: Qdrant Edge computes them the same way a server
would be given them. The settings are recorded in the collection, so every later run and
every query uses the ones its documents were made with.

    >>> words = Bm25Words()
    >>> words.document({"title": "Apple pie", "ingredients": ["apples", "flour"]})
    >>> words.query("apple tart")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import qdrant_edge as qe
from tqdm.auto import tqdm

from indexer.store import SparseVector, Store
from multimodal.data.text import recipe_text

# Recipes5k: 18 distinct tokens per title + ingredients (median), 19 on average.
AVG_LEN = 20.0


@dataclass(frozen=True)
class Bm25Settings:
    """What a collection's BM25 documents were made with (recorded as its ``bm25``)."""

    k: float = 1.2  # term-frequency saturation
    b: float = 0.75  # length normalisation
    avg_len: float = AVG_LEN  # tokens in a typical document
    language: str = "english"  # stop words and stemmer

    def record(self) -> dict[str, Any]:
        """The settings as collection metadata."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Bm25Settings:
        """The settings a collection recorded (unknown keys, from a later version, ignored)."""
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in record.items() if key in known})


class Bm25Words:
    """Documents and queries as BM25 sparse vectors, under one collection's settings."""

    def __init__(self, settings: Bm25Settings | None = None):
        self.settings = settings or Bm25Settings()
        s = self.settings
        self._model = qe.Bm25(qe.Bm25Config(k=s.k, b=s.b, avg_len=s.avg_len, language=s.language))

    def document(self, payload: Mapping[str, Any]) -> SparseVector:
        """The words of a stored item: its title and whole ingredient list, else the text its
        text vector embeds (a caption); empty for an item without words."""
        title = str(payload.get("title") or "")
        ingredients = [str(i) for i in payload.get("ingredients") or []]
        text = recipe_text(title, ingredients) if title or ingredients else ""
        return self.document_text(text or str(payload.get("text") or ""))

    def document_text(self, text: str) -> SparseVector:
        """``text`` as an indexed document: term frequencies with BM25's saturation."""
        return _sparse(self._model.embed_document(text)) if text.strip() else SparseVector()

    def query(self, text: str) -> SparseVector:
        """``text`` as a query: weight 1 per distinct term (the collection applies the IDF);
        empty when no word of it is left (only stop words or punctuation)."""
        return _sparse(self._model.embed_query(text)) if text.strip() else SparseVector()


def _sparse(vector: qe.SparseVector) -> SparseVector:
    return SparseVector(tuple(vector.indices), tuple(float(v) for v in vector.values))


def add_words(store: Store, collection: str, progress: bool = True) -> tuple[Bm25Words, int]:
    """The collection's BM25 words, given first to a collection made before hybrid search:
    its ``bm25`` vector is added and every point gets the words of its stored payload (no
    image is decoded, nothing is embedded). The settings are recorded last, so a run killed
    half-way does it again. Returns the words and how many points were given them."""
    recorded = store.metadata(collection).get("bm25")
    if recorded is not None and store.has_words(collection):
        return Bm25Words(Bm25Settings.from_record(recorded)), 0
    words = Bm25Words()
    store.add_words(collection)
    total, done = store.count(collection), 0
    fields = ["title", "ingredients", "text"]
    with tqdm(
        total=total,
        unit="point",
        desc=f"adding words to {collection}",
        disable=not progress or not total,
    ) as bar:
        page = []
        for point in store.scroll(collection, fields=fields, page=1000):
            page.append(point)
            if len(page) == 1000:
                done += _set_words(store, collection, words, page)
                bar.update(len(page))
                page = []
        done += _set_words(store, collection, words, page)
        bar.update(len(page))
    store.update_metadata(collection, {"bm25": words.settings.record()})
    return words, done


def _set_words(store: Store, collection: str, words: Bm25Words, points) -> int:
    vectors = {point.id: words.document(point.payload) for point in points}
    store.set_words(collection, vectors)
    return sum(1 for vector in vectors.values() if vector)
