"""A Qdrant server or cluster through ``qdrant-client``, for collections past one machine.

``--qdrant-url http://host:6333`` (API key from an environment variable, ``--grpc`` for the
gRPC port). The tests run it against qdrant-client's in-process mode (``:memory:``), which
speaks the same API; nothing here depends on that mode. Uploads go through
``upload_points`` (parallel streams, retries); the collection's metadata (the model that made
its vectors) lives in Qdrant's own collection metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as qm

from indexer.filters import FilterConstructors
from indexer.qdrant_base import QdrantStore, plain_vectors
from indexer.store import VECTOR_NAMES, Point, StoreError

UPLOAD_BATCH = 256

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
        """The names of the server's collections, sorted."""
        return sorted(c.name for c in self.client.get_collections().collections)

    def drop(self, name: str) -> None:
        """Delete the collection on the server."""
        self.client.delete_collection(name)

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    # -- primitives ----------------------------------------------------------------------

    def _exists(self, name: str) -> bool:
        """Whether the server has the collection."""
        return self.client.collection_exists(name)

    def _create(self, name: str, dim: int, int8: bool, metadata: dict[str, Any]) -> None:
        """Create the collection with its metadata."""
        quantization = None
        if int8:
            quantization = qm.ScalarQuantization(
                scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99)
            )
        vectors = {
            vector: qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
            for vector in VECTOR_NAMES
        }
        self.client.create_collection(
            name, vectors_config=vectors, quantization_config=quantization, metadata=metadata
        )

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
            qm.PointStruct(id=p.id, vector=plain_vectors(p), payload=p.payload) for p in points
        ]
        self.client.upload_points(
            name,
            structs,
            batch_size=UPLOAD_BATCH,
            parallel=self.parallel,
            max_retries=3,
            wait=True,
        )

    def _query(
        self, name: str, vector: list[float], using: str, limit: int, filter: Any, exact: bool
    ) -> list:
        """Nearest points on the server."""
        response = self.client.query_points(
            name,
            query=vector,
            using=using,
            query_filter=filter,
            search_params=qm.SearchParams(exact=True) if exact else None,
            limit=limit,
            with_payload=True,
        )
        return response.points

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

    def _delete(self, name: str, ids: list[str]) -> None:
        """Delete and wait until it is applied."""
        self.client.delete(name, qm.PointIdsList(points=ids), wait=True)


@contextmanager
def _local_mode_quiet() -> Iterator[None]:
    """The in-process mode warns that it ignores payload indexes; that is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
        yield
