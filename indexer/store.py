"""The store interface: one collection of points with named ``image`` and ``text`` vectors.

Two implementations speak it: :class:`indexer.edge.EdgeStore` (Qdrant Edge, the engine
in-process on a local folder; the default) and :class:`indexer.server.ServerStore` (a Qdrant
server or cluster through ``qdrant-client``), both built on
:class:`indexer.qdrant_base.QdrantStore`, which holds what they share.
:func:`indexer.factory.open_store` picks one. Both are tested by one shared suite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.collection_settings import (
    BULK_LOAD,
    DEFAULT_OVERSAMPLING,
    SETTINGS,
    CollectionSettings,
    check_settings,
)
from multimodal.paths import marks_path

COLLECTION_FORMAT = "recipe-search-collection/1"
VECTOR_NAMES = ("image", "text")
SPARSE_VECTOR = "bm25"  # each item's words (indexer.bm25), for hybrid and keyword search
MODES = ("dense", "hybrid", "sparse")  # how a text query is matched (SearchRequest)
RRF_K = 60  # reciprocal rank fusion: sum of 1 / (RRF_K + rank) over the rankings (rank from 0)
# Payload fields with an index: what the page filters on.
KEYWORD_FIELDS = ("label", "base_ingredients", "split", "root")
TEXT_FIELDS = ("ingredients",)


class StoreError(RuntimeError):
    """The store cannot do what was asked (unreachable, locked, mismatched); one clear line."""


class NoWords(ValueError):
    """Words to match in a collection without BM25 words: the asker's choice of mode, not
    the store's failure (a client's mistake, answered 422, not 503)."""

    def __init__(self, collection: str):
        super().__init__(
            f"collection {collection!r} has no BM25 words (it was indexed before hybrid "
            f"search): run multimodal index on it again to add them (photos are not embedded "
            f"again), or search with mode dense"
        )


@dataclass(frozen=True)
class SparseVector:
    """A sparse vector: the indices of its non-zero entries and their values."""

    indices: tuple[int, ...] = ()
    values: tuple[float, ...] = ()

    def __bool__(self) -> bool:
        """Whether it has any non-zero entry."""
        return bool(self.indices)


@dataclass
class Point:
    """A point to write: its id, its vectors by name and its payload."""

    id: str  # UUID string
    vectors: dict[str, Sequence[float] | SparseVector]  # "image", "text" and/or "bm25"
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredPoint:
    """A point as the store gives it back: from :meth:`Store.query` (with its ``score``),
    :meth:`Store.retrieve` and :meth:`Store.scroll` (with its ``vectors`` when asked)."""

    id: str  # UUID string
    payload: dict[str, Any] = field(default_factory=dict)  # only the fields asked for
    vectors: dict[str, list[float]] = field(default_factory=dict)  # empty unless with_vectors
    score: float | None = None  # similarity to the query; None outside query results
    probability: float | None = None  # a calibrated match probability (indexer.trust)

    @property
    def image_path(self) -> Path | None:
        """Absolute path of the item's image, from its recorded root and relative path."""
        image = self.payload.get("image")
        if not image:
            return None
        root = self.payload.get("root")
        return Path(root, image) if root else Path(image)


@dataclass
class SearchFilter:
    """What the page and the CLI filter on; each store turns it into its own filter."""

    labels: list[str] = field(default_factory=list)  # dish types, any of
    with_ingredients: list[str] = field(default_factory=list)  # each must appear
    without_ingredients: list[str] = field(default_factory=list)  # none may appear
    splits: list[str] = field(default_factory=list)
    root: str | None = None
    ids: list[str] = field(default_factory=list)  # restrict to these points
    has_vector: str | None = None  # only points that have this named vector
    fields: dict[str, list[str]] = field(default_factory=dict)  # payload field: any of values

    def __bool__(self) -> bool:
        """Whether the filter restricts anything."""
        return bool(
            self.labels
            or self.with_ingredients
            or self.without_ingredients
            or self.splits
            or self.root
            or self.ids
            or self.has_vector
            or any(self.fields.values())
        )


