"""One evaluation for ``multimodal eval`` and for training: records -> embeddings -> labels ->
metrics.

Training's fast path (cached frozen-prefix features) makes its embeddings another way, then
goes through the same two last steps, :func:`class_labels` and :func:`score_embeddings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.records import Record
from multimodal.embedding import EmbeddedPairs, embed_pairs
from multimodal.encoder import DualEncoder
from multimodal.metrics import retrieval_metrics


@dataclass
class Evaluation:
    metrics: dict[str, dict[str, float]]  # both directions, as retrieval_metrics gives them
    pairs: EmbeddedPairs  # the pairs scored, their embeddings and the rejected images
    labels: list | None  # the class of each pair; None unless every pair has one


def class_labels(records: Sequence[Record]) -> list | None:
    """The records' class labels for ``class@1``; None unless every record has one."""
    labels = [r.label for r in records]
    return labels if all(label is not None for label in labels) else None


def score_embeddings(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, labels: Sequence | None
) -> dict[str, dict[str, float]]:
    """The metric step every evaluation ends with: image i pairs with text i."""
    return retrieval_metrics(image_embeddings, text_embeddings, labels)


def evaluate(
    encoder: DualEncoder,
    records: Sequence[Record],
    batch_size: int = 64,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> Evaluation:
    """Cross-modal recall of ``encoder`` on the records that have an image and a text; a
    photo that cannot be read drops its pair.

    >>> result = evaluate(load_encoder("tiny-random"), read_records(data))  # doctest: +SKIP
    >>> result.metrics["image_to_text"]["R@1"]  # doctest: +SKIP
    """
    pairs = embed_pairs(encoder, records, batch_size, workers, max_pixels, progress)
    labels = class_labels(pairs.records)
    return Evaluation(score_embeddings(pairs.image, pairs.text, labels), pairs, labels)
