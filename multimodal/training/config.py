"""Training configuration: one typed dataclass, written to the run folder.

Each field's help (its ``metadata["help"]``) is written once here; ``multimodal train`` shows
it for the field's flag, and ``metadata["choices"]`` limits a flag to a fixed set of values.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multimodal.loss import SAME_DISH
from multimodal.mining import DISH_CHOICES, STRATEGIES


def option(default: Any = dataclasses.MISSING, *, help: str, choices: tuple = ()) -> Any:
    """A configuration field with its help text (and its allowed values, when fixed)."""
    metadata = {"help": help, "choices": choices} if choices else {"help": help}
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    model: str = option(help="the model spec training starts from, e.g. recipe-starter")
    data: str = option(help="data set: a Recipes5k folder, a .csv/.jsonl manifest or a folder")
    out: str = option(help="run folder, e.g. runs/recipe")
    train_split: str | None = option(
        "train", help="split to train on, when the data set has splits (else all of it)"
    )
    val_split: str | None = option(
        "val", help="split to select on, when the data set has it (else no evaluation)"
    )
    epochs: int = option(10, help="passes over the training set")
    batch_size: int = option(64, help="pairs per batch, never two of one recipe")
    accumulate: int = option(1, help="batches per optimiser step")
    lr: float = option(1e-3, help="learning rate of the projection heads and temperature")
    backbone_lr: float = option(1e-5, help="learning rate of unlocked backbone layers")
    weight_decay: float = option(0.1, help="AdamW decay; not on biases, norms or temperature")
    warmup_steps: int = option(50, help="linear warm-up steps, then cosine decay to zero")
    grad_clip: float = option(1.0, help="max gradient norm (0: off)")
    lock_image: bool = option(True, help="freeze the image backbone (LiT); see --unlock-image")
    unlock_image_groups: int = option(0, help="train a locked image backbone's last N layer groups")
    lock_text: bool = option(True, help="freeze the text backbone; see --unlock-text")
    unlock_text_layers: int = option(0, help="train a locked text backbone's last N layers")
    unfreeze_every: int = option(
        0,
        help="gradual unfreezing: start with the heads only and unlock one more of the "
        "--unlock-image-groups every this many epochs (0: all of them from the start)",
    )
    layer_lr_decay: float = option(
        1.0,
        help="discriminative learning rates: each unlocked image group learns at this factor "
        "of the group above it (1: all at --backbone-lr)",
    )
    class_loss: float = option(
        0.0, help="weight of the dish-type classification loss on both towers' embeddings (0: off)"
    )
    ingredient_loss: float = option(
        0.0, help="weight of the multi-label base-ingredient loss on the photo embedding (0: off)"
    )
    same_dish: str = option(
        "negative",
        help="other recipes of a query's dish type in the batch: negatives, masked out, or soft "
        "targets sharing --soft-weight",
        choices=SAME_DISH,
    )
    soft_weight: float = option(0.1, help="target share of same-dish items with --same-dish soft")
    hard_negatives: int = option(
        0, help="mined negatives per item and direction (0: in-batch negatives only)"
    )
    mining_strategy: str = option(
        "hardest",
        help="hardest, semi-hard (below the positive) or random (within the window)",
        choices=STRATEGIES,
    )
    mining_window: int = option(50, help="random mining draws from this many top eligible ranks")
    mining_margin: float | None = option(
        0.05, help="skip items scoring above positive - margin (likely unlabelled positives)"
    )
    mining_dish: str = option(
        "any",
        help="mined negatives of any dish type, only other dish types, or only the same one",
        choices=DISH_CHOICES,
    )
    mine_every: int = option(1, help="mine again every M epochs")
    warmup_epochs: int = option(1, help="in-batch negatives only for these first epochs")
    augment: bool = option(True, help="random resized crop, flip, light colour jitter")
    augment_policy: str = option(
        "light",
        help="light: crops of 60-100%% of the photo, flip, colour jitter; strong: crops of "
        "35-100%%, flip, TrivialAugmentWide",
        choices=("light", "strong"),
    )
    cache_views: int = option(
        2,
        help="with a locked image backbone, cache its features for this many views of each "
        "photo (the first unaugmented) instead of running it every step (0: never cache)",
    )
    feature_cache: str | None = option(
        "runs/.feature-cache", help="folder that keeps cached features across runs ('': none)"
    )
    max_logit_scale: float = option(100.0, help="clamp of the learnable temperature's inverse")
    patience: int = option(
        3, help="stop after this many epochs without a better val score (0: never)"
    )
    seed: int = option(0, help="seeds the batch order, augmentation, cached views, mining")
    workers: int = option(2, help="image decoding processes")
    device: str | None = option(None, help="cuda or cpu (default: cuda if available)")
    max_steps: int = option(0, help="stop after this many optimiser steps (0: no limit)")
    marks: str | None = option(
        None, help="a file of Good / Not this marks or exported pairs to add to the training data"
    )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(path.read_text()))