@dataclass
class SearchRequest:
    """What to rank a collection by, beyond one nearest-vector query.

    ``mode``: "dense" ranks by ``vector`` in the ``using`` space; "sparse" by the BM25 words
    (``words``, against each item's ``bm25`` vector); "hybrid" fuses the two rankings of
    ``candidates`` each by reciprocal rank fusion. ``likes`` / ``dislikes``: vectors of
    examples in the ``using`` space; with any, the dense ranking is Qdrant's recommendation
    by best score, ``vector`` being one more positive. ``diversity`` (0 to 1) re-ranks the
    ``candidates`` best by maximal marginal relevance in the ``using`` space: 0 keeps the
    ranking, 1 picks for difference alone.
    """

    using: str  # "image" or "text"
    vector: Sequence[float]
    mode: str = "dense"
    words: SparseVector | None = None
    likes: list[Sequence[float]] = field(default_factory=list)
    dislikes: list[Sequence[float]] = field(default_factory=list)
    diversity: float = 0.0
    candidates: int = 100
    exact: bool = False  # skip the approximate index (and the quantized vectors)
    rescore: bool = True  # in a quantized collection: rank the candidates by the originals
    oversampling: float | None = None  # quantized candidates per result; None: by quantization

    def __post_init__(self) -> None:
        """Refuse what no store could answer, with one line each."""
        if self.oversampling is not None and not self.oversampling >= 1.0:
            raise ValueError(f"oversampling must be at least 1, not {self.oversampling}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use {', '.join(MODES)}")
        if self.mode != "dense" and not self.words:
            raise ValueError(f"{self.mode} search needs words to match")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be from 0 to 1, not {self.diversity}")

    @property
    def recommends(self) -> bool:
        """Whether the dense ranking uses the examples."""
        return bool(self.likes or self.dislikes)

    def quantization(self, quantization: str | None) -> dict[str, Any] | None:
        """The quantization search parameters (``ignore``, ``rescore``, ``oversampling``, as
        both Qdrant APIs name them) for a collection quantized with ``quantization``: None
        when it is not; an exact search ignores the quantized vectors."""
        if quantization is None:
            return None
        if self.exact:
            return {"ignore": True}
        oversampling = self.oversampling or DEFAULT_OVERSAMPLING[quantization]
        return {"rescore": self.rescore, "oversampling": oversampling}


@dataclass
class CollectionSpec:
    """What a collection is made of; recorded in it so a mismatched model is refused."""

    dim: int
    model: dict[str, Any]  # {"name": spec, "arch": ..., "weights_sha256": ... or None}
    settings: CollectionSettings = field(default_factory=CollectionSettings)  # when created
    bm25: dict[str, Any] | None = None  # indexer.bm25.Bm25Settings.record(); None: no words

    def metadata(self) -> dict[str, Any]:
        """What a collection made for this spec records about itself."""
        metadata = {
            "format": COLLECTION_FORMAT,
            "dim": self.dim,
            "model": self.model,
            SETTINGS: self.settings.record(),
        }
        if self.bm25 is not None:
            metadata["bm25"] = self.bm25
        return metadata


def model_identity(model: dict[str, Any]) -> str:
    """Two models make the same vectors when their weights hash (or, without one, name) match."""
    return model.get("weights_sha256") or model.get("name") or ""


def check_model(name: str, recorded: dict[str, Any], model: dict[str, Any]) -> None:
    """Refuse ``model`` for collection ``name`` when its vectors were made by another one."""
    if model_identity(recorded) != model_identity(model):
        raise StoreError(
            f"collection {name!r} holds vectors of model {recorded.get('name')!r} "
            f"({recorded.get('weights_sha256') or 'no checkpoint hash'}), not of "
            f"{model.get('name')!r}: index into a new --collection, or pass "
            f"--model {recorded.get('name')}, or delete the collection to rebuild it"
        )


def check_compatible(name: str, metadata: dict[str, Any], spec: CollectionSpec) -> None:
    """An existing collection takes vectors only from the model and size that made it, and
    keeps the settings it was made with."""
    check_model(name, metadata["model"], spec.model)
    if metadata["dim"] != spec.dim:
        raise StoreError(f"collection {name!r} has {metadata['dim']}-d vectors")
    check_settings(name, CollectionSettings.from_metadata(metadata), spec.settings)


