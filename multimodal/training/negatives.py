"""When training mines hard negatives, and with what: the schedule around multimodal.mining.

The first ``warmup_epochs`` train on in-batch negatives only (a random model's neighbours are
noise); after them, the negatives are mined again every ``mine_every`` epochs with the model as
it is at that point.
"""

from __future__ import annotations

import numpy as np

from multimodal.mining import MiningConfig, mine_hard_negatives
from multimodal.training.config import TrainConfig


def mining_due(config: TrainConfig, epoch: int) -> bool:
    """Whether negatives are mined before ``epoch`` (0-based) starts."""
    if not config.hard_negatives or epoch < config.warmup_epochs:
        return False
    return (epoch - config.warmup_epochs) % config.mine_every == 0


def mining_config(config: TrainConfig) -> MiningConfig:
    """The mining settings of a training configuration (raises on a bad strategy)."""
    return MiningConfig(
        k=config.hard_negatives,
        strategy=config.mining_strategy,
        window=max(config.mining_window, config.hard_negatives),
        margin=config.mining_margin,
        dish=config.mining_dish,
    )


def mine_both_ways(
    images: np.ndarray,
    texts: np.ndarray,
    groups: np.ndarray,
    mining: MiningConfig,
    seed: int,
    dishes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(hard texts of each image, hard images of each text)``, each ``(N, k)``, -1 for none."""
    hard_texts = mine_hard_negatives(images, texts, groups, mining, seed, dishes)
    hard_images = mine_hard_negatives(texts, images, groups, mining, seed, dishes)
    return hard_texts, hard_images
