"""The training loop: contrastive steps, per-epoch selection, mining, checkpoints and resume."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from multimodal.checkpoint import save_checkpoint
from multimodal.data.records import Record
from multimodal.embedding import embed_images
from multimodal.encoder import DualEncoder, trim_padding
from multimodal.evaluation import class_labels, evaluate, score_embeddings
from multimodal.factory import LoadedModel
from multimodal.files import atomic_path
from multimodal.loss import ContrastiveLoss
from multimodal.mining import MiningConfig, mine_hard_negatives
from multimodal.training.cache import ImageSplit, TextSplit, cache_images, cache_texts
from multimodal.training.config import TrainConfig
from multimodal.training.data import (
    ANCHOR,
    PairImages,
    RecipeBatchSampler,
    TrainSet,
    build_train_set,
    collate_pairs,
    item_seed,
    train_transform,
)
from multimodal.training.optim import (
    build_optimizer,
    clamp_temperature,
    configure_towers,
    cosine_with_warmup,
    set_train_mode,
)
from multimodal.training.report import plot_curves

STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"


@dataclass
class TrainState:
    epoch: int = 0  # the epoch in progress
    batch: int = 0  # batches of that epoch consumed, at an optimiser-step boundary
    step: int = 0  # optimiser steps taken
    best_score: float = float("-inf")  # best mean of R@1 both ways so far
    best_epoch: int = -1
    stale_epochs: int = 0  # epochs since the best one
    history: list = field(default_factory=list)  # one summary per finished epoch


class Trainer:
    """Fine-tunes ``loaded`` on ``train_set``, selecting on ``val_records``.

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
        self.config = config
        self.loaded = loaded
        self.train_set = train_set
        self.val_records = val_records
        self.on_step = on_step
        self.progress = progress
        self.out = Path(config.out)
        self.encoder = DualEncoder(loaded, device=config.device)
        self.model = self.encoder.model
        self.device = self.encoder.device
        configure_towers(self.model, config)
        self.optimizer = build_optimizer(self.model, config)
        self.sampler = RecipeBatchSampler(train_set.groups[:, 0], config.batch_size, config.seed)
        if len(self.sampler) == 0:
            raise ValueError(
                f"{len(train_set)} training pairs make no full batch of {config.batch_size}: "
                "lower --batch-size"
            )
        self.steps_per_epoch = max(1, len(self.sampler) // config.accumulate)
        total = self.steps_per_epoch * config.epochs
        self.scheduler = cosine_with_warmup(self.optimizer, config.warmup_steps, total)
        self.loss_fn = ContrastiveLoss()
        transform = (
            train_transform(loaded.info.preprocess_cfg) if config.augment else loaded.preprocess
        )
        paths = [r.image for r in train_set.records]
        self.dataset = PairImages(paths, transform, config.seed)
        self.image_split = None
        if config.cache_views and config.lock_image and ImageSplit.supports(self.model.visual):
            self.image_split = ImageSplit(self.model.visual, config.unlock_image_groups)
        self.text_split = None
        text_locked = config.lock_text and config.unlock_text_layers == 0
        if (
            config.cache_views
            and text_locked
            and TextSplit.supports(getattr(self.model, "text", None))
        ):
            self.text_split = TextSplit(self.model.text)
        self.cache: dict | None = None  # built at the start of run()
        self.hard_texts: np.ndarray | None = None  # (N, k) mined text negatives of each image
        self.hard_images: np.ndarray | None = None  # (N, k) mined image negatives of each text
        self.state = TrainState()
        self.rng_state = torch.get_rng_state()  # as of the last optimiser step
        self.stop_requested = False

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> TrainState:
        """Train to the end (or early stop, or ``max_steps``); Ctrl-C saves, then re-raises."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.config.save(self.out / "train_config.json")
        if self.image_split is not None and self.cache is None:
            self._build_cache()
        try:
            while self.state.epoch < self.config.epochs and not self.stop_requested:
                if self.state.batch == 0:
                    self._mine_if_due()
                finished = self._train_epoch()
                if finished:
                    self._finish_epoch()
        except KeyboardInterrupt:
            self.save_state()
            self._save_model("last")
            raise
        self.save_state()
        return self.state

    def _train_epoch(self) -> bool:
        """One epoch from ``state.batch`` on; False if stopped by ``max_steps`` midway."""
        config, state = self.config, self.state
        self.sampler.set_epoch(state.epoch, skip=state.batch)
        self.sampler.hard_images = self.hard_images
        self.dataset.set_epoch(state.epoch)
        if self.cache is not None:  # features are cached: no image is decoded
            loader = (_index_batch(keys) for keys in self.sampler)
        else:
            loader = DataLoader(
                self.dataset,
                batch_sampler=self.sampler,
                num_workers=config.workers,
                collate_fn=collate_pairs,
                generator=torch.Generator().manual_seed(config.seed),
            )
        set_train_mode(self.model)
        torch.set_rng_state(self.rng_state)
        bar = tqdm(
            total=len(self.sampler),
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not self.progress,
        )
        started, samples, micro = time.perf_counter(), 0, 0
        with bar:
            for batch in loader:
                if len(batch["anchors"]) < 2:
                    continue
                loss = self._loss(batch)
                (loss / config.accumulate).backward()
                micro += 1
                samples += len(batch["anchors"])
                bar.update(1)
                if micro % config.accumulate:
                    continue
                state.batch += config.accumulate  # before anything that can be interrupted
                self._optimizer_step(loss.item(), samples / (time.perf_counter() - started), bar)
                if self.on_step is not None:
                    self.on_step(self)
                if config.max_steps and state.step >= config.max_steps:
                    self.stop_requested = True
                    return False
        self.optimizer.zero_grad(set_to_none=True)  # a trailing partial accumulation is dropped
        return True

    def _optimizer_step(self, loss: float, samples_per_second: float, bar) -> None:
        if self.config.grad_clip:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            torch.nn.utils.clip_grad_norm_(trainable, self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        clamp_temperature(self.model, self.config.max_logit_scale)
        self.state.step += 1
        self.rng_state = torch.get_rng_state()
        lr = self.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", samples_s=f"{samples_per_second:.1f}")
        self._log(
            {
                "type": "step",
                "step": self.state.step,
                "epoch": self.state.epoch,
                "loss": loss,
                "lr": {g["name"]: g["lr"] for g in self.optimizer.param_groups},
                "logit_scale": float(self.model.logit_scale.detach().exp()),
                "samples_per_s": samples_per_second,
            }
        )

    def _loss(self, batch: dict) -> torch.Tensor:
        anchors, extras = batch["anchors"], batch["extras"]
        groups = torch.as_tensor(self.train_set.groups)
        hard_text_ids = self._hard_text_ids(anchors)
        with self._autocast():
            image_features = self._image_features(batch["pixels"], anchors + extras)
            text_features = self._text_features(anchors + hard_text_ids)
        n = len(anchors)
        has_hard = self.hard_texts is not None
        return self.loss_fn(
            image_features[:n],
            text_features[:n],
            self.model.logit_scale.exp(),
            hard_texts=text_features[n:] if has_hard else None,
            hard_images=image_features[n:] if has_hard else None,
            groups=groups[anchors],
            hard_text_groups=groups[hard_text_ids] if has_hard else None,
            hard_image_groups=groups[extras] if has_hard else None,
        )

    def _hard_text_ids(self, anchors: list[int]) -> list[int]:
        if self.hard_texts is None:
            return []
        mined = {int(j) for j in self.hard_texts[anchors].ravel() if j >= 0}
        return sorted(mined - set(anchors))  # anchors' own texts are candidates already

    def _image_features(self, pixels: torch.Tensor | None, ids: list[int]) -> torch.Tensor:
        if self.cache is None:
            return self._encode_pixels(pixels)
        views = self.cache["train_images"]
        chosen = [item_seed(self.config.seed, self.state.epoch, i) % len(views) for i in ids]
        features = views[chosen, ids].to(self.device)
        if features.ndim == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.image_split.suffix(features).float(), dim=-1)

    def _text_features(self, ids: list[int]) -> torch.Tensor:
        if self.cache is not None and self.text_split is not None:
            pooled = self.cache["train_texts"][ids].to(self.device)
            return F.normalize(self.text_split.suffix(pooled).float(), dim=-1)
        return self._encode_tokens(self.train_set.tokens[ids])

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True)
        if self.encoder.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.encoder.trim_padding:
            tokens = trim_padding(tokens, self.model.text.config.pad_token_id)
        return F.normalize(self.model.encode_text(tokens.to(self.device)).float(), dim=-1)

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- between epochs --------------------------------------------------------------------

    def _mine_if_due(self) -> None:
        config, epoch = self.config, self.state.epoch
        if not config.hard_negatives or epoch < config.warmup_epochs:
            return
        if (epoch - config.warmup_epochs) % config.mine_every:
            return
        mining = MiningConfig(
            k=config.hard_negatives,
            strategy=config.mining_strategy,
            window=max(config.mining_window, config.hard_negatives),
            margin=config.mining_margin,
        )
        with torch.random.fork_rng(devices=[]):
            images, texts = self._embed_train_set()
        seed = config.seed * 1000 + epoch
        self.hard_texts = mine_hard_negatives(images, texts, self.train_set.groups, mining, seed)
        self.hard_images = mine_hard_negatives(texts, images, self.train_set.groups, mining, seed)

    def _embed_train_set(self) -> tuple[np.ndarray, np.ndarray]:
        if self.cache is not None:
            n = len(self.train_set)
            images = self._cached_embeddings(self.cache["train_images"][0], self.image_split)
            texts = (
                self._cached_embeddings(self.cache["train_texts"], self.text_split)
                if self.text_split is not None
                else self._token_embeddings(self.train_set.tokens)
            )
            assert len(images) == len(texts) == n
            return images, texts
        paths = [r.image for r in self.train_set.records]
        kept, images, _ = embed_images(
            self.encoder, paths, workers=self.config.workers, progress=self.progress
        )
        full = np.zeros((len(paths), images.shape[1]), np.float32)
        full[kept] = images  # an unreadable image scores 0 against everything
        texts = self.encoder.encode_texts(self.train_set.texts)
        return full, texts

    def evaluate(self) -> dict | None:
        if not self.val_records:
            return None
        if self.cache is not None:
            with torch.random.fork_rng(devices=[]):
                images = self._cached_embeddings(self.cache["val_images"], self.image_split)
                texts = (
                    self._cached_embeddings(self.cache["val_texts"], self.text_split)
                    if self.text_split is not None
                    else self._token_embeddings(self.cache["val_tokens"])
                )
            return score_embeddings(images, texts, self.cache["val_labels"])
        with torch.random.fork_rng(devices=[]):
            result = evaluate(
                self.encoder, self.val_records, workers=self.config.workers, progress=False
            )
        return result.metrics

    @torch.inference_mode()
    def _cached_embeddings(self, features: torch.Tensor, split) -> np.ndarray:
        self.model.eval()
        parts = []
        for start in range(0, len(features), 256):
            chunk = features[start : start + 256].to(self.device)
            if chunk.ndim == 4:
                chunk = chunk.contiguous(memory_format=torch.channels_last)
            parts.append(F.normalize(split.suffix(chunk).float(), dim=-1).cpu())
        return torch.cat(parts).numpy()

    @torch.inference_mode()
    def _token_embeddings(self, tokens: torch.Tensor) -> np.ndarray:
        self.model.eval()
        parts = [
            self._encode_tokens(tokens[start : start + 128]).cpu()
            for start in range(0, len(tokens), 128)
        ]
        return torch.cat(parts).numpy()

    def _build_cache(self) -> None:
        """Frozen-prefix features of the training photos (several views) and of val, loaded
        from ``feature_cache`` when an identical cache was built before."""
        path = self._feature_cache_path()
        if path is not None and path.is_file():
            self.cache = torch.load(path, weights_only=False)
            self.sampler.indices = np.asarray(self.cache["train_kept"])
            if self.text_split is None or self.cache.get("train_texts") is not None:
                return
            self._add_text_cache()  # cached before by a run that trained the text layers
        else:
            self._compute_cache()
        if path is not None:
            with atomic_path(path) as staging:
                torch.save(self.cache, staging)

    def _feature_cache_path(self) -> Path | None:
        """A file named by everything the cached features depend on."""
        config = self.config
        if not config.feature_cache:
            return None
        key = {
            "model": config.model,
            "weights": self.loaded.info.provenance.get("weights_sha256"),
            "unlock_image_groups": config.unlock_image_groups,
            "views": config.cache_views if config.augment else 1,
            "seed": config.seed,
            "train": [str(r.image) for r in self.train_set.records],
            "train_texts": self.train_set.texts,
            "val": [str(r.image) for r in self.val_records],
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        return Path(config.feature_cache) / f"{digest}.pt"

    def _compute_cache(self) -> None:
        config, preprocess = self.config, self.loaded.preprocess
        self.model.eval()
        views = [preprocess]
        if config.augment:
            augmented = train_transform(self.loaded.info.preprocess_cfg)
            views += [augmented] * (config.cache_views - 1)
        paths = [r.image for r in self.train_set.records]
        train = cache_images(
            self.image_split,
            paths,
            views,
            self.device,
            config.seed,
            workers=config.workers,
            progress=self.progress,
            desc="caching training image features",
        )
        self.sampler.indices = np.asarray(train.kept)
        val = self._val_cache()
        texts = None
        if self.text_split is not None:
            texts = cache_texts(self.text_split, self.train_set.tokens, self.device)
        self.cache = {
            "train_images": train.features,
            "train_kept": train.kept,
            "train_texts": texts,
            **val,
        }

    def _add_text_cache(self) -> None:
        self.cache["train_texts"] = cache_texts(self.text_split, self.train_set.tokens, self.device)
        if "val_tokens" in self.cache:
            self.cache["val_texts"] = cache_texts(
                self.text_split, self.cache["val_tokens"], self.device
            )

    def _val_cache(self) -> dict:
        if not self.val_records:
            return {}
        val_set = build_train_set(self.val_records, self.loaded.tokenizer)
        paths = [r.image for r in val_set.records]
        images = cache_images(
            self.image_split,
            paths,
            [self.loaded.preprocess],
            self.device,
            workers=self.config.workers,
            progress=self.progress,
            desc="caching val image features",
        )
        kept = images.kept
        cache = {
            "val_images": images.features[0][kept],
            "val_tokens": val_set.tokens[kept],
            "val_labels": class_labels([val_set.records[i] for i in kept]),
        }
        if self.text_split is not None:
            cache["val_texts"] = cache_texts(self.text_split, cache["val_tokens"], self.device)
        return cache

    def _finish_epoch(self) -> None:
        state = self.state
        metrics = self.evaluate()
        set_train_mode(self.model)
        score = (
            (metrics["image_to_text"]["R@1"] + metrics["text_to_image"]["R@1"]) / 2
            if metrics
            else float(state.epoch)
        )
        improved = score > state.best_score
        summary = {"epoch": state.epoch + 1, "step": state.step, "score": score, "metrics": metrics}
        state.history.append(summary)
        self._log({"type": "epoch", **summary})
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
        plot_curves(self.out / LOG_FILE, self.out / "curves.png")
        self.save_state()

    # -- persistence -----------------------------------------------------------------------

    def _save_model(self, name: str) -> None:
        info = self.loaded.info
        save_checkpoint(
            self.out / name,
            self.model,
            arch=info.arch,
            model_cfg=info.model_cfg,
            preprocess_cfg=info.preprocess_cfg,
            tokenizer=self.loaded.tokenizer,
            provenance={
                "made_by": "multimodal train",
                "base_model": self.config.model,
                "epoch": self.state.epoch + 1,
                "step": self.state.step,
                "val": self.state.history[-1]["metrics"] if self.state.history else None,
                "train_config": dataclasses.asdict(self.config),
            },
        )

    def save_state(self) -> None:
        """Everything ``resume`` needs, as of the last optimiser step."""
        payload = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "state": dataclasses.asdict(self.state),
            "rng": self.rng_state,
            "hard_texts": self.hard_texts,
            "hard_images": self.hard_images,
        }
        with atomic_path(self.out / STATE_FILE) as staging:
            torch.save(payload, staging)

    def load_state(self) -> None:
        path = self.out / STATE_FILE
        if not path.is_file():
            raise ValueError(f"{self.out} has no {STATE_FILE}: not a run folder to resume")
        payload = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = TrainState(**payload["state"])
        self.rng_state = payload["rng"]
        self.hard_texts, self.hard_images = payload["hard_texts"], payload["hard_images"]

    def _log(self, record: dict) -> None:
        with open(self.out / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _index_batch(keys: list[tuple[int, int]]) -> dict:
    """A batch of the cached path: indices only, features come from the cache."""
    return {
        "anchors": [i for i, role in keys if role == ANCHOR],
        "extras": [i for i, role in keys if role != ANCHOR],
        "pixels": None,
        "rejects": [],
    }
