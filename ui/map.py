"""The map of the collection: a 2-D PCA of its image vectors, fitted once when the page starts,
with the query's position starred."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np

from indexer.search import Searcher
from indexer.store import SearchFilter

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAP_POINTS = 5000  # the map samples this many items at most


@dataclass
class MapProjection:
    """A 2-D PCA of the collection's image vectors, fitted once at start."""

    mean: np.ndarray
    axes: np.ndarray  # (2, D)
    xy: np.ndarray  # (N, 2)
    labels: list[str]

    @classmethod
    def fit(cls, searcher: Searcher, limit: int = MAP_POINTS) -> MapProjection | None:
        vectors, labels = [], []
        for record in searcher.store.scroll(
            searcher.collection, SearchFilter(has_vector="image"), ["label"], with_vectors=True
        ):
            vectors.append(record.vectors["image"])
            labels.append(record.payload.get("label") or "")
            if len(vectors) >= limit:
                break
        if len(vectors) < 3:
            return None
        matrix = np.asarray(vectors, np.float32)
        mean = matrix.mean(0)
        _, _, vt = np.linalg.svd(matrix - mean, full_matrices=False)
        axes = vt[:2]
        return cls(mean, axes, (matrix - mean) @ axes.T, labels)

    def project(self, vector: np.ndarray) -> np.ndarray:
        return (vector - self.mean) @ self.axes.T

    def figure(self, query: np.ndarray | None = None, title: str = ""):
        figure, axis = plt.subplots(figsize=(7, 5.5), dpi=90)
        names = sorted(set(self.labels))
        colour_of = {name: i for i, name in enumerate(names)}
        colours = [colour_of[label] for label in self.labels]
        axis.scatter(self.xy[:, 0], self.xy[:, 1], c=colours, cmap="tab20", s=6, alpha=0.55)
        if query is not None:
            x, y = self.project(query)
            axis.scatter([x], [y], marker="*", s=420, c="black", edgecolors="white", zorder=5)
            axis.annotate("your query", (x, y), xytext=(8, 8), textcoords="offset points")
        axis.set_title(title or f"{len(self.labels)} dishes, coloured by dish type (PCA)")
        axis.set_xticks([])
        axis.set_yticks([])
        figure.tight_layout()
        plt.close(figure)
        return figure
