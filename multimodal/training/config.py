"""Training configuration: one typed dataclass, written to the run folder."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    model: str  # the model spec training starts from
    data: str  # data set path (see multimodal.data.read_records)
    out: str  # run folder
    train_split: str | None = "train"  # split to train on (None: all records)
    val_split: str | None = "val"  # split to select on (None: no evaluation)
    epochs: int = 10  # passes over the training set
    batch_size: int = 64  # pairs per optimiser step (before accumulation)
    accumulate: int = 1  # batches per optimiser step
    lr: float = 1e-3  # projection heads and temperature
    backbone_lr: float = 1e-5  # unlocked backbone layers
    weight_decay: float = 0.1  # not on biases, norms or the temperature
    warmup_steps: int = 50  # linear warm-up, then cosine decay to zero
    grad_clip: float = 1.0  # max gradient norm (0: off)
    lock_image: bool = True  # freeze the image backbone (LiT)...
    unlock_image_groups: int = 0  # ...except its last N layer groups
    lock_text: bool = True  # freeze the text backbone...
    unlock_text_layers: int = 0  # ...except its last N layers
    hard_negatives: int = 0  # mined negatives per item and direction (0: in-batch only)
    mining_strategy: str = "hardest"  # hardest, semi-hard or random (within the window)
    mining_window: int = 50  # random: draw from this many top eligible ranks
    mining_margin: float | None = 0.05  # skip items scoring above positive - margin
    mine_every: int = 1  # re-mine every M epochs
    warmup_epochs: int = 1  # in-batch only for these first epochs
    augment: bool = True  # random resized crop, flip, light colour jitter
    cache_views: int = 2  # locked image backbone: cache its features for this many views of
    # each photo (the first unaugmented) instead of running it every step (0: never cache)
    feature_cache: str | None = "runs/.feature-cache"  # reuse cached features across runs
    max_logit_scale: float = 100.0  # clamp of the learnable temperature's inverse
    patience: int = 3  # stop after this many epochs without a better val score (0: never)
    seed: int = 0  # everything random derives from it
    workers: int = 2  # image decoding processes
    device: str | None = None  # cuda or cpu (default: cuda if available)
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls(**json.loads(path.read_text()))
