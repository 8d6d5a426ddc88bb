"""Near-duplicates in a collection: photos that are the same picture (resized, recompressed,
lightly cropped, re-exported, mirrored), grouped, the most alike first.

    >>> groups = find_duplicates(store, "recipes5k")
    >>> groups[0].paths, groups[0].similarity

Two passes. **Exact copies** (the same bytes) are found without the model: files of the same
size are hashed (SHA-256) and equal digests grouped, similarity 1. **Near-duplicates**: each
photo asks the store for its nearest neighbours by image vector (the approximate index
searches use, on Qdrant Edge or a server), and each such candidate pair is checked on the
pixels (:mod:`multimodal.data.fingerprint`): the model's vectors find look-alikes, the
fingerprint says whether they are one picture. Pairs whose picture similarity reaches
``threshold`` are joined by complete linkage: two groups merge only if *every* pair across
them reaches it, so a chain of look-alikes does not become one group of distinct photos.

What the default catches and misses on Recipes5k is measured by ``benchmarks/duplicates.py``
(docs/duplicates.md).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.store import Store, StoredPoint
from multimodal.data.fingerprint import fingerprint, picture_similarity
from multimodal.data.images import ImageLoadError, load_image
from multimodal.files import open_regular

DEFAULT_THRESHOLD = 0.9  # picture similarity; chosen on Recipes5k val by benchmarks/duplicates.py
NEIGHBOURS = 10  # nearest photos each photo asks the store for
FIELDS = ["image", "root", "title"]


@dataclass
class DuplicateGroup:
    """Photos that are one picture: their ids and paths (in the same order), the lowest
    similarity between any two of them, and every pair's (index, index, similarity)."""

    ids: list[str]
    paths: list[str | None]
    similarity: float
    pairs: list[tuple[int, int, float]] = field(default_factory=list)
    exact: bool = False  # the same bytes

    def to_json(self) -> dict:
        return {
            "ids": self.ids,
            "paths": self.paths,
            "similarity": round(self.similarity, 4),
            "exact": self.exact,
            "pairs": [[a, b, round(s, 4)] for a, b, s in self.pairs],
        }


def find_duplicates(
    store: Store,
    collection: str,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = NEIGHBOURS,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> list[DuplicateGroup]:
    """Every group of two or more photos that are one picture, the most alike first: exact
    copies first of all, then near-duplicates at ``threshold`` (picture similarity) or more."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"--threshold must be above 0 and at most 1, not {threshold}")
    points = [
        p for p in store.scroll(collection, fields=FIELDS, with_vectors=True) if _has_photo(p)
    ]
    exact = exact_copies(points, progress)
    copied = {point_id for group in exact for point_id in group.ids[1:]}  # one stands for all
    kept = [p for p in points if p.id not in copied]
    near = near_duplicates(store, collection, kept, threshold, neighbours, progress)
    for group in near:  # a near-duplicate of a copy: its copies join its group
        for copies in exact:
            if copies.ids[0] in group.ids:
                group.ids += copies.ids[1:]
                group.paths += copies.paths[1:]
    return exact + near


def exact_copies(
    points: list[StoredPoint], progress: Callable[[Iterable], Iterable] = lambda items: items
) -> list[DuplicateGroup]:
    """Groups of photos with the same bytes: only files sharing a size are read."""
    by_size: dict[int, list[StoredPoint]] = defaultdict(list)
    for point in points:
        try:
            by_size[point.image_path.stat().st_size].append(point)
        except OSError:  # a photo gone since it was indexed
            continue
    candidates = [p for same in by_size.values() if len(same) > 1 for p in same]
    by_digest: dict[str, list[StoredPoint]] = defaultdict(list)
    for point in progress(candidates):
        digest = _digest(point.image_path)
        if digest is not None:
            by_digest[digest].append(point)
    groups = []
    for same in by_digest.values():
        if len(same) > 1:
            same.sort(key=lambda p: str(p.image_path))
            pairs = [(a, b, 1.0) for a in range(len(same)) for b in range(a + 1, len(same))]
            groups.append(DuplicateGroup(*_ids_paths(same), 1.0, pairs, exact=True))
    return sorted(groups, key=lambda g: g.paths[0] or "")


def near_duplicates(
    store: Store,
    collection: str,
    points: list[StoredPoint],
    threshold: float,
    neighbours: int = NEIGHBOURS,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
) -> list[DuplicateGroup]:
    """Groups of ``points`` that are all pairwise one picture (picture similarity at
    ``threshold`` or more), from each photo's ``neighbours`` nearest by image vector, the most
    alike group first."""
    index = {p.id: i for i, p in enumerate(points)}
    prints = Fingerprints(points)
    similarity: dict[tuple[int, int], float] = {}
    for i in progress(range(len(points))):
        vector = points[i].vectors["image"]
        for hit in store.query(collection, vector, "image", neighbours + 1):
            j = index.get(hit.id)
            if j is None or j == i or (min(i, j), max(i, j)) in similarity:
                continue
            similarity[min(i, j), max(i, j)] = prints.similarity(i, j)
    edges = {pair: s for pair, s in similarity.items() if s >= threshold}
    return _complete_linkage(points, prints, edges, threshold)


class Fingerprints:
    """Each point's picture fingerprint, made from its file when first asked (None for a
    photo that cannot be read now: alike to nothing)."""

    def __init__(self, points: list[StoredPoint]):
        self.points, self._made = points, {}

    def __getitem__(self, i: int) -> np.ndarray | None:
        if i not in self._made:
            try:
                self._made[i] = fingerprint(load_image(self.points[i].image_path))
            except (ImageLoadError, OSError):
                self._made[i] = None
        return self._made[i]

    def similarity(self, i: int, j: int) -> float:
        a, b = self[i], self[j]
        return -1.0 if a is None or b is None else picture_similarity(a, b)


def _complete_linkage(points, prints: Fingerprints, edges, threshold) -> list[DuplicateGroup]:
    """Join pairs into groups, most similar pair first, two groups only when every pair
    across them reaches ``threshold``."""
    group_of: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for (i, j), _ in sorted(edges.items(), key=lambda kv: -kv[1]):
        a, b = group_of.get(i, i), group_of.get(j, j)
        if a == b:
            continue
        left, right = members.get(a, [a]), members.get(b, [b])
        if any(prints.similarity(x, y) < threshold for x in left for y in right):
            continue
        members[a] = left + right
        members.pop(b, None)
        for k in members[a]:
            group_of[k] = a
    groups = []
    for indices in members.values():
        indices.sort(key=lambda k: str(points[k].image_path))
        pairs = [
            (x, y, prints.similarity(indices[x], indices[y]))
            for x in range(len(indices))
            for y in range(x + 1, len(indices))
        ]
        chosen = [points[k] for k in indices]
        groups.append(DuplicateGroup(*_ids_paths(chosen), min(s for *_, s in pairs), pairs))
    return sorted(groups, key=lambda g: (-g.similarity, g.paths[0] or ""))


def _has_photo(point: StoredPoint) -> bool:
    return point.image_path is not None and bool(point.vectors.get("image"))


def _ids_paths(points: list[StoredPoint]) -> tuple[list[str], list[str | None]]:
    return [p.id for p in points], [str(p.image_path) if p.image_path else None for p in points]


def _digest(path: Path) -> str | None:
    """The file's SHA-256, or None if it cannot be read now."""
    digest = hashlib.sha256()
    try:
        with open_regular(path) as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
