"""A Qdrant server or cluster through ``qdrant-client``, for collections past one machine.

``--qdrant-url http://host:6333`` (API key from an environment variable, ``--grpc`` for the
gRPC port). The tests run it against qdrant-client's in-process mode (``:memory:``), which
speaks the same API; nothing here depends on that mode. Uploads go through
``upload_points`` (parallel streams, retries); the collection's metadata (the model that made
its vectors) lives in Qdrant's own collection metadata.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from indexer.collection_settings import CollectionSettings
from indexer.filters import FilterConstructors
from indexer.qdrant_base import QdrantStore
from indexer.qdrant_records import plain_vectors
from indexer.query_plan import QueryConstructors, plan_query
from indexer.store import (
    SPARSE_VECTOR,
    VECTOR_NAMES,
    Point,
    SearchRequest,
    SparseVector,
    StoreError,
)

UPLOAD_BATCH = 256
INDEXING_THRESHOLD_KB = 10_000  # Qdrant's default, restored when none was recorded
WAIT_POLL_SECONDS = 1.0  # how often end_bulk(wait=True) asks whether indexing is done

SERVER_FILTERS = FilterConstructors(
    any_of=lambda key, values: qm.FieldCondition(key=key, match=qm.MatchAny(any=values)),
    equals=lambda key, value: qm.FieldCondition(key=key, match=qm.MatchValue(value=value)),
    has_words=lambda key, text: qm.FieldCondition(key=key, match=qm.MatchText(text=text)),
    has_ids=lambda ids: qm.HasIdCondition(has_id=[str(i) for i in ids]),
    has_vector=lambda name: qm.HasVectorCondition(has_vector=name),
    combine=qm.Filter,
)


class ServerStore(QdrantStore):
    """Collections on a Qdrant server; their metadata in Qdrant's collection metadata."""

    filters = SERVER_FILTERS

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        grpc: bool = False,
        timeout: int = 30,
        parallel: int = 2,
    ):
        """A client of the server at ``url`` (``:memory:``: qdrant-client's in-process mode),
        probed once so that an unreachable server is one clear :class:`StoreError`."""
        super().__init__()
        self.url = url
        self.label = f"qdrant server {url}"
        self.place = f"at {url}"
        self.parallel = parallel
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
            self.parallel = 1  # the in-process mode has no server to stream to
        else:
            self.client = None
        try:
            if self.client is None:
                # Its background version check would warn from a thread; the probe below
                # gives the one clear message instead.
                self.client = QdrantClient(
                    url=url,
                    api_key=api_key,
                    prefer_grpc=grpc,
                    timeout=timeout,
                    check_compatibility=False,
                )
            self.client.get_collections()
        except Exception as err:  # connection refused, DNS, TLS, 401: all mean "cannot use it"
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise StoreError(
                f"cannot reach a Qdrant server at {url} ({reason}); check the URL, that the "
                "server runs, and the API key variable, or drop --qdrant-url for the "
                "embedded store"
            ) from None

    def collections(self) -> list[str]:
        """The names of the server's collections, sorted."""
        return sorted(c.name for c in self.client.get_collections().collections)

    def drop(self, name: str) -> None:
        """Delete the collection on the server."""
        self._known_settings.pop(name, None)
        self._worded.discard(name)
        self.client.delete_collection(name)

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    # -- primitives ----------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        """Whether the server has the collection."""
        return self.client.collection_exists(name)

    def _create(self, name: str, dim: int, settings: CollectionSettings, metadata: dict) -> None:
        """Create the collection as :func:`collection_config` lays it out, with its metadata."""
        config = collection_config(dim, settings, words="bm25" in metadata)
        self.client.create_collection(name, **config, metadata=metadata)

    def _indexing(self, name: str) -> dict[str, Any]:
        """The collection's indexing threshold, put back when a bulk load ends."""
        optimizers = self.client.get_collection(name).config.optimizer_config
        return {"indexing_threshold": optimizers.indexing_threshold}

    def _defer_indexing(self, name: str) -> None:
        """Indexing threshold 0: the server builds no HNSW until it is raised again."""
        self._set_indexing_threshold(name, 0)

    def _resume_indexing(self, name: str, state: dict[str, Any], wait: bool) -> None:
        """The recorded threshold again (Qdrant's default if none was), which sets the
        server's optimizers going; with ``wait``, until the collection is green (indexed)."""
        threshold = state.get("indexing_threshold")
        self._set_indexing_threshold(
            name, INDEXING_THRESHOLD_KB if threshold is None else threshold
        )
        while wait:
            status = self.client.get_collection(name).status
            if status == qm.CollectionStatus.GREEN:
                return
            if status == qm.CollectionStatus.RED:
                raise StoreError(f"the server at {self.url} failed to index collection {name!r}")
            time.sleep(WAIT_POLL_SECONDS)

    def _set_indexing_threshold(self, name: str, kilobytes: int) -> None:
        optimizers = qm.OptimizersConfigDiff(indexing_threshold=kilobytes)
        self.client.update_collection(name, optimizers_config=optimizers)

    def _index_keyword(self, name: str, field: str) -> None:
        """A keyword index on payload ``field``."""
        with _local_mode_quiet():
            self.client.create_payload_index(name, field, qm.PayloadSchemaType.KEYWORD, wait=True)

    def _index_text(self, name: str, field: str) -> None:
        """A lowercase word index on payload ``field``."""
        params = qm.TextIndexParams(
            type=qm.TextIndexType.TEXT, tokenizer=qm.TokenizerType.WORD, lowercase=True
        )
        with _local_mode_quiet():
            self.client.create_payload_index(name, field, params, wait=True)

    def _read_metadata(self, name: str) -> dict[str, Any]:
        """The collection's metadata, refused if ``multimodal index`` did not make it."""
        metadata = self.client.get_collection(name).config.metadata or {}
        if "model" not in metadata:
            raise StoreError(
                f"collection {name!r} at {self.url} was not made by multimodal index "
                "(it records no model); use another --collection"
            )
        return dict(metadata)

    def _write_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        """Replace the collection's metadata."""
        self.client.update_collection(name, metadata=metadata)

    def _info(self, name: str) -> qm.CollectionInfo:
        """The collection's info."""
        return self.client.get_collection(name)

    def _upsert(self, name: str, points: Sequence[Point]) -> None:
        """Upload in parallel batches, with retries, and wait until they are applied."""
        structs = [
            qm.PointStruct(id=p.id, vector=plain_vectors(p, _sparse), payload=p.payload)
            for p in points
        ]
        self.client.upload_points(
            name,
            structs,
            batch_size=UPLOAD_BATCH,
            parallel=self.parallel,
            max_retries=3,
            wait=True,
        )

    def _search(self, name: str, request: SearchRequest, limit: int, filter, quantization) -> list:
        """One query on the server (:func:`indexer.query_plan.plan_query`)."""
        plan = plan_query(request, filter, quantization, SERVER_QUERIES)
        with _local_mode_quiet():
            response = self.client.query_points(
                name,
                prefetch=plan.prefetches,
                query=plan.query,
                using=plan.using,
                query_filter=filter,
                search_params=plan.params,
                limit=limit,
                with_payload=True,
            )
        return response.points

    def _facet(self, name: str, field: str, filter: Any, limit: int) -> list:
        """Exact facet counts on the server."""
        return self.client.facet(name, field, facet_filter=filter, limit=limit, exact=True).hits

    def _has_words(self, name: str) -> bool:
        """Whether the collection has the ``bm25`` sparse vector."""
        sparse = self.client.get_collection(name).config.params.sparse_vectors or {}
        return SPARSE_VECTOR in sparse

    def _add_words(self, name: str) -> None:
        """Add the ``bm25`` sparse vector in place (Qdrant 1.18 and later; an older server
        refuses, and its message says so)."""
        try:
            config = qm.SparseVectorNameConfig(
                sparse=qm.SparseVectorConfig(modifier=qm.Modifier.IDF)
            )
            self.client.create_vector_name(name, SPARSE_VECTOR, config, wait=True)
        except Exception as err:  # an older server: 404 on the route
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise StoreError(
                f"the server at {self.url} cannot add the bm25 vector to collection {name!r} "
                f"({reason}); Qdrant 1.18 or later can, else index into a new --collection"
            ) from None

    def _set_words(self, name: str, words: dict[str, SparseVector]) -> None:
        """Update the ``bm25`` vectors, and wait until they are applied."""
        updates = [
            qm.PointVectors(
                id=point_id, vector={SPARSE_VECTOR: _sparse(list(v.indices), list(v.values))}
            )
            for point_id, v in words.items()
        ]
        self.client.update_vectors(name, updates, wait=True)

    def _retrieve(
        self, name: str, ids: list[str], fields: list[str] | None, with_vectors: bool
    ) -> list:
        """Records by id from the server."""
        return self.client.retrieve(
            name, ids, with_payload=fields or True, with_vectors=with_vectors
        )

    def _scroll_page(
        self,
        name: str,
        filter: Any,
        fields: list[str] | None,
        limit: int,
        offset: Any,
        with_vectors: bool,
    ) -> tuple[list, Any]:
        """One page of the collection's points."""
        return self.client.scroll(
            name,
            scroll_filter=filter,
            limit=limit,
            offset=offset,
            with_payload=fields or True,
            with_vectors=with_vectors,
        )

    def _count(self, name: str, filter: Any) -> int:
        """Exact count on the server."""
        return self.client.count(name, count_filter=filter, exact=True).count

    def _set_payload(self, name: str, payload: dict[str, Any], filter: Any) -> None:
        """One payload update by filter on the server, and wait until it is applied."""
        self.client.set_payload(name, payload=payload, points=filter, wait=True)

    def _set_point_payloads(self, name: str, payloads: dict[str, dict[str, Any]]) -> None:
        """One batch of payload updates on the server, and wait until it is applied."""
        operations = [
            qm.SetPayloadOperation(set_payload=qm.SetPayload(payload=payload, points=[point_id]))
            for point_id, payload in payloads.items()
        ]
        self.client.batch_update_points(name, operations, wait=True)

    def _delete(self, name: str, ids: list[str]) -> None:
        """Delete and wait until it is applied."""
        self.client.delete(name, qm.PointIdsList(points=ids), wait=True)


