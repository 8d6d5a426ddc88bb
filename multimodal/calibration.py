"""Scores that mean something: a hit's match probability, and whether a query is in the
domain the model was calibrated on at all.

A :class:`Calibration` belongs to one model (its stamp) and is fitted on a labelled collection
(``multimodal calibrate``; for Recipes5k, relevant means "the query's dish type"):

- ``relevance``: for each direction and mode ("text->image/hybrid", ...), an isotonic curve
  (scikit-learn) from a hit's cosine similarity to the query to the share of such hits that
  were relevant;
- ``domain``: for each query kind ("text", "image"), how unusual a query is against the
  calibration queries: the Mahalanobis distance of its unit vector from a Gaussian of the
  collection's vectors (Ledoit-Wolf shrinkage) and the length of its embedding before
  normalisation (a photo tower maps anything into its space, but noise and drawings come out
  longer), each turned into a p-value against held-out in-domain queries and combined by
  Fisher's method. The result is the share of in-domain queries that look at least as
  unusual: near 0 for a query from elsewhere.

A hit's probability is its relevance scaled down when the query is out of domain:
``relevance * min(1, domain / DOMAIN_ALPHA) ** DOMAIN_POWER``.

    >>> calibration = Calibration.load(path)
    >>> calibration.probability("text->image/dense", cosines, domain=0.4)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from multimodal.paths import data_home

FILE = "calibration.npz"
# A query whose domain p-value is below this is out of domain: its hits' probabilities shrink
# fast (benchmarks/calibration.py: 5% of in-domain queries fall below it, by construction).
DOMAIN_ALPHA = 0.05
DOMAIN_POWER = 2  # how fast probabilities fall below DOMAIN_ALPHA
KINDS = ("text", "image")
DOMAIN_ARRAYS = ("mean", "precision", "distances", "norms", "fisher")
FLOOR = 1e-3  # the smallest p-value a reference of ~1,000 queries can tell apart


def direction(kind: str, target: str, mode: str) -> str:
    """The key of a relevance curve: "image->text/dense"."""
    return f"{kind}->{target}/{mode}"


@dataclass
class Curve:
    """A monotone map from a score to a probability (an isotonic fit's breakpoints)."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, scores) -> np.ndarray:
        return np.interp(np.asarray(scores, np.float64), self.x, self.y)

    @classmethod
    def fit(cls, scores, relevant) -> Curve:
        """The isotonic regression of ``relevant`` (0/1) on ``scores``."""
        from sklearn.isotonic import IsotonicRegression  # a fitted curve needs no sklearn

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        fitted.fit(np.asarray(scores, np.float64), np.asarray(relevant, np.float64))
        return cls(fitted.X_thresholds_.astype(np.float32), fitted.y_thresholds_.astype(np.float32))


@dataclass
class Domain:
    """Where a kind of query usually lies (see the module): a Gaussian of the collection's
    vectors, and sorted reference values of held-out in-domain queries."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    distances: np.ndarray  # reference Mahalanobis distances, sorted
    norms: np.ndarray  # reference embedding lengths, sorted
    fisher: np.ndarray  # reference Fisher statistics, sorted

    @classmethod
    def fit(cls, gallery: np.ndarray, queries: np.ndarray, norms: np.ndarray) -> Domain:
        """From the collection's unit vectors (``gallery``) and in-domain queries' unit
        vectors and lengths, which must not be among the gallery's."""
        from sklearn.covariance import LedoitWolf  # the shrunk estimate: D may near N

        gaussian = LedoitWolf().fit(np.asarray(gallery, np.float64))
        domain = cls(
            gaussian.location_.astype(np.float32),
            gaussian.precision_.astype(np.float32),
            np.empty(0, np.float32),
            np.sort(np.asarray(norms, np.float32)),
            np.empty(0, np.float32),
        )
        domain.distances = np.sort(domain.distance(queries))
        domain.fisher = np.sort(domain._fisher(queries, norms))
        return domain

    def distance(self, vectors) -> np.ndarray:
        centred = np.atleast_2d(np.asarray(vectors, np.float32)) - self.mean
        return np.einsum("ij,jk,ik->i", centred, self.precision, centred)

    def p_value(self, vectors, norms) -> np.ndarray:
        """For each query, the share of in-domain queries at least as unusual (0 to 1)."""
        return _share_at_least(self.fisher, self._fisher(vectors, norms))

    def _fisher(self, vectors, norms) -> np.ndarray:
        far = _share_at_least(self.distances, self.distance(vectors))
        long = _share_at_least(self.norms, np.atleast_1d(np.asarray(norms, np.float32)))
        return -2.0 * (np.log(np.maximum(far, FLOOR)) + np.log(np.maximum(long, FLOOR)))


def _share_at_least(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The share of ``reference`` (sorted) at or above each value: an upper-tail p-value."""
    if not len(reference):
        return np.ones(len(values))
    below = np.searchsorted(reference, values, side="left")
    return (len(reference) - below) / len(reference)


@dataclass
class Calibration:
    """A model's relevance curves and query domains (see the module)."""

    model: dict[str, Any]  # the model stamp it was fitted for (name, arch, weights_sha256)
    relevance: dict[str, Curve] = field(default_factory=dict)
    domain: dict[str, Domain] = field(default_factory=dict)
    fitted_on: dict[str, Any] = field(default_factory=dict)  # collection, field, split, counts
    alpha: float = DOMAIN_ALPHA

    def fits(self, stamp: dict[str, Any]) -> bool:
        """Whether it was fitted for the model ``stamp`` describes (TTA aside)."""
        keys = ("arch", "weights_sha256")
        return all(self.model.get(k) == stamp.get(k) for k in keys) and (
            stamp.get("weights_sha256") is not None or self.model.get("name") == stamp.get("name")
        )

    def relevance_of(self, key: str, cosines) -> np.ndarray | None:
        """The calibrated relevance of hits at ``cosines``, or None without a curve for
        ``key``; a mode without its own curve uses the dense one of its direction."""
        curve = self.relevance.get(key) or self.relevance.get(key.rsplit("/", 1)[0] + "/dense")
        return None if curve is None else curve(cosines)

    def domain_of(self, kind: str, vectors, norms) -> np.ndarray:
        """Each query's domain p-value (1 where the kind was not calibrated)."""
        found = self.domain.get(kind)
        if found is None:
            return np.ones(len(np.atleast_2d(vectors)))
        return found.p_value(vectors, norms)

    def probability(self, key: str, cosines, domain=1.0) -> np.ndarray | None:
        """The match probability of hits at ``cosines`` for queries of domain p-value
        ``domain`` (one, or one per hit): see the module. None without a curve."""
        relevance = self.relevance_of(key, cosines)
        if relevance is None:
            return None
        return relevance * self.in_domain(domain)

    def in_domain(self, domain) -> np.ndarray:
        """The factor a query's domain p-value puts on its hits' probabilities: 1 from
        ``alpha`` up, falling as the square of ``domain / alpha`` below."""
        return np.minimum(1.0, np.asarray(domain, np.float64) / self.alpha) ** DOMAIN_POWER

    # -- files ---------------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        arrays: dict[str, np.ndarray] = {}
        for key, curve in self.relevance.items():
            arrays[f"relevance|{key}|x"], arrays[f"relevance|{key}|y"] = curve.x, curve.y
        for kind, domain in self.domain.items():
            for name in DOMAIN_ARRAYS:
                arrays[f"domain|{kind}|{name}"] = getattr(domain, name)
        header = {"model": self.model, "fitted_on": self.fitted_on, "alpha": self.alpha}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        np.savez_compressed(partial, **arrays)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read a calibration file; ValueError with the path when it is not one."""
        try:
            with np.load(Path(path), allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            header = json.loads(arrays.pop("header").tobytes().decode())
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is not a calibration file ({err})") from None
        relevance, domains = {}, {}
        for name in arrays:
            part, key, what = name.split("|")
            if part == "relevance" and what == "x":
                relevance[key] = Curve(arrays[name], arrays[f"relevance|{key}|y"])
            elif part == "domain" and what == "mean":
                domains[key] = Domain(*(arrays[f"domain|{key}|{n}"] for n in DOMAIN_ARRAYS))
        return cls(header["model"], relevance, domains, header["fitted_on"], header["alpha"])


def model_folder(info) -> Path | None:
    """The folder a model's files live in: a checkpoint folder, or a shipped model's."""
    from multimodal.builtin import BUILTIN_MODELS

    if info.kind == "checkpoint":
        return Path(info.spec).expanduser().resolve()
    builtin = BUILTIN_MODELS.get(info.spec) if info.kind == "builtin" else None
    return None if builtin is None else builtin.shipped


def home_path(stamp: dict[str, Any]) -> Path:
    """Where ``multimodal calibrate`` writes a model's calibration by default."""
    identity = {k: stamp.get(k) for k in ("name", "arch", "weights_sha256")}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return data_home() / "calibration" / f"{key}.npz"


def find_calibration(info, stamp: dict[str, Any]) -> tuple[Calibration | None, Path | None]:
    """The calibration of the model ``stamp`` describes: the user's own (``home_path``),
    else the one in the model's folder (a shipped model ships with its own); (None, None)
    when there is none, or it was fitted for other weights."""
    folder = model_folder(info)
    for path in (home_path(stamp), folder / FILE if folder else None):
        if path is not None and path.is_file():
            calibration = Calibration.load(path)
            if calibration.fits(stamp):
                return calibration, path
    return None, None


def expected_calibration_error(probability, relevant, bins: int = 10) -> float:
    """The mean gap between predicted probability and observed frequency over equal-width
    bins, weighted by how many predictions each holds."""
    probability = np.asarray(probability, np.float64)
    relevant = np.asarray(relevant, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(probability[inside].mean() - relevant[inside].mean())
    return float(error)


def reliability(probability, relevant, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed frequency, count) of each non-empty bin."""
    probability = np.asarray(probability, np.float64)
    relevant = np.asarray(relevant, np.float64)
    which = np.clip((probability * bins).astype(int), 0, bins - 1)
    return [
        (float(probability[which == b].mean()), float(relevant[which == b].mean()), int(n))
        for b in range(bins)
        if (n := int((which == b).sum()))
    ]
