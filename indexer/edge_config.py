"""How a Qdrant Edge shard is laid out: its configuration from the collection's settings, its
payload indexes, and the copy of one shard's points into another (when a collection gains its
BM25 vector). :mod:`indexer.edge` owns the shards' lifecycle; this module only says what a
shard holds."""

from __future__ import annotations

import qdrant_edge as qe

from indexer.collection_settings import CollectionSettings
from indexer.store import KEYWORD_FIELDS, SPARSE_VECTOR, TEXT_FIELDS, VECTOR_NAMES

COPY_PAGE = 256  # points per page when a shard is copied
# Qdrant's HNSW defaults, given when the graph's placement is: edges per node, candidates
# while building, and the size (KB of vectors) under which a segment is scanned, not walked.
HNSW_M, HNSW_EF_CONSTRUCT, FULL_SCAN_THRESHOLD_KB = 16, 100, 10_000


def shard_config(dim: int, settings: CollectionSettings, words: bool, bulk: bool) -> qe.EdgeConfig:
    """A shard's configuration from the collection's settings: cosine ``image`` and ``text``
    vectors (memory-mapped from disk if ``on_disk``), the ``bm25`` sparse vector with
    Qdrant's IDF modifier if ``words``, the HNSW graph on disk if ``hnsw_on_disk``, int8
    scalar or binary quantization, and during a bulk load an indexing threshold of 0 (no
    HNSW built; None: Qdrant Edge's default). Unset options stay Qdrant Edge's defaults."""
    on_disk = True if settings.on_disk else None
    vector = qe.EdgeVectorParams(dim, qe.Distance.Cosine, on_disk=on_disk)
    vectors = dict.fromkeys(VECTOR_NAMES, vector)
    sparse = {SPARSE_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if words else None
    hnsw = None
    if settings.hnsw_on_disk:
        hnsw = qe.HnswIndexConfig(HNSW_M, HNSW_EF_CONSTRUCT, FULL_SCAN_THRESHOLD_KB, on_disk=True)
    quantization = None
    if settings.quantization == "int8":
        quantization = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99)
    elif settings.quantization == "binary":
        quantization = qe.BinaryQuantizationConfig()
    return qe.EdgeConfig(
        vectors=vectors,
        sparse_vectors=sparse,
        hnsw_config=hnsw,
        quantization_config=quantization,
        optimizers=qe.EdgeOptimizersConfig(indexing_threshold=0 if bulk else None),
    )


# Payload indexes memory-mapped (``Cold``): indexes in RAM are rebuilt at every open of the
# shard (at 200,000 points it opens in 1.7-2.4 s with them, 0.55 s mapped; docs/scaling-out.md).


def index_keyword(shard: qe.EdgeShard, field: str) -> None:
    """A keyword index on payload ``field``."""
    params = qe.KeywordIndexParams(memory=qe.Memory.Cold)
    shard.update(qe.UpdateOperation.create_field_index(field, params))


def index_text(shard: qe.EdgeShard, field: str) -> None:
    """A lowercase word index on payload ``field``."""
    params = qe.TextIndexParams(
        tokenizer=qe.TokenizerType.Word, lowercase=True, memory=qe.Memory.Cold
    )
    shard.update(qe.UpdateOperation.create_field_index(field, params))


def index_payload(shard: qe.EdgeShard) -> None:
    """Every payload index a collection's shard has: the keyword and the word fields."""
    for field in KEYWORD_FIELDS:
        index_keyword(shard, field)
    for field in TEXT_FIELDS:
        index_text(shard, field)


def copy_points(source: qe.EdgeShard, target: qe.EdgeShard) -> None:
    """Every point of ``source``, payload and vectors, upserted into ``target`` a page at a
    time."""
    offset = None
    while True:
        request = qe.ScrollRequest(
            offset=offset, limit=COPY_PAGE, with_payload=True, with_vector=True
        )
        records, offset = source.scroll(request)
        copies = [qe.Point(r.id, r.vector, r.payload) for r in records]
        if copies:
            target.update(qe.UpdateOperation.upsert_points(copies))
        if offset is None:
            return
