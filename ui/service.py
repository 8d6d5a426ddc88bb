"""One search service in the server's process: the page and the JSON API both call it.

    >>> service = SearchService(Searcher(load_encoder("recipe"), store, "recipes5k"))
    >>> answer = service.search(SearchQuery(text="tacos with salsa", k=5))
    >>> [(hit.score, hit.payload["title"], hit.photo) for hit in answer.hits]
    >>> service.suggest(service.read_photo(Path("dish.jpg").read_bytes()))

A query is words (a mixed expression, ``'"2:apple pie" - cinnamon'``), an uploaded photo, a
stored point's id, or a mix, with the target, the filters and the modes of
:meth:`indexer.search.Searcher.nearest`. The searcher takes each tower's lock
(:mod:`multimodal.tower_locks`) for every search, the page's, the API's and the command
line's: one forward pass at a time per tower, so a text search never waits behind a photo's
(four views with TTA), while the store (thread-safe) answers any number of searches at once.
Each hit comes back with its photo's URL (:func:`ui.photos.photo_url`) and its public payload
(no server paths).

Bad input is a ``ValueError`` naming the fix; :class:`UnknownPoint` for an id the collection
does not hold; :class:`PhotoTooLarge` for an upload past the byte or pixel limit;
:class:`BudgetExhausted` when uploads wait too long for room to decode (:func:`read_upload`).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePath

import numpy as np
from PIL import Image

from indexer.point_ids import MAX_FEEDBACK, point_id
from indexer.search import Searcher, Term, parse_query
from indexer.store import MODES, SearchFilter, StoredPoint
from multimodal.data.decoding import PHOTO_FORMATS, SHARED_BUDGET, decode_photo
from multimodal.data.images import ImageLoadError, check_image_size, reason_for
from multimodal.files import open_regular
from multimodal.suggestions import RANKINGS, SUGGESTIONS, VOTERS
from ui.photos import photo_url, public_payload

MAX_TEXT = 1000  # characters of a query's words
MAX_K = 100  # results one API search returns
MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # one uploaded photo (the page's cap too)
LOOKS_LIKE = 5  # dish types a photo is said to look like
DEFAULT_K = 12
UPLOAD_SIDE = 2048  # an upload is shrunk to this many pixels a side as it is decoded


class UnknownPoint(LookupError):
    """A point id the collection does not hold (or that is not a point id at all)."""


class PhotoTooLarge(ValueError):
    """An upload past the byte or the pixel limit."""


@dataclass
class Hit:
    """One result, as a browser or an API client may see it."""

    id: str  # the point id (a UUID)
    score: float | None  # similarity to the query (fused rank score in hybrid mode)
    photo: str | None  # the photo's URL on this server (/photo/<id>); None without a photo
    payload: dict  # title, label, ingredients, image (relative path), ...; no server paths


@dataclass
class SearchQuery:
    """What to search for and how; at least one of text, photo, point_id or like."""

    text: str = ""  # words or a mixed expression (id:UUID terms allowed, file paths not)
    photo: Image.Image | None = None  # an uploaded photo (see SearchService.read_photo)
    photo_weight: float = 1.0  # its weight beside the words
    point_id: str | None = None  # a stored point to search from
    target: str = "image"  # "image": photos, "text": recipe texts
    k: int = DEFAULT_K  # results
    filter: SearchFilter | None = None  # dish types, with / without ingredients
    mode: str | None = None  # dense, hybrid or sparse; None: the service's default
    diversity: float = 0.0  # MMR, 0 (none) to 1
    like: list[str] = field(default_factory=list)  # point ids to steer towards
    unlike: list[str] = field(default_factory=list)  # point ids to steer away from


@dataclass
class Answer:
    """A search's results, the mode its words were matched in, and the query's vector."""

    hits: list[Hit]
    target: str
    mode: str
    vector: np.ndarray


@dataclass
class Suggestions:
    """What a photo looks like: dish types and ingredients voted by its nearest recipes."""

    looks_like: list[tuple[str, float]]  # (dish type, share), most first
    ingredients: list[tuple[str, float]]  # (ingredient, share), in the ranking's order
    recipes: list[Hit]  # the voters, best first


class SearchService:
    """Searches over one :class:`Searcher`, safe to call from many threads at once."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher
        # a collection indexed before BM25 words can only be searched densely
        self.default_mode = "hybrid" if searcher.words is not None else "dense"

    # -- searches ------------------------------------------------------------------------

    def search(self, query: SearchQuery, root_url: str = "") -> Answer:
        """The ``query.k`` best items for ``query``; ``root_url`` prefixes photo URLs."""
        _check_bounds(query.text, query.k, len(query.like) + len(query.unlike))
        mode = self._mode(query.mode)
        terms = self._terms(query)
        if not terms and not query.like:
            raise ValueError(
                "nothing to search for: give text, a photo, a point_id, or like a result"
            )
        hits, vector, used = self._nearest(terms, query, mode)
        return Answer([self._hit(h, root_url) for h in hits], query.target, used, vector)

    def similar(self, point_id: str, root_url: str = "", **how) -> Answer:
        """Items like the stored point ``point_id`` (itself left out); ``how``: the other
        fields of :class:`SearchQuery` (target, k, filter, diversity)."""
        return self.search(SearchQuery(point_id=point_id, **how), root_url)

    def suggest(
        self,
        photo: Image.Image,
        top: int = SUGGESTIONS,
        ranking: str = "specific",
        filter: SearchFilter | None = None,
        root_url: str = "",
    ) -> Suggestions:
        """Dish types and ingredients for ``photo``: the votes of its nearest recipes."""
        if ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {ranking!r}: use {', '.join(RANKINGS)}")
        if not 1 <= top <= MAX_K:
            raise ValueError(f"top must be from 1 to {MAX_K}, not {top}")
        query = SearchQuery(photo=photo, target="text", k=VOTERS, filter=filter, mode="dense")
        recipes, _, _ = self._nearest(self._terms(query), query, "dense")
        looks_like = [(str(label), share) for label, share in
                      self.searcher.looks_like(recipes, LOOKS_LIKE) if share > 0]  # fmt: skip
        ingredients = self.searcher.ingredients_of(recipes, top, ranking=ranking)
        return Suggestions(looks_like, ingredients, [self._hit(h, root_url) for h in recipes])

    def item(self, point_id: str, root_url: str = "") -> Hit:
        """The stored point ``point_id``: its photo URL and public payload."""
        found = self.searcher.store.retrieve(self.searcher.collection, [self._known(point_id)])
        if not found:
            raise self._unknown(point_id)
        return self._hit(found[0], root_url)

    def health(self) -> dict:
        """The collection, its size and model, and whether hybrid search is possible."""
        searcher = self.searcher
        return {
            "status": "ok",
            "collection": searcher.collection,
            "points": searcher.store.count(searcher.collection),
            "model": public_model(searcher.metadata["model"].get("name", "")),
            "modes": list(MODES) if searcher.words is not None else ["dense"],
        }

    # -- uploads ---------------------------------------------------------------------------

    def read_photo(self, data: bytes) -> Image.Image:
        """An uploaded photo's bytes as an RGB image (:func:`read_upload`)."""
        return read_upload(data, self.searcher.max_pixels)

    # -- helpers ---------------------------------------------------------------------------

    def _mode(self, mode: str | None) -> str:
        mode = mode or self.default_mode
        if mode != "dense" and self.searcher.words is None:
            raise ValueError(
                f"collection {self.searcher.collection!r} has no BM25 words, so only mode "
                "dense: run multimodal index on it again to add them"
            )
        return mode

    def _terms(self, query: SearchQuery) -> list[Term]:
        """The query's terms: its words (parsed; never a file path), its photo with its
        weight, its stored point."""
        terms = parse_query(query.text) if query.text.strip() else []
        if query.photo is not None:
            terms.append(Term("image", query.photo, float(query.photo_weight)))
        if query.point_id is not None:
            terms.append(Term("point", self._known(query.point_id)))
        return terms

    def _nearest(
        self, terms: list[Term], query: SearchQuery, mode: str
    ) -> tuple[list[StoredPoint], np.ndarray, str]:
        """The hits, the query's vector and the mode its words were matched in."""
        searcher, how = self.searcher, {"like": query.like, "unlike": query.unlike}
        if terms:  # the searcher takes the towers' locks (multimodal.tower_locks)
            prepared = searcher.prepare(terms)
        else:
            prepared = searcher.feedback_only(query.like, query.unlike, query.target)
        used = searcher.mode_for(prepared, mode)
        hits = searcher.nearest(prepared, query.target, query.k, query.filter,
                                mode=mode, diversity=query.diversity, **how)  # fmt: skip
        return hits, prepared.vector, used

    def _known(self, value: str) -> str:
        """``value`` as the store spells a point id, if the collection holds that point."""
        try:
            spelled = point_id(value, self.searcher.collection)
        except ValueError:
            raise self._unknown(value) from None
        if not self.searcher.store.retrieve(self.searcher.collection, [spelled], fields=["label"]):
            raise self._unknown(spelled)
        return spelled

    def _unknown(self, value: str) -> UnknownPoint:
        shown = str(value)[:80]
        return UnknownPoint(f"no point {shown!r} in collection {self.searcher.collection!r}")

    def _hit(self, point: StoredPoint, root_url: str) -> Hit:
        photo = photo_url(point.id, root_url) if point.payload.get("image") else None
        return Hit(point.id, point.score, photo, public_payload(point.payload))


