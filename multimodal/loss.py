"""The training losses: symmetric InfoNCE with mined hard negatives, false-negative masking and
same-dish handling; and the semantic losses that teach the towers what a dish is.

For image i the candidates are every text in the batch plus every mined hard text of the batch
(sentence-transformers' MultipleNegativesRankingLoss: concatenate, labels are ``arange(B)``);
the same holds for text i over images. A candidate that is really a positive of the query (same
recipe, or a near-identical text) is masked with ``-inf`` (GISTEmbedLoss); the true pair is
never masked. A candidate of the query's dish type (another recipe of "apple pie") is, by
``same_dish``, a negative like any other, masked, or given a share of the target (soft).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAME_DISH = ("negative", "mask", "soft")


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
    negatives (see :func:`false_negative_mask`); ``dishes`` ``(B,)`` and ``hard_text_dishes`` /
    ``hard_image_dishes`` ``(M,)`` are dish-type ids (-1: unknown) for ``same_dish``:

    - ``negative``: other recipes of the query's dish are negatives like any other;
    - ``mask``: they are left out of the query's candidates;
    - ``soft``: the target puts ``1 - soft_weight`` on the true pair and shares ``soft_weight``
      among them (all of it on the true pair when there are none).
    """

    def __init__(self, same_dish: str = "negative", soft_weight: float = 0.1):
        super().__init__()
        if same_dish not in SAME_DISH:
            raise ValueError(f"same_dish must be one of {', '.join(SAME_DISH)}, not {same_dish!r}")
        if not 0.0 <= soft_weight < 1.0:
            raise ValueError(f"soft_weight must be in [0, 1), not {soft_weight}")
        self.same_dish, self.soft_weight = same_dish, soft_weight

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
        dishes: torch.Tensor | None = None,
        hard_text_dishes: torch.Tensor | None = None,
        hard_image_dishes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        image_to_text = self._direction(
            image_features,
            text_features,
            logit_scale,
            hard_texts,
            (groups, hard_text_groups),
            (dishes, hard_text_dishes),
        )
        text_to_image = self._direction(
            text_features,
            image_features,
            logit_scale,
            hard_images,
            (groups, hard_image_groups),
            (dishes, hard_image_dishes),
        )
        return (image_to_text + text_to_image) / 2

    def _direction(self, queries, positives, logit_scale, hard, group_pair, dish_pair):
        batch = queries.shape[0]
        diagonal = torch.arange(batch, device=queries.device)
        candidates = positives if hard is None else torch.cat([positives, hard])
        logits = logit_scale * queries @ candidates.T
        hidden = torch.zeros_like(logits, dtype=torch.bool)
        if group_pair[0] is not None:
            hidden |= false_negative_mask(group_pair[0], _joined(*group_pair, hard))
        same_dish = None
        if dish_pair[0] is not None and self.same_dish != "negative":
            dishes = dish_pair[0]
            same_dish = (dishes[:, None] == _joined(*dish_pair, hard)[None, :]) & (
                dishes[:, None] >= 0
            )
            same_dish[diagonal, diagonal] = False
            same_dish &= ~hidden
            if self.same_dish == "mask":
                hidden |= same_dish
        hidden[diagonal, diagonal] = False  # never hide the true pair
        logits = logits.masked_fill(hidden, float("-inf"))
        if self.same_dish != "soft" or same_dish is None:
            return F.cross_entropy(logits, diagonal)
        return soft_cross_entropy(logits, soft_targets(same_dish, self.soft_weight))


def _joined(batch_values, hard_values, hard):
    return batch_values if hard is None else torch.cat([batch_values, hard_values])


def soft_targets(same_dish: torch.Tensor, weight: float) -> torch.Tensor:
    """``(Q, C)`` targets: ``1 - weight`` on the true pair (column q of row q), ``weight``
    shared by row q's same-dish candidates; a row without any keeps 1 on the true pair."""
    count = same_dish.sum(dim=1, keepdim=True)
    shares = same_dish.float() * (weight / count.clamp(min=1))
    rows = torch.arange(len(same_dish), device=same_dish.device)
    shares[rows, rows] = torch.where(count[:, 0] > 0, 1.0 - weight, 1.0)
    return shares


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-sum(targets * log_softmax(logits))``; a hidden (``-inf``) logit
    has no target and adds nothing."""
    log_probs = F.log_softmax(logits, dim=1)
    terms = torch.where(targets > 0, targets * log_probs, torch.zeros_like(log_probs))
    return -terms.sum(dim=1).mean()


class DishClassificationLoss(nn.Module):
    """Semantic regularisation (im2recipe): one linear classifier, shared by both towers,
    predicts the dish type from the L2-normalised embedding of the photo and of the text.

    ``forward(image_features, text_features, dishes)`` -> the mean of the two cross-entropies;
    items of unknown dish (-1) are left out.
    """

    def __init__(self, embed_dim: int, num_dishes: int):
        super().__init__()
        self.classifier = nn.Linear(embed_dim, num_dishes)

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, dishes: torch.Tensor
    ) -> torch.Tensor:
        if not bool((dishes >= 0).any()):
            return image_features.sum() * 0.0
        image_loss = F.cross_entropy(self.classifier(image_features), dishes, ignore_index=-1)
        text_loss = F.cross_entropy(self.classifier(text_features), dishes, ignore_index=-1)
        return (image_loss + text_loss) / 2


class IngredientLoss(nn.Module):
    """Multi-label ingredients from the photo: a linear layer over the L2-normalised image
    embedding, one logit per base ingredient of the vocabulary, binary cross-entropy against
    the photo's own ingredients (``targets`` ``(B, V)`` of 0/1). Items whose recipe lists no
    ingredient of the vocabulary are left out.
    """

    def __init__(self, embed_dim: int, vocabulary_size: int):
        super().__init__()
        self.classifier = nn.Linear(embed_dim, vocabulary_size)

    def forward(self, image_features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = targets.sum(dim=1) > 0
        if not bool(known.any()):
            return image_features.sum() * 0.0
        logits = self.classifier(image_features[known])
        return F.binary_cross_entropy_with_logits(logits, targets[known].float())