_WORDS = qm.SparseVectorParams(modifier=qm.Modifier.IDF)


def collection_config(dim: int, settings: CollectionSettings, words: bool) -> dict[str, Any]:
    """``create_collection``'s arguments for the settings: cosine ``image`` and ``text``
    vectors (on disk if ``on_disk``), the ``bm25`` sparse vector with the IDF modifier if
    ``words``, shards, replicas and write consistency (None: the server's default), the HNSW
    graph on disk if ``hnsw_on_disk``, int8 scalar or binary quantization."""
    on_disk = True if settings.on_disk else None
    vector = qm.VectorParams(size=dim, distance=qm.Distance.COSINE, on_disk=on_disk)
    quantization = None
    if settings.quantization == "int8":
        scalar = qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99)
        quantization = qm.ScalarQuantization(scalar=scalar)
    elif settings.quantization == "binary":
        quantization = qm.BinaryQuantization(binary=qm.BinaryQuantizationConfig())
    return {
        "vectors_config": dict.fromkeys(VECTOR_NAMES, vector),
        "sparse_vectors_config": {SPARSE_VECTOR: _WORDS} if words else None,
        "shard_number": settings.shards,
        "replication_factor": settings.replicas,
        "write_consistency_factor": settings.write_consistency,
        "hnsw_config": qm.HnswConfigDiff(on_disk=True) if settings.hnsw_on_disk else None,
        "quantization_config": quantization,
    }