def public_model(spec: str) -> str:
    """A model spec as a client may see it: a checkpoint folder on the server by its last
    two parts ("recipe/best"), never its whole path; any other spec as it is."""
    path = PurePath(spec)
    return "/".join(path.parts[-2:]) if path.is_absolute() else spec


def read_upload(data: bytes, max_pixels: int) -> Image.Image:
    """An uploaded photo's bytes as an RGB image of at most :data:`UPLOAD_SIDE` pixels a side,
    decoded once, in memory, within the process's decoding budget (``SHARED_BUDGET``), after
    the header's size is checked. Past the byte or pixel limit: :class:`PhotoTooLarge`;
    anything unusable: a ValueError with the reason; no room to decode in time:
    :class:`BudgetExhausted`."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise PhotoTooLarge(too_many_bytes(len(data)))
    _check_pixels(data, max_pixels)
    try:
        return decode_photo(data, "upload", max_pixels, max_side=UPLOAD_SIDE, budget=SHARED_BUDGET)
    except ImageLoadError as err:
        raise ValueError(f"that photo cannot be used: {err.reason}") from None


def read_upload_file(path: str | Path, max_pixels: int) -> Image.Image:
    """:func:`read_upload` of a file the page's upload wrote (a regular file, read whole up
    to one byte past the limit)."""
    try:
        with open_regular(path) as file:
            data = file.read(MAX_UPLOAD_BYTES + 1)
    except (OSError, ValueError) as err:
        raise ValueError(f"that photo cannot be used: {reason_for(err)}") from None
    return read_upload(data, max_pixels)


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """:class:`PhotoTooLarge` for a header past ``max_pixels``, before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=PHOTO_FORMATS) as image:  # the header
                size = image.size
    except Image.DecompressionBombError as err:  # PIL's own limit, far past ours
        raise PhotoTooLarge(f"that photo cannot be used: decompression bomb: {err}") from None
    except Exception:  # not an image: decode_photo says why
        return
    try:
        check_image_size("upload", *size, max_pixels, max_aspect=float("inf"))
    except ImageLoadError as err:
        raise PhotoTooLarge(f"that photo cannot be used: {err.reason}") from None


def _check_bounds(text: str, k: int, marks: int) -> None:
    if len(text) > MAX_TEXT:
        raise ValueError(f"the query is {len(text):,} characters; at most {MAX_TEXT:,}")
    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be a whole number from 1 to {MAX_K}, not {k}")
    if marks > MAX_FEEDBACK:
        raise ValueError(f"at most {MAX_FEEDBACK} liked and disliked results in one search")


def too_many_bytes(size: int | None, limit: int = MAX_UPLOAD_BYTES) -> str:
    """The one line that refuses an upload of ``size`` bytes (None: not known yet)."""
    sent = f"{size / 2**20:.1f} MB, " if size is not None else ""
    return f"the upload is {sent}over the {limit / 2**20:g} MB limit: send a smaller photo"