class Store(ABC):
    """A collection store. Point ids are UUID strings; vectors are unit-length floats.

    >>> with open_store() as store:  # indexer.factory.open_store
    ...     store.create_or_open("recipes5k", CollectionSpec(512, model_stamp(encoder)))
    ...     store.upsert("recipes5k", points)
    ...     hits = store.query("recipes5k", vector, using="image", limit=5)
    """

    @abstractmethod
    def collections(self) -> list[str]:
        """The names of the collections in the store, sorted."""

    @abstractmethod
    def create_or_open(self, name: str, spec: CollectionSpec) -> dict[str, Any]:
        """Create ``name`` for ``spec``, or open it if it exists and was made by the same
        model (else :class:`StoreError`). Returns the collection's metadata."""

    @abstractmethod
    def metadata(self, name: str) -> dict[str, Any]:
        """The recorded metadata of an existing collection (:class:`StoreError` if none)."""

    @abstractmethod
    def update_metadata(self, name: str, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into the collection's recorded metadata."""

    @abstractmethod
    def upsert(self, name: str, points: Sequence[Point]) -> None:
        """Write whole points; a point with an id already stored replaces it."""

    @abstractmethod
    def query(
        self,
        name: str,
        vector: Sequence[float],
        using: str,
        limit: int = 10,
        filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[StoredPoint]:
        """The ``limit`` points nearest to ``vector`` in the ``using`` vector space, best
        first, with their score and payload; ``exact`` skips the approximate index."""

    @abstractmethod
    def search(
        self,
        name: str,
        request: SearchRequest,
        limit: int = 10,
        filter: SearchFilter | None = None,
    ) -> list[StoredPoint]:
        """The ``limit`` best points for ``request`` (hybrid, keyword, recommendation,
        diversity), best first, with their score and payload; :meth:`query` is its plain
        dense case."""

    @abstractmethod
    def facet(
        self, name: str, field: str, filter: SearchFilter | None = None, limit: int = 100
    ) -> list[tuple[Any, int]]:
        """The ``limit`` most frequent values of keyword ``field`` among the points
        ``filter`` selects, with how many points have each, most first (exact counts)."""

    @abstractmethod
    def has_words(self, name: str) -> bool:
        """Whether the collection has the ``bm25`` sparse vector (made before hybrid search,
        it has not)."""

    @abstractmethod
    def add_words(self, name: str) -> None:
        """Give an existing collection the ``bm25`` sparse vector, keeping every point, its
        vectors and its payload; its points get their words with :meth:`set_words`."""

    @abstractmethod
    def set_words(self, name: str, words: dict[str, SparseVector]) -> None:
        """Set the ``bm25`` vector of each point id in ``words`` (other vectors untouched)."""

    @abstractmethod
    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, fields=None
    ) -> list[StoredPoint]:
        """The points of ``ids`` that exist, in any order (payload limited to ``fields``)."""

    @abstractmethod
    def scroll(
        self,
        name: str,
        filter: SearchFilter | None = None,
        fields=None,
        page: int = 1000,
        with_vectors: bool = False,
    ) -> Iterator[StoredPoint]:
        """Every point matching ``filter``, read ``page`` points at a time."""

    @abstractmethod
    def count(self, name: str, filter: SearchFilter | None = None) -> int:
        """How many points match ``filter`` (exactly)."""

    @abstractmethod
    def set_payload(self, name: str, payload: dict[str, Any], filter: SearchFilter) -> None:
        """Merge ``payload`` into the payload of every point ``filter`` selects, in one
        update; vectors and other fields stay as they are. A filter that restricts nothing is
        refused (ValueError)."""

    @abstractmethod
    def set_point_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """Merge each point's own ``payloads[id]`` into its payload, in one update; other
        fields and the vectors stay as they are."""

    @abstractmethod
    def delete(self, name: str, ids: Sequence[str]) -> None:
        """Delete the points of ``ids``; ids that do not exist are ignored."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Delete the whole collection."""

    @abstractmethod
    def describe(self, name: str) -> dict[str, Any]:
        """Points, indexed vectors, payload indexes, the settings, the bulk load in progress
        (or None) and the recorded metadata."""

    @abstractmethod
    def begin_bulk(self, name: str) -> None:
        """Start a bulk load into ``name``: index building (HNSW) is off until
        :meth:`end_bulk`, and the collection records the load in progress (:meth:`bulk_state`),
        so a run killed during it is noticed. Calling it again during the load is harmless."""

    @abstractmethod
    def end_bulk(self, name: str, wait: bool = False) -> None:
        """End a bulk load: index building back on and run once (an embedded store builds
        now; a server in the background, waited for only if ``wait``), then the record of
        the load cleared. Nothing to do when no load is in progress."""

    def open_existing(self, name: str) -> dict[str, Any] | None:
        """Open collection ``name`` for use if it exists and return its metadata (None when
        there is none): a store that another process holds, or a server out of reach, is a
        :class:`StoreError` here, before any slow work (loading a model) is done."""
        if name not in self.collections():
            return None
        self.count(name)  # its first use: an embedded store loads (and locks) the shard here
        return self.metadata(name)

    def bulk_state(self, name: str) -> dict[str, Any] | None:
        """The bulk load in progress in ``name`` (when it began, what to restore), or None."""
        return self.metadata(name).get(BULK_LOAD)

    def settings(self, name: str) -> CollectionSettings:
        """The settings collection ``name`` was created with."""
        return CollectionSettings.from_metadata(self.metadata(name))

    def optimize(self, name: str) -> None:
        """Build indexes now (HNSW, quantization); a server does it in the background."""
        return None

    def marks_path(self, name: str) -> Path:
        """The file of collection ``name``'s Good / Not this marks
        (:func:`multimodal.paths.marks_path`: beside an embedded store's collections, or under
        ``$MULTIMODAL_HOME/marks`` for a server)."""
        return marks_path(name, getattr(self, "root", None) or getattr(self, "url", None))

    def close(self) -> None:
        """Flush and release the store."""
        return None

    def __enter__(self) -> Store:
        """The store itself, closed when the ``with`` block ends."""
        return self

    def __exit__(self, *exc) -> None:
        """Close the store."""
        self.close()
