"""What a user sees (dish types, suggested ingredients) against a naive per-query reference.

Embeddings are small integers, so every dot product is exact in float32 and ties are real ties.
"""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.data.records import Record
from multimodal.suggestions import VOTERS
from multimodal.user_metrics import (
    dish_type_shares,
    format_user_table,
    model_suggestions,
    recipe_groups,
    top_k,
    user_metrics,
)

# -- the naive reference: plain loops over every query and gallery item ----------------------


def naive_names(record):
    return {
        n.strip().lower()
        for n in (record.ingredients_simplified or record.ingredients)
        if n.strip()
    }


def naive_order(query, gallery, skip=()):
    """Gallery indices by score, best first (ties: lower index first), and the scores."""
    scores = {
        j: sum(float(a) * float(b) for a, b in zip(query, item, strict=True))
        for j, item in enumerate(gallery)
        if j not in skip
    }
    return sorted(scores, key=lambda j: -scores[j]), scores


def naive_dish(queries, gallery, labels):
    first, share = [], []
    for i, query in enumerate(queries):
        order, _ = naive_order(query, gallery)
        first.append(labels[order[0]] == labels[i])
        share.append(sum(labels[j] == labels[i] for j in order[:5]) / len(order[:5]))
    return {"top1": 100 * sum(first) / len(first), "top5": 100 * sum(share) / len(share)}


def naive_ranking(votes):
    return [name for name, _ in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))]


def naive_suggestions(i, images, texts, records, voters):
    """Model, frequent and true-dish suggestions for photo i, its own recipe left out."""
    own = records[i].recipe_id
    skip = {j for j, r in enumerate(records) if j == i or (own is not None and r.recipe_id == own)}
    order, scores = naive_order(images[i], texts, skip)
    model, total = {}, 0.0
    for j in order[:voters]:
        weight = max(scores[j], 0.0)
        for name in naive_names(records[j]):
            model[name] = model.get(name, 0.0) + weight
        total += weight
    frequent, true_dish = {}, {}
    for j, record in enumerate(records):
        if j in skip:
            continue
        for name in naive_names(record):
            frequent[name] = frequent.get(name, 0) + 1
            if record.label == records[i].label:
                true_dish[name] = true_dish.get(name, 0) + 1
    return {
        "model": naive_ranking(model) if total > 0 else [],
        "frequent": naive_ranking(frequent),
        "true_dish": naive_ranking(true_dish),
    }


def naive_ingredients(images, texts, records, voters):
    sums = {s: {"P@5": 0.0, "R@10": 0.0} for s in ("model", "frequent", "true_dish")}
    photos = 0
    for i, record in enumerate(records):
        truth = naive_names(record)
        if not truth:
            continue
        photos += 1
        for suggester, names in naive_suggestions(i, images, texts, records, voters).items():
            sums[suggester]["P@5"] += len(set(names[:5]) & truth) / 5
            sums[suggester]["R@10"] += len(set(names[:10]) & truth) / len(truth)
    figures = {s: {k: 100 * v / photos for k, v in row.items()} for s, row in sums.items()}
    return {"photos": photos, "voters": voters, **figures}


def naive_user(images, texts, records, voters=VOTERS):
    labels = [r.label for r in records]
    return {
        "pairs": len(records),
        "image_to_text": naive_dish(images, texts, labels),
        "text_to_image": naive_dish(texts, images, labels),
        "ingredients": naive_ingredients(images, texts, records, voters),
    }


# -- the constructed sets -------------------------------------------------------------------


def hand_made():
    """Ten pairs, three dish types. Photos 0 and 1 share recipe "r0" (one text, twice);
    texts 3 and 4 tie for every photo; text 5 scores below 0 for photo 2; record 6 has no
    recipe id; record 7 lists no ingredient; record 8 has only ingredient phrases, in
    another case and with spaces."""
    images = [
        [2, 0, 0],
        [2, 1, 0],
        [0, 2, 0],
        [1, 1, 1],
        [0, 1, 2],
        [-1, 0, 2],
        [0, 0, 2],
        [1, 2, 0],
        [2, 2, 0],
        [0, 1, 1],
    ]
    texts = [
        [2, 1, 0],
        [2, 1, 0],
        [0, 2, 1],
        [1, 1, 1],
        [1, 1, 1],
        [0, -1, 2],
        [0, 1, 2],
        [1, 2, 1],
        [2, 1, 1],
        [0, 1, 1],
    ]
    rows = [
        ("tart", "r0", ["egg", "flour", "sugar"]),
        ("tart", "r0", ["egg", "flour", "sugar"]),
        ("tart", "r2", ["egg", "flour", "apple"]),
        ("soup", "r3", ["onion", "salt", "water"]),
        ("soup", "r4", ["onion", "salt", "carrot"]),
        ("salad", "r5", ["lettuce", "salt", "oil"]),
        ("salad", None, ["lettuce", "tomato", "oil"]),
        ("soup", "r7", []),
        ("tart", "r8", None),
        ("salad", "r9", ["oil", "salt", "egg"]),
    ]
    records = [
        Record(
            image=None,
            title=f"item {i}",
            label=label,
            recipe_id=recipe,
            ingredients_simplified=simplified or [],
            ingredients=[" Egg ", "FLOUR", "Butter "] if simplified is None else [],
        )
        for i, (label, recipe, simplified) in enumerate(rows)
    ]
    as_array = lambda rows: np.array(rows, dtype=np.float32)  # noqa: E731
    return as_array(images), as_array(texts), records


