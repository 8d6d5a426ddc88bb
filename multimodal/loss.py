"""Symmetric InfoNCE with mined hard negatives and false-negative masking.

For image i the candidates are every text in the batch plus every mined hard text of the batch
(sentence-transformers' MultipleNegativesRankingLoss: concatenate, labels are ``arange(B)``);
the same holds for text i over images. A candidate that is really a positive of the query (same
recipe, or a near-identical text) is masked with ``-inf`` (GISTEmbedLoss); the true pair is
never masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def false_negative_mask(query_groups: torch.Tensor, candidate_groups: torch.Tensor) -> torch.Tensor:
    """``(Q, C)`` True where a candidate shares any group with the query.

    ``*_groups`` are ``(N, G)`` integer ids, one column per grouping (the recipe, a key of the
    normalised text, ...); ``-1`` means "in no group" and never matches.
    """
    same = query_groups[:, None, :] == candidate_groups[None, :, :]
    same &= query_groups[:, None, :] >= 0
    return same.any(dim=-1)


class ContrastiveLoss(nn.Module):
    """``forward(image_features, text_features, logit_scale, ...)`` -> scalar loss.

    Features are L2-normalised ``(B, D)``; pair i is (image i, text i). Optional:
    ``hard_texts`` ``(M, D)`` and ``hard_images`` ``(M, D)`` join the candidates of every query;
    ``groups`` ``(B, G)`` and ``hard_text_groups`` / ``hard_image_groups`` ``(M, G)`` mark false
    negatives (see :func:`false_negative_mask`).
    """

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: torch.Tensor,
        hard_texts: torch.Tensor | None = None,
        hard_images: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
        hard_text_groups: torch.Tensor | None = None,
        hard_image_groups: torch.Tensor | None = None,
    ) -> torch.Tensor:
        image_to_text = self._direction(
            image_features, text_features, logit_scale, hard_texts, groups, hard_text_groups
        )
        text_to_image = self._direction(
            text_features, image_features, logit_scale, hard_images, groups, hard_image_groups
        )
        return (image_to_text + text_to_image) / 2

    def _direction(self, queries, positives, logit_scale, hard, groups, hard_groups):
        batch = queries.shape[0]
        candidates = positives if hard is None else torch.cat([positives, hard])
        logits = logit_scale * queries @ candidates.T
        if groups is not None:
            candidate_groups = groups if hard is None else torch.cat([groups, hard_groups])
            mask = false_negative_mask(groups, candidate_groups)
            mask[torch.arange(batch), torch.arange(batch)] = False  # never hide the true pair
            logits = logits.masked_fill(mask, float("-inf"))
        labels = torch.arange(batch, device=queries.device)
        return F.cross_entropy(logits, labels)