def _params(exact: bool, quantization: dict[str, Any] | None) -> qm.SearchParams:
    rescoring = qm.QuantizationSearchParams(**quantization) if quantization else None
    return qm.SearchParams(exact=exact, quantization=rescoring)


def _recommend(positives: list, negatives: list, using: str) -> qm.RecommendQuery:
    strategy = qm.RecommendStrategy.BEST_SCORE
    return qm.RecommendQuery(
        recommend=qm.RecommendInput(positive=positives, negative=negatives, strategy=strategy)
    )


def _words(words: SparseVector, using: str) -> qm.NearestQuery:
    return qm.NearestQuery(nearest=_sparse(list(words.indices), list(words.values)))


def _sparse(indices: list[int], values: list[float]) -> qm.SparseVector:
    return qm.SparseVector(indices=indices, values=values)


# The server names the vector on the prefetch and the request, not on the query.
SERVER_QUERIES = QueryConstructors(
    nearest=lambda vector, using: qm.NearestQuery(nearest=vector),
    recommend=_recommend,
    words=_words,
    fusion=lambda k: qm.RrfQuery(rrf=qm.Rrf(k=k)),
    mmr=lambda vector, diversity, candidates, using: qm.NearestQuery(
        nearest=vector, mmr=qm.Mmr(diversity=diversity, candidates_limit=candidates)
    ),
    prefetch=lambda query, using, limit, filter, params, prefetches: qm.Prefetch(
        prefetch=prefetches, query=query, using=using, filter=filter, params=params, limit=limit
    ),
    params=_params,
)


@contextmanager
def _local_mode_quiet() -> Iterator[None]:
    """The in-process mode warns that it ignores payload indexes and search parameters (it
    searches exactly); that is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
        warnings.filterwarnings("ignore", "Local mode performs exact", UserWarning)
        yield
