"""Retrieval metrics against a naive per-query reference."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.metrics import bag_metrics, pair_ranks, retrieval_metrics


def naive_direction(queries, gallery, labels=None):
    ranks, class_hits = [], []
    for i, query in enumerate(queries):
        scores = [float(query @ item) for item in gallery]
        ordered = sorted(range(len(gallery)), key=lambda j: -scores[j])
        better = [j for j in ordered if scores[j] > scores[i]]
        ranks.append(len(better) + 1)
        if labels is not None:
            class_hits.append(labels[ordered[0]] == labels[i])
    ranks = np.array(ranks)
    result = {
        "R@1": 100 * np.mean(ranks <= 1),
        "R@5": 100 * np.mean(ranks <= 5),
        "R@10": 100 * np.mean(ranks <= 10),
        "MedR": float(np.median(ranks)),
        "MeanR": float(np.mean(ranks)),
    }
    if labels is not None:
        result["class@1"] = 100 * np.mean(class_hits)
    return result


def _paired(n, dim=16, noise=1.0, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, dim)).astype(np.float32)
    texts = images + noise * rng.normal(size=(n, dim)).astype(np.float32)
    normalise = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    return normalise(images), normalise(texts)


@pytest.mark.parametrize("noise", [0.3, 1.0, 3.0])
def test_full_set_metrics_match_naive(noise):
    images, texts = _paired(120, noise=noise)
    labels = [f"class{i % 7}" for i in range(120)]
    metrics = retrieval_metrics(images, texts, labels)
    for direction, (q, g) in {
        "image_to_text": (images, texts),
        "text_to_image": (texts, images),
    }.items():
        expected = naive_direction(q, g, labels)
        assert metrics[direction] == pytest.approx(expected), direction


def test_chunking_does_not_change_ranks():
    images, texts = _paired(300, noise=2.0)
    np.testing.assert_array_equal(
        pair_ranks(images, texts, chunk_size=7), pair_ranks(images, texts, chunk_size=1000)
    )


def test_bag_protocol_is_the_mean_over_seeded_bags():
    images, texts = _paired(200, noise=1.5)
    labels = np.array([i % 5 for i in range(200)])
    result = bag_metrics(images, texts, labels, bags=4, bag_size=50, seed=3)
    rng = np.random.default_rng(3)
    per_bag = []
    for _ in range(4):
        chosen = rng.choice(200, size=50, replace=False)
        per_bag.append(naive_direction(texts[chosen], images[chosen], labels[chosen]))
    for key in ("R@1", "R@5", "R@10", "MedR", "MeanR", "class@1"):
        values = [bag[key] for bag in per_bag]
        assert result["text_to_image"][key] == pytest.approx(np.mean(values))
        assert result["text_to_image"][f"{key}_std"] == pytest.approx(np.std(values))


def test_perfect_and_chance_embeddings():
    eye = np.eye(50, dtype=np.float32)
    perfect = retrieval_metrics(eye, eye)["image_to_text"]
    assert perfect["R@1"] == 100.0 and perfect["MedR"] == 1.0
    chance = retrieval_metrics(*_paired(1000, noise=1e6, seed=1))["text_to_image"]
    assert chance["R@10"] < 3.0 and 350 < chance["MedR"] < 650


def test_bag_larger_than_the_data_is_a_clear_error():
    images, texts = _paired(30)
    with pytest.raises(ValueError, match="--bag-size 30"):
        bag_metrics(images, texts, bag_size=1000)


def test_unpaired_inputs_are_refused():
    with pytest.raises(ValueError, match="not paired"):
        pair_ranks(np.zeros((3, 4)), np.zeros((4, 4)))
