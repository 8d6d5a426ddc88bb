"""Near-duplicate hits folded into the best of them: a search shows one photo per picture, with
the others as its ``duplicates`` ("+N similar" on the page).

    >>> kept, folded = Collapser().fold(hits, k=12)
    >>> folded[kept[0].id]      # the hits that are the same picture as the first

Two hits are one picture when their picture similarity (:mod:`multimodal.data.fingerprint`)
reaches the threshold ``multimodal duplicates`` uses: a hit is folded into the first kept hit
it is one picture with, so the order of the kept hits is the search's own. Fingerprints are
made from the hits' photo files on first sight and kept (a bounded cache, by point id); a hit
whose file cannot be read now is kept as it is.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from indexer.duplicates import DEFAULT_THRESHOLD
from indexer.store import StoredPoint
from multimodal.data.fingerprint import fingerprint, picture_similarity
from multimodal.data.images import ImageLoadError, load_image

CACHED = 1024  # fingerprints kept (about 41 KB each)


class Collapser:
    """Folds near-duplicate hits; safe to call from many threads at once."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, cached: int = CACHED):
        self.threshold, self.cached = threshold, cached
        self._prints: OrderedDict[tuple[str, str], np.ndarray | None] = OrderedDict()
        self._guard = threading.Lock()

    def fold(
        self, hits: list[StoredPoint], k: int
    ) -> tuple[list[StoredPoint], dict[str, list[StoredPoint]]]:
        """The first ``k`` hits that are distinct pictures, in order, and for each kept hit
        the later hits that are its picture (only kept hits with any have an entry)."""
        kept: list[tuple[StoredPoint, np.ndarray | None]] = []
        folded: dict[str, list[StoredPoint]] = {}
        for hit in hits:
            mine = self.fingerprint(hit)
            twin = None
            if mine is not None:
                twin = next(
                    (
                        other
                        for other, theirs in kept
                        if theirs is not None and picture_similarity(mine, theirs) >= self.threshold
                    ),
                    None,
                )
            if twin is not None:
                folded.setdefault(twin.id, []).append(hit)
            elif len(kept) < k:
                kept.append((hit, mine))
        shown = [hit for hit, _ in kept]
        return shown, {i: more for i, more in folded.items() if i in {h.id for h in shown}}

    def fingerprint(self, hit: StoredPoint) -> np.ndarray | None:
        """The hit photo's fingerprint (None without a readable photo), cached."""
        path = hit.image_path
        if path is None:
            return None
        key = (hit.id, str(path))
        with self._guard:
            if key in self._prints:
                self._prints.move_to_end(key)
                return self._prints[key]
        try:
            made = fingerprint(load_image(path))
        except (ImageLoadError, OSError):
            made = None
        with self._guard:
            self._prints[key] = made
            while len(self._prints) > self.cached:
                self._prints.popitem(last=False)
        return made
