"""Cross-modal retrieval metrics on paired embeddings (image i belongs with text i).

Ranks are 1-based; a gallery item that ties with the true one does not push it down (the
rank is 1 + the number of items scored strictly higher). Recalls are percentages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DIRECTIONS = ("image_to_text", "text_to_image")
DEFAULT_KS = (1, 5, 10)


def pair_ranks(queries: np.ndarray, gallery: np.ndarray, chunk_size: int = 1024) -> np.ndarray:
    """Rank of ``gallery[i]`` among all of ``gallery`` for ``queries[i]``, by dot product."""
    if len(queries) != len(gallery):
        raise ValueError(f"{len(queries)} queries but {len(gallery)} gallery items: not paired")
    ranks = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk_size):
        stop = min(start + chunk_size, len(queries))
        scores = queries[start:stop] @ gallery.T
        true_scores = scores[np.arange(stop - start), np.arange(start, stop)]
        ranks[start:stop] = 1 + (scores > true_scores[:, None]).sum(axis=1)
    return ranks


def top1(queries: np.ndarray, gallery: np.ndarray, chunk_size: int = 1024) -> np.ndarray:
    """Index of the best gallery item for each query."""
    return np.concatenate(
        [
            (queries[start : start + chunk_size] @ gallery.T).argmax(axis=1)
            for start in range(0, len(queries), chunk_size)
        ]
    )


def rank_summary(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """R@k (percent), median rank and mean rank."""
    summary = {f"R@{k}": 100.0 * float(np.mean(ranks <= k)) for k in ks}
    summary["MedR"] = float(np.median(ranks))
    summary["MeanR"] = float(np.mean(ranks))
    return summary


def direction_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    labels: Sequence | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Metrics of one direction; with ``labels``, also ``class@1``: the percentage of queries
    whose top-1 result has the query's class."""
    metrics = rank_summary(pair_ranks(queries, gallery), ks)
    if labels is not None:
        labels = np.asarray(labels)
        metrics["class@1"] = 100.0 * float(np.mean(labels[top1(queries, gallery)] == labels))
    return metrics


def retrieval_metrics(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    labels: Sequence | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """Both directions on all N pairs.

    >>> import numpy as np
    >>> e = np.eye(3, dtype=np.float32)
    >>> retrieval_metrics(e, e)["image_to_text"]["R@1"]
    100.0
    """
    return {
        "image_to_text": direction_metrics(image_embeddings, text_embeddings, labels, ks),
        "text_to_image": direction_metrics(text_embeddings, image_embeddings, labels, ks),
    }


def bag_metrics(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    labels: Sequence | None = None,
    bags: int = 10,
    bag_size: int = 1000,
    seed: int = 0,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[str, float]]:
    """The Recipe1M protocol: the mean over ``bags`` seeded random subsets of ``bag_size``
    pairs (1k: 10 bags of 1,000). Each direction also gets ``<metric>_std`` over the bags."""
    n = len(image_embeddings)
    if bag_size > n:
        raise ValueError(f"bag size {bag_size} is larger than the {n} pairs: use --bag-size {n}")
    if bags < 1:
        raise ValueError("need at least one bag")
    rng = np.random.default_rng(seed)
    labels = None if labels is None else np.asarray(labels)
    per_bag = []
    for _ in range(bags):
        chosen = rng.choice(n, size=bag_size, replace=False)
        per_bag.append(
            retrieval_metrics(
                image_embeddings[chosen],
                text_embeddings[chosen],
                None if labels is None else labels[chosen],
                ks,
            )
        )
    return {
        direction: _mean_and_std([bag[direction] for bag in per_bag]) for direction in DIRECTIONS
    }


def _mean_and_std(rows: list[dict[str, float]]) -> dict[str, float]:
    summary = {}
    for key in rows[0]:
        values = np.array([row[key] for row in rows])
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    return summary


def format_table(metrics: dict[str, dict[str, float]], title: str = "") -> str:
    """A fixed-width table of both directions."""
    keys = [k for k in metrics["image_to_text"] if not k.endswith("_std")]
    header = f"{'direction':<15}" + "".join(f"{k:>9}" for k in keys)
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for direction in DIRECTIONS:
        row = metrics[direction]
        lines.append(f"{direction:<15}" + "".join(f"{row[k]:>9.2f}" for k in keys))
    return "\n".join(lines)
