"""The dual encoder: two towers, one embedding space, L2-normalised float32 outputs."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from open_clip.hf_model import HFTextEncoder
from PIL import Image

from multimodal.factory import LoadedModel, ModelInfo, create_model_and_transforms
from multimodal.tta import FlipCropViews

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def best_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class DualEncoder:
    """Embeds images and texts into one space.

    ``tta``: a photo's embedding is the mean of its views' (:mod:`multimodal.tta`: the plain
    view, its mirror and two zoomed crops; 4 times the image tower's work), renormalised.

    >>> encoder = load_encoder("tiny-random")
    >>> encoder.encode_texts(["a red square", "a blue circle"]).shape
    (2, 32)
    """

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        tta: bool = False,
    ):
        self.device = torch.device(device) if device else best_device()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision != "fp32" and self.device.type != "cuda":
            raise ValueError(f"{precision} needs a GPU; on {self.device.type} use fp32")
        self.precision = precision
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        self.tta = tta
        # What the decoding workers run on each photo: one (3, H, W) tensor, or with TTA a
        # (V, 3, H, W) stack of its views, which encode_pixels averages.
        self.preprocess = (
            FlipCropViews(loaded.preprocess, loaded.info.preprocess_cfg)
            if tta
            else loaded.preprocess
        )
        self.tokenizer = loaded.tokenizer
        # Convolutional trunks (EfficientNet, ResNet) run depthwise and 1x1 convolutions much
        # faster in NHWC; a ViT has a single patch convolution and gains nothing.
        self.channels_last = _is_convolutional(self.model.visual)
        if self.channels_last:
            self.model.visual.to(memory_format=torch.channels_last)
        # A Hugging Face text tower masks padding, so trailing pad columns can be cut exactly.
        self.trim_padding = isinstance(getattr(self.model, "text", None), HFTextEncoder)

    def with_tta(self, tta: bool) -> DualEncoder:
        """This model on the same device and weights, its photos embedded with or without TTA."""
        if tta == self.tta:
            return self
        return DualEncoder(self.loaded, self.device, self.precision, tta=tta)

    @property
    def info(self) -> ModelInfo:
        return self.loaded.info

    @property
    def context_length(self) -> int:
        """Tokens the text tower reads, special tokens included."""
        return int(self.tokenizer.context_length)

    @property
    def embed_dim(self) -> int:
        return int(self.info.model_cfg["embed_dim"])

    @property
    def image_size(self) -> int:
        size = self.info.preprocess_cfg["size"]
        return int(size if isinstance(size, int) else size[0])

    def encode_images(
        self, images: Sequence[Image.Image], batch_size: int = 64, raw: bool = False
    ) -> np.ndarray:
        """PIL images -> float32 (N, D), L2-normalised (``raw``: before)."""
        batches = (
            torch.stack([self.preprocess(image) for image in images[start : start + batch_size]])
            for start in range(0, len(images), batch_size)
        )
        return self._collect(self.encode_pixels(pixels, raw) for pixels in batches)

    def encode_pixels(self, pixels: torch.Tensor, raw: bool = False) -> np.ndarray:
        """One batch of preprocessed photos -> float32 (B, D), L2-normalised (``raw``: before
        normalisation; its length is what :mod:`multimodal.calibration` reads).

        ``pixels``: (B, 3, H, W), or (B, V, 3, H, W) for V views of each photo (what
        ``preprocess`` makes with ``tta``): the tower runs once on all B * V views and a
        photo's embedding is the mean of its views' unit vectors, renormalised (``raw``: that
        direction, as long as the views' mean length).
        """
        views = pixels.shape[1] if pixels.dim() == 5 else 0
        if views:
            pixels = pixels.flatten(0, 1)
        pixels = pixels.to(self.device, non_blocking=True)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with self._inference():
            features = self.model.encode_image(pixels).float()
        if views:
            lengths = features.norm(dim=-1).unflatten(0, (-1, views)).mean(dim=1, keepdim=True)
            features = unit(unit(features).unflatten(0, (-1, views)).mean(dim=1)) * lengths
        return _raw(features) if raw else _normalised(features)

    def encode_texts(
        self, texts: Sequence[str], batch_size: int = 128, raw: bool = False
    ) -> np.ndarray:
        """Strings -> float32 (N, D), L2-normalised (``raw``: before), in input order."""
        if len(texts) == 0:
            return self._collect([])
        tokens = self.tokenizer(list(texts))
        order = torch.arange(len(texts))
        if self.trim_padding:
            # Batch texts of similar length together so little compute goes to padding.
            lengths = (tokens != self.model.text.config.pad_token_id).sum(dim=1)
            order = torch.argsort(lengths, descending=True, stable=True)
        parts = []
        for start in range(0, len(texts), batch_size):
            batch = tokens[order[start : start + batch_size]]
            if self.trim_padding:
                batch = trim_padding(batch, self.model.text.config.pad_token_id)
            with self._inference():
                features = self.model.encode_text(batch.to(self.device))
            parts.append(_raw(features) if raw else _normalised(features))
        embeddings = np.empty((len(texts), self.embed_dim), dtype=np.float32)
        embeddings[order.numpy()] = np.concatenate(parts)
        return embeddings

    def _collect(self, parts) -> np.ndarray:
        parts = list(parts)
        if not parts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(parts)

    def _inference(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        if self.precision != "fp32":
            stack.enter_context(torch.autocast("cuda", dtype=PRECISIONS[self.precision]))
        return stack


def trim_padding(tokens: torch.Tensor, pad_token_id: int) -> torch.Tensor:
    """Drop the pad columns every row of ``tokens`` ends with; exact for a tower that masks
    padding (a Hugging Face text tower)."""
    return tokens[:, : int((tokens != pad_token_id).sum(dim=1).max())]


def _is_convolutional(visual: torch.nn.Module) -> bool:
    return sum(isinstance(m, torch.nn.Conv2d) for m in visual.modules()) > 1


def unit(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features, dim=-1)


def _raw(features: torch.Tensor) -> np.ndarray:
    return features.float().cpu().numpy().astype(np.float32, copy=False)


def _normalised(features: torch.Tensor) -> np.ndarray:
    return unit(features.float()).cpu().numpy().astype(np.float32, copy=False)


def load_encoder(
    spec: str,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    tta: bool = False,
) -> DualEncoder:
    """Build the dual encoder a spec names, on the best device unless one is given.

    ``spec``: a built-in name (``recipe-starter``), ``ARCH:TAG``, ``ARCH:/weights.pt``, a
    checkpoint folder, or ``hf-hub:ORG/REPO``; see :func:`multimodal.spec.parse_model_spec`.
    ``tta``: photos embedded as the mean of a few views (:class:`DualEncoder`).
    """
    loaded = create_model_and_transforms(spec)
    return DualEncoder(loaded, device=device, precision=precision, tta=tta)


def model_stamp(encoder: DualEncoder) -> dict:
    """What a collection records about the model that made its vectors: its spec (absolute
    for a folder), its architecture, for a checkpoint the hash of its weights, and whether
    photos were embedded with test-time augmentation (not part of the model's identity: both
    kinds of photo vector live in the same space).

    >>> model_stamp(load_encoder("tiny-random"))
    {'name': 'tiny-random', 'arch': 'tiny-random', 'weights_sha256': None, 'tta': False}
    """
    info = encoder.info
    name = info.spec
    if Path(name).expanduser().is_dir():
        name = str(Path(name).expanduser().resolve())
    return {
        "name": name,
        "arch": info.arch,
        "weights_sha256": info.provenance.get("weights_sha256"),
        "tta": encoder.tta,
    }
