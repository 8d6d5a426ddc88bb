"""Search a collection in any direction: text, an image, a stored point, or a weighted mix.

    >>> searcher = Searcher(load_encoder("runs/recipe/best"), open_store(), "recipes5k")
    >>> searcher.search("beef tacos with salsa", target="image", limit=5)
    >>> searcher.search(Path("dish.jpg"), target="text")
    >>> searcher.search('"2:strawberry tart" + whipped cream - chocolate', target="image")

A mixed query is a sum of unit vectors, each with a sign and a weight (rclip's and Marqo's
convention), normalised again; every term is text unless it is a stored point (``id:UUID``)
or, where the caller allows paths (the command line does, the page never), an image file.
``open_store`` is :func:`indexer.factory.open_store`.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from indexer.store import SearchFilter, Store, StoredPoint, StoreError, check_model
from multimodal import suggestions
from multimodal.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_image_size,
    load_image,
    to_rgb,
)
from multimodal.encoder import DualEncoder, model_stamp
from multimodal.suggestions import SUGGESTIONS, VOTERS, item_ingredients

TARGETS = ("image", "text")
MAX_RESULTS = 10_000  # results one search may ask for: more is a typo, not a page of hits
MAX_WEIGHT = 1000.0  # a term's weight; the sum is normalised, so only ratios matter
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*:\s*(.*)$", re.S)


@dataclass
class Term:
    kind: str  # "text", "image" or "point"
    value: object  # the text, an image path or PIL image, or a point id
    weight: float = 1.0  # negative: steer away


def parse_query(expression: str, allow_paths: bool = False) -> list[Term]:
    """``'"2:strawberry tart" + photo.jpg - chocolate'`` -> three weighted terms.

    A quoted term is always text. ``allow_paths``: an unquoted term naming an image file
    (by its suffix) is that file, read from this machine's disk. Off by default, because
    the expression may come from someone who must not read the disk (the page, an API):
    then such a term is refused with the same message whether or not the file exists, and
    photos come as images (a PIL image or a ``Path`` passed on purpose) or ``id:`` terms.
    """
    terms = []
    for sign, part in _split_terms(expression):
        part = part.strip()
        quoted = len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'"
        if quoted:
            part = part[1:-1]
        weight = 1.0
        match = _WEIGHT.match(part)
        if match:
            weight, part = float(match.group(1)), match.group(2)
            if weight > MAX_WEIGHT:  # 1e40 overflows the float32 sum; 400 digits parse as inf
                raise ValueError(
                    f"weight {match.group(1)[:20]} is too large; at most {MAX_WEIGHT:g}"
                )
        part = part.strip()
        if not part:
            continue
        kind = "text" if quoted else _term_kind(part, allow_paths)
        terms.append(_term(kind, part, sign * weight))
    if not terms:
        raise ValueError("empty query: type a dish, some ingredients, or give an image")
    if all(term.weight <= 0 for term in terms):
        raise ValueError("a query needs at least one positive term, not only '- ...' ones")
    return terms


def _term_kind(part: str, allow_paths: bool) -> str:
    """The kind of a term: point, image (a path) or text. A path where paths are not allowed is
    refused without looking at the disk, so the answer tells nothing about which files exist."""
    if part.startswith("id:"):
        return "point"
    if Path(part).suffix.lower() not in IMAGE_SUFFIXES:
        return "text"
    if not allow_paths:
        raise ValueError(
            f"{part!r} looks like a file name, and this search does not read paths on the "
            "server: upload the photo instead, or quote the words to search them as text"
        )
    return "image"


def _term(kind: str, part: str, weight: float) -> Term:
    if kind == "point":
        return Term("point", part[3:].strip(), weight)
    if kind == "image":
        try:
            path = Path(part).expanduser()
            found = path.is_file()
        except (OSError, RuntimeError):  # a name too long, ~nobody: no such file either
            found = False
        if not found:
            raise ValueError(f"no image file {part!r} (quote it if you meant it as text)")
        return Term("image", path, weight)
    return Term("text", part, weight)


def _split_terms(expression: str) -> list[tuple[int, str]]:
    """Split at `` + `` and `` - `` outside quotes; a leading sign applies to the first term."""
    parts, sign, current, quote = [], 1, [], None
    text = expression.strip()
    if text[:1] in "+-" and text[1:2] == " ":
        sign, text = (1 if text[0] == "+" else -1), text[2:]
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'" and (not current or "".join(current).strip() == ""):
            quote = char
        elif char in "+-" and text[i - 1 : i] == " " and text[i + 1 : i + 2] == " ":
            parts.append((sign, "".join(current)))
            sign, current = (1 if char == "+" else -1), []
            i += 1
            continue
        current.append(char)
        i += 1
    parts.append((sign, "".join(current)))
    return parts


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

    # -- query vectors -------------------------------------------------------------------

    def query_vector(self, query) -> tuple[np.ndarray, set[str]]:
        """The unit query vector and the stored points it was made from (left out of results).

        ``query``: text or a mixed expression (str; path terms only with ``allow_paths``), an
        image (a PIL image or a Path), a list of :class:`Term`, or ``("id", point_id)``.
        """
        terms = self._terms(query)
        total = np.zeros(self.encoder.embed_dim, np.float32)
        sources = set()
        texts = [t for t in terms if t.kind == "text"]
        if texts:
            vectors = self.encoder.encode_texts([t.value for t in texts])
            for term, vector in zip(texts, vectors, strict=True):
                total += term.weight * vector
        for term in terms:
            if term.kind == "image":
                total += term.weight * self._image_vector(term.value)
            elif term.kind == "point":
                total += term.weight * self.point_vector(term.value)
                sources.add(str(uuid.UUID(term.value)))  # as the store spells it
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise ValueError("the query terms cancel out; change their weights")
        return total / norm, sources

    def point_vector(self, point_id: str) -> np.ndarray:
        try:  # point ids are UUIDs; a server store would answer anything else with an error
            point_id = str(uuid.UUID(point_id))
        except ValueError:
            raise ValueError(f"no point {point_id!r} in collection {self.collection!r}") from None
        found = self.store.retrieve(self.collection, [point_id], with_vectors=True)
        if not found:
            raise ValueError(f"no point {point_id} in collection {self.collection!r}")
        vectors = found[0].vectors
        vector = vectors.get("image", vectors.get("text"))
        vector = np.asarray(vector, np.float32)
        return vector / np.linalg.norm(vector)

    def _image_vector(self, image) -> np.ndarray:
        if isinstance(image, Image.Image):
            # The limits a file gets from its header, before the model resizes it.
            check_image_size("the query image", *image.size, self.max_pixels)
            image = to_rgb(image)
        else:
            image = load_image(image, self.max_pixels)
        return self.encoder.encode_images([image])[0]

    def _terms(self, query) -> list[Term]:
        if isinstance(query, str):
            return parse_query(query, self.allow_paths)
        if isinstance(query, (Image.Image, Path)):
            return [Term("image", query)]
        if isinstance(query, tuple) and len(query) == 2 and query[0] == "id":
            return [Term("point", query[1])]
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
    ) -> list[StoredPoint]:
        """The ``limit`` nearest items in ``target`` space ("image": their photos, "text":
        their recipe texts), best first. ``group_by`` (e.g. "label", "recipe_id") keeps at
        most ``group_size`` results per value, so one dish type cannot fill the page."""
        _check_request(target, limit)  # before the query is encoded
        vector, sources = self.query_vector(query)
        return self.nearest(vector, sources, target, limit, filter, group_by, group_size, exact)

    def nearest(
        self,
        vector: np.ndarray,
        sources: set[str] = frozenset(),
        target: str = "image",
        limit: int = 10,
        filter: SearchFilter | None = None,
        group_by: str | None = None,
        group_size: int = 1,
        exact: bool = False,
    ) -> list[StoredPoint]:
        """:meth:`search` for a query vector already made (``sources``: the stored points it
        came from, left out of the results)."""
        _check_request(target, limit)
        fetch = limit + len(sources)
        if group_by:
            fetch = min(max(fetch * 8, 64), 1000)
        hits = self.store.query(self.collection, vector, target, fetch, filter, exact)
        hits = [hit for hit in hits if hit.id not in sources]
        if group_by:
            hits = _grouped(hits, group_by, group_size)
        return hits[:limit]

    def suggest_ingredients(
        self,
        query,
        k: int = VOTERS,
        top: int = SUGGESTIONS,
        filter: SearchFilter | None = None,
    ) -> list[tuple[str, float]]:
        """Ingredients ranked by score-weighted votes of the ``k`` nearest recipes."""
        return vote_ingredients(self.search(query, "text", k, filter), top)

    def labels(self) -> list[str]:
        """The dish types in the collection, for the page's filter."""
        seen = set()
        for point in self.store.scroll(self.collection, fields=["label"]):
            label = point.payload.get("label")
            if label:
                seen.add(label)
        return sorted(seen)


