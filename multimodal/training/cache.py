"""Cached features of the frozen parts of the towers, so CPU training runs only what trains.

A locked backbone gives the same output for the same input, so it runs once per image view
(and once per text) instead of once per step. The image tower is split at timm's own lock groups
(stem, each block, conv head): the last ``unlocked_groups`` train, the rest is the cached
prefix. A fully locked text tower is cached up to its pooled output; a partly unlocked one runs
online (its layers are cheap next to the image trunk).

The features of a run (training photos in several views, val photos, texts) are kept in one
file under ``--feature-cache``, named by everything they depend on, so the next run with the
same model and data loads them instead of running the prefix again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.hf_model import HFTextEncoder
from open_clip.timm_model import TimmModel
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from multimodal.data.loading import single_threaded_worker
from multimodal.data.records import Record
from multimodal.encoder import trim_padding
from multimodal.evaluation import class_labels
from multimodal.factory import LoadedModel
from multimodal.files import atomic_path
from multimodal.training.config import TrainConfig
from multimodal.training.data import (
    ANCHOR,
    PairImages,
    TrainSet,
    build_train_set,
    collate_pairs,
    train_transform,
)


class ImageSplit:
    """A timm EfficientNet-style image tower as frozen prefix -> trainable suffix."""

    def __init__(self, visual: nn.Module, unlocked_groups: int):
        trunk = visual.trunk
        blocks = [block for stage in trunk.blocks for block in stage]
        self.visual, self.trunk = visual, trunk
        trainable_blocks = max(0, unlocked_groups - 1)  # the last group is the conv head
        self.frozen_blocks = blocks[: len(blocks) - trainable_blocks]
        self.trainable_blocks = blocks[len(blocks) - trainable_blocks :]
        self.head_trains = unlocked_groups >= 1

    @staticmethod
    def supports(visual: nn.Module) -> bool:
        trunk = getattr(visual, "trunk", None)
        parts = ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "forward_head")
        return isinstance(visual, TimmModel) and all(hasattr(trunk, p) for p in parts)

    @torch.no_grad()
    def prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.trunk.bn1(self.trunk.conv_stem(pixels))
        for block in self.frozen_blocks:
            x = block(x)
        if not self.head_trains:
            x = self.trunk.forward_head(self.trunk.bn2(self.trunk.conv_head(x)), pre_logits=True)
        return x

    def suffix(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        for block in self.trainable_blocks:
            x = block(x)
        if self.head_trains:
            x = self.trunk.forward_head(self.trunk.bn2(self.trunk.conv_head(x)), pre_logits=True)
        return self.visual.head(x)


class TextSplit:
    """A fully locked Hugging Face text tower: cached pooled output -> trainable projection."""

    def __init__(self, text: nn.Module):
        self.text = text

    @staticmethod
    def supports(text: nn.Module | None) -> bool:
        return isinstance(text, HFTextEncoder)

    @torch.no_grad()
    def prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        pad = self.text.config.pad_token_id
        tokens = trim_padding(tokens, pad)
        mask = (tokens != pad).long()
        return self.text.pooler(self.text.transformer(input_ids=tokens, attention_mask=mask), mask)

    def suffix(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.text.proj(pooled)


@dataclass
class TowerSplits:
    image: ImageSplit | None  # None: the image tower runs whole, nothing is cached
    text: TextSplit | None  # None: the text tower runs whole (online)


def tower_splits(model: nn.Module, config: TrainConfig) -> TowerSplits:
    """The towers' cacheable prefixes under ``config``: a locked image tower of a supported
    kind, and a fully locked Hugging Face text tower; none when ``cache_views`` is 0."""
    image = None
    if config.cache_views and config.lock_image and ImageSplit.supports(model.visual):
        image = ImageSplit(model.visual, config.unlock_image_groups)
    text = None
    text_locked = config.lock_text and config.unlock_text_layers == 0
    if config.cache_views and text_locked and TextSplit.supports(getattr(model, "text", None)):
        text = TextSplit(model.text)
    return TowerSplits(image, text)


@dataclass
class ImageCache:
    features: torch.Tensor  # (views, N, ...) prefix outputs
    kept: list[int]  # indices whose image loaded; the others have zero features
    rejects: list  # (index, reason) of the images that did not


def cache_images(
    split: ImageSplit,
    paths: Sequence,
    transforms: Sequence[Callable],
    device: torch.device,
    seed: int = 0,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    desc: str = "caching image features",
) -> ImageCache:
    """Run the frozen prefix over every image once per transform (view); random transforms
    are seeded per (seed, view, image), so a cache is the same every time it is built."""
    views, kept, rejects = [], None, []
    for number, transform in enumerate(transforms):
        dataset = PairImages(paths, transform, seed)
        dataset.set_epoch(number)
        keys = [(i, ANCHOR) for i in range(len(paths))]
        loader = DataLoader(
            dataset,
            batch_sampler=[keys[i : i + batch_size] for i in range(0, len(keys), batch_size)],
            num_workers=workers if len(paths) > batch_size else 0,
            collate_fn=collate_pairs,
            worker_init_fn=single_threaded_worker,
        )
        rows, indices = [], []
        label = f"{desc} ({number + 1}/{len(transforms)})"
        with tqdm(total=len(paths), desc=label, unit="img", disable=not progress) as bar:
            for batch in loader:
                if batch["pixels"] is not None:
                    pixels = (
                        batch["pixels"].to(device).contiguous(memory_format=torch.channels_last)
                    )
                    rows.append(split.prefix(pixels).float().cpu())
                    indices.extend(batch["anchors"])
                if number == 0:
                    rejects.extend(batch["rejects"])
                bar.update(len(batch["anchors"]) + len(batch["rejects"]))
        if not rows:
            raise ValueError("no training image could be read")
        full = torch.zeros((len(paths), *rows[0].shape[1:]))
        full[indices] = torch.cat(rows)
        views.append(full)
        kept = indices if kept is None else sorted(set(kept) & set(indices))
    return ImageCache(torch.stack(views), sorted(kept), rejects)


def spread(cache: ImageCache, paths: Sequence, unique: Sequence) -> ImageCache:
    """The cache of the ``unique`` photos given to each of ``paths`` that shows one."""
    position = {path: i for i, path in enumerate(unique)}
    rows = [position[path] for path in paths]
    loaded = set(cache.kept)
    kept = [i for i, row in enumerate(rows) if row in loaded]
    return ImageCache(cache.features[:, rows], kept, cache.rejects)


def cache_texts(split: TextSplit, tokens: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pooled features of every text, batched by length."""
    order = torch.argsort((tokens != split.text.config.pad_token_id).sum(dim=1))
    pooled = torch.empty((len(tokens), split.text.config.hidden_size))
    for start in range(0, len(tokens), 256):
        rows = order[start : start + 256]
        pooled[rows] = split.prefix(tokens[rows].to(device)).float().cpu()
    return pooled


