"""The towers as training runs them: features of a batch for the loss, and embeddings of whole
sets for mining and evaluation.

Without a feature cache the whole towers run. With one (see training/cache.py), the cached
frozen-prefix features of the photos go through the trainable suffix only, and so do the
texts' when the text tower is fully locked too.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from multimodal.embedding import embed_images
from multimodal.encoder import DualEncoder, trim_padding
from multimodal.training.cache import TowerSplits, suffix_embeddings
from multimodal.training.data import TrainSet, item_seed


class TrainFeatures:
    """Normalised features of training items; ``cache`` is set once the trainer built it.

    >>> features = TrainFeatures(encoder, train_set, splits, seed=0)  # doctest: +SKIP
    >>> features.texts([0, 1]).shape  # doctest: +SKIP
    torch.Size([2, 32])
    """

    def __init__(self, encoder: DualEncoder, train_set: TrainSet, splits: TowerSplits, seed: int):
        self.encoder = encoder
        self.model = encoder.model
        self.device = encoder.device
        self.train_set = train_set
        self.splits = splits
        self.seed = seed
        self.cache: dict | None = None  # see training/cache.py: load_or_build_feature_cache

    def images(self, pixels: torch.Tensor | None, ids: list[int], epoch: int) -> torch.Tensor:
        """Features of the training photos ``ids``: from ``pixels``, or from the cache."""
        if self.cache is None:
            return self._encode_pixels(pixels)
        views = self.cache["train_images"]
        # The cached view of a photo is drawn per (seed, epoch, photo), as its augmentation is.
        chosen = [item_seed(self.seed, epoch, i) % len(views) for i in ids]
        features = views[chosen, ids].to(self.device)
        if features.ndim == 4:
            features = features.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.splits.image.suffix(features).float(), dim=-1)

    def texts(self, ids: list[int]) -> torch.Tensor:
        """Features of the training texts ``ids``."""
        if self.cache is not None and self.splits.text is not None:
            pooled = self.cache["train_texts"][ids].to(self.device)
            return F.normalize(self.splits.text.suffix(pooled).float(), dim=-1)
        return self._encode_tokens(self.train_set.tokens[ids])

    def autocast(self):
        """bf16 autocast on a GPU; nothing on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_embeddings(self, workers: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """Image and text embeddings of every training pair, row i for pair i (for mining)."""
        if self.cache is not None:
            images = suffix_embeddings(
                self.cache["train_images"][0], self.splits.image, self.model, self.device
            )
            texts = (
                suffix_embeddings(
                    self.cache["train_texts"], self.splits.text, self.model, self.device
                )
                if self.splits.text is not None
                else self._token_embeddings(self.train_set.tokens)
            )
            assert len(images) == len(texts) == len(self.train_set)
            return images, texts
        paths = [r.image for r in self.train_set.records]
        kept, images, _ = embed_images(self.encoder, paths, workers=workers, progress=progress)
        full = np.zeros((len(paths), images.shape[1]), np.float32)
        full[kept] = images  # an unreadable image scores 0 against everything
        texts = self.encoder.encode_texts(self.train_set.texts)
        return full, texts

    def val_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Image and text embeddings of the cached val pairs (``cache["val_labels"]`` order)."""
        assert self.cache is not None, "val embeddings come from the feature cache"
        images = suffix_embeddings(
            self.cache["val_images"], self.splits.image, self.model, self.device
        )
        if self.splits.text is not None:
            texts = suffix_embeddings(
                self.cache["val_texts"], self.splits.text, self.model, self.device
            )
        else:
            texts = self._token_embeddings(self.cache["val_tokens"])
        return images, texts

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True)
        if self.encoder.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.model.encode_image(pixels).float(), dim=-1)

    def _encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.encoder.trim_padding:
            tokens = trim_padding(tokens, self.model.text.config.pad_token_id)
        return F.normalize(self.model.encode_text(tokens.to(self.device)).float(), dim=-1)

    @torch.inference_mode()
    def _token_embeddings(self, tokens: torch.Tensor) -> np.ndarray:
        self.model.eval()
        parts = [
            self._encode_tokens(tokens[start : start + 128]).cpu()
            for start in range(0, len(tokens), 128)
        ]
        return torch.cat(parts).numpy()
