"""Same-dish handling in the contrastive loss, and the dish-type and ingredient losses, each
against a naive row-by-row computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from multimodal.loss import ContrastiveLoss, DishClassificationLoss, IngredientLoss


def _unit(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=generator), dim=-1)


def naive_same_dish_direction(queries, positives, scale, dishes, mode, weight):
    """Row by row: the true pair, the query's same-dish candidates (other rows of its dish),
    and the other candidates, scored as the mode says."""
    total = 0.0
    for i, query in enumerate(queries):
        scores = {j: float(scale * query @ c) for j, c in enumerate(positives)}
        same = [j for j in scores if j != i and dishes[i] >= 0 and dishes[j] == dishes[i]]
        if mode == "mask":
            scores = {j: s for j, s in scores.items() if j not in same}
        log_z = math.log(sum(math.exp(s) for s in scores.values()))
        if mode == "soft" and same:
            target = {i: 1 - weight, **{j: weight / len(same) for j in same}}
        else:
            target = {i: 1.0}
        total += -sum(t * (scores[j] - log_z) for j, t in target.items())
    return total / len(queries)


@pytest.mark.parametrize("mode", ["negative", "mask", "soft"])
def test_same_dish_modes_match_naive(mode):
    images, texts = _unit(7, 12, seed=1), _unit(7, 12, seed=2)
    dishes = torch.tensor([0, 1, 0, 2, 1, 0, -1])  # three of dish 0, two of dish 1, one unknown
    loss = ContrastiveLoss(same_dish=mode, soft_weight=0.3)
    got = loss(images, texts, torch.tensor(15.0), dishes=dishes)
    expected = (
        naive_same_dish_direction(images, texts, 15.0, dishes.tolist(), mode, 0.3)
        + naive_same_dish_direction(texts, images, 15.0, dishes.tolist(), mode, 0.3)
    ) / 2
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_same_dish_mask_spares_mined_negatives_of_the_dish_too():
    images, texts = _unit(3, 8, seed=3), _unit(3, 8, seed=4)
    hard = _unit(2, 8, seed=5)
    dishes, hard_dishes = torch.tensor([0, 1, 2]), torch.tensor([0, 5])
    masked = ContrastiveLoss("mask")(
        images,
        texts,
        torch.tensor(10.0),
        hard_texts=hard,
        hard_images=hard,
        dishes=dishes,
        hard_text_dishes=hard_dishes,
        hard_image_dishes=hard_dishes,
    )
    # Masking hard item 0 (dish 0) for query 0 is the same as never mining it for that row:
    # compare against the loss with that candidate's score pushed to -inf by hand.
    logits = 10.0 * images @ torch.cat([texts, hard]).T
    logits[0, 3] = float("-inf")
    i2t = F.cross_entropy(logits, torch.arange(3))
    logits = 10.0 * texts @ torch.cat([images, hard]).T
    logits[0, 3] = float("-inf")
    t2i = F.cross_entropy(logits, torch.arange(3))
    assert masked.item() == pytest.approx(((i2t + t2i) / 2).item(), rel=1e-5)


def test_soft_targets_with_no_same_dish_item_are_the_plain_loss():
    images, texts = _unit(5, 8, seed=6), _unit(5, 8, seed=7)
    dishes = torch.arange(5)  # every item its own dish
    soft = ContrastiveLoss("soft", 0.5)(images, texts, torch.tensor(10.0), dishes=dishes)
    plain = ContrastiveLoss()(images, texts, torch.tensor(10.0))
    assert soft.item() == pytest.approx(plain.item(), rel=1e-6)


def test_bad_same_dish_settings_are_refused():
    with pytest.raises(ValueError, match="same_dish must be one of"):
        ContrastiveLoss("ignore")
    with pytest.raises(ValueError, match="soft_weight"):
        ContrastiveLoss("soft", 1.0)


def test_dish_classification_loss_matches_naive():
    torch.manual_seed(0)
    loss = DishClassificationLoss(8, 4)
    images, texts = _unit(5, 8, seed=8), _unit(5, 8, seed=9)
    dishes = torch.tensor([0, 3, -1, 2, 0])
    weight, bias = loss.classifier.weight.detach(), loss.classifier.bias.detach()

    def naive(features):
        terms = []
        for x, dish in zip(features, dishes.tolist(), strict=True):
            if dish < 0:
                continue
            logits = [float(w @ x + b) for w, b in zip(weight, bias, strict=True)]
            terms.append(-(logits[dish] - math.log(sum(math.exp(v) for v in logits))))
        return sum(terms) / len(terms)

    expected = (naive(images) + naive(texts)) / 2
    assert loss(images, texts, dishes).item() == pytest.approx(expected, rel=1e-5)


def test_ingredient_loss_matches_naive_and_skips_items_without_ingredients():
    torch.manual_seed(1)
    loss = IngredientLoss(8, 3)
    images = _unit(4, 8, seed=10)
    targets = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.uint8)
    weight, bias = loss.classifier.weight.detach(), loss.classifier.bias.detach()
    terms = []
    for x, row in zip(images, targets.tolist(), strict=True):
        if not any(row):
            continue
        for w, b, y in zip(weight, bias, row, strict=True):
            p = 1 / (1 + math.exp(-float(w @ x + b)))
            terms.append(-(y * math.log(p) + (1 - y) * math.log(1 - p)))
    assert loss(images, targets).item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_semantic_losses_get_gradients_and_handle_unknown_everything():
    images = _unit(3, 8, seed=11).requires_grad_()
    texts = _unit(3, 8, seed=12)
    dish = DishClassificationLoss(8, 2)
    assert dish(images, texts, torch.tensor([-1, -1, -1])).item() == 0.0
    ingredients = IngredientLoss(8, 2)
    assert ingredients(images, torch.zeros(3, 2)).item() == 0.0
    total = dish(images, texts, torch.tensor([0, 1, 0])) + ingredients(
        images, torch.tensor([[1, 0], [0, 1], [1, 1]])
    )
    total.backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
