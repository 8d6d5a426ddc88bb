"""The training run: epochs of multimodal.training.train, mining when due, selection on val,
checkpoints, and exact resume after Ctrl-C."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from multimodal.data.readers import dataset_splits, read_records
from multimodal.data.records import Record
from multimodal.encoder import DualEncoder
from multimodal.factory import LoadedModel, create_model_and_transforms
from multimodal.loss import ContrastiveLoss
from multimodal.training.cache import load_or_build_feature_cache, tower_splits
from multimodal.training.config import TrainConfig
from multimodal.training.data import TrainSet, build_train_data, build_train_set, train_transform
from multimodal.training.features import TrainFeatures
from multimodal.training.marks import marked_negatives, marked_records, run_pairs
from multimodal.training.negatives import mine_both_ways, mining_config, mining_due
from multimodal.training.optim import (
    apply_unfreezing,
    build_optimizer,
    configure_towers,
    cosine_with_warmup,
    set_train_mode,
)
from multimodal.training.persistence import RunFolder, TrainState
from multimodal.training.semantic import SemanticLosses
from multimodal.training.train import epoch_score, evaluate, train_one_epoch


class Trainer:
    """Fine-tunes ``loaded`` on ``train_set``, selecting on ``val_records``; holds what lasts
    from one epoch to the next, and saves it to the run folder ``config.out``.

    >>> Trainer(config, loaded, train_set, val_records).run()  # doctest: +SKIP
    """

    def __init__(
        self,
        config: TrainConfig,
        loaded: LoadedModel,
        train_set: TrainSet,
        val_records: list[Record],
        on_step: Callable[[Trainer], None] | None = None,
        progress: bool = True,
    ):
        self.config, self.loaded, self.val_records = config, loaded, val_records
        self.on_step, self.progress = on_step, progress
        self.folder = RunFolder(config.out)
        self.encoder = DualEncoder(loaded, device=config.device)
        self.model, self.device = self.encoder.model, self.encoder.device
        configure_towers(self.model, config)
        self.semantic = SemanticLosses(config, train_set, self.encoder.embed_dim).to(self.device)
        self.optimizer = build_optimizer(self.model, config, self.semantic)
        augment = config.augment
        transform = (
            train_transform(loaded.info.preprocess_cfg, config.augment_policy)
            if augment
            else loaded.preprocess
        )
        self.data = build_train_data(train_set, config.batch_size, config.seed, transform)
        steps_per_epoch = max(1, len(self.data.sampler) // config.accumulate)
        total = steps_per_epoch * config.epochs
        self.scheduler = cosine_with_warmup(self.optimizer, config.warmup_steps, total)
        self.loss_fn = ContrastiveLoss(config.same_dish, config.soft_weight)
        self.splits = tower_splits(self.model, config)
        self.features = TrainFeatures(self.encoder, train_set, self.splits, config.seed)
        self.state = TrainState()
        self.rng_state = torch.get_rng_state()  # as of the last optimiser step
        self.stop_requested = False

    def run(self) -> TrainState:
        """Train to the end (or early stop, or ``max_steps``); Ctrl-C saves, then re-raises."""
        self.folder.start(self.config)
        if self.splits.image is not None and self.features.cache is None:
            self._build_cache()
        try:
            while self.state.epoch < self.config.epochs and not self.stop_requested:
                if self.state.batch == 0 and mining_due(self.config, self.state.epoch):
                    self._mine()
                if self._train_epoch():
                    self._finish_epoch()
        except KeyboardInterrupt:
            self.save_state()
            self._save_model("last")
            raise
        self.save_state()
        return self.state

    def evaluate(self) -> dict | None:
        """Val metrics of the model as it is now (see multimodal.training.train.evaluate)."""
        return evaluate(self.features, self.val_records, self.config.workers)

    def save_state(self) -> None:
        """Everything ``load_state`` needs, as of the last optimiser step."""
        self.folder.save_state(
            {
                "model": self.model.state_dict(),
                "semantic": self.semantic.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": dataclasses.asdict(self.state),
                "rng": self.rng_state,
                "hard_texts": self.data.hard_texts,
                "hard_images": self.data.hard_images,
            }
        )

    def load_state(self) -> None:
        """Continue the run in ``config.out`` where its last optimiser step left it."""
        payload = self.folder.load_state(self.device)
        self.model.load_state_dict(payload["model"])
        self.semantic.load_state_dict(payload.get("semantic", {}), strict="semantic" in payload)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["state"])
        self.rng_state = payload["rng"]
        self.data.hard_texts, self.data.hard_images = payload["hard_texts"], payload["hard_images"]

    def _build_cache(self) -> None:
        self.features.cache = load_or_build_feature_cache(
            self.config,
            self.loaded,
            self.splits,
            self.data.train_set,
            self.val_records,
            self.device,
            self.progress,
        )
        # Only photos whose prefix features were computed can be drawn.
        self.data.sampler.indices = np.asarray(self.features.cache["train_kept"])

    def _mine(self) -> None:
        """Hard negatives for the coming epochs, mined with the model as it is now."""
        mining = mining_config(self.config)
        with torch.random.fork_rng(devices=[]):
            images, texts = self.features.train_embeddings(self.config.workers, self.progress)
        seed = self.config.seed * 1000 + self.state.epoch
        train_set = self.data.train_set
        self.data.hard_texts, self.data.hard_images = mine_both_ways(
            images, texts, train_set.groups, mining, seed, train_set.dishes
        )

    def _train_epoch(self) -> bool:
        torch.set_rng_state(self.rng_state)
        apply_unfreezing(self.model, self.config, self.state.epoch)
        finished = train_one_epoch(
            self.features,
            self.data,
            self.loss_fn,
            self.optimizer,
            self.scheduler,
            self.state,
            self.config,
            after_step=self._after_step,
            progress=self.progress,
            semantic=self.semantic,
        )
        if not finished:  # max_steps reached
            self.stop_requested = True
        return finished

    def _after_step(self, record: dict) -> None:
        self.rng_state = torch.get_rng_state()
        self.folder.log(record)
        if self.on_step is not None:
            self.on_step(self)

    def _finish_epoch(self) -> None:
        state = self.state
        metrics = self.evaluate()
        set_train_mode(self.model)
        score = epoch_score(metrics, state.epoch)
        improved = score > state.best_score
        summary = {"epoch": state.epoch + 1, "step": state.step, "score": score, "metrics": metrics}
        state.history.append(summary)
        self.folder.log({"type": "epoch", **summary})
        self._save_model("last")
        if improved:
            state.best_score, state.best_epoch, state.stale_epochs = score, state.epoch + 1, 0
            self._save_model("best")
        else:
            state.stale_epochs += 1
        state.epoch += 1
        state.batch = 0
        if self.config.patience and state.stale_epochs >= self.config.patience:
            self.stop_requested = True
        self.folder.plot()
        self.save_state()

    def _save_model(self, name: str) -> None:
        self.folder.save_model(name, self.model, self.loaded, self.config, self.state)


def build_trainer(
    config: TrainConfig,
    progress: bool = True,
    on_step: Callable[[Trainer], None] | None = None,
) -> Trainer:
    """A trainer for ``config``: reads its data set's train (and val, when there is one)
    split and builds its starting model.

    >>> config = TrainConfig(model="tiny-random", data=DATA, out="runs/x")  # doctest: +SKIP
    >>> build_trainer(config).run()  # doctest: +SKIP
    """
    splits = dataset_splits(config.data)
    train_split = config.train_split if splits else None
    val_split = config.val_split if splits and config.val_split in splits else None
    train_records = read_records(config.data, train_split)
    pairs = run_pairs(config)  # --marks: Good pairs join the data, Not this the negatives
    train_records += marked_records(pairs, train_records)
    val_records = read_records(config.data, val_split) if val_split else []
    loaded = create_model_and_transforms(config.model)
    train_set = build_train_set(train_records, loaded.tokenizer)
    trainer = Trainer(config, loaded, train_set, val_records, on_step=on_step, progress=progress)
    trainer.data.marked_images = marked_negatives(train_set, pairs)
    return trainer
