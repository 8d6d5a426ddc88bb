"""Cached features of the frozen parts of the towers, so CPU training runs only what trains.

A locked backbone gives the same output for the same input, so it runs once per image view
(and once per text) instead of once per step. The image tower is split at timm's own lock groups
(stem, each block, conv head): the last ``unlocked_groups`` train, the rest is the cached
prefix. A fully locked text tower is cached up to its pooled output; a partly unlocked one runs
online (its layers are cheap next to the image trunk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from open_clip.hf_model import HFTextEncoder
from open_clip.timm_model import TimmModel
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from multimodal.data.loading import single_threaded_worker
from multimodal.encoder import trim_padding
from multimodal.training.data import ANCHOR, PairImages, collate_pairs


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


def cache_texts(split: TextSplit, tokens: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pooled features of every text, batched by length."""
    order = torch.argsort((tokens != split.text.config.pad_token_id).sum(dim=1))
    pooled = torch.empty((len(tokens), split.text.config.hidden_size))
    for start in range(0, len(tokens), 256):
        rows = order[start : start + 256]
        pooled[rows] = split.prefix(tokens[rows].to(device)).float().cpu()
    return pooled
