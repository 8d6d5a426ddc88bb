"""One translation of :class:`~indexer.store.SearchRequest` into a Qdrant query, for both
Qdrant APIs (as :mod:`indexer.filters` is for filters).

The query is the dense stage (nearest, or a recommendation by best score when there are
liked or disliked examples), the BM25 words (a sparse nearest), both fused by reciprocal rank
as prefetches in hybrid mode, and maximal marginal relevance over the result when diversity
is asked for. ``qdrant_edge`` and ``qdrant_client.models`` name these stages with different
classes and keywords, so :func:`plan_query` writes the structure once and each store hands it
a :class:`QueryConstructors` made of its own classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexer.qdrant_records import dense
from indexer.store import RRF_K, SPARSE_VECTOR, SearchRequest, SparseVector


@dataclass(frozen=True)
class QueryConstructors:
    """The few constructors of one Qdrant API that :func:`plan_query` needs. ``using`` is the
    named vector a stage ranks by; an API that names it on the query takes it there, one
    that names it on the prefetch or the request ignores it where it does not belong."""

    nearest: Callable[[list[float], str], Any]  # (vector, using)
    recommend: Callable[[list[list[float]], list[list[float]], str], Any]  # best score
    words: Callable[[SparseVector, str], Any]  # (BM25 words, using): a sparse nearest
    fusion: Callable[[int], Any]  # reciprocal rank fusion with this k
    mmr: Callable[[list[float], float, int, str], Any]  # (vector, diversity 0-1, candidates, using)
    prefetch: Callable[[Any, str | None, int, Any, Any, list | None], Any]
    # prefetch: (query, using, limit, filter, params, its own prefetches)
    params: Callable[[bool, dict[str, Any] | None], Any]  # (exact, quantization search params)


@dataclass
class QueryPlan:
    """The top-level query of a request, the vector it ranks by (None for a fusion), its
    prefetches and the dense stage's search parameters."""

    query: Any
    using: str | None
    prefetches: list | None
    params: Any


def plan_query(
    request: SearchRequest,
    filter: Any,
    quantization: dict[str, Any] | None,
    make: QueryConstructors,
) -> QueryPlan:
    """``request`` as one query built with ``make``; ``filter`` (already in the API's own
    classes) applies at every stage."""
    r = request
    params = make.params(r.exact, quantization) if (r.exact or quantization) else None
    if r.recommends:
        positives = [dense(r.vector), *map(dense, r.likes)]
        ranking = make.recommend(positives, [dense(v) for v in r.dislikes], r.using)
    else:
        ranking = make.nearest(dense(r.vector), r.using)
    using, prefetches = r.using, None
    if r.mode != "dense":
        keyword = make.words(r.words, SPARSE_VECTOR)
        if r.mode == "sparse":
            ranking, using = keyword, SPARSE_VECTOR
        else:
            prefetches = [
                make.prefetch(ranking, r.using, r.candidates, filter, params, None),
                make.prefetch(keyword, SPARSE_VECTOR, r.candidates, filter, None, None),
            ]
            ranking, using = make.fusion(RRF_K), None
    if r.diversity > 0:
        if prefetches is not None or r.mode != "dense" or r.recommends:
            stage = make.prefetch(ranking, using, r.candidates, filter, params, prefetches)
            prefetches = [stage]
        ranking, using = make.mmr(dense(r.vector), r.diversity, r.candidates, r.using), r.using
    return QueryPlan(ranking, using, prefetches, params)
