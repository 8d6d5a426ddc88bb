"""The contrastive loss against a naive per-row computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from multimodal.loss import ContrastiveLoss, false_negative_mask


def _unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def naive_direction(queries, positives, scale, hard=None, groups=None, hard_groups=None):
    """Row by row: -log softmax of the true pair among the unmasked candidates."""
    candidates = list(positives) + ([] if hard is None else list(hard))
    candidate_groups = None
    if groups is not None:
        candidate_groups = list(groups) + ([] if hard is None else list(hard_groups))
    total = 0.0
    for i, query in enumerate(queries):
        terms = []
        for j, candidate in enumerate(candidates):
            if j != i and groups is not None:
                shared = any(
                    int(a) == int(b) and int(a) >= 0
                    for a, b in zip(groups[i], candidate_groups[j], strict=True)
                )
                if shared:
                    continue
            terms.append(float(scale * query @ candidate))
        true = float(scale * query @ positives[i])
        total += -(true - math.log(sum(math.exp(t) for t in terms)))
    return total / len(queries)


def naive_loss(images, texts, scale, **kwargs):
    i2t = naive_direction(
        images,
        texts,
        scale,
        kwargs.get("hard_texts"),
        kwargs.get("groups"),
        kwargs.get("hard_text_groups"),
    )
    t2i = naive_direction(
        texts,
        images,
        scale,
        kwargs.get("hard_images"),
        kwargs.get("groups"),
        kwargs.get("hard_image_groups"),
    )
    return (i2t + t2i) / 2


def test_in_batch_matches_naive():
    images, texts = _unit(8, 16, seed=1), _unit(8, 16, seed=2)
    got = ContrastiveLoss()(images, texts, torch.tensor(10.0))
    assert got.item() == pytest.approx(naive_loss(images, texts, 10.0), rel=1e-5)


def test_hard_negatives_and_masks_match_naive():
    images, texts = _unit(6, 16, seed=3), _unit(6, 16, seed=4)
    hard_texts, hard_images = _unit(10, 16, seed=5), _unit(10, 16, seed=6)
    # column 0: recipe, column 1: text key (-1: none)
    groups = torch.tensor([[0, 7], [1, -1], [0, -1], [2, 7], [3, -1], [4, -1]])
    hard_text_groups = torch.tensor([[1, -1], [9, -1], [0, -1]] + [[20 + i, -1] for i in range(7)])
    hard_image_groups = torch.tensor([[5, 7]] + [[30 + i, -1] for i in range(9)])
    kwargs = dict(
        hard_texts=hard_texts,
        hard_images=hard_images,
        groups=groups,
        hard_text_groups=hard_text_groups,
        hard_image_groups=hard_image_groups,
    )
    got = ContrastiveLoss()(images, texts, torch.tensor(20.0), **kwargs)
    assert got.item() == pytest.approx(naive_loss(images, texts, 20.0, **kwargs), rel=1e-5)


def test_masking_never_hides_the_true_pair():
    images, texts = _unit(4, 8, seed=7), _unit(4, 8, seed=8)
    groups = torch.zeros(4, 1, dtype=torch.long)  # every item in one group
    loss = ContrastiveLoss()(images, texts, torch.tensor(5.0), groups=groups)
    # Only the true pair is left as a candidate: the loss is exactly zero, not inf or nan.
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_false_negative_mask_ignores_missing_groups():
    query = torch.tensor([[1, -1], [2, 5]])
    candidates = torch.tensor([[1, 3], [-1, -1], [4, 5]])
    assert false_negative_mask(query, candidates).tolist() == [
        [True, False, False],
        [False, False, True],
    ]


def test_hard_negatives_raise_the_loss_and_get_gradient():
    images = _unit(4, 8, seed=9).requires_grad_()
    texts = _unit(4, 8, seed=10)
    hard = F.normalize(texts + 0.05 * _unit(4, 8, seed=11), dim=-1)  # near-copies of positives
    loss_fn = ContrastiveLoss()
    plain = loss_fn(images, texts, torch.tensor(10.0))
    with_hard = loss_fn(
        images, texts, torch.tensor(10.0), hard_texts=hard, hard_images=images.detach()
    )
    assert with_hard > plain
    with_hard.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