def feature_cache_path(
    config: TrainConfig, weights_sha256: str | None, train_set: TrainSet, val_records: list[Record]
) -> Path | None:
    """A file named by everything the cached features depend on; None when not kept."""
    if not config.feature_cache:
        return None
    views = config.cache_views if config.augment else 1
    key = {
        "model": config.model,
        "weights": weights_sha256,
        "unlock_image_groups": config.unlock_image_groups,
        "views": views,
        # the seed draws the augmented views only: unaugmented caches serve every seed
        **({"seed": config.seed} if views > 1 else {}),
        **({"augment": config.augment_policy} if config.augment_policy != "light" else {}),
        "train": [str(r.image) for r in train_set.records],
        "train_texts": train_set.texts,
        "val": [str(r.image) for r in val_records],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(config.feature_cache) / f"{digest}.pt"


def load_or_build_feature_cache(
    config: TrainConfig,
    loaded: LoadedModel,
    splits: TowerSplits,
    train_set: TrainSet,
    val_records: list[Record],
    device: torch.device,
    progress: bool = True,
) -> dict:
    """Frozen-prefix features of the training photos (several views), of val and of the texts,
    loaded from ``config.feature_cache`` when an identical cache was built before.

    Keys: ``train_images`` (views, N, ...), ``train_kept`` (the photos that loaded),
    ``train_texts`` (N, width) or None, and with val records ``val_images``, ``val_tokens``,
    ``val_labels`` and ``val_texts``, for the val pairs whose photo loaded.
    """
    path = feature_cache_path(
        config, loaded.info.provenance.get("weights_sha256"), train_set, val_records
    )
    if path is not None and path.is_file():
        cache = torch.load(path, weights_only=False)
        if splits.text is None or cache.get("train_texts") is not None:
            return cache
        # Built by a run that trained the text layers: the text features are still missing.
        add_text_features(cache, splits.text, train_set.tokens, device)
    else:
        cache = compute_feature_cache(
            config, loaded, splits, train_set, val_records, device, progress
        )
    if path is not None:
        with atomic_path(path) as staging:
            torch.save(cache, staging)
    return cache


def compute_feature_cache(
    config: TrainConfig,
    loaded: LoadedModel,
    splits: TowerSplits,
    train_set: TrainSet,
    val_records: list[Record],
    device: torch.device,
    progress: bool = True,
) -> dict:
    """Run the frozen prefixes over the training and val items (see load_or_build_feature_cache)."""
    loaded.model.eval()
    views = [loaded.preprocess]
    if config.augment:
        augmented = train_transform(loaded.info.preprocess_cfg, config.augment_policy)
        views += [augmented] * (config.cache_views - 1)
    paths = [r.image for r in train_set.records]
    unique = list(dict.fromkeys(paths))  # a photo in several pairs (marks) runs once
    train = cache_images(
        splits.image,
        unique,
        views,
        device,
        config.seed,
        workers=config.workers,
        progress=progress,
        desc="caching training image features",
    )
    if len(unique) < len(paths):
        train = spread(train, paths, unique)
    val = val_features(loaded, splits, val_records, device, config.workers, progress)
    texts = None
    if splits.text is not None:
        texts = cache_texts(splits.text, train_set.tokens, device)
    return {"train_images": train.features, "train_kept": train.kept, "train_texts": texts, **val}


def val_features(
    loaded: LoadedModel,
    splits: TowerSplits,
    val_records: list[Record],
    device: torch.device,
    workers: int,
    progress: bool = True,
) -> dict:
    """The val part of a feature cache: one unaugmented view of each val pair whose photo
    loads, its tokens and its class label."""
    if not val_records:
        return {}
    val_set = build_train_set(val_records, loaded.tokenizer)
    images = cache_images(
        splits.image,
        [r.image for r in val_set.records],
        [loaded.preprocess],
        device,
        workers=workers,
        progress=progress,
        desc="caching val image features",
    )
    kept = images.kept
    cache = {
        "val_images": images.features[0][kept],
        "val_tokens": val_set.tokens[kept],
        "val_labels": class_labels([val_set.records[i] for i in kept]),
    }
    if splits.text is not None:
        cache["val_texts"] = cache_texts(splits.text, cache["val_tokens"], device)
    return cache


def add_text_features(
    cache: dict, split: TextSplit, train_tokens: torch.Tensor, device: torch.device
) -> None:
    """Add the pooled text features to a cache built while the text tower was training."""
    cache["train_texts"] = cache_texts(split, train_tokens, device)
    if "val_tokens" in cache:
        cache["val_texts"] = cache_texts(split, cache["val_tokens"], device)


@torch.inference_mode()
def suffix_embeddings(
    features: torch.Tensor,
    split: ImageSplit | TextSplit,
    model: nn.Module,
    device: torch.device,
    batch_size: int = 256,
) -> np.ndarray:
    """Normalised embeddings from cached prefix ``features`` through the split's suffix."""
    model.eval()
    parts = []
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size].to(device)
        if chunk.ndim == 4:
            chunk = chunk.contiguous(memory_format=torch.channels_last)
        parts.append(F.normalize(split.suffix(chunk).float(), dim=-1).cpu())
    return torch.cat(parts).numpy()
