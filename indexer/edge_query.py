"""Qdrant Edge's classes for the filter and the query that every store builds the same way
(:mod:`indexer.filters`, :mod:`indexer.query_plan`), and the one shard query per request."""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from indexer.filters import FilterConstructors
from indexer.query_plan import QueryConstructors, plan_query
from indexer.store import SearchRequest

EDGE_FILTERS = FilterConstructors(
    any_of=lambda key, values: qe.FieldCondition(key=key, match=qe.MatchAny(values)),
    equals=lambda key, value: qe.FieldCondition(key=key, match=qe.MatchValue(value)),
    has_words=lambda key, text: qe.FieldCondition(key=key, match=qe.MatchText(text)),
    has_ids=lambda ids: qe.HasIdCondition(set(ids)),
    has_vector=qe.HasVectorCondition,
    combine=qe.Filter,
)


def _params(exact: bool, quantization: dict[str, Any] | None) -> qe.SearchParams:
    rescoring = qe.QuantizationSearchParams(**quantization) if quantization else None
    return qe.SearchParams(exact=exact, quantization=rescoring)


EDGE_QUERIES = QueryConstructors(
    nearest=lambda vector, using: qe.Query.Nearest(vector, using=using),
    recommend=lambda positives, negatives, using: qe.Query.RecommendBestScore(
        qe.RecommendQuery(positives, negatives), using=using
    ),
    words=lambda words, using: qe.Query.Nearest(
        qe.SparseVector(list(words.indices), list(words.values)), using=using
    ),
    fusion=lambda k: qe.Fusion.Rrf(k=k),
    # Edge weighs relevance (lambda), the opposite of the server's diversity
    mmr=lambda vector, diversity, candidates, using: qe.Mmr(
        vector, 1.0 - diversity, candidates, using=using
    ),
    # the query names its vector, so a prefetch needs no ``using``
    prefetch=lambda query, using, limit, filter, params, prefetches: qe.Prefetch(
        limit, query, prefetches, filter=filter, params=params
    ),
    params=_params,
)


def shard_query(
    request: SearchRequest, limit: int, filter: Any, quantization: dict[str, Any] | None
) -> qe.QueryRequest:
    """The one shard query for ``request`` (:func:`indexer.query_plan.plan_query`)."""
    plan = plan_query(request, filter, quantization, EDGE_QUERIES)
    return qe.QueryRequest(
        limit=limit,
        query=plan.query,
        prefetches=plan.prefetches,
        filter=filter,
        with_payload=True,
        params=plan.params,
    )
