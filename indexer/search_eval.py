"""How search is asked, measured: one split indexed, another one's items as queries.

Every query goes through :class:`indexer.search.Searcher` (``nearest``, ``looks_like``,
``ingredients_of``), exactly as the CLI and the page ask, so the figures measure what people
get. The queries are embedded once and reused (:class:`Queries`); the collection never holds
them (:func:`check_unseen`).

- **Text -> photos** (:func:`dish_scores`), for each kind of text query (a recipe's title, its
  ingredient list, both) and each mode (dense, hybrid, sparse): ``top1``, the share of
  queries whose best photo is of the query's dish type; ``R@10``, the share with at least one
  such photo among the first 10; ``P@10``, the mean share of the first 10 that are (a search
  that returns fewer than 10 counts the missing ones as wrong).
- **Photo -> recipes** (dense): the dish type of the best recipe against the top "looks
  like" vote of the :data:`VOTERS` nearest recipes.
- **Ingredients suggested from a photo** (:func:`ingredient_scores`): the same recipes vote,
  ranked by share or by how specific they are to them; ``P@5`` and ``R@10`` against the
  photo's own base ingredients (the definitions of :mod:`multimodal.user_metrics`), ``P@5``
  above chance, and the mean share of the collection that has each of the first 5
  (``salt``: about 60% of Recipes5k train).
- **Diversity** (:func:`variety_scores`), for each MMR setting, text -> photos (both texts,
  dense) and photo -> photos: distinct recipes, titles and dish types among the page's 12
  results, and what it costs: ``top1`` and ``P@12`` of the query's dish type.

Figures are percentages, except the distinct counts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from indexer.search import Prepared, Searcher
from indexer.store import MODES, Store, StoredPoint
from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.records import Record
from multimodal.data.text import RecipeTextBuilder
from multimodal.embedding import embed_images, embed_texts
from multimodal.encoder import DualEncoder
from multimodal.suggestions import RANKINGS, VOTERS, item_ingredients
from multimodal.user_metrics import PRECISION_AT, RECALL_AT, suggestion_scores

TEXT_KINDS = ("title", "ingredients", "both")  # what a text query is made of
DIVERSITIES = (0.0, 0.2, 0.4, 0.6)  # MMR settings measured
TOP = 10  # text -> photos: R@10 and P@10
PAGE = 12  # results a page shows: the diversity figures are taken over them
_NUMBERED = re.compile(r"_\d+$")  # "Fish and Chips_7": the 7th recipe of that title


@dataclass
class Queries:
    """The query split made ready to ask: embedded once, reused by every search."""

    texts: dict[str, list[Prepared]]  # kind -> one query per item of text_labels
    text_labels: list[str]  # dish type of each text query
    photos: list[Prepared]  # one query per readable photo
    photo_records: list[Record]  # the item of each photo query
    rejects: list = field(default_factory=list)  # photos that could not be read

    @property
    def photo_labels(self) -> list[str]:
        return [record.label for record in self.photo_records]


def pct(values) -> float:
    """The mean of ``values`` (booleans or shares) as a percentage; 0 for none."""
    values = list(values)
    return 100.0 * float(np.mean(values)) if values else 0.0


def title_key(title: str) -> str:
    """A title without its numbering and case: "Fish and Chips_7" -> "fish and chips"."""
    return " ".join(_NUMBERED.sub("", title or "").lower().split())


# -- figures of results (pure: lists of hits in, percentages out) --------------------------


def dish_scores(
    results: Sequence[Sequence[StoredPoint]], labels: Sequence[str], k: int = TOP
) -> dict[str, float]:
    """``top1``, ``R@k`` and ``P@k`` (percent) of each query's results against its dish
    type (see the module docstring)."""
    first, found, precision = [], [], []
    for hits, label in zip(results, labels, strict=True):
        right = [hit.payload.get("label") == label for hit in hits[:k]]
        first.append(bool(right) and right[0])
        found.append(any(right))
        precision.append(sum(right) / k)
    return {"top1": pct(first), f"R@{k}": pct(found), f"P@{k}": pct(precision)}


def variety_scores(
    results: Sequence[Sequence[StoredPoint]], labels: Sequence[str], k: int = PAGE
) -> dict[str, float]:
    """Mean numbers of distinct recipes (``recipe_id``), titles (:func:`title_key`) and dish
    types among each query's first ``k`` results, with ``top1`` and ``P@k`` of the query's
    dish type."""
    distinct: dict[str, list[int]] = {"recipes": [], "titles": [], "dish_types": []}
    for hits in results:
        payloads = [hit.payload for hit in hits[:k]]
        distinct["recipes"].append(len({p.get("recipe_id") for p in payloads}))
        distinct["titles"].append(len({title_key(p.get("title", "")) for p in payloads}))
        distinct["dish_types"].append(len({p.get("label") for p in payloads}))
    quality = dish_scores(results, labels, k)
    means = {name: float(np.mean(counts)) if counts else 0.0 for name, counts in distinct.items()}
    return {**means, "top1": quality["top1"], f"P@{k}": quality[f"P@{k}"]}


def agreement(predicted: Sequence[str | None], labels: Sequence[str]) -> float:
    """The percentage of predicted dish types that are the query's."""
    return pct(p == label for p, label in zip(predicted, labels, strict=True))


