"""Embed records with a dual encoder: images through DataLoader workers, texts in batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.loading import Reject, iter_image_batches
from multimodal.data.records import Record, printable
from multimodal.data.text import RecipeTextBuilder
from multimodal.encoder import DualEncoder


@dataclass
class EmbeddedPairs:
    records: list[Record]  # the records kept, in input order
    image: np.ndarray  # (N, D) float32, row i belongs to records[i]
    text: np.ndarray  # (N, D) float32
    texts: list[str]  # the texts that were embedded
    rejects: list[Reject] = field(default_factory=list)  # images that could not be used


def embed_images(
    encoder: DualEncoder,
    paths: Sequence,
    batch_size: int = 64,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> tuple[list[int], np.ndarray, list[Reject]]:
    """``(kept indices, embeddings of those, rejects)`` for image files."""
    kept: list[int] = []
    parts: list[np.ndarray] = []
    rejects: list[Reject] = []
    with tqdm(total=len(paths), unit="img", desc="images", disable=not progress) as bar:
        for batch in iter_image_batches(paths, encoder.preprocess, batch_size, workers, max_pixels):
            if batch.pixels is not None:
                parts.append(encoder.encode_pixels(batch.pixels))
                kept.extend(batch.indices)
            rejects.extend(batch.rejects)
            bar.update(len(batch.indices) + len(batch.rejects))
    embeddings = np.concatenate(parts) if parts else np.zeros((0, encoder.embed_dim), np.float32)
    return kept, embeddings, rejects


def embed_texts(
    encoder: DualEncoder, texts: Sequence[str], batch_size: int = 128, progress: bool = True
) -> np.ndarray:
    parts = []
    # Chunks of many batches, so the encoder can sort each chunk by length.
    chunk_size = batch_size * 16
    with tqdm(total=len(texts), unit="text", desc="texts", disable=not progress) as bar:
        for start in range(0, len(texts), chunk_size):
            chunk = texts[start : start + chunk_size]
            parts.append(encoder.encode_texts(chunk, batch_size=batch_size))
            bar.update(len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.embed_dim), np.float32)


def embed_pairs(
    encoder: DualEncoder,
    records: Sequence[Record],
    batch_size: int = 64,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> EmbeddedPairs:
    """Embed the records that have both an image and a text; a broken image drops its pair,
    and so does a record its reader could not use (``error``: its photo is never opened)."""
    unusable = [
        Reject(i, printable(r.image), r.error)
        for i, r in enumerate(records)
        if r.error and r.image is not None
    ]
    paired = [r for r in records if r.image is not None and r.has_text and not r.error]
    if not paired:
        raise ValueError("no record has both an image and a text: nothing to pair")
    kept, image_embeddings, rejects = embed_images(
        encoder, [r.image for r in paired], batch_size, workers, max_pixels, progress
    )
    rejects = unusable + rejects
    kept_records = [paired[i] for i in kept]
    build_text = RecipeTextBuilder.for_tokenizer(encoder.tokenizer)
    texts = [build_text(r) for r in kept_records]
    text_embeddings = embed_texts(encoder, texts, progress=progress)
    return EmbeddedPairs(kept_records, image_embeddings, text_embeddings, texts, rejects)
