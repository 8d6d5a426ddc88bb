"""What a user of the demo sees, measured on paired embeddings (image i belongs with text i).

- **Dish type** (both directions): ``top1``, the share of queries whose best result is of the
  query's dish type, and ``top5``, the mean share of the 5 best results that are.
- **Ingredients suggested from a photo** (image -> texts): the :data:`VOTERS` nearest texts
  vote as the page does (:func:`multimodal.suggestions.vote_ingredients`), scored against the
  photo's own ingredient set: ``P@5`` (right ones among the first 5, over 5) and ``R@10``
  (right ones among the first 10, over the size of the set). The photo's own recipe never
  votes: neither its own text nor any item with its ``recipe_id``. Two baselines from the same
  gallery, with the same recipe left out: ``frequent``, the ingredients most items have, and
  ``true_dish``, equal votes of every item of the photo's true dish type (a perfect dish
  recogniser). Photos with no ingredients are not scored.

Ranking ties go to the lower gallery index, as a stable sort would order them. Figures are
percentages; a figure that needs labels or ingredients the records lack is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from multimodal.data.records import Record
from multimodal.suggestions import VOTERS, item_ingredients, ranked, vote_ingredients

DISH_TOP = 5  # results the dish-type share is taken over
PRECISION_AT = 5  # suggested ingredients P@ counts
RECALL_AT = 10  # suggested ingredients R@ counts
SUGGESTERS = ("model", "frequent", "true_dish")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` highest scores, best first; equal scores in index
    order (what a stable sort gives), without sorting whole rows."""
    rows, n = scores.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((rows, 0), dtype=np.int64)
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th highest
    above, tied = scores > kth, scores == kth
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
    columns = np.nonzero(chosen)[1].reshape(rows, k)  # ascending index within each row
    order = np.argsort(-np.take_along_axis(scores, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def dish_type_shares(
    queries: np.ndarray, gallery: np.ndarray, labels: Sequence, chunk_size: int = 512
) -> dict[str, float]:
    """``top1`` and ``top5``: percent of the best result, and mean percent of the best 5, of the
    query's class (the gallery is every item, the query's own pair included)."""
    labels = np.asarray(labels)
    first, share = [], []
    for start in range(0, len(queries), chunk_size):
        best = top_k(queries[start : start + chunk_size] @ gallery.T, DISH_TOP)
        same = labels[best] == labels[start : start + len(best), None]
        first.append(same[:, 0])
        share.append(same.mean(axis=1))
    return {
        "top1": 100.0 * float(np.mean(np.concatenate(first))),
        f"top{DISH_TOP}": 100.0 * float(np.mean(np.concatenate(share))),
    }


def recipe_groups(records: Sequence[Record]) -> np.ndarray:
    """A group number per record: records sharing a ``recipe_id`` share one; a record without
    one is its own group."""
    numbers: dict[object, int] = {}
    keys = [
        ("recipe", r.recipe_id) if r.recipe_id is not None else ("item", i)
        for i, r in enumerate(records)
    ]
    return np.array([numbers.setdefault(key, len(numbers)) for key in keys], dtype=np.int64)


def model_suggestions(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    names: Sequence[set[str]],
    groups: np.ndarray,
    voters: int = VOTERS,
    chunk_size: int = 512,
) -> list[list[str]]:
    """For each photo, the first :data:`RECALL_AT` ingredients its ``voters`` nearest texts
    vote for, leaving out every text of the photo's own group."""
    suggested = []
    for start in range(0, len(image_embeddings), chunk_size):
        scores = image_embeddings[start : start + chunk_size] @ text_embeddings.T
        own = groups[start : start + len(scores), None] == groups[None, :]
        scores[own] = -np.inf
        for row, nearest in zip(scores, top_k(scores, voters), strict=True):
            votes = [(row[j], names[j]) for j in nearest if np.isfinite(row[j])]
            suggested.append([name for name, _ in vote_ingredients(votes, RECALL_AT)])
    return suggested


def counted_suggestions(
    names: Sequence[set[str]], groups: np.ndarray, pools: Sequence
) -> list[list[str]]:
    """For each item, the first :data:`RECALL_AT` ingredients by the number of items of its pool
    (``pools[i]``: items with the same value vote together) that have them, leaving out the
    item's own group; one vote per item, as :func:`vote_ingredients` gives equal scores."""
    pool_counts: dict[object, Counter] = {}
    left_out: dict[tuple, Counter] = {}
    for item_names, group, pool in zip(names, groups, pools, strict=True):
        pool_counts.setdefault(pool, Counter()).update(item_names)
        left_out.setdefault((pool, group), Counter()).update(item_names)
    # Leaving a group out only lowers the counts of its own names, so the first RECALL_AT
    # are among the pool's first RECALL_AT + (number of those names).
    pool_ranking = {pool: ranked(counts, len(counts)) for pool, counts in pool_counts.items()}
    suggested = []
    for group, pool in zip(groups, pools, strict=True):
        removed = left_out[(pool, group)]
        candidates = pool_ranking[pool][: RECALL_AT + len(removed)]
        kept = {name: count - removed[name] for name, count in candidates}
        suggested.append([name for name, _ in ranked(kept, RECALL_AT) if kept[name] > 0])
    return suggested


def suggestion_scores(suggested: Sequence[list[str]], truth: Sequence[set[str]]) -> dict:
    """``P@5`` and ``R@10`` (percent) of suggestion lists against the true sets."""
    pairs = list(zip(suggested, truth, strict=True))
    precision = [len(set(s[:PRECISION_AT]) & t) / PRECISION_AT for s, t in pairs]
    recall = [len(set(s[:RECALL_AT]) & t) / len(t) for s, t in pairs]
    return {
        f"P@{PRECISION_AT}": 100.0 * float(np.mean(precision)),
        f"R@{RECALL_AT}": 100.0 * float(np.mean(recall)),
    }


def ingredient_figures(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    records: Sequence[Record],
    voters: int = VOTERS,
) -> dict | None:
    """P@5 and R@10 of the suggestions from each photo, for the model and the two baselines
    (``true_dish`` only when every record has a label); None when no record has ingredients."""
    names = [item_ingredients(r.ingredients_simplified, r.ingredients) for r in records]
    scored = [i for i, item_names in enumerate(names) if item_names]
    if not scored:
        return None
    groups = recipe_groups(records)
    suggested = {
        "model": model_suggestions(image_embeddings, text_embeddings, names, groups, voters),
        "frequent": counted_suggestions(names, groups, [None] * len(records)),
    }
    if all(r.label is not None for r in records):
        suggested["true_dish"] = counted_suggestions(names, groups, [r.label for r in records])
    truth = [names[i] for i in scored]
    figures = {"photos": len(scored), "voters": voters}
    for suggester, lists in suggested.items():
        figures[suggester] = suggestion_scores([lists[i] for i in scored], truth)
    return figures


def user_metrics(
    image_embeddings: np.ndarray,
    text_embeddings: np.ndarray,
    records: Sequence[Record],
    voters: int = VOTERS,
) -> dict:
    """Dish-type shares both ways and ingredient suggestions from photos (module docstring).

    >>> user = user_metrics(pairs.image, pairs.text, pairs.records)  # doctest: +SKIP
    >>> user["image_to_text"]["top1"], user["ingredients"]["model"]["P@5"]  # doctest: +SKIP
    """
    if not len(image_embeddings) == len(text_embeddings) == len(records):
        raise ValueError(
            f"{len(image_embeddings)} images, {len(text_embeddings)} texts and "
            f"{len(records)} records: not paired"
        )
    result: dict = {"pairs": len(records)}
    if records and all(r.label is not None for r in records):
        labels = [r.label for r in records]
        result["image_to_text"] = dish_type_shares(image_embeddings, text_embeddings, labels)
        result["text_to_image"] = dish_type_shares(text_embeddings, image_embeddings, labels)
    ingredients = ingredient_figures(image_embeddings, text_embeddings, records, voters)
    if ingredients:
        result["ingredients"] = ingredients
    return result


SUGGESTER_NAMES = {
    "model": "model (nearest recipes vote)",
    "frequent": "baseline: most frequent",
    "true_dish": "baseline: true dish type",
}


def format_user_table(user: dict) -> str:
    """The "what a user sees" table: dish-type shares, then ingredient suggestions."""
    lines = [f"what a user sees: {user['pairs']} pairs"]
    if "image_to_text" in user:
        header = f"{'dish type of the results':<30}{'top-1':>9}{'top-5 share':>13}"
        lines += [header, "-" * len(header)]
        for direction in ("image_to_text", "text_to_image"):
            row = user[direction]
            lines.append(f"{direction:<30}{row['top1']:>9.2f}{row[f'top{DISH_TOP}']:>13.2f}")
    ingredients = user.get("ingredients")
    if ingredients:
        lines.append(
            f"ingredients suggested from {ingredients['photos']} photos "
            f"({ingredients['voters']} nearest recipes vote; the photo's own recipe left out)"
        )
        precision, recall = f"P@{PRECISION_AT}", f"R@{RECALL_AT}"
        header = f"{'suggester':<30}{precision:>9}{recall:>9}"
        lines += [header, "-" * len(header)]
        for suggester in SUGGESTERS:
            if suggester in ingredients:
                row = ingredients[suggester]
                name = SUGGESTER_NAMES[suggester]
                lines.append(f"{name:<30}{row[precision]:>9.2f}{row[recall]:>9.2f}")
    return "\n".join(lines)
