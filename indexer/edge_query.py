"""How :class:`indexer.edge.EdgeStore` asks its shard: filters and one query per request.

A :class:`~indexer.store.SearchRequest` becomes one ``qe.QueryRequest``: the dense stage
(nearest, or recommend by best score), the words (a sparse nearest), both fused by RRF as
prefetches, and MMR over the result; :meth:`indexer.server.ServerStore._search` builds the
same query in the server's API.
"""

from __future__ import annotations

from typing import Any

import qdrant_edge as qe

from indexer.filters import FilterConstructors
from indexer.qdrant_base import dense
from indexer.store import RRF_K, SPARSE_VECTOR, SearchRequest

EDGE_FILTERS = FilterConstructors(
    any_of=lambda key, values: qe.FieldCondition(key=key, match=qe.MatchAny(values)),
    equals=lambda key, value: qe.FieldCondition(key=key, match=qe.MatchValue(value)),
    has_words=lambda key, text: qe.FieldCondition(key=key, match=qe.MatchText(text)),
    has_ids=lambda ids: qe.HasIdCondition(set(ids)),
    has_vector=qe.HasVectorCondition,
    combine=qe.Filter,
)


def search_params(request: SearchRequest, quantization: dict[str, Any] | None):
    """The dense stage's ``qe.SearchParams``: exact, and the quantization search parameters
    of a quantized collection (rescoring, oversampling); None when neither applies."""
    if not (request.exact or quantization):
        return None
    rescoring = qe.QuantizationSearchParams(**quantization) if quantization else None
    return qe.SearchParams(exact=request.exact, quantization=rescoring)


def shard_query(
    request: SearchRequest, limit: int, filter: Any, quantization: dict[str, Any] | None
) -> qe.QueryRequest:
    """The one shard query for ``request``, ``filter`` applied at every stage."""
    r, params = request, search_params(request, quantization)
    if r.recommends:
        examples = qe.RecommendQuery([dense(r.vector), *map(dense, r.likes)],
                                     [dense(v) for v in r.dislikes])  # fmt: skip
        ranking = qe.Query.RecommendBestScore(examples, using=r.using)
    else:
        ranking = qe.Query.Nearest(dense(r.vector), using=r.using)
    prefetches = None
    if r.mode != "dense":
        words = qe.SparseVector(list(r.words.indices), list(r.words.values))
        keyword = qe.Query.Nearest(words, using=SPARSE_VECTOR)
        if r.mode == "sparse":
            ranking = keyword
        else:
            prefetches = [
                qe.Prefetch(r.candidates, ranking, filter=filter, params=params),
                qe.Prefetch(r.candidates, keyword, filter=filter),
            ]
            ranking = qe.Fusion.Rrf(k=RRF_K)
    if r.diversity > 0:
        if prefetches is not None or r.mode != "dense" or r.recommends:
            stage = qe.Prefetch(r.candidates, ranking, prefetches, filter=filter,
                                params=params)  # fmt: skip
            prefetches = [stage]
        ranking = qe.Mmr(dense(r.vector), 1.0 - r.diversity, r.candidates, using=r.using)
    return qe.QueryRequest(limit=limit, query=ranking, prefetches=prefetches, filter=filter,
                           with_payload=True, params=params)  # fmt: skip
