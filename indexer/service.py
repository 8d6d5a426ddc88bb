"""One search service: the page, the JSON API and ``multimodal search`` each parse their own
input into a :class:`SearchQuery` and render the :class:`Answer` it gets, nothing else, so
the same question gets the same hits everywhere.

    >>> service = SearchService(Searcher(load_encoder("recipe"), store, "recipes5k"))
    >>> answer = service.search(SearchQuery(text="tacos with salsa", k=5))
    >>> [(hit.score, hit.payload["title"]) for hit in answer.hits]
    >>> answer = service.search(SearchQuery(photos=[photo], target="text", suggest=True))
    >>> answer.looks_like, answer.ingredients

A query is words (a mixed expression, ``'"2:apple pie" - cinnamon'``), photos, a stored
point's id, liked results, or a mix. Every check of it is made once, when it is built, before
any model runs: a mistake is a ``ValueError`` naming the fix (:class:`EmptyQuery` for
nothing to search for), :class:`UnknownPoint` (also a
ValueError) for an id the collection does not hold, :class:`indexer.store.NoWords` (a
ValueError too) for words matched in a collection without BM25 words. The store being away is
a :class:`indexer.store.StoreError`.

The steps, in order: the terms (parsed in the query's constructor), the query vector
(:meth:`Searcher.prepare`, which takes each tower's lock, :mod:`multimodal.tower_locks`), the
mode (asked of the collection once, when the searcher opened it), the BM25 words (tokenised
once), the store's search with filters, diversity and marks (:meth:`Searcher.nearest`), and
the derived answers: what a photo looks like and the ingredients its nearest recipes suggest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.collapse import Collapser
from indexer.marks import MarkBook
from indexer.point_ids import UnknownPoint, feedback, point_id
from indexer.query import MAX_RESULTS, MAX_WEIGHT, TARGETS, Term, parse_query
from indexer.search import Prepared, Searcher
from indexer.store import MODES, SearchFilter, StoredPoint
from indexer.trust import DEFAULT_MIN_SCORE, Judge, cut
from multimodal.data.regions import crop_box, parse_box
from multimodal.suggestions import RANKINGS, SUGGESTIONS, VOTERS

# Measured with multimodal search-eval (docs/indexing-and-search.md#how-search-is-asked-measured)
DEFAULT_MODE = "hybrid"  # better than dense for titles and far better for ingredient lists
DEFAULT_DIVERSITY = 0.0  # every diversity tried lowered P@12 of the dish type
DEFAULT_RANKING = "specific"  # best P@5 above chance; "share" has the best plain P@5
DEFAULT_K = 12  # the page's gallery
MAX_TEXT = 1000  # characters of a query's words
LOOKS_LIKE = 5  # dish types a photo is said to look like
COLLAPSE_FETCH = (2, 8)  # hits fetched per hit shown when near-duplicates are folded

__all__ = ["Answer", "EmptyQuery", "SearchQuery", "SearchService", "UnknownPoint"]


class EmptyQuery(ValueError):
    """A query with nothing to search for (each front end says what to give)."""


@dataclass
class SearchQuery:
    """What to search for and how; checked as it is built (see the module)."""

    text: str = ""  # words or a mixed expression (id:UUID terms; file paths if allow_paths)
    photos: Sequence[Image.Image | Path] = ()  # decoded uploads, or files (trusted callers)
    photo_weight: float = 1.0  # each photo's weight beside the words
    point_id: str | None = None  # a stored point to search from (left out of the hits)
    target: str = "image"  # "image": photos, "text": recipe texts
    k: int = DEFAULT_K  # hits
    filter: SearchFilter | None = None  # dish types, with / without ingredients, splits
    mode: str | None = None  # dense, hybrid or sparse; None: the collection's default
    diversity: float = DEFAULT_DIVERSITY  # MMR, 0 (none) to 1
    like: Sequence[str] = ()  # point ids to steer towards
    unlike: Sequence[str] = ()  # point ids to steer away from
    group_by: str | None = None  # a payload field: at most one hit per value
    rescore: bool = True  # a quantized collection: rescore with the original vectors
    oversampling: float | None = None  # a quantized collection: candidates per hit
    suggest: bool = False  # also what it looks like and the ingredients it suggests
    ranking: str = DEFAULT_RANKING  # of the suggested ingredients: share or specific
    suggestions: int = SUGGESTIONS  # suggested ingredients
    collapse: bool = True  # photos that are one picture: the best shown, the rest its duplicates
    min_score: float | None = None  # the least match probability shown; None: the default
    box: Sequence[float] | str | None = None  # the photos' region searched (see parse_box)
    allow_paths: bool = False  # whether a term may name an image file on this machine
    terms: list[Term] = field(init=False, repr=False)  # the parsed terms

    def __post_init__(self) -> None:
        self.photos = list(self.photos)
        self._check_how()
        if len(self.text) > MAX_TEXT:
            raise ValueError(f"the query is {len(self.text):,} characters; at most {MAX_TEXT:,}")
        if not abs(self.photo_weight) <= MAX_WEIGHT:
            raise ValueError(f"photo_weight must be from -{MAX_WEIGHT:g} to {MAX_WEIGHT:g}")
        if self.box is not None:
            self.box = parse_box(self.box)
            if not self.photos:
                raise ValueError("a box is a region of a photo: give the photo too")
        terms = parse_query(self.text, self.allow_paths) if self.text.strip() else []
        terms += [Term("image", photo, float(self.photo_weight)) for photo in self.photos]
        if self.point_id is not None:
            self.point_id = point_id(self.point_id)
            terms.append(Term("point", self.point_id))
        self.terms = terms
        self.like, self.unlike = feedback(self.like, self.unlike)
        if not terms and not self.like:
            raise EmptyQuery(
                "empty query, nothing to search for: give words, a photo or a stored point, "
                "or like a result (dislikes alone have nothing to steer)"
            )

    def _check_how(self) -> None:
        """How to search: each value in its range, one line for the first that is not."""
        if self.target not in TARGETS:
            raise ValueError(f"target must be image or text, not {self.target!r}")
        if not (isinstance(self.k, int) and 1 <= self.k <= MAX_RESULTS):
            raise ValueError(f"k must be a whole number from 1 to {MAX_RESULTS}, not {self.k}")
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: use {', '.join(MODES)}")
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be from 0 to 1, not {self.diversity}")
        if self.oversampling is not None and not 1.0 <= self.oversampling < float("inf"):
            raise ValueError(f"oversampling must be at least 1, not {self.oversampling}")
        if self.ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {self.ranking!r}: use {', '.join(RANKINGS)}")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be from 0 to 1, not {self.min_score}")
        if not 1 <= self.suggestions <= MAX_RESULTS:
            raise ValueError(f"suggestions must be from 1 to {MAX_RESULTS}, not {self.suggestions}")


@dataclass
class Answer:
    """A search's hits (best first), the mode its words were matched in and the query's
    vector; with ``suggest``, what it looks like, the ingredients suggested and the recipes
    that voted for them."""

    hits: list[StoredPoint]
    target: str
    mode: str
    vector: np.ndarray
    looks_like: list[tuple[str, float]] = field(default_factory=list)  # (dish type, share)
    ingredients: list[tuple[str, float]] = field(default_factory=list)  # (name, share)
    recipes: list[StoredPoint] = field(default_factory=list)  # the voters
    # photo hits that are one picture with a hit, by that hit's id (indexer.collapse)
    duplicates: dict[str, list[StoredPoint]] = field(default_factory=dict)
    # how usual the query is for the calibrated domain (0-1; None: the model is not calibrated)
    domain: float | None = None
    min_score: float | None = None  # the cut applied (None: none, not calibrated)
    near_miss: StoredPoint | None = None  # when nothing passed the cut: the best of the rest

    @property
    def no_match(self) -> bool:
        """Whether nothing passed the cut ("no good match")."""
        return self.near_miss is not None


class SearchService:
    """Searches over one :class:`Searcher`, safe to call from many threads at once."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        # a collection indexed before BM25 words can only be searched densely
        self.default_mode = DEFAULT_MODE if searcher.words is not None else "dense"
        self.collapser = Collapser()
        self.judge = Judge(searcher)
        # the person's Good / Not this marks, kept for multimodal train --marks
        self.marks = MarkBook(searcher.store, searcher.collection)

    def search(self, query: SearchQuery) -> Answer:
        """The ``query.k`` best items for ``query`` in its target space."""
        return self.search_in(query, [query.target])[0]

    def search_in(self, query: SearchQuery, targets: Sequence[str]) -> list[Answer]:
        """One answer per target, from one query vector (a photo encoded once): the page's
        photo tab shows recipes and similar photos. The derived answers come with the
        first."""
        searcher = self.searcher
        if query.terms:
            prepared = searcher.prepare(self._cropped(query))
        else:
            prepared = searcher.feedback_only(query.like, query.unlike, targets[0])
        mode = searcher.mode_for(prepared, query.mode or self.default_mode)
        domain = self.judge.domain(prepared)
        answers = [self._answer(prepared, query, target, mode) for target in targets]
        for answer in answers:
            self._judge(answer, prepared, query, domain)
        if query.suggest and not answers[0].no_match:
            self._suggest(answers[0], prepared, query, mode)
        return answers

    def _judge(self, answer: Answer, prepared: Prepared, query: SearchQuery, domain) -> None:
        """Each hit's match probability, and the cut (see :mod:`indexer.trust`)."""
        answer.domain = domain
        self.judge.annotate(answer.hits, prepared, answer.target, answer.mode, domain)
        if self.judge.calibrated:
            answer.min_score = DEFAULT_MIN_SCORE if query.min_score is None else query.min_score
        answer.hits, answer.near_miss = cut(answer.hits, answer.min_score)

    def _cropped(self, query: SearchQuery) -> list[Term]:
        """The query's terms, its photos cut to its box (decoded and checked first)."""
        if query.box is None:
            return query.terms
        return [
            Term(t.kind, crop_box(self.searcher.photo(t.value), query.box), t.weight)
            if t.kind == "image"
            else t
            for t in query.terms
        ]

    def item(self, value: str) -> StoredPoint:
        """The stored point ``value`` names, with its payload; :class:`UnknownPoint` if the
        collection holds none."""
        searcher = self.searcher
        spelled = point_id(value, searcher.collection)
        found = searcher.store.retrieve(searcher.collection, [spelled])
        if not found:
            raise UnknownPoint(spelled, searcher.collection)
        return found[0]

    def health(self) -> dict:
        """The collection, its size and model, and the modes it can be searched in."""
        searcher = self.searcher
        return {
            "status": "ok",
            "collection": searcher.collection,
            "points": searcher.store.count(searcher.collection),
            "model": searcher.metadata["model"].get("name", ""),
            "modes": list(MODES) if searcher.words is not None else ["dense"],
        }

    def _answer(self, prepared: Prepared, query: SearchQuery, target: str, mode: str) -> Answer:
        """The hits in ``target``; photos that are one picture folded into the best of them,
        from twice as many hits, then eight times as many if that left fewer than ``k``
        distinct pictures and the collection has more."""
        if target != "image" or not query.collapse:
            hits = self._nearest(prepared, query, target, query.k, mode)
            return Answer(hits, target, mode, prepared.vector)
        for factor in COLLAPSE_FETCH:
            asked = min(factor * query.k, MAX_RESULTS)
            more = self._nearest(prepared, query, target, asked, mode)
            hits, folded = self.collapser.fold(more, query.k)
            if len(hits) == query.k or len(more) < asked or asked == MAX_RESULTS:
                break
        return Answer(hits, target, mode, prepared.vector, duplicates=folded)

    def _nearest(
        self, prepared: Prepared, query: SearchQuery, target: str, k: int, mode: str
    ) -> list[StoredPoint]:
        return self.searcher.nearest(
            prepared,
            target,
            k,
            query.filter,
            query.group_by,
            mode=mode,
            diversity=query.diversity,
            like=query.like,
            unlike=query.unlike,
            rescore=query.rescore,
            oversampling=query.oversampling,
        )

    def _suggest(self, answer: Answer, prepared: Prepared, query: SearchQuery, mode: str):
        """What the query looks like and the ingredients suggested: the votes of its
        :data:`VOTERS` nearest recipe texts, by plain relevance (the hits themselves when
        they are those)."""
        plain = not (query.group_by or query.diversity or query.like or query.unlike)
        if answer.target == "text" and plain and len(answer.hits) >= VOTERS:
            recipes = answer.hits[:VOTERS]
        else:
            recipes = self._voters(prepared, query, mode)
        answer.recipes = recipes
        votes = self.searcher.looks_like(recipes, LOOKS_LIKE)
        answer.looks_like = [(str(label), share) for label, share in votes]
        answer.ingredients = self.searcher.ingredients_of(recipes, query.suggestions, query.ranking)

    def _voters(self, prepared: Prepared, query: SearchQuery, mode: str) -> list[StoredPoint]:
        how = {"rescore": query.rescore, "oversampling": query.oversampling}
        return self.searcher.nearest(prepared, "text", VOTERS, query.filter, mode=mode, **how)
