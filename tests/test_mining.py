"""Hard-negative mining on a constructed set whose scores are known from angles."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.mining import MiningConfig, mine_hard_negatives


def _at(degrees):
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


# Query 0 sits at 0 degrees; its positive (gallery 0) at 30 degrees scores cos 30 = 0.866.
# Gallery items 1..5 at 10, 20, 40, 80, 120 degrees score 0.985, 0.940, 0.766, 0.174, -0.5.
QUERIES = _at([0, 10, 20, 40, 80, 120])
GALLERY = _at([30, 10, 20, 40, 80, 120])


def _row0(**config):
    return mine_hard_negatives(QUERIES, GALLERY, config=MiningConfig(**config))[0].tolist()


def test_hardest_without_margin_takes_the_top_scores():
    assert _row0(k=2, margin=None) == [1, 2]


def test_margin_skips_likely_false_negatives_above_the_positive():
    # 0.985 and 0.940 are above 0.866 - 0.05: likely positives, skipped
    assert _row0(k=2, margin=0.05) == [3, 4]
    # a negative margin allows items up to 0.866 + 0.1 = 0.966: item 2 (0.940) only
    assert _row0(k=2, margin=-0.1) == [2, 3]


def test_dish_types_choose_other_or_same_dish_negatives():
    dishes = np.array([0, 0, 1, 0, 1, -1])  # query 0 is of dish 0, like items 1 and 3
    mine = lambda dish: mine_hard_negatives(  # noqa: E731
        QUERIES, GALLERY, config=MiningConfig(k=2, margin=None, dish=dish), dishes=dishes
    )[0].tolist()
    assert mine("any") == [1, 2]
    assert mine("other") == [2, 4]  # never an item of the query's dish (1, 3)
    assert mine("same") == [1, 3]  # only its dish
    with pytest.raises(ValueError, match="mining dish"):
        MiningConfig(dish="nearby")


def test_semi_hard_keeps_only_items_below_the_positive():
    assert _row0(k=2, margin=None, strategy="semi-hard") == [3, 4]


def test_groups_are_never_negatives():
    groups = np.array([[0], [1], [2], [0], [4], [5]])  # item 3 is the same recipe as item 0
    mined = mine_hard_negatives(QUERIES, GALLERY, groups, MiningConfig(k=2, margin=0.05))
    assert mined[0].tolist() == [4, 5]


def test_random_draws_distinct_items_from_the_window_reproducibly():
    config = MiningConfig(k=2, strategy="random", window=3, margin=None)
    first = mine_hard_negatives(QUERIES, GALLERY, config=config, seed=1)
    again = mine_hard_negatives(QUERIES, GALLERY, config=config, seed=1)
    np.testing.assert_array_equal(first, again)
    assert set(first[0]) <= {1, 2, 3} and len(set(first[0])) == 2
    draws = {
        tuple(sorted(mine_hard_negatives(QUERIES, GALLERY, config=config, seed=s)[0]))
        for s in range(20)
    }
    assert len(draws) > 1  # really random within the window


def test_too_few_eligible_items_leave_empty_slots():
    mined = mine_hard_negatives(QUERIES, GALLERY, config=MiningConfig(k=5, window=5, margin=0.5))
    # only items 4 (0.174) and 5 (-0.5) are below 0.866 - 0.5
    assert mined[0].tolist() == [4, 5, -1, -1, -1]


def test_never_the_item_itself_and_chunking_changes_nothing():
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(300, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    texts = embeddings + 0.3 * rng.normal(size=embeddings.shape).astype(np.float32)
    small = mine_hard_negatives(embeddings, texts, config=MiningConfig(k=3, chunk_size=7))
    large = mine_hard_negatives(embeddings, texts, config=MiningConfig(k=3, chunk_size=4096))
    np.testing.assert_array_equal(small, large)
    assert not (small == np.arange(300)[:, None]).any()


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="strategy"):
        MiningConfig(strategy="hardest-ever")
    with pytest.raises(ValueError, match="window >= k"):
        MiningConfig(k=10, window=5)
