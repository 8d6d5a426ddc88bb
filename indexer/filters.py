"""One translation of :class:`SearchFilter` into a Qdrant filter, for both Qdrant APIs.

``qdrant_edge`` and ``qdrant_client.models`` have the same filter model but different classes
(and keyword names), so :func:`build_filter` writes the structure once and each store hands
it a :class:`FilterConstructors` made of its own classes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexer.store import SearchFilter


@dataclass(frozen=True)
class FilterConstructors:
    """The few constructors of one Qdrant API that :func:`build_filter` needs."""

    any_of: Callable[[str, list[str]], Any]  # (key, values): the field equals one of them
    equals: Callable[[str, str], Any]  # (key, value): the field (or one of its items) is it
    has_words: Callable[[str, str], Any]  # (key, text): full-text match on a text index
    has_ids: Callable[[list[uuid.UUID]], Any]  # the point is one of these
    has_vector: Callable[[str], Any]  # the point has this named vector
    combine: Callable[..., Any]  # Filter(must=..., should=..., must_not=...)


def build_filter(spec: SearchFilter | None, make: FilterConstructors) -> Any:
    """``spec`` as a Qdrant filter built with ``make``; None when it restricts nothing."""
    must: list = []
    must_not: list = []
    if spec:
        if spec.labels:
            must.append(make.any_of("label", list(spec.labels)))
        if spec.splits:
            must.append(make.any_of("split", list(spec.splits)))
        if spec.root:
            must.append(make.equals("root", spec.root))
        if spec.ids:
            must.append(make.has_ids([uuid.UUID(i) for i in spec.ids]))
        if spec.has_vector:
            must.append(make.has_vector(spec.has_vector))
        must += [make.any_of(key, list(values)) for key, values in spec.fields.items() if values]
        must += [_ingredient_match(i, make) for i in spec.with_ingredients]
        must_not += [_ingredient_match(i, make) for i in spec.without_ingredients]
    if not must and not must_not:
        return None
    return make.combine(must=must or None, must_not=must_not or None)


def _ingredient_match(ingredient: str, make: FilterConstructors) -> Any:
    """An ingredient appears as a base ingredient (exact) or as a word of an ingredient line."""
    word = ingredient.strip().lower()
    return make.combine(
        should=[make.equals("base_ingredients", word), make.has_words("ingredients", word)]
    )