def _check_request(target: str, limit: int) -> None:
    if target not in TARGETS:
        raise ValueError(f"target must be image or text, not {target!r}")
    if not 1 <= limit <= MAX_RESULTS:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_RESULTS}, not {limit}")


def vote_ingredients(hits: list[StoredPoint], top: int = SUGGESTIONS) -> list[tuple[str, float]]:
    """:func:`multimodal.suggestions.vote_ingredients` over stored hits: each votes with its
    score for its base ingredients (or else its ingredient phrases)."""
    voters = [(hit.score, hit_ingredients(hit)) for hit in hits]
    return suggestions.vote_ingredients(voters, top)


def hit_ingredients(hit: StoredPoint) -> set[str]:
    """The ingredient names a stored item votes for (see :func:`item_ingredients`)."""
    return item_ingredients(hit.payload.get("base_ingredients"), hit.payload.get("ingredients"))


def _grouped(hits: list[StoredPoint], field: str, size: int) -> list[StoredPoint]:
    counts: dict[object, int] = defaultdict(int)
    kept = []
    for hit in hits:
        key = hit.payload.get(field)
        key = tuple(key) if isinstance(key, list) else key
        if key is not None and counts[key] >= size:
            continue
        counts[key] += 1
        kept.append(hit)
    return kept


__all__ = ["Searcher", "Term", "parse_query", "vote_ingredients", "StoreError"]