def drawn(n=60, recipes=35, seed=0):
    """Integer embeddings with many ties; photos drawn from recipes (a recipe's photos share
    its text, dish type and up to 6 of 12 ingredients, maybe none); every 10th photo has no
    recipe id."""
    rng = np.random.default_rng(seed)
    recipe_texts = rng.integers(-2, 3, size=(recipes, 4)).astype(np.float32)
    dishes = [f"dish {d}" for d in rng.integers(5, size=recipes)]
    vocabulary = [f"ingredient {k}" for k in range(12)]
    names = [
        list(rng.choice(vocabulary, size=rng.integers(0, 7), replace=False)) for _ in range(recipes)
    ]
    recipe_of = rng.integers(recipes, size=n)
    records = [
        Record(
            image=None,
            label=dishes[r],
            ingredients_simplified=names[r],
            recipe_id=None if i % 10 == 9 else str(r),
        )
        for i, r in enumerate(recipe_of)
    ]
    images = rng.integers(-2, 3, size=(n, 4)).astype(np.float32)
    return images, recipe_texts[recipe_of], records


# -- the tests ------------------------------------------------------------------------------


def assert_close(got, expected, where="user"):
    assert got.keys() == expected.keys(), where
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_close(got[key], value, f"{where}.{key}")
        else:
            assert got[key] == pytest.approx(value), f"{where}.{key}"


@pytest.mark.parametrize("voters", [1, 3, VOTERS])
def test_hand_made_set_matches_naive(voters):
    images, texts, records = hand_made()
    expected = naive_user(images, texts, records, voters)
    assert expected["ingredients"]["photos"] == 9  # record 7 has nothing to score against
    assert_close(user_metrics(images, texts, records, voters), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("voters", [2, VOTERS])
def test_drawn_sets_match_naive(seed, voters):
    images, texts, records = drawn(seed=seed)
    assert_close(
        user_metrics(images, texts, records, voters), naive_user(images, texts, records, voters)
    )


def test_chunks_do_not_change_the_figures():
    images, texts, records = drawn(n=50, seed=3)
    labels = [r.label for r in records]
    assert dish_type_shares(images, texts, labels, chunk_size=7) == dish_type_shares(
        images, texts, labels
    )
    names = [set(r.ingredients_simplified) for r in records]
    groups = recipe_groups(records)
    assert model_suggestions(images, texts, names, groups, chunk_size=3) == model_suggestions(
        images, texts, names, groups
    )


@pytest.mark.parametrize("k", [1, 2, 5, 9, 20])
def test_top_k_is_a_stable_sort_cut_short(k):
    rng = np.random.default_rng(k)
    scores = rng.integers(-3, 4, size=(30, 9)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(top_k(scores, k), expected)


def test_the_own_recipe_never_votes():
    """Photo 0's own text and its twin (photo 1's, same recipe) tie with text 8 as its
    nearest, and come first by index; left out, text 8 alone votes (one voter)."""
    images, texts, records = hand_made()
    names = [naive_names(r) for r in records]
    suggested = model_suggestions(images, texts, names, recipe_groups(records), voters=1)
    assert suggested[0] == ["butter", "egg", "flour"]  # record 8's phrases, equal votes


def test_records_without_labels_or_ingredients_leave_those_figures_out():
    images, texts, records = hand_made()
    for record in records:
        record.ingredients_simplified, record.ingredients = [], []
    assert "ingredients" not in user_metrics(images, texts, records)
    records[0].label = None
    assert user_metrics(images, texts, records) == {"pairs": len(records)}


def test_unpaired_inputs_are_refused():
    images, texts, records = hand_made()
    with pytest.raises(ValueError, match="not paired"):
        user_metrics(images, texts[:-1], records)


def test_the_table_names_every_figure():
    images, texts, records = hand_made()
    table = format_user_table(user_metrics(images, texts, records))
    for words in (
        "what a user sees",
        "image_to_text",
        "text_to_image",
        "top-5 share",
        "P@5",
        "R@10",
        "most frequent",
        "true dish type",
        "9 photos",
    ):
        assert words in table
