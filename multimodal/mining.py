"""Hard-negative mining: a pure step from embeddings to negative indices.

For query i (say image i) the positive is gallery item i (text i). A gallery item is eligible as
a negative when it is not the positive, shares no group with the query (same recipe, identical
text) and scores at most ``positive - margin``: items scoring about as high as the positive are
likely unlabelled positives, so they are skipped. From the eligible items, ranked by score:

- ``hardest``: the top k;
- ``semi-hard``: the top k of those scoring below the positive;
- ``random``: k drawn at random from the top ``window``.

With dish types given, ``dish`` narrows the eligible items further: ``other`` keeps only items of
another dish type than the query's (the negatives a dish recogniser must learn), ``same`` only
items of the query's own (the fine distinctions between recipes of one dish).

Scores are computed a chunk of queries at a time, so memory is ``chunk_size x N``, never N x N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multimodal.loss import false_negative_mask

STRATEGIES = ("hardest", "semi-hard", "random")
DISH_CHOICES = ("any", "other", "same")


@dataclass(frozen=True)
class MiningConfig:
    k: int = 4  # negatives per item
    strategy: str = "hardest"  # hardest, semi-hard or random (within the window)
    window: int = 50  # random: draw from this many top eligible ranks
    margin: float | None = 0.05  # skip items scoring above positive - margin; None: keep all
    chunk_size: int = 1024  # queries scored at once
    dish: str = "any"  # any, other (dish type than the query's) or same (dish type only)

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"mining strategy must be one of {', '.join(STRATEGIES)}")
        if self.dish not in DISH_CHOICES:
            raise ValueError(f"mining dish must be one of {', '.join(DISH_CHOICES)}")
        if self.k < 1 or self.window < self.k:
            raise ValueError("mining needs k >= 1 and window >= k")


def eligible_scores(
    scores: torch.Tensor,
    rows: torch.Tensor,
    groups: torch.Tensor | None,
    config: MiningConfig,
    dishes: torch.Tensor | None = None,
) -> torch.Tensor:
    """``scores`` (Q, N) of queries ``rows`` with ineligible items set to ``-inf``; ``dishes``
    (N,) dish-type ids (-1: unknown, never of the same dish) for ``config.dish``."""
    scores = scores.clone()
    local = torch.arange(len(rows))
    positive = scores[local, rows].clone()
    if groups is not None:
        scores[false_negative_mask(groups[rows], groups)] = float("-inf")
    if config.margin is not None:
        scores[scores > (positive - config.margin)[:, None]] = float("-inf")
    if config.strategy == "semi-hard":
        scores[scores >= positive[:, None]] = float("-inf")
    if dishes is not None and config.dish != "any":
        same = (dishes[rows][:, None] == dishes[None, :]) & (dishes[rows][:, None] >= 0)
        scores[same if config.dish == "other" else ~same] = float("-inf")
    scores[local, rows] = float("-inf")
    return scores


def pick_negatives(
    scores: torch.Tensor, config: MiningConfig, generator: torch.Generator
) -> torch.Tensor:
    """(Q, k) gallery indices from eligibility-masked scores; -1 where too few are eligible."""
    depth = min(config.window if config.strategy == "random" else config.k, scores.shape[1])
    top_scores, top_indices = scores.topk(depth, dim=1)
    top_indices[torch.isinf(top_scores)] = -1
    if config.strategy != "random":
        return top_indices[:, : config.k]
    picked = torch.full((len(scores), config.k), -1, dtype=torch.long)
    for row, (indices, valid) in enumerate(zip(top_indices, top_indices >= 0, strict=True)):
        pool = indices[valid]
        order = torch.randperm(len(pool), generator=generator)[: config.k]
        picked[row, : len(order)] = pool[order]
    return picked


def mine_hard_negatives(
    queries: np.ndarray,
    gallery: np.ndarray,
    groups: np.ndarray | None = None,
    config: MiningConfig | None = None,
    seed: int = 0,
    dishes: np.ndarray | None = None,
) -> np.ndarray:
    """``(N, k)`` indices into ``gallery`` of hard negatives for each query; -1 marks a slot
    left empty because too few items were eligible.

    ``queries[i]`` pairs with ``gallery[i]``; ``groups`` ``(N, G)`` ids mark items that must not
    be negatives of each other (-1: no group); ``dishes`` ``(N,)`` dish-type ids, used by
    ``config.dish``.
    """
    config = config or MiningConfig()
    if len(queries) != len(gallery):
        raise ValueError("mining needs paired queries and gallery of equal length")
    query_t = torch.as_tensor(queries, dtype=torch.float32)
    gallery_t = torch.as_tensor(gallery, dtype=torch.float32)
    groups_t = None if groups is None else torch.as_tensor(groups, dtype=torch.long)
    dishes_t = None if dishes is None else torch.as_tensor(dishes, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, len(query_t), config.chunk_size):
        rows = torch.arange(start, min(start + config.chunk_size, len(query_t)))
        scores = query_t[rows] @ gallery_t.T
        scores = eligible_scores(scores, rows, groups_t, config, dishes_t)
        parts.append(pick_negatives(scores, config, generator))
    if not parts:
        return np.zeros((0, config.k), dtype=np.int64)
    return torch.cat(parts).numpy()
