"""What a training run keeps in its folder, and how it is written.

- ``train_config.json``: the configuration, so ``--resume`` needs nothing else;
- ``state.pt``: everything resume needs, as of the last optimiser step;
- ``log.jsonl``: one line per optimiser step and per epoch; ``curves.png`` draws it;
- ``last/`` and ``best/``: checkpoint folders (multimodal/checkpoint.py) of the last epoch and
  of the best one on val.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from multimodal.checkpoint import save_checkpoint
from multimodal.factory import LoadedModel
from multimodal.files import atomic_path
from multimodal.training.config import TrainConfig
from multimodal.training.report import plot_curves

CONFIG_FILE = "train_config.json"
STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"
CURVES_FILE = "curves.png"


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch consumed, at an optimiser-step boundary
    step: int = 0  # optimiser steps taken
    best_score: float = float("-inf")  # best mean of R@1 both ways so far
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since the best one
    history: list = field(default_factory=list)  # one summary per finished epoch


class RunFolder:
    """The files of one training run.

    >>> RunFolder("runs/recipe").log({"type": "step", "step": 1})  # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def start(self, config: TrainConfig) -> None:
        """Create the folder and write the configuration."""
        self.path.mkdir(parents=True, exist_ok=True)
        config.save(self.path / CONFIG_FILE)

    def log(self, record: dict) -> None:
        """Append one record to ``log.jsonl``."""
        with open(self.path / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def plot(self) -> None:
        """Redraw ``curves.png`` from the log."""
        plot_curves(self.path / LOG_FILE, self.path / CURVES_FILE)

    def save_model(
        self,
        name: str,
        model: nn.Module,
        loaded: LoadedModel,
        config: TrainConfig,
        state: TrainState,
    ) -> None:
        """A checkpoint folder ``name`` (last, best) with the run's provenance."""
        info = loaded.info
        save_checkpoint(
            self.path / name,
            model,
            arch=info.arch,
            model_cfg=info.model_cfg,
            preprocess_cfg=info.preprocess_cfg,
            tokenizer=loaded.tokenizer,
            provenance={
                "made_by": "multimodal train",
                "base_model": config.model,
                "epoch": state.epoch + 1,
                "step": state.step,
                "val": state.history[-1]["metrics"] if state.history else None,
                "train_config": dataclasses.asdict(config),
            },
        )

    def save_state(self, payload: dict) -> None:
        """Write ``state.pt`` atomically: an interrupted write leaves the previous one."""
        with atomic_path(self.path / STATE_FILE) as staging:
            torch.save(payload, staging)

    def load_state(self, device: torch.device) -> dict:
        """Read ``state.pt``; a folder without one is not a run to resume."""
        path = self.path / STATE_FILE
        if not path.is_file():
            raise ValueError(f"{self.path} has no {STATE_FILE}: not a run folder to resume")
        return torch.load(path, map_location=device, weights_only=False)
