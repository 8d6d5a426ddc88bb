"""Fit a model's calibration on a labelled collection (``multimodal calibrate``).

The queries are the points of one split (val): each one's title and ingredient list as text
queries, its photo (read again from its file) as an image query that leaves itself out. Each
is searched as a user would search, in both target spaces and every mode the collection
allows; a hit is relevant when it shares the query's ``field`` value (the dish type for
Recipes5k). Relevance curves are fitted on (cosine, relevant) of the top ``k`` hits, domains
on the other points' vectors (the Gaussian) and these queries (the reference); see
:mod:`multimodal.calibration`.

    >>> queries = calibration_queries(store, "recipes5k", "label", "val")
    >>> samples = collect(searcher, queries, encode_queries(encoder, queries))
    >>> calibration = fit(samples, stamp, fitted_on)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from indexer.search import Prepared, Searcher
from indexer.store import MODES, SearchFilter, Store
from multimodal.calibration import KINDS, Calibration, Curve, Domain, direction
from multimodal.data.images import load_image
from multimodal.encoder import DualEncoder

DEFAULT_K = 20  # hits per search that a curve learns from: two pages of the CLI's default
DEFAULT_QUERIES = 1000  # points of the split used as queries (a seeded sample beyond)
FIELDS = ["title", "ingredients", "image", "root", "split"]


@dataclass
class Query:
    id: str
    kind: str  # "text" or "image"
    value: object  # the words, or the photo's path
    label: frozenset  # the query's field values


@dataclass
class Samples:
    """What the searches gave: per curve key, each hit's cosine, whether it was relevant and
    which query asked; per kind, the queries' unit vectors and lengths; the gallery."""

    cosines: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    relevant: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    asked: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    gallery: dict[str, np.ndarray] = field(default_factory=dict)


def _values(value) -> frozenset:
    if value is None or value == "":
        return frozenset()
    return frozenset(map(str, value)) if isinstance(value, list) else frozenset([str(value)])


def calibration_queries(
    store: Store, collection: str, label_field: str, split: str, limit: int = DEFAULT_QUERIES
) -> tuple[list[Query], dict[str, np.ndarray]]:
    """The split's points as queries (a seeded sample of ``limit`` points at most), and the
    vectors of the collection's other points by space (the domains' Gaussians)."""
    points, gallery = [], defaultdict(list)
    fields = [*FIELDS, label_field]
    for point in store.scroll(collection, fields=fields, with_vectors=True):
        if point.payload.get("split") == split:
            points.append(point)
        else:
            for space in KINDS:
                if space in point.vectors:
                    gallery[space].append(point.vectors[space])
    labelled = [p for p in points if _values(p.payload.get(label_field))]
    if not labelled:
        raise ValueError(
            f"no point of split {split!r} in {collection} has a {label_field!r} value: "
            "give the split (--split) and field (--field) that label the queries"
        )
    if len(labelled) > limit:
        chosen = np.random.default_rng(0).choice(len(labelled), limit, replace=False)
        labelled = [labelled[i] for i in sorted(chosen)]
    queries = []
    for point in labelled:
        label = _values(point.payload.get(label_field))
        ingredients = point.payload.get("ingredients") or []
        words = [point.payload.get("title") or "", ", ".join(map(str, ingredients))]
        queries += [Query(point.id, "text", text, label) for text in words if text.strip()]
        if point.payload.get("image"):
            queries.append(Query(point.id, "image", point.image_path, label))
    return queries, {space: np.asarray(v, np.float32) for space, v in gallery.items() if v}


def encode_queries(encoder: DualEncoder, queries: list[Query], progress=iter) -> np.ndarray:
    """Each query's embedding before normalisation (photos read again from their files)."""
    raw = np.zeros((len(queries), encoder.embed_dim), np.float32)
    texts = [i for i, q in enumerate(queries) if q.kind == "text"]
    if texts:
        raw[texts] = encoder.encode_texts([queries[i].value for i in texts], raw=True)
    photos = [i for i, q in enumerate(queries) if q.kind == "image"]
    for start in progress(range(0, len(photos), 32)):
        batch = photos[start : start + 32]
        images = [load_image(queries[i].value) for i in batch]
        raw[batch] = encoder.encode_images(images, raw=True)
    return raw


def collect(
    searcher: Searcher,
    queries: list[Query],
    raw: np.ndarray,
    label_field: str,
    k: int = DEFAULT_K,
    progress=iter,
) -> Samples:
    """Search each query in both spaces and each mode; see :class:`Samples`."""
    samples = Samples()
    lengths = np.linalg.norm(raw, axis=1)
    units = raw / lengths[:, None]
    modes = list(MODES) if searcher.words is not None else ["dense"]
    for i in progress(range(len(queries))):
        query = queries[i]
        own = {query.id} if query.kind == "image" else set()
        words = query.value if query.kind == "text" else ""
        prepared = Prepared(units[i], own, words, kind=query.kind)
        # a query none of whose words the collection holds is searched densely in any mode
        asked = (
            {searcher.mode_for(prepared, m) for m in modes} if query.kind == "text" else {"dense"}
        )
        for target in ("image", "text"):
            for mode in sorted(asked):
                _search(searcher, prepared, target, mode, k, label_field, query, i, samples)
    for kind in KINDS:
        asked = [i for i, q in enumerate(queries) if q.kind == kind]
        samples.vectors[kind], samples.lengths[kind] = units[asked], lengths[asked]
    return samples


def _search(searcher, prepared, target, mode, k, label_field, query, index, samples) -> None:
    everything = SearchFilter(has_vector=target)
    hits = searcher.nearest(prepared, target, k, everything, mode=mode)
    if not hits:
        return
    vectors = np.stack(searcher.point_vectors([hit.id for hit in hits], target))
    key = direction(query.kind, target, mode)
    samples.cosines[key] += (vectors @ prepared.vector).tolist()
    samples.relevant[key] += [bool(query.label & _values(h.payload.get(label_field))) for h in hits]
    samples.asked[key] += [index] * len(hits)


def fit(samples: Samples, gallery: dict[str, np.ndarray], stamp: dict, fitted_on: dict):
    """The calibration of ``samples`` (all of them)."""
    calibration = Calibration(
        {k: stamp.get(k) for k in ("name", "arch", "weights_sha256")}, fitted_on=fitted_on
    )
    for key, cosines in samples.cosines.items():
        calibration.relevance[key] = Curve.fit(cosines, samples.relevant[key])
    for kind in KINDS:
        space = kind if kind in gallery else next(iter(gallery), None)
        if len(samples.vectors.get(kind, ())) and space is not None:
            calibration.domain[kind] = Domain.fit(
                gallery[space], samples.vectors[kind], samples.lengths[kind]
            )
    return calibration
