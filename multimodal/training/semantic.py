"""The optional losses that teach the towers what a dish is, beside the contrastive one:
dish-type classification of both embeddings (im2recipe's semantic regularisation) and the
photo's base ingredients (multi-label). Their classifiers exist only during training: they are
saved with the run's state for resuming, not with the model.
"""

from __future__ import annotations

import torch
from torch import nn

from multimodal.loss import DishClassificationLoss, IngredientLoss
from multimodal.training.config import TrainConfig
from multimodal.training.data import TrainSet


class SemanticLosses(nn.Module):
    """``forward(image_features, text_features, anchors)`` -> ``(weighted sum, parts)``, the
    parts by name for the log; no parts when both weights are 0."""

    def __init__(self, config: TrainConfig, train_set: TrainSet, embed_dim: int):
        super().__init__()
        self.class_weight, self.ingredient_weight = config.class_loss, config.ingredient_loss
        self.dishes = torch.as_tensor(train_set.dishes)
        self.targets = torch.as_tensor(train_set.ingredients)
        with torch.random.fork_rng(devices=[]):  # the same classifiers for a seed, always
            torch.manual_seed(config.seed)
            self.dish = (
                DishClassificationLoss(embed_dim, len(train_set.dish_names))
                if config.class_loss > 0 and train_set.dish_names
                else None
            )
            self.ingredients = (
                IngredientLoss(embed_dim, len(train_set.vocabulary))
                if config.ingredient_loss > 0 and train_set.vocabulary
                else None
            )

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, anchors: list[int]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = image_features.new_zeros(()), {}
        device = image_features.device
        if self.dish is not None:
            loss = self.dish(image_features, text_features, self.dishes[anchors].to(device))
            total, parts["dish_loss"] = total + self.class_weight * loss, loss.item()
        if self.ingredients is not None:
            loss = self.ingredients(image_features, self.targets[anchors].to(device))
            total, parts["ingredient_loss"] = total + self.ingredient_weight * loss, loss.item()
        return total, parts
