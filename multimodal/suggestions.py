"""Ingredients suggested for a query: the nearest recipes vote for their base ingredients.

The one implementation behind the page's "Suggested ingredients", ``multimodal search
--suggest`` and the ingredient figures of ``multimodal eval``.

>>> vote_ingredients([(0.75, ["egg", "flour"]), (0.25, ["Egg", "sugar"]), (-0.1, ["salt"])])
[('egg', 1.0), ('flour', 0.75), ('sugar', 0.25), ('salt', 0.0)]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

VOTERS = 12  # nearest recipes that vote: the page's 12 results (docs/fine-tuning.md measures it)
SUGGESTIONS = 12  # ingredients a front end shows
RANKINGS = ("share", "specific")  # how suggested ingredients are ordered


def ingredient_names(names: Iterable[str]) -> set[str]:
    """The distinct names of an ingredient list, stripped and lower-cased."""
    return {name.strip().lower() for name in names if name.strip()}


def item_ingredients(base: Iterable[str] | None, phrases: Iterable[str] | None) -> set[str]:
    """What an item votes for: its base ingredients, or else its ingredient phrases (an item
    of a data set without base ingredients)."""
    return ingredient_names(base or phrases or [])


def vote_ingredients(
    voters: Iterable[tuple[float, Iterable[str]]], top: int = SUGGESTIONS
) -> list[tuple[str, float]]:
    """``(score, ingredient names)`` of each neighbour -> the ``top`` ingredients and their
    shares, best first.

    Each neighbour votes for each of its ingredients with its score, floored at 0 (a neighbour
    scoring below 0 names its ingredients but adds no weight); an ingredient's share is its
    votes over all votes, so 1.0 means every voting neighbour has it. Equal votes rank by
    name. No positive score: nothing to suggest.
    """
    return ranked(shares(voters), top)


def shares(voters: Iterable[tuple[float, Iterable[str]]]) -> dict[str, float]:
    """Every name's share of the votes (see :func:`vote_ingredients`); empty when no voter
    scores above 0."""
    votes: dict[str, float] = defaultdict(float)
    total = 0.0
    for score, names in voters:
        weight = max(float(score), 0.0)
        for name in ingredient_names(names):
            votes[name] += weight
        total += weight
    if total <= 0:
        return {}
    return {name: vote / total for name, vote in votes.items()}


def specific_ingredients(
    voters: Iterable[tuple[float, Iterable[str]]],
    prevalence: Mapping[str, float],
    top: int = SUGGESTIONS,
) -> list[tuple[str, float]]:
    """The voted ingredients ordered by how much more often the neighbours have them than the
    collection does, each still with its share: by ``share - prevalence``, the excess of the
    neighbours' share over the base rate (what a suggestion made blind would get right). An
    ingredient most recipes have ("salt": prevalence 0.6) needs nearly every neighbour to lead;
    one voter's oddity (small share) stays low. ``prevalence``: each name's share of the
    collection's items; a name it lacks counts as 0 (ranked by its share).
    """
    found = shares(voters)
    scores = {name: share - prevalence.get(name, 0.0) for name, share in found.items()}
    return [(name, found[name]) for name, _ in ranked(scores, top)]


def vote_labels(
    voters: Iterable[tuple[float, str | None]], top: int = 5
) -> list[tuple[str, float]]:
    """``(score, dish type)`` of each neighbour -> the ``top`` dish types and their shares of
    the score-weighted votes, most first ("looks like"); a neighbour without one does not
    vote. Dish types are kept as stored (they are filter values)."""
    votes: dict[str, float] = defaultdict(float)
    total = 0.0
    for score, label in voters:
        if label:
            weight = max(float(score), 0.0)
            votes[label] += weight
            total += weight
    if total <= 0:
        return []
    return [(label, vote / total) for label, vote in ranked(votes, top)]


def ranked(votes: Mapping[str, float], top: int) -> list[tuple[str, float]]:
    """The ``top`` entries by votes, most first; equal votes in name order."""
    return sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
