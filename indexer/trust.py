"""Answers a user can trust: each hit's match probability, and "no good match" when nothing
fits, from the model's calibration (:mod:`multimodal.calibration`).

    >>> judge = Judge(searcher)
    >>> domain = judge.domain(prepared)              # 0-1: is the query like the collection's?
    >>> judge.annotate(hits, prepared, "image", "hybrid", domain)  # sets hit.probability
    >>> kept, near_miss = cut(hits, DEFAULT_MIN_SCORE)

A model without a calibration gives hits without a probability, and nothing is cut: the
answer says so (``calibrated`` false) rather than inventing a scale.
"""

from __future__ import annotations

import logging

import numpy as np

from indexer.store import StoredPoint
from multimodal.calibration import Calibration, direction, find_calibration
from multimodal.encoder import model_stamp

# benchmarks/calibration.py on Recipes5k val: the cut that keeps results for >= 95% of val
# queries and answers "no good match" to >= 90% of out-of-domain photos and texts.
DEFAULT_MIN_SCORE = 0.15

log = logging.getLogger(__name__)


class Judge:
    """A searcher's calibration, applied (see the module). ``calibration``: a given one
    (tests, the benchmark), else the model's own (:func:`find_calibration`)."""

    def __init__(self, searcher, calibration: Calibration | None = None):
        self.searcher = searcher
        if calibration is None:
            encoder = searcher.encoder
            calibration, path = find_calibration(encoder.info, model_stamp(encoder))
            if path is not None:
                log.info("match probabilities from %s", path)
        self.calibration = calibration

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def domain(self, prepared) -> float | None:
        """How usual the query is for the calibrated domain: the largest p-value of its
        positive photo and text terms (1 for a query made of stored points; None when not
        calibrated)."""
        if self.calibration is None:
            return None
        if not prepared.encoded:
            return 1.0
        return max(
            float(self.calibration.domain_of(kind, vector[None], [length])[0])
            for kind, vector, length in prepared.encoded
        )

    def annotate(
        self, hits: list[StoredPoint], prepared, target: str, mode: str, domain: float | None
    ) -> None:
        """Set each hit's ``probability`` (left None when not calibrated), from its cosine
        similarity to the query's vector in ``target`` space, whatever ranked it."""
        if self.calibration is None or not hits or domain is None:
            return
        vectors = self.searcher.point_vectors([hit.id for hit in hits], target)
        cosines = np.stack(vectors) @ prepared.vector
        key = direction(prepared.kind, target, mode)
        probabilities = self.calibration.probability(key, cosines, domain)
        if probabilities is None:
            return
        for hit, probability in zip(hits, probabilities, strict=True):
            hit.probability = round(float(probability), 4)


def cut(
    hits: list[StoredPoint], min_score: float | None
) -> tuple[list[StoredPoint], StoredPoint | None]:
    """The hits whose probability reaches ``min_score`` (all when either is None), and when
    none does, the most probable one as the near miss."""
    if min_score is None or not hits or hits[0].probability is None:
        return hits, None
    kept = [hit for hit in hits if hit.probability >= min_score]
    if kept:
        return kept, None
    return [], max(hits, key=lambda hit: hit.probability)