def ingredient_scores(
    suggested: Sequence[list[str]], truth: Sequence[set[str]], prevalence: Mapping[str, float]
) -> dict[str, float]:
    """``P@5`` and ``R@10`` of suggestion lists against the true sets
    (:func:`multimodal.user_metrics.suggestion_scores`); ``prevalence@5``: the mean share of
    the collection that has each of the first 5 suggested (percent); and ``above chance@5``:
    ``P@5`` less what the same suggestions would score on a recipe drawn at random, for which
    a suggested ingredient is right as often as the collection has it (each list's hits less
    its first 5's prevalences, over 5). Suggesting "salt" to everyone scores 60 on ``P@5`` and
    0 above chance."""
    shares = [prevalence.get(name, 0.0) for names in suggested for name in names[:PRECISION_AT]]
    scores = suggestion_scores(suggested, truth) if suggested else {}
    above = [
        (
            len(set(names[:PRECISION_AT]) & true)
            - sum(prevalence.get(name, 0.0) for name in names[:PRECISION_AT])
        )
        / PRECISION_AT
        for names, true in zip(suggested, truth, strict=True)
    ]
    return {
        **scores,
        f"prevalence@{PRECISION_AT}": pct(shares),
        f"above chance@{PRECISION_AT}": 100.0 * sum(above) / len(above) if above else 0.0,
    }


# -- the queries ---------------------------------------------------------------------------


def text_query_strings(records: Sequence[Record], builder: Callable[[Record], str]) -> dict:
    """Each kind of text query for each record: its title, its ingredient phrases joined by
    commas, and both as the item's own text (``builder``, the text its vector embeds)."""
    return {
        "title": [r.title for r in records],
        "ingredients": [", ".join(r.ingredients) for r in records],
        "both": [builder(r) for r in records],
    }


