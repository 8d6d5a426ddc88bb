"""A Qdrant server or cluster through ``qdrant-client``, for collections past one machine.

``--qdrant-url http://host:6333`` (API key from an environment variable, ``--grpc`` for the
gRPC port). The tests run it against qdrant-client's in-process mode (``:memory:``), which
speaks the same API; nothing here depends on that mode. Uploads go through
``upload_points`` (parallel streams, retries); the collection's metadata (the model that made
its vectors) lives in Qdrant's own collection metadata.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from indexer.store import (
    KEYWORD_FIELDS,
    TEXT_FIELDS,
    VECTOR_NAMES,
    CollectionSpec,
    Point,
    SearchFilter,
    Store,
    StoredPoint,
    StoreError,
    as_record,
    check_compatible,
)

UPLOAD_BATCH = 256


class ServerStore(Store):
    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        grpc: bool = False,
        timeout: int = 30,
        parallel: int = 2,
    ):
        self.url = url
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
                    url=url, api_key=api_key, prefer_grpc=grpc, timeout=timeout,
                    check_compatibility=False,
                )  # fmt: skip
            self.client.get_collections()
        except Exception as err:  # connection refused, DNS, TLS, 401: all mean "cannot use it"
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise StoreError(
                f"cannot reach a Qdrant server at {url} ({reason}); check the URL, that the "
                "server runs, and the API key variable, or drop --qdrant-url for the "
                "embedded store"
            ) from None

    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def create_or_open(self, name: str, spec: CollectionSpec) -> dict[str, Any]:
        if self.client.collection_exists(name):
            metadata = self.metadata(name)
            check_compatible(name, metadata, spec)
            return metadata
        quantization = None
        if spec.quantization == "int8":
            quantization = qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99)
            )
        elif spec.quantization is not None:
            raise ValueError(f"unknown quantization {spec.quantization!r} (known: int8)")
        vectors = {
            vector: qm.VectorParams(size=spec.dim, distance=qm.Distance.COSINE)
            for vector in VECTOR_NAMES
        }
        metadata = spec.metadata()
        self.client.create_collection(
            name, vectors_config=vectors, quantization_config=quantization, metadata=metadata
        )
        with warnings.catch_warnings():  # the in-process mode warns that it ignores them
            warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
            for field in KEYWORD_FIELDS:
                self.client.create_payload_index(
                    name, field, qm.PayloadSchemaType.KEYWORD, wait=True
                )
            for field in TEXT_FIELDS:
                params = qm.TextIndexParams(
                    type=qm.TextIndexType.TEXT, tokenizer=qm.TokenizerType.WORD, lowercase=True
                )
                self.client.create_payload_index(name, field, params, wait=True)
        return metadata

    def metadata(self, name: str) -> dict[str, Any]:
        if not self.client.collection_exists(name):
            known = ", ".join(self.collections()) or "none"
            raise StoreError(
                f"no collection {name!r} at {self.url} (collections: {known}); "
                "build it with multimodal index"
            )
        metadata = self.client.get_collection(name).config.metadata or {}
        if "model" not in metadata:
            raise StoreError(
                f"collection {name!r} at {self.url} was not made by multimodal index "
                "(it records no model); use another --collection"
            )
        return dict(metadata)

    def update_metadata(self, name: str, changes: dict[str, Any]) -> None:
        self.client.update_collection(name, metadata={**self.metadata(name), **changes})

    def drop(self, name: str) -> None:
        self.client.delete_collection(name)

    def upsert(self, name: str, points: Sequence[Point]) -> None:
        if not points:
            return
        structs = [
            qm.PointStruct(
                id=p.id,
                vector={k: [float(x) for x in v] for k, v in p.vectors.items()},
                payload=p.payload,
            )
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

    def query(
        self,
        name: str,
        vector: Sequence[float],
        using: str,
        limit: int = 10,
        filter: SearchFilter | None = None,
        exact: bool = False,
    ) -> list[StoredPoint]:
        response = self.client.query_points(
            name,
            query=[float(x) for x in vector],
            using=using,
            query_filter=_server_filter(filter),
            search_params=qm.SearchParams(exact=True) if exact else None,
            limit=limit,
            with_payload=True,
        )
        return [StoredPoint(str(p.id), p.payload or {}, score=p.score) for p in response.points]

    def retrieve(
        self, name: str, ids: Sequence[str], with_vectors: bool = False, fields=None
    ) -> list[StoredPoint]:
        if not ids:
            return []
        records = self.client.retrieve(
            name,
            list(ids),
            with_payload=list(fields) if fields else True,
            with_vectors=with_vectors,
        )
        return [as_record(r, with_vectors) for r in records]

    def scroll(
        self,
        name: str,
        filter: SearchFilter | None = None,
        fields=None,
        page: int = 1000,
        with_vectors: bool = False,
    ) -> Iterator[StoredPoint]:
        offset = None
        while True:
            records, offset = self.client.scroll(
                name,
                scroll_filter=_server_filter(filter),
                limit=page,
                offset=offset,
                with_payload=list(fields) if fields else True,
                with_vectors=with_vectors,
            )
            for record in records:
                yield as_record(record, with_vectors)
            if offset is None:
                return

    def count(self, name: str, filter: SearchFilter | None = None) -> int:
        return self.client.count(name, count_filter=_server_filter(filter), exact=True).count

    def delete(self, name: str, ids: Sequence[str]) -> None:
        if ids:
            self.client.delete(name, qm.PointIdsList(points=list(ids)), wait=True)

    def describe(self, name: str) -> dict[str, Any]:
        info = self.client.get_collection(name)
        return {
            "store": f"qdrant server {self.url}",
            "collection": name,
            "points": info.points_count,
            "indexed_vectors": info.indexed_vectors_count,
            "segments": info.segments_count,
            "payload_indexes": sorted(info.payload_schema),
            "metadata": self.metadata(name),
        }

    def close(self) -> None:
        self.client.close()


def _ingredient_match(ingredient: str) -> qm.Filter:
    word = ingredient.strip().lower()
    return qm.Filter(
        should=[
            qm.FieldCondition(key="base_ingredients", match=qm.MatchValue(value=word)),
            qm.FieldCondition(key="ingredients", match=qm.MatchText(text=word)),
        ]
    )


def _server_filter(spec: SearchFilter | None) -> qm.Filter | None:
    must: list = []
    must_not: list = []
    if spec:
        if spec.labels:
            must.append(qm.FieldCondition(key="label", match=qm.MatchAny(any=list(spec.labels))))
        if spec.splits:
            must.append(qm.FieldCondition(key="split", match=qm.MatchAny(any=list(spec.splits))))
        if spec.root:
            must.append(qm.FieldCondition(key="root", match=qm.MatchValue(value=spec.root)))
        if spec.ids:
            must.append(qm.HasIdCondition(has_id=[str(uuid.UUID(i)) for i in spec.ids]))
        if spec.has_vector:
            must.append(qm.HasVectorCondition(has_vector=spec.has_vector))
        must += [_ingredient_match(i) for i in spec.with_ingredients]
        must_not += [_ingredient_match(i) for i in spec.without_ingredients]
    if not must and not must_not:
        return None
    return qm.Filter(must=must or None, must_not=must_not or None)
