"""Search a collection in any direction: text, an image, a stored point, or a weighted mix.

    >>> searcher = Searcher(load_encoder("runs/recipe/best"), open_store(), "recipes5k")
    >>> searcher.search("beef tacos with salsa", target="image", limit=5)
    >>> searcher.search(Path("dish.jpg"), target="text")
    >>> searcher.search('"2:strawberry tart" + whipped cream - chocolate', target="image")
    >>> searcher.search("apple pie", mode="hybrid", diversity=0.3, like=[liked_id])

A mixed query is a sum of weighted unit vectors (:mod:`indexer.query` parses it).
``open_store`` is :func:`indexer.factory.open_store`.

How the collection is asked (:class:`indexer.store.SearchRequest`): ``mode`` "dense" (the
model's vectors), "sparse" (BM25 over each item's title and ingredients) or "hybrid" (both,
fused by reciprocal rank); ``diversity`` re-ranks by maximal marginal relevance; ``like`` and
``unlike`` are stored points to steer by (Qdrant's recommendation, best-score strategy), the
query itself staying a positive example. A query without words (a photo, a stored point)
is matched densely whatever the mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.bm25 import Bm25Settings, Bm25Words
from indexer.point_ids import MAX_FEEDBACK, UnknownPoint, feedback, point_id
from indexer.query import (
    MAX_WEIGHT,
    Term,
    check_request,
    grouped,
    parse_query,
)
from indexer.store import (
    NoWords,
    SearchFilter,
    SearchRequest,
    SparseVector,
    Store,
    StoredPoint,
    StoreError,
    check_model,
)
from multimodal import suggestions
from multimodal.data.images import (
    DEFAULT_MAX_PIXELS,
    check_image_size,
    load_image,
    to_rgb,
)
from multimodal.encoder import DualEncoder, model_stamp
from multimodal.suggestions import RANKINGS, SUGGESTIONS, VOTERS, item_ingredients
from multimodal.tower_locks import photo_queue, tower_locks

MAX_FACETS = 100_000  # distinct values counted for the dish list and ingredient prevalence
CANDIDATES = 100  # what hybrid search fuses from each ranking, and what MMR re-ranks
# Hits fetched past the last one kept, so that ties at the cut (fused rank scores tie often,
# copies of a photo always) are broken by point id, not by the store's order, which may
# differ from one run or thread to the next: one question, one answer.
TIE_ROOM = 8


@dataclass
class Prepared:
    """A query made ready to search: its unit vector, the stored points it was made from
    (left out of results), its words (the positive text terms, for BM25) and what each
    positive encoded term looked like (kind, unit vector, length before normalisation), which
    :mod:`indexer.trust` reads."""

    vector: np.ndarray
    sources: set[str]
    text: str = ""
    encoded: list[tuple[str, np.ndarray, float]] = field(default_factory=list)
    kind: str = "image"  # "text" when words weigh most in it


class Searcher:
    """A model and a collection, opened once; the CLI and the web page both use it.

    ``allow_paths``: whether a query string's terms may name image files on this machine
    (see :func:`parse_query`); off unless the caller trusts whoever wrote the query.
    """

    def __init__(
        self,
        encoder: DualEncoder,
        store: Store,
        collection: str,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        allow_paths: bool = False,
    ):
        self.encoder, self.store, self.collection = encoder, store, collection
        self.metadata = store.metadata(collection)
        check_model(collection, self.metadata["model"], model_stamp(encoder))
        self.max_pixels = max_pixels
        self.allow_paths = allow_paths
        recorded = self.metadata.get("bm25")
        has_words = recorded is not None and store.has_words(collection)
        self.words = Bm25Words(Bm25Settings.from_record(recorded)) if has_words else None
        self._prevalence: dict[str, float] | None = None

    # -- query vectors -------------------------------------------------------------------

    def prepare(self, query) -> Prepared:
        """The query made ready: its vector, source points, words and encoded terms (see
        :meth:`query_vector` for what ``query`` may be)."""
        terms = self._terms(query)
        total = np.zeros(self.encoder.embed_dim, np.float32)
        prepared = Prepared(total, set())
        heaviest = 0.0
        for term, vector, length in self._encoded(terms):
            total += term.weight * vector
            if term.kind == "point":
                prepared.sources.add(term.value)
            elif term.weight > 0:
                prepared.encoded.append((term.kind, vector, length))
            if abs(term.weight) > heaviest:
                heaviest = abs(term.weight)
                prepared.kind = "text" if term.kind == "text" else "image"
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ValueError("the query terms cancel out; change their weights")
        prepared.vector = total / norm
        prepared.text = " ".join(t.value for t in terms if t.kind == "text" and t.weight > 0)
        return prepared

    def query_vector(self, query) -> tuple[np.ndarray, set[str]]:
        """The unit query vector and the stored points it was made from (left out of results).

        ``query``: text or a mixed expression (str; path terms only with ``allow_paths``), an
        image (a PIL image or a Path), a list of :class:`Term`, or ``("id", point_id)``.
        """
        prepared = self.prepare(query)
        return prepared.vector, prepared.sources

    def _encoded(self, terms: list[Term]):
        """Each term with its unit vector and its length before normalisation (1 for a stored
        point)."""
        locks = tower_locks(self.encoder)  # one pass per tower at a time, whoever searches
        texts = [t for t in terms if t.kind == "text"]
        if texts:
            with locks.text:
                raw = self.encoder.encode_texts([t.value for t in texts], raw=True)
            for term, vector in zip(texts, raw, strict=True):
                length = float(np.linalg.norm(vector))
                yield term, vector / length, length
        for term in terms:
            if term.kind == "image":
                image = self.photo(term.value)  # decoded before the tower is waited for
                vector = photo_queue(self.encoder).encode(image, raw=True)
                length = float(np.linalg.norm(vector))
                yield term, vector / length, length
            elif term.kind == "point":
                yield term, self.point_vector(term.value), 1.0

    def point_vector(self, point_id: str, space: str = "image") -> np.ndarray:
        """The unit vector of a stored point in ``space`` (its other one if it has only that:
        both live in one space)."""
        return self.point_vectors([point_id], space)[0]

    def point_vectors(self, point_ids, space: str = "image") -> list[np.ndarray]:
        """:meth:`point_vector` of each id, in order; one ValueError naming the first id that
        is not a stored point."""
        ids = list(point_ids)
        found = {p.id: p for p in self.store.retrieve(self.collection, ids, with_vectors=True)}
        vectors = []
        for stored_id in ids:
            if stored_id not in found:
                raise UnknownPoint(stored_id, self.collection)
            stored = found[stored_id].vectors
            other = "text" if space == "image" else "image"
            vector = np.asarray(stored.get(space, stored.get(other)), np.float32)
            vectors.append(vector / np.linalg.norm(vector))
        return vectors

    def photo(self, image) -> Image.Image:
        """A query photo as an RGB image: a PIL image checked by its size alone (the pixel
        and aspect limits protect the model's resize; arithmetic, no decoding), a file read
        and checked."""
        if isinstance(image, Image.Image):
            check_image_size("the query image", *image.size, self.max_pixels)
            return to_rgb(image)
        return load_image(image, self.max_pixels)

    def _terms(self, query) -> list[Term]:
        if isinstance(query, str):
            return parse_query(query, self.allow_paths)
        if isinstance(query, (Image.Image, Path)):
            return [Term("image", query)]
        if isinstance(query, tuple) and len(query) == 2 and query[0] == "id":
            return [Term("point", point_id(query[1], self.collection))]
        if isinstance(query, list) and query and all(isinstance(t, Term) for t in query):
            return query
        raise ValueError("empty query: type a dish, some ingredients, or give an image")

    # -- searching -----------------------------------------------------------------------

    def search(
        self,
        query,
        target: str = "image",
        limit: int = 10,
        filter: SearchFilter | None = None,
        group_by: str | None = None,
        group_size: int = 1,
        exact: bool = False,
        mode: str = "dense",
        diversity: float = 0.0,
        like=(),
        unlike=(),
        rescore: bool = True,
        oversampling: float | None = None,
    ) -> list[StoredPoint]:
        """The ``limit`` best items in ``target`` space ("image": their photos, "text":
        their recipe texts), best first. ``group_by`` (e.g. "label", "recipe_id") keeps at
        most ``group_size`` results per value, so one dish type cannot fill the page;
        ``mode``, ``diversity``, ``like`` and ``unlike`` as the module says; ``rescore`` and
        ``oversampling`` as :class:`SearchRequest` says (a quantized collection only).
        ``query`` may be None when something is liked: then the liked points are the query."""
        check_request(target, limit, mode, diversity)  # before the query is encoded
        like, unlike = feedback(like, unlike, self.collection)
        if query is None or (isinstance(query, str) and not query.strip() and like):
            prepared = self.feedback_only(like, unlike, target)
        else:
            prepared = self.prepare(query)
        return self.nearest(
            prepared,
            target,
            limit,
            filter,
            group_by,
            group_size,
            exact,
            mode=mode,
            diversity=diversity,
            like=like,
            unlike=unlike,
            rescore=rescore,
            oversampling=oversampling,
        )

    def nearest(
        self,
        query: Prepared | np.ndarray,
        target: str = "image",
        limit: int = 10,
        filter: SearchFilter | None = None,
        group_by: str | None = None,
        group_size: int = 1,
        exact: bool = False,
        *,
        mode: str = "dense",
        diversity: float = 0.0,
        like=(),
        unlike=(),
        rescore: bool = True,
        oversampling: float | None = None,
    ) -> list[StoredPoint]:
        """:meth:`search` for a query already made (:meth:`prepare`; a bare vector is a query
        without words and without source points), with values already checked: by
        :class:`indexer.service.SearchQuery`, or by :meth:`search` (``like`` and ``unlike``
        as the store spells point ids, :func:`indexer.point_ids.feedback`)."""
        if not isinstance(query, Prepared):
            query = Prepared(np.asarray(query, np.float32), set())
        mode, words = self._matched(query, mode)
        request = SearchRequest(
            target,
            query.vector,
            mode=mode,
            words=words,
            likes=self.point_vectors(like, target) if like else [],
            dislikes=self.point_vectors(unlike, target) if unlike else [],
            diversity=diversity,
            candidates=max(CANDIDATES, limit),
            exact=exact,
            rescore=rescore,
            oversampling=oversampling,
        )
        left_out = query.sources | set(like) | set(unlike)
        fetch = limit + len(left_out) + (0 if diversity else TIE_ROOM)
        if group_by:
            fetch = min(max(fetch * 8, 64), 1000)
            request.candidates = max(request.candidates, fetch)
        hits = self.store.search(self.collection, request, fetch, filter)
        hits = [hit for hit in hits if hit.id not in left_out]
        if not diversity:  # equal scores (copies of a photo, fused ranks) in one stable order
            hits.sort(key=lambda hit: (-(hit.score or 0.0), hit.id))
        if group_by:
            hits = grouped(hits, group_by, group_size)
        return hits[:limit]

    def mode_for(self, query: Prepared, mode: str) -> str:
        """The mode a query is matched in: ``mode``, or "dense" for a query without words
        (a photo, a stored point, only stop words); a collection without BM25 words refuses
        any other mode with one line that says how to add them."""
        return self._matched(query, mode)[0]

    def _matched(self, query: Prepared, mode: str) -> tuple[str, SparseVector | None]:
        """:meth:`mode_for`, and the query's BM25 words when that mode uses them."""
        if mode == "dense":
            return mode, None
        if self.words is None:  # the caller's choice of mode, not the store's failure
            raise NoWords(self.collection)
        words = self.words.query(query.text)
        return (mode, words) if words else ("dense", None)

    def feedback_only(self, like, unlike, target: str = "image") -> Prepared:
        """A query made of feedback alone: the first liked point (the others and the
        disliked ones steer the recommendation); ids as the store spells them."""
        like = list(like or ())
        if not like:
            raise ValueError(
                "nothing to search for: give a query, or like at least one result "
                "(dislikes alone have nothing to steer)"
            )
        return Prepared(self.point_vectors(like[:1], target)[0], set(like))

    def suggest_ingredients(
        self,
        query,
        k: int = VOTERS,
        top: int = SUGGESTIONS,
        filter: SearchFilter | None = None,
        ranking: str = "share",
    ) -> list[tuple[str, float]]:
        """Ingredients ranked by score-weighted votes of the ``k`` nearest recipes (see
        :meth:`ingredients_of`)."""
        return self.ingredients_of(self.search(query, "text", k, filter), top, ranking)

    def ingredients_of(
        self, recipes: list[StoredPoint], top: int = SUGGESTIONS, ranking: str = "share"
    ) -> list[tuple[str, float]]:
        """The ingredients ``recipes`` vote for, with their shares: ranked by share, or
        ("specific") by how much more often they appear among them than in the collection
        (:func:`multimodal.suggestions.specific_ingredients`)."""
        if ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {ranking!r}: use {', '.join(RANKINGS)}")
        voters = [(hit.score, hit_ingredients(hit)) for hit in recipes]
        if ranking == "share":
            return suggestions.vote_ingredients(voters, top)
        return suggestions.specific_ingredients(voters, self.prevalence(), top)

    def looks_like(self, recipes: list[StoredPoint], top: int = 5) -> list[tuple[str, float]]:
        """The dish types of ``recipes`` (the nearest to a photo) as score-weighted shares,
        most first: "hamburger 0.46, crab cakes 0.18, ..."; a dish type whose voters all
        scored 0 or less has no share and no line."""
        votes = [(hit.score, hit.payload.get("label")) for hit in recipes]
        return [(label, share) for label, share in suggestions.vote_labels(votes, top) if share > 0]

    def prevalence(self) -> dict[str, float]:
        """Each base ingredient's share of the collection's points, counted once by the
        store's facets (no scroll through the collection)."""
        if self._prevalence is None:
            total = max(self.store.count(self.collection), 1)
            counts = self.store.facet(self.collection, "base_ingredients", limit=MAX_FACETS)
            self._prevalence = {str(name): count / total for name, count in counts}
        return self._prevalence

    def labels(self) -> list[str]:
        """The dish types in the collection, for the page's filter (the store's facet
        counts: no scroll through the collection)."""
        found = self.store.facet(self.collection, "label", limit=MAX_FACETS)
        return sorted(str(label) for label, _ in found if label)


def vote_ingredients(hits: list[StoredPoint], top: int = SUGGESTIONS) -> list[tuple[str, float]]:
    """:func:`multimodal.suggestions.vote_ingredients` over stored hits: each votes with its
    score for its base ingredients (or else its ingredient phrases)."""
    voters = [(hit.score, hit_ingredients(hit)) for hit in hits]
    return suggestions.vote_ingredients(voters, top)


def hit_ingredients(hit: StoredPoint) -> set[str]:
    """The ingredient names a stored item votes for (see :func:`item_ingredients`)."""
    return item_ingredients(hit.payload.get("base_ingredients"), hit.payload.get("ingredients"))


__all__ = [
    "MAX_FEEDBACK",
    "MAX_WEIGHT",
    "Prepared",
    "Searcher",
    "Term",
    "parse_query",
    "vote_ingredients",
    "StoreError",
]