def prepare_queries(
    encoder: DualEncoder,
    records: Sequence[Record],
    batch_size: int = 16,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> Queries:
    """Embed the query items once: every kind of text for those with a dish type, a title and
    ingredients; the photo of those with a dish type (with ``encoder``'s TTA setting)."""
    records = [r for r in records if not r.error]  # what its reader could not use
    texts_of = [r for r in records if r.label and r.title.strip() and r.ingredients]
    photos_of = [r for r in records if r.label and r.image is not None]
    if not texts_of and not photos_of:
        raise ValueError(
            "no query item has a dish type (label): search-eval scores results by it; "
            "use a data set with labels, such as Recipes5k"
        )
    strings = text_query_strings(texts_of, RecipeTextBuilder.for_tokenizer(encoder.tokenizer))
    texts = {}
    for kind, queries in strings.items():
        vectors = embed_texts(encoder, queries, progress=progress) if queries else []
        texts[kind] = [Prepared(v, set(), q) for v, q in zip(vectors, queries, strict=True)]
    kept, vectors, rejects = embed_images(
        encoder, [r.image for r in photos_of], batch_size, workers, max_pixels, progress
    )
    photos = [Prepared(vector, set()) for vector in vectors]
    return Queries(
        texts, [r.label for r in texts_of], photos, [photos_of[i] for i in kept], rejects
    )


def check_unseen(store: Store, collection: str, split: str) -> None:
    """Refuse a collection that holds items of the query split: their queries would find
    themselves."""
    counts = dict(store.facet(collection, "split", limit=1000))
    if counts.get(split):
        raise ValueError(
            f"collection {collection!r} holds {counts[split]} items of the {split} split, the "
            f"queries: index only the other split into a new --collection"
        )


# -- asking --------------------------------------------------------------------------------


def ask(
    searcher: Searcher, queries: Sequence[Prepared], what: str, progress: bool, **search
) -> list[list[StoredPoint]]:
    """The results of each query (``searcher.nearest(query, **search)``), with a bar."""
    bar = tqdm(queries, desc=what, unit="query", disable=not progress or not queries)
    return [searcher.nearest(query, **search) for query in bar]


def text_figures(searcher: Searcher, queries: Queries, progress: bool = True) -> dict:
    """Text -> photos: :func:`dish_scores` for each kind of text and each mode."""
    figures: dict = {}
    for kind in TEXT_KINDS:
        figures[kind] = {}
        for mode in MODES:
            results = ask(
                searcher,
                queries.texts[kind],
                f"{kind}, {mode}",
                progress,
                target="image",
                limit=TOP,
                mode=mode,
            )
            figures[kind][mode] = dish_scores(results, queries.text_labels, TOP)
    return figures


def photo_figures(searcher: Searcher, queries: Queries, progress: bool = True) -> tuple:
    """Photo -> recipes (dense, the :data:`VOTERS` nearest): the dish type of the best recipe
    against the top "looks like" vote; then the ingredients they suggest, by each ranking."""
    recipes = ask(
        searcher, queries.photos, "photo -> recipes", progress, target="text", limit=VOTERS
    )
    labels = queries.photo_labels
    best = [hits[0].payload.get("label") if hits else None for hits in recipes]
    votes = [searcher.looks_like(hits, top=1) for hits in recipes]
    looks = {
        "top1_recipe": agreement(best, labels),
        "looks_like": agreement([v[0][0] if v else None for v in votes], labels),
    }
    truth = [
        item_ingredients(r.ingredients_simplified, r.ingredients) for r in queries.photo_records
    ]
    scored = [i for i, names in enumerate(truth) if names]
    ingredients: dict = {"photos": len(scored), "voters": VOTERS}
    for ranking in RANKINGS:
        suggested = [
            [name for name, _ in searcher.ingredients_of(recipes[i], RECALL_AT, ranking)]
            for i in scored
        ]
        ingredients[ranking] = ingredient_scores(
            suggested, [truth[i] for i in scored], searcher.prevalence()
        )
    return looks, ingredients


def diversity_figures(
    searcher: Searcher,
    queries: Queries,
    diversities: Sequence[float] = DIVERSITIES,
    progress: bool = True,
) -> dict:
    """For each MMR diversity: :func:`variety_scores` of text -> photos (both texts, dense)
    and of photo -> photos, over the page's :data:`PAGE` results."""
    figures: dict = {"text_to_image": {}, "image_to_image": {}}
    asked = {
        "text_to_image": (queries.texts["both"], queries.text_labels),
        "image_to_image": (queries.photos, queries.photo_labels),
    }
    for diversity in diversities:
        for direction, (prepared, labels) in asked.items():
            results = ask(
                searcher,
                prepared,
                f"{direction}, diversity {diversity:g}",
                progress,
                target="image",
                limit=PAGE,
                diversity=diversity,
            )
            figures[direction][f"{diversity:g}"] = variety_scores(results, labels, PAGE)
    return figures


def measure_search(
    searcher: Searcher,
    queries: Queries,
    diversities: Sequence[float] = DIVERSITIES,
    progress: bool = True,
) -> dict:
    """Every figure of the module docstring, with the number of queries and store searches
    and how long each part took.

    >>> queries = prepare_queries(encoder, read_records(data, "val"))  # doctest: +SKIP
    >>> measure_search(Searcher(encoder, store, "eval"), queries)["text_to_image"]  # +SKIP
    """
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    result: dict = {
        "text_queries": len(queries.text_labels),
        "photo_queries": len(queries.photos),
        "unreadable_photos": len(queries.rejects),
    }
    result["text_to_image"] = text_figures(searcher, queries, progress)
    seconds["text_to_image"] = time.perf_counter() - started
    result["photo_to_recipe"], result["ingredients"] = photo_figures(searcher, queries, progress)
    seconds["photo_to_recipe"] = time.perf_counter() - started - sum(seconds.values())
    result["diversity"] = diversity_figures(searcher, queries, diversities, progress)
    seconds["diversity"] = time.perf_counter() - started - sum(seconds.values())
    n_text, n_photo = len(queries.text_labels), len(queries.photos)
    result["searches"] = (
        len(TEXT_KINDS) * len(MODES) * n_text + n_photo + len(diversities) * (n_text + n_photo)
    )
    result["seconds"] = {name: round(value, 2) for name, value in seconds.items()}
    return result
